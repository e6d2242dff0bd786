# shellcheck shell=bash
# Shared helpers for the scripts in this directory. Source it; do not run it.

# The repository root, whatever the caller's working directory.
STRATA_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export STRATA_REPO

log() {
    printf '==> %s\n' "$*" >&2
}

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Run a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -- "$@"
    else
        die "need root for: $* (run as root or install sudo)"
    fi
}

# Put a Rust toolchain on PATH: cargo on PATH already, rustup's default place, or else,
# on Debian and its derivatives, Debian's cargo-web installed through apt (as root) or
# sudo. cargo-web is the Rust that Debian keeps current for browser builds (1.96 in
# bookworm-security, 1.85 in bookworm itself; strata's rust-version is 1.85); it puts
# cargo and rustc in /usr/bin. STRATA_NO_APT_RUST=1 turns the installation off.
ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        local dir
        for dir in "${CARGO_HOME:-$HOME/.cargo}/bin" /root/.cargo/bin; do
            if [ -x "$dir/cargo" ]; then
                PATH="$dir:$PATH"
                export PATH
                break
            fi
        done
    fi
    if ! command -v cargo >/dev/null 2>&1 && [ "${STRATA_NO_APT_RUST:-0}" != 1 ] &&
        command -v apt-get >/dev/null 2>&1; then
        install_debian_cargo
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "no Rust toolchain: cargo is not on PATH nor in ~/.cargo/bin; install one with rustup (https://rustup.rs) or Debian's cargo-web, then run this again"
}

# The apt-get command lines of install_debian_cargo, exactly: scripts/test.sh grants a
# user sudo for these and nothing else. The lock timeout waits for an apt run already
# under way (unattended-upgrades on a fresh machine) instead of failing at once.
APT_LOCK_WAIT=(-o DPkg::Lock::Timeout=600)
APT_RUST_UPDATE=(apt-get -q "${APT_LOCK_WAIT[@]}" update)
APT_RUST_INSTALL=(apt-get -q -y "${APT_LOCK_WAIT[@]}" install --no-install-recommends cargo-web rustc-web)

install_debian_cargo() {
    log "no Rust toolchain found: installing Debian's cargo-web and rustc-web with apt-get"
    as_root "${APT_RUST_UPDATE[@]}" </dev/null || die "apt-get update failed"
    as_root "${APT_RUST_INSTALL[@]}" </dev/null ||
        die "apt-get install cargo-web rustc-web failed: install a Rust toolchain with rustup (https://rustup.rs) instead"
    hash -r
    command -v cargo >/dev/null 2>&1 || die "cargo-web is installed but no cargo is on PATH ($PATH)"
    local have want
    have="$(cargo --version | awk '{print $2}')"
    want="$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$STRATA_REPO/Cargo.toml")"
    if [ -n "$want" ] && [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]; then
        die "Debian's cargo $have is older than strata's rust-version $want: add bookworm-security (or bookworm-updates) to apt's sources, or use rustup"
    fi
    log "installed $(cargo --version)"
}
