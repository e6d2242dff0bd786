//! The acceptance workload of `RUN --mount=type=cache`: pip on the Debian minbase of
//! `workload.rs` keeps its download cache in a cache mount, so a rebuild after a new
//! requirement takes the old packages from the cache (pip says "Using cached") and
//! downloads only the new one, while no cache file enters the image. Needs PyPI and
//! the Debian mirror.

use std::fs;

use crate::language::Ctx;
use crate::layout::Layout;
use crate::mounts::assert_not_in_layers;
use crate::support::{path_str, scratch, skip_without_sandbox, strata};
use crate::workload::{link_or_copy, minbase_tarball};

const DOCKERFILE: &str = "FROM scratch\nADD rootfs.tar /\n\
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip\n\
WORKDIR /app\nCOPY requirements.txt .\n\
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=bind,source=host-ca.pem,target=/host-ca.pem \
PIP_CERT=/host-ca.pem pip install --break-system-packages -r requirements.txt \
&& echo \"pip cache files: $(find /root/.cache/pip -type f | wc -l)\"\n";

/// The host's CA bundle: where egress goes through a TLS-inspecting proxy, its CA is
/// there and not in the image. A bind mount hands it to pip without baking it in.
const HOST_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Builds the pip image with `requirements`; returns the build log and every path in
/// the image's layers.
fn build(ctx: &Ctx, requirements: &str) -> (String, Vec<String>) {
    ctx.file("requirements.txt", requirements);
    let layout = scratch("mounts-pip-out").join("layout");
    let built = ctx.build_ok("mounts-pip", &["--output", &format!("oci:{}:pip", path_str(&layout))]);
    let layout = Layout::open(&layout);
    let manifest = layout.manifest(Some("pip"));
    let paths = Layout::layers(&manifest).iter().flat_map(|l| layout.layer_entries(l)).map(|e| e.path).collect();
    (format!("{}\n{}", built.stdout, built.stderr), paths)
}

#[test]
fn pip_reuses_its_cache_mount_and_downloads_only_the_new_package() {
    if skip_without_sandbox("pip_reuses_its_cache_mount_and_downloads_only_the_new_package") {
        return;
    }
    let ctx = Ctx::new("mounts-pip", DOCKERFILE);
    link_or_copy(&minbase_tarball(), &ctx.join("rootfs.tar"));
    fs::copy(HOST_CA, ctx.join("host-ca.pem")).unwrap_or_else(|e| panic!("copy {HOST_CA} (package ca-certificates): {e}"));
    let (first, paths) = build(&ctx, "six==1.16.0\nidna==3.7\n");
    for wheel in ["six-1.16.0", "idna-3.7"] {
        assert!(first.contains(&format!("Downloading {wheel}")), "the first build downloads {wheel}:\n{first}");
    }
    assert_not_in_layers(&paths, "root/.cache");
    // pip's HTTP cache keeps a download only when the response allows it: an egress
    // proxy that strips Cache-Control, ETag and Last-Modified leaves it empty, and
    // nothing below can pass.
    assert!(
        !first.contains("pip cache files: 0\n"),
        "pip cached nothing in the mount (do the responses from files.pythonhosted.org still carry Cache-Control?):\n{first}"
    );

    let (second, paths) = build(&ctx, "six==1.16.0\nidna==3.7\npackaging==24.1\n");
    for wheel in ["six-1.16.0", "idna-3.7"] {
        assert!(second.contains(&format!("Using cached {wheel}")), "the rebuild takes {wheel} from the cache mount:\n{second}");
        assert!(!second.contains(&format!("Downloading {wheel}")), "the rebuild downloaded {wheel} again:\n{second}");
    }
    assert!(second.contains("Downloading packaging-24.1"), "the new requirement is downloaded:\n{second}");
    assert_not_in_layers(&paths, "root/.cache");
    assert_not_in_layers(&paths, "host-ca.pem");
    let versions = strata([
        "run",
        "--rm",
        "mounts-pip",
        "python3",
        "-c",
        "import six, idna, packaging; print(six.__version__, idna.__version__, packaging.__version__)",
    ])
    .ok();
    assert_eq!(versions.stdout, "1.16.0 3.7 24.1\n", "the packages are installed in the image");
    fs::remove_file(ctx.join("rootfs.tar")).ok();
}
