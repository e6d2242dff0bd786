#!/usr/bin/env bash
# Coverage-guided fuzzing on the stable toolchain: cargo-fuzz (libFuzzer) with
# `--sanitizer none`, which needs no nightly flags (the coverage passes are stable
# codegen options; only the sanitizers need -Z).
#
#   scripts/fuzz.sh TARGET SECONDS    run one target (dockerfile, patterns, unpack,
#                                     oci, registry_config) for SECONDS
#   scripts/fuzz.sh all SECONDS       each target in turn (CI's smoke pass)
#   scripts/fuzz.sh list              the targets
#
# Installs cargo-fuzz from crates.io when missing. The corpus lives in
# fuzz/corpus/TARGET (not committed) and is seeded at run time from fuzz/seeds/TARGET,
# the repo's fixtures and ../shared/conformance; fuzz/regressions/TARGET (inputs that
# once failed) are replayed first. A failing input is saved in fuzz/artifacts/TARGET
# and the script exits non-zero. Prints libFuzzer's final stats for each target.
# Environment: STRATA_FUZZ_LOGS (a dir to keep each run's full log in).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$STRATA_REPO"

targets=(dockerfile patterns unpack oci registry_config)
cargo_fuzz_version=0.13.2

usage() {
    die "usage: scripts/fuzz.sh TARGET|all SECONDS (targets: ${targets[*]})"
}

[ "${1:-}" = list ] && { printf '%s\n' "${targets[@]}"; exit 0; }
[ $# -eq 2 ] || usage
target="$1"
seconds="$2"
[[ $seconds =~ ^[0-9]+$ ]] || usage
if [ "$target" = all ]; then
    selected=("${targets[@]}")
else
    [[ " ${targets[*]} " == *" $target "* ]] || usage
    selected=("$target")
fi

ensure_cargo
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz $cargo_fuzz_version"
    cargo install cargo-fuzz --locked --version "$cargo_fuzz_version" </dev/null
fi
command -v c++ >/dev/null 2>&1 || die "libfuzzer-sys needs a C++ compiler: run scripts/deps.sh (g++)"

# Copies each file given into the corpus dir under its content hash (what libFuzzer
# names corpus files by), so reseeding never duplicates.
seed_files() {
    local dir="$1" f
    shift
    for f in "$@"; do
        [ -f "$f" ] || continue
        cp "$f" "$dir/seed-$(sha1sum <"$f" | cut -c1-40)"
    done
}

# Small layer tars made from a tree with every entry kind unpack handles.
seed_tars() {
    local dir="$1" tree
    tree="$(mktemp -d)"
    mkdir -p "$tree/etc/sub" "$tree/opaque"
    printf 'root:x:0:0::/root:/bin/sh\n' >"$tree/etc/passwd"
    ln -s ../etc/passwd "$tree/etc/sub/link"
    ln "$tree/etc/passwd" "$tree/etc/hard"
    : >"$tree/etc/.wh.gone"
    : >"$tree/opaque/.wh..wh..opq"
    mkfifo "$tree/etc/fifo"
    chmod 4755 "$tree/etc/passwd"
    for format in gnu pax ustar; do
        tar --format="$format" -C "$tree" -cf "$tree.tar" . 2>/dev/null && seed_files "$dir" "$tree.tar"
    done
    rm -rf "$tree" "$tree.tar"
}

seed() {
    local t="$1" dir="fuzz/corpus/$1"
    mkdir -p "$dir"
    seed_files "$dir" fuzz/seeds/"$t"/*
    case "$t" in
        dockerfile)
            local conformance=../shared/conformance/buildkit
            mapfile -t files < <(find fixtures "$conformance/parser" -type f \( -name Dockerfile -o -name Containerfile \) 2>/dev/null)
            seed_files "$dir" "${files[@]}" "$conformance"/shell/* ;;
        unpack) seed_tars "$dir" ;;
    esac
}

max_len() {
    case "$1" in
        unpack) echo 16384 ;;
        *) echo 8192 ;;
    esac
}

log "building the fuzz targets (cargo fuzz build -s none)"
(cd fuzz && cargo fuzz build -s none </dev/null)

failed=()
for t in "${selected[@]}"; do
    seed "$t"
    mkdir -p "fuzz/regressions/$t" "fuzz/artifacts/$t"
    log "fuzzing $t for ${seconds}s (corpus: $(find "fuzz/corpus/$t" -type f | wc -l) files)"
    out="$(mktemp /tmp/strata-fuzz-"$t".XXXXXX.log)"
    status=0
    (cd fuzz && cargo fuzz run -s none "$t" "corpus/$t" "regressions/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
        -print_final_stats=1 </dev/null) >"$out" 2>&1 || status=$?
    if [ -n "${STRATA_FUZZ_LOGS:-}" ]; then
        mkdir -p "$STRATA_FUZZ_LOGS"
        cp "$out" "$STRATA_FUZZ_LOGS/$t.log"
    fi
    # libFuzzer's last status line and its final stats say what ran.
    grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$out" | tail -n1 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$out" || true
    if [ "$status" -ne 0 ]; then
        grep -E '^(==[0-9]+== ERROR|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$out" || tail -n 40 "$out"
        log "$t: FAILED (exit $status); the input is in fuzz/artifacts/$t/"
        failed+=("$t")
    else
        log "$t: no crash in ${seconds}s"
    fi
    rm -f "$out"
done
[ "${#failed[@]}" -eq 0 ] || die "fuzz targets failed: ${failed[*]}"
