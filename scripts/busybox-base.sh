#!/usr/bin/env bash
# Builds the busybox base image `busybox:latest` into a strata store, without a registry.
#
# usage: scripts/busybox-base.sh [STRATA GLOBAL ARGS...]     e.g. --root /tmp/store
#
# Stages fixtures/busybox/ plus the host's static busybox (Debian's busybox-static) in a
# temporary context and runs `strata build -t busybox:latest` on it. The strata binary is
# $STRATA, else `strata` on PATH, else target/release/strata or target/debug/strata.
# The busybox binary is $STRATA_BUSYBOX, else /bin/busybox.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

target_dir="${CARGO_TARGET_DIR:-$STRATA_REPO/target}"
[[ $target_dir == /* ]] || target_dir="$STRATA_REPO/$target_dir"

find_strata() {
    if [ -n "${STRATA:-}" ]; then
        printf '%s\n' "$STRATA"
    elif command -v strata >/dev/null 2>&1; then
        command -v strata
    elif [ -x "$target_dir/release/strata" ]; then
        printf '%s\n' "$target_dir/release/strata"
    elif [ -x "$target_dir/debug/strata" ]; then
        printf '%s\n' "$target_dir/debug/strata"
    else
        die "no strata binary: run 'cargo build --release' or set STRATA=/path/to/strata"
    fi
}

strata="$(find_strata)"
busybox="${STRATA_BUSYBOX:-/bin/busybox}"
[ -f "$busybox" ] || die "$busybox not found: install Debian's busybox-static (scripts/deps.sh)"
if LC_ALL=C ldd "$busybox" 2>/dev/null | grep -q '=>'; then
    die "$busybox is dynamically linked: install busybox-static instead of busybox"
fi

ctx="$(mktemp -d "${TMPDIR:-/tmp}/strata-busybox.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
for f in "$STRATA_REPO"/fixtures/busybox/*; do
    [ "$(basename "$f")" = busybox ] && continue # a stale staged copy
    cp -p "$f" "$ctx/"
done
cp "$busybox" "$ctx/busybox"
chmod 0755 "$ctx/busybox"

log "building busybox:latest from $busybox"
"$strata" "$@" build -t busybox:latest "$ctx"
