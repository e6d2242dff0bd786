"""A package index on 127.0.0.1 for the pip workload of mounts_workload.rs.

`pip_index.py wheels DIR NAME==VERSION...` writes minimal pure-Python wheels into DIR.
`pip_index.py serve DIR LOG PORTFILE` serves DIR as a --find-links page and its wheels
with the caching headers PyPI sends for files, on a free port it writes to PORTFILE,
and appends "METHOD PATH STATUS" for every request to LOG.
"""

import base64
import email.utils
import hashlib
import html
import http.server
import os
import random
import sys
import threading
import zipfile

# A few hundred KB that do not compress, so a download is a real transfer.
PAYLOAD_BYTES = 300 * 1024


def record_hash(data):
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def write_wheel(directory, name, version):
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'__version__ = "{version}"\n'.encode(),
        f"{name}/payload.bin": random.Random(f"{name}-{version}").randbytes(PAYLOAD_BYTES),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: strata-e2e\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},{record_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    path = os.path.join(directory, f"{name}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)


class Index(http.server.BaseHTTPRequestHandler):
    directory = "."
    log_path = "requests.log"
    log_lock = threading.Lock()

    def do_GET(self):
        self.answer(body=True)

    def do_HEAD(self):
        self.answer(body=False)

    def answer(self, body):
        name = self.path.split("?", 1)[0].lstrip("/")
        if name == "":
            self.listing(body)
        elif "/" not in name and name.endswith(".whl") and os.path.isfile(os.path.join(self.directory, name)):
            self.wheel(name, body)
        else:
            self.finish_with(404, {}, b"", body)

    def listing(self, body):
        wheels = sorted(f for f in os.listdir(self.directory) if f.endswith(".whl"))
        links = "".join(f'<a href="{html.escape(w)}">{html.escape(w)}</a><br>\n' for w in wheels)
        page = f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n".encode()
        self.finish_with(200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "max-age=0"}, page, body)

    def wheel(self, name, body):
        path = os.path.join(self.directory, name)
        with open(path, "rb") as f:
            data = f.read()
        etag = '"' + hashlib.sha256(data).hexdigest() + '"'
        headers = {
            "Content-Type": "binary/octet-stream",
            "Cache-Control": "max-age=365000000, immutable, public",
            "ETag": etag,
            "Last-Modified": email.utils.formatdate(os.stat(path).st_mtime, usegmt=True),
        }
        if self.headers.get("If-None-Match") == etag:
            self.finish_with(304, headers, b"", body)
        else:
            self.finish_with(200, headers, data, body)

    def finish_with(self, status, headers, data, body):
        with self.log_lock, open(self.log_path, "a") as log:
            log.write(f"{self.command} {self.path} {status}\n")
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format, *args):
        pass


def serve(directory, log_path, port_file):
    Index.directory = directory
    Index.log_path = log_path
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    # Written whole under a temporary name so the test never reads half a number.
    with open(port_file + ".partial", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".partial", port_file)
    server.serve_forever()


def main(argv):
    if len(argv) >= 3 and argv[1] == "wheels":
        for requirement in argv[3:]:
            name, version = requirement.split("==")
            write_wheel(argv[2], name, version)
    elif len(argv) == 5 and argv[1] == "serve":
        serve(argv[2], argv[3], argv[4])
    else:
        sys.exit(f"usage: {argv[0]} wheels DIR NAME==VERSION... | serve DIR LOG PORTFILE")


if __name__ == "__main__":
    main(sys.argv)
