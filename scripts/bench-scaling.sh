#!/usr/bin/env bash
# How a big COPY's cost grows (issue 16's scaling note): W3's generated tree
# (../shared/bench/workloads/w3-ctx1g) resized by bytes and by file count, built
# by strata and by Buildah (as bench-workloads.sh runs it), cold from a wiped
# store and then again as a no-op. One run per size: a benchmark, not a test.
#
#   s020k-0.25g  W3's 20k small files, and its blobs up to 60 MiB      ~0.25 GiB
#   s020k-1g     W3's tree                                             ~1.1 GiB
#   s020k-4g     W3's tree and three more copies of its 850 MiB of blobs ~3.6 GiB
#   s200k-1.7g   W3's small files ten times over: 200k files           ~1.7 GiB
#
# Copies are real copies, not hard links (a hard link is one tar entry).
# Printed per size: files, bytes, seconds and peak RSS (GNU time %M, MiB) of each
# tool's cold build and no-op. Run as an ordinary user with subuid ranges, after
# `cargo build --release` (or with STRATA naming a binary); STRATA_SCALING_SIZES
# picks sizes. Needs about 25 GB free in TMPDIR.
set -Eeuo pipefail
trap 'echo "bench-scaling.sh: line $LINENO: $BASH_COMMAND failed" >&2' ERR
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$STRATA_REPO"
[ "$(id -u)" -ne 0 ] || die "run as an ordinary user with subuid ranges (root is not the rootless path)"

strata_bin="${STRATA:-$STRATA_REPO/target/release/strata}"
gen="${STRATA_BENCH_SHARED:-$STRATA_REPO/../shared/bench/workloads}/w3-ctx1g/gen-context.py"
sizes="${STRATA_SCALING_SIZES:-s020k-0.25g s020k-1g s020k-4g s200k-1.7g}"
cache="${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-bench}"
[ -x "$strata_bin" ] || die "no strata at $strata_bin: cargo build --release, or set STRATA"
[ -f "$gen" ] || die "no W3 generator at $gen (set STRATA_BENCH_SHARED)"
work="$(mktemp -d)"
sroot="$work/strata-store" broot="$work/buildah-store" brun="$work/buildah-run"
S=("$strata_bin" --root "$sroot")
B=(buildah --root "$broot" --runroot "$brun" --storage-driver overlay)
s() { "${S[@]}" "$@"; }
b() { "${B[@]}" "$@"; }
cleanup() {
    [ ! -e "$sroot" ] || s unshare rm -rf "$sroot" 2>/dev/null || true
    b unshare rm -rf "$broot" "$brun" 2>/dev/null || true
    rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

# The busybox base, built once from fixtures/busybox and saved for both tools.
base() {
    local ctx="$work/base-ctx"
    mkdir -p "$ctx"
    cp fixtures/busybox/* "$ctx/"
    cp /bin/busybox "$ctx/busybox"
    s build -q -t busybox "$ctx" >/dev/null
    s save --format oci-archive -o "$work/base.tar" busybox
    s unshare rm -rf "$sroot"
}

# Context $2 of size $1, from W3's tree in the cache.
context() {
    local size=$1 ctx=$2 w3="$cache/w3/tree" i
    mkdir -p "$ctx/tree"
    printf 'ARG BASE\nFROM $BASE\nCOPY tree/ /app/\n' >"$ctx/Dockerfile"
    case "$size" in
    s020k-0.25g)
        cp -a "$w3"/pkg* "$ctx/tree/"
        mkdir "$ctx/tree/blobs"
        cp -a "$w3"/blobs/blob0[0-2].* "$ctx/tree/blobs/"
        ;;
    s020k-1g) cp -a "$w3"/. "$ctx/tree/" ;;
    s020k-4g)
        cp -a "$w3"/. "$ctx/tree/"
        for i in 2 3 4; do cp -a "$w3/blobs" "$ctx/tree/blobs$i"; done
        ;;
    s200k-1.7g) for i in $(seq 0 9); do mkdir "$ctx/tree/copy$i" && cp -a "$w3"/pkg* "$ctx/tree/copy$i/"; done ;;
    *) die "unknown size $size" ;;
    esac
}

# Seconds and MiB of `$@`, as "S M".
measure() {
    /usr/bin/time -f '%e %M' -o "$work/time" "$@" >"$work/out" 2>&1 || {
        tail -n 20 "$work/out" >&2
        die "failed: $*"
    }
    awk '{ printf "%s %.1f", $1, $2 / 1024 }' "$work/time"
}

log "W3 tree (generated once into $cache/w3)"
python3 "$gen" "$cache/w3"
base
printf '%-12s %8s %7s | %-16s %-16s | %-16s %-16s\n' size files GiB "strata cold s/MiB" "strata noop" "buildah cold" "buildah noop"
for size in $sizes; do
    log "$size"
    ctx="$work/ctx"
    context "$size" "$ctx"
    files="$(find "$ctx/tree" | wc -l)"
    gib="$(du -sb "$ctx/tree" | awk '{ printf "%.2f", $1 / 2^30 }')"
    sync
    s tag "$(s load -q -i "$work/base.tar")" localhost/busybox
    sc="$(measure "${S[@]}" build -q --build-arg BASE=localhost/busybox -t scale "$ctx")"
    sn="$(measure "${S[@]}" build -q --build-arg BASE=localhost/busybox -t scale "$ctx")"
    s unshare rm -rf "$sroot"
    mkdir -p "$brun"
    id="$(b pull -q "oci-archive:$work/base.tar")"
    b tag "$id" localhost/busybox
    sync
    bc="$(measure "${B[@]}" bud --layers --isolation chroot --jobs 2 --build-arg BASE=localhost/busybox -t scale "$ctx")"
    bn="$(measure "${B[@]}" bud --layers --isolation chroot --jobs 2 --build-arg BASE=localhost/busybox -t scale "$ctx")"
    b unshare rm -rf "$broot" "$brun"
    rm -rf "$ctx"
    printf '%-12s %8s %7s | %-16s %-16s | %-16s %-16s\n' "$size" "$files" "$gib" "$sc" "$sn" "$bc" "$bn"
done
echo "(seconds then peak RSS in MiB; one run each)"
