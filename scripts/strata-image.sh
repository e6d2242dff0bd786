#!/usr/bin/env bash
# Builds strata's own image, contrib/image/Containerfile, with strata: the image the CI
# recipes of docs/ci.md run.
#
# usage: scripts/strata-image.sh [STRATA BUILD FLAGS...]
#   scripts/strata-image.sh                                   # -> localhost/strata:latest
#   scripts/strata-image.sh -t registry.example/ci/strata:1 --output docker://registry.example/ci/strata:1
#   scripts/strata-image.sh --build-arg BASE_IMAGE=localhost/debian:bookworm
#
# The base is the build-arg BASE_IMAGE (default debian:bookworm-slim, from Docker Hub).
# The binary put in the image is $STRATA_IMAGE_BIN, else the release binary of
# `cargo build --release` (in $CARGO_TARGET_DIR, else target/). It must have been built
# on Debian 12 or older: it links the base's glibc and libseccomp. The strata that builds
# is $STRATA, else that same binary; its store is the usual one ($STRATA_ROOT, else
# ~/.local/share/strata). Without a -t, the image is tagged localhost/strata:latest.
# The context is a temporary directory holding only the Containerfile and the binary,
# so nothing else of the checkout (target/ above all) is read.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

target_dir="${CARGO_TARGET_DIR:-$STRATA_REPO/target}"
[[ $target_dir == /* ]] || target_dir="$STRATA_REPO/$target_dir"
bin="${STRATA_IMAGE_BIN:-$target_dir/release/strata}"
[ -x "$bin" ] || die "no strata binary at $bin: run 'cargo build --release' or set STRATA_IMAGE_BIN"
strata="${STRATA:-$bin}"
containerfile="$STRATA_REPO/contrib/image/Containerfile"
[ -f "$containerfile" ] || die "$containerfile is missing"

tagged=0
for arg in "$@"; do
    case "$arg" in
        -t | --tag | -t?* | --tag=*) tagged=1 ;;
    esac
done
tag=()
[ "$tagged" = 1 ] || tag=(-t localhost/strata:latest)

ctx="$(mktemp -d "${TMPDIR:-/tmp}/strata-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
cp "$containerfile" "$ctx/Containerfile"
cp "$bin" "$ctx/strata"

log "strata build ${tag[*]} $* (strata binary: $bin)"
"$strata" build "${tag[@]}" "$@" "$ctx"
