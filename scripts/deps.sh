#!/usr/bin/env bash
# Installs the Debian packages strata and its tests need, only those missing, and checks
# that a Rust toolchain is present. Idempotent; runs as root, or as a user through sudo.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

packages=(
    uidmap          # newuidmap/newgidmap: map the subuid ranges into the user namespace
    git             # ADD of a git repository runs the system git (tests: git daemon serves one)
    libseccomp-dev  # the libseccomp crate links libseccomp (>= 2.5 for seccomp notify)
    pkg-config      # -sys crates look system libraries up with it (libseccomp-sys links -lseccomp)
    fuse-overlayfs  # overlay fallback where kernel overlayfs is not allowed
    passt           # pasta: the private network of RUN and run (outbound, DNS, run -p)
    slirp4netns     # the same where pasta is missing; tests run both
    busybox-static  # the static busybox copied into the base image
    skopeo          # tests: inspect oci: and oci-archive: outputs
    umoci           # tests: unpack the output rootless and compare files
    podman          # tests and comparisons
    crun            # podman's runtime
    runc            # tests: podman runs rootless with runc (crun refuses hybrid cgroups)
    jq              # scripts/test.sh: find the test binary in cargo's JSON output
    binutils        # scripts/test.sh: strings, to check no test hook is in the release binary
    tar gzip        # tests: list layer tarballs
    util-linux      # runuser, unshare
    passwd          # useradd, usermod --add-subuids
    ca-certificates
    debootstrap     # tests: the real workload, a Debian minbase made rootlessly
    python3         # tests: the package index and wheels of the pip cache-mount workload
    docker-registry # tests: a real registry on 127.0.0.1 for pull, push and login
    apache2-utils   # tests: htpasswd for the registry's basic auth
    openssl         # tests: a CA and a server certificate for the TLS registry
    openssh-client  # tests: ssh-agent, ssh-add and ssh-keygen for RUN --mount=type=ssh
    gcc libc6-dev   # tests: static probes compiled with cc -static at test time
    g++             # scripts/fuzz.sh: libfuzzer-sys compiles libFuzzer (C++)
    sudo            # scripts/test.sh: the demo stage's new user installs cargo-web through it
    qemu-user-static # foreign-architecture RUN steps (build --platform) through binfmt_misc
    binfmt-support  # registers qemu-user-static's handlers (update-binfmts)
)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing missing packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" </dev/null
else
    log "all Debian packages present"
fi

# Multi-platform tests: binfmt_misc mounted, qemu's handlers enabled, and Debian's
# arm64 static busybox (the arm64 base is built from it) where the unprivileged
# test user reads it.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    as_root mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || log "warning: cannot mount binfmt_misc"
fi
as_root update-binfmts --enable qemu-aarch64 2>/dev/null || true
arm64_debs=${STRATA_ARM64_DEBS:-/var/cache/strata-arm64}
if ! ls "$arm64_debs"/busybox-static_*_arm64.deb >/dev/null 2>&1; then
    log "downloading busybox-static:arm64 into $arm64_debs"
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        as_root dpkg --add-architecture arm64
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
    fi
    as_root mkdir -p "$arm64_debs"
    (cd "$arm64_debs" && as_root apt-get download busybox-static:arm64 </dev/null)
    as_root chmod -R a+rX "$arm64_debs"
fi

ensure_cargo
for component in fmt clippy; do
    if ! cargo "$component" --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            log "adding rustup component for cargo $component"
            rustup component add "$([ "$component" = fmt ] && echo rustfmt || echo clippy)" </dev/null
        else
            log "warning: cargo $component is missing (scripts/test.sh needs it)"
        fi
    fi
done
log "rust toolchain: $(cargo --version)"
