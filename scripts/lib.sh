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

# Put a Rust toolchain on PATH: cargo on PATH already, or rustup's default place.
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
    command -v cargo >/dev/null 2>&1 ||
        die "no Rust toolchain: cargo is not on PATH nor in ~/.cargo/bin; install one with rustup (https://rustup.rs), then run this again"
}
