#!/usr/bin/env bash
# The shared benchmark workloads W1-W7 (bench/README.md of the shared directory),
# strata beside Buildah. scripts/bench.sh runs this, as an ordinary user, for the
# wN names in STRATA_BENCH_WORKLOADS: `bash scripts/bench-workloads.sh w1 w2 ...`.
#
# The workloads are read in place from STRATA_BENCH_SHARED (default
# $STRATA_REPO/../shared/bench/workloads): every build names the Dockerfile there
# with -f; its context is a work dir holding copies of the other files (the harness
# edits stamp.txt), W3's generated tree hard-linked from the cache.
#
# Bases, made once per run and not timed: `busybox` is fixtures/busybox with the
# host's static busybox, FROM scratch; `debian` is a debootstrap --variant=minbase
# bookworm made rootlessly (inside `strata unshare`), its tarball cached in
# STRATA_CACHE as the e2e real-workload test caches it, imported with
# `FROM scratch` + `ADD rootfs.tar /`. strata saves each as an oci-archive, which
# every cold store then imports the same way: `strata load`, `buildah pull`.
#
# Per workload, STRATA_BENCH_RUNS_<W> times (default STRATA_BENCH_RUNS, else 5, and
# 3 for w3 w4 w5), strata then Buildah in turn (A B A B ...), each from a wiped store:
#   cold         the first build (base imported)
#   noop         the same build again
#   change_last  stamp.txt edited (only the last step uses it)
#   change_deep  (w3) one 8 KiB file deep in tree/ edited
#   export       the image to an oci-archive
#   cold_zstd    (w3) strata's cold build again from a wiped store, with
#                `--compression zstd`; Buildah's figure is its (gzip) cold build,
#                as issue 16's table compares them
# Printed: medians in seconds, the ratio strata/Buildah of the medians, and the
# peak RSS of the largest process (GNU time %M, the highest of the runs) in MiB.
# Then, per workload, where strata's cold build spent its time: its cold builds
# run with STRATA_TRACE=1 (README.md), and the phases of their `TRACE build
# total` lines are printed as medians over the runs (busy seconds, summed over
# threads; the thread count is the most any step used).
#
# Buildah: `buildah bud --layers --isolation chroot --jobs 2`, overlay storage.
# STRATA_BENCH_FLAGS adds strata build flags for A/B comparisons (for example
# "--network host --security-opt seccomp=unconfined").
set -Eeuo pipefail
trap 'echo "bench-workloads.sh: line $LINENO: $BASH_COMMAND failed" >&2' ERR
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$STRATA_REPO"

strata_bin="${STRATA:-$STRATA_REPO/target/release/strata}"
shared="${STRATA_BENCH_SHARED:-$STRATA_REPO/../shared/bench/workloads}"
[ -d "$shared" ] || die "no shared workloads at $shared (set STRATA_BENCH_SHARED)"
shared="$(cd "$shared" && pwd)"
cache="${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-bench}"
mirror="${STRATA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
read -r -a strata_flags <<<"${STRATA_BENCH_FLAGS:-}"
[ -x /usr/bin/time ] || die "GNU time is missing (apt-get install time)"
mkdir -p "$cache"
work="$(mktemp -d)"
sroot="$work/strata-store"
broot="$work/buildah-store"
brun="$work/buildah-run"
res="$work/results"
mkdir -p "$res" "$work/bases"

# Each tool on its store; arrays, so that GNU time can run them too.
S=("$strata_bin" --root "$sroot")
B=(buildah --root "$broot" --runroot "$brun" --storage-driver overlay)
s() { "${S[@]}" "$@"; }
b() { "${B[@]}" "$@"; }

# The directory of workload wN, e.g. w2 -> .../w2-steps20.
workload_dir() {
    local d
    for d in "$shared/$1"-*/; do
        [ -f "$d/Dockerfile" ] && { echo "${d%/}"; return; }
    done
    die "no workload $1 in $shared"
}

# The base a workload's Dockerfile names: ARG BASE=localhost/<name>.
base_of() {
    sed -n 's|^ARG BASE=localhost/||p;T;q' "$1/Dockerfile"
}

# The debootstrap minbase tarball, made (minutes) only when the cache lacks it.
debian_tarball() {
    local tarball="$cache/debian-bookworm-minbase.tar"
    if [ ! -f "$tarball" ]; then
        log "debootstrap --variant=minbase bookworm (cached in $cache)"
        local mk="$work/debootstrap"
        "$strata_bin" --root "$mk" unshare env container=lxc PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
            { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
        "$strata_bin" --root "$mk" unshare tar --numeric-owner --xattrs -C "$work/rootfs" -cf "$tarball.partial" .
        "$strata_bin" --root "$mk" unshare rm -rf "$work/rootfs" "$mk"
        mv "$tarball.partial" "$tarball"
    fi
    echo "$tarball"
}

# Builds base $1 with strata in a store of its own and saves it as an oci-archive.
make_base() {
    local name=$1 ctx="$work/base-$1" mk="$work/base-store"
    [ -f "$work/bases/$name.tar" ] && return
    mkdir -p "$ctx"
    case "$name" in
        busybox)
            cp fixtures/busybox/* "$ctx/"
            cp /bin/busybox "$ctx/busybox"
            ;;
        debian)
            ln "$(debian_tarball)" "$ctx/rootfs.tar" 2>/dev/null || cp "$(debian_tarball)" "$ctx/rootfs.tar"
            printf 'FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n' >"$ctx/Dockerfile"
            ;;
        *) die "unknown base $name" ;;
    esac
    log "base $name"
    "$strata_bin" --root "$mk" build -q -t "$name" "$ctx" >/dev/null
    "$strata_bin" --root "$mk" save --format oci-archive -o "$work/bases/$name.tar" "$name"
    rm -rf "$ctx"
}

# An empty store for tool $1 with base $2 imported.
fresh_store() {
    local tool=$1 base=$2 id
    if [ "$tool" = strata ]; then
        [ -e "$sroot" ] && s unshare rm -rf "$sroot"
        id="$(s load -q -i "$work/bases/$base.tar")"
        s tag "$id" "localhost/$base"
    else
        b unshare rm -rf "$broot" "$brun" 2>/dev/null || true
        mkdir -p "$brun"
        id="$(b pull -q "oci-archive:$work/bases/$base.tar")"
        b tag "$id" "localhost/$base"
    fi
}

# Context of workload dir $1 in $2: every file but the Dockerfile, as shipped
# (writable: the shared copies are read-only).
reset_context() {
    local src=$1 ctx=$2 f
    mkdir -p "$ctx"
    for f in "$src"/*; do
        [ "$(basename "$f")" = Dockerfile ] || [ "$(basename "$f")" = gen-context.py ] || install -m 0644 "$f" "$ctx/"
    done
    if [ -n "${deep:-}" ]; then
        cp "$work/deep.orig" "$ctx/$deep.new" && mv "$ctx/$deep.new" "$ctx/$deep"
    fi
}

# W3's generated tree (cached), hard-linked into context $1; sets `deep`, the
# 8 KiB file change_deep edits.
w3_tree() {
    local ctx=$1
    log "w3 context (generated once into $cache/w3)"
    python3 "$shared/w3-ctx1g/gen-context.py" "$cache/w3"
    mkdir -p "$ctx"
    cp -al "$cache/w3/tree" "$ctx/tree" 2>/dev/null || cp -a "$cache/w3/tree" "$ctx/tree"
    # (sed, not head, reads all its input: no SIGPIPE under pipefail)
    deep="$(cd "$ctx" && find tree -mindepth 3 -type f -size 8k | sort | sed -n 1p)"
    [ -n "$deep" ] || deep="$(cd "$ctx" && find tree -type f -size -9k | sort | sed -n 1p)"
    cp "$ctx/$deep" "$work/deep.orig"
}

# Times `$3...` as metric $1 of tool $2 for the current workload $w: seconds and
# peak RSS (KiB) are appended to the results.
timed() {
    local metric=$1 tool=$2 secs kib
    shift 2
    /usr/bin/time -f '%e %M' -o "$work/time" "$@" >"$work/out" 2>&1 || {
        tail -n 30 "$work/out" >&2
        die "$w $metric ($tool) failed: $*"
    }
    read -r secs kib <"$work/time"
    echo "$secs" >>"$res/$w.$metric.$tool.s"
    echo "$kib" >>"$res/$w.$metric.$tool.k"
}

build() { # tool [strata build flags...]
    local dockerfile="$dir/Dockerfile" arg="BASE=localhost/$base" extra=("${@:2}")
    if [ "$1" = strata ]; then
        local trace=()
        [ "$metric" != cold ] || trace=(env STRATA_TRACE=1)
        timed "$metric" strata "${trace[@]}" "${S[@]}" build "${strata_flags[@]}" "${extra[@]}" --build-arg "$arg" -t "bench-$w" -f "$dockerfile" "$ctx"
        if [ "$metric" = cold ]; then
            grep '^TRACE build total: ' "$work/out" >>"$res/$w.trace" || die "$w cold (strata): no TRACE build total line"
        fi
    else
        timed "$metric" buildah "${B[@]}" bud --layers --isolation chroot --jobs 2 --build-arg "$arg" -t "bench-$w" -f "$dockerfile" "$ctx"
    fi
}

# One run of every metric of workload $w for tool $1.
one_run() {
    local tool=$1 metric
    fresh_store "$tool" "$base"
    reset_context "$dir" "$ctx"
    metric=cold build "$tool"
    metric=noop build "$tool"
    printf 'changed by the benchmark\n' >>"$ctx/stamp.txt"
    metric=change_last build "$tool"
    if [ -n "${deep:-}" ]; then
        printf '%*s' 8192 '' | tr ' ' 'c' >"$ctx/$deep.new"
        mv "$ctx/$deep.new" "$ctx/$deep"
        metric=change_deep build "$tool"
    fi
    rm -f "$work/export.tar"
    if [ "$tool" = strata ]; then
        timed export strata "${S[@]}" save --format oci-archive -o "$work/export.tar" "bench-$w"
    else
        timed export buildah "${B[@]}" push "bench-$w" "oci-archive:$work/export.tar"
    fi
    [ -n "${deep:-}" ] || return 0
    if [ "$tool" = strata ]; then
        fresh_store strata "$base"
        reset_context "$dir" "$ctx"
        metric=cold_zstd build strata --compression zstd
    else
        tail -n1 "$res/$w.cold.buildah.s" >>"$res/$w.cold_zstd.buildah.s"
        tail -n1 "$res/$w.cold.buildah.k" >>"$res/$w.cold_zstd.buildah.k"
    fi
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
highest() { sort -n | tail -n1; }

report() { # workloads...
    printf '%-14s %-12s %9s %10s %7s %11s %12s %5s\n' workload metric strata_s buildah_s ratio strata_MiB buildah_MiB runs
    local w metric f st bt sk bk
    for w in "$@"; do
        for metric in cold noop change_last change_deep export cold_zstd; do
            f="$res/$w.$metric"
            [ -e "$f.strata.s" ] && [ -e "$f.buildah.s" ] || continue
            st="$(median <"$f.strata.s")" bt="$(median <"$f.buildah.s")"
            sk="$(highest <"$f.strata.k")" bk="$(highest <"$f.buildah.k")"
            printf '%-14s %-12s %9.3f %10.3f %6.2fx %11.1f %12.1f %5s\n' "$(basename "$(workload_dir "$w")")" "$metric" "$st" "$bt" \
                "$(echo "if ($bt > 0) $st / $bt else 0" | bc -l)" "$(echo "$sk / 1024" | bc -l)" "$(echo "$bk / 1024" | bc -l)" "$(wc -l <"$f.strata.s")"
        done
    done
    echo "(ratio = strata / buildah of the medians: below 1 means strata is faster; MiB = the highest peak RSS of the runs)"
    [ -z "${STRATA_BENCH_FLAGS:-}" ] || echo "(strata build flags: $STRATA_BENCH_FLAGS)"
}

# The phase medians of strata's traced cold builds, one line per workload.
report_trace() { # workloads...
    local w
    echo
    echo "strata cold build phases (STRATA_TRACE=1 build totals; busy seconds summed over threads, median over the runs):"
    for w in "$@"; do
        [ -e "$res/$w.trace" ] || continue
        printf '%-14s ' "$(basename "$(workload_dir "$w")")"
        awk -f - "$res/$w.trace" <<'AWK'
# Fields: TRACE build total: wall 12.34s | sandbox 0.10 command 3.20 compress 8.00 (2 threads) ...
function median(phase,    i, j, n, t, a) {
    n = 0
    for (i = 1; i <= NR; i++) a[++n] = ((i, phase) in v) ? v[i, phase] : 0
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
    for (f = 1; f <= NF; f++) {
        if ($f == "wall") { v[NR, "wall"] = $(f + 1) + 0; f++; continue }
        if ($f ~ /^\(/) { t = substr($f, 2) + 0; if (t > th[last]) th[last] = t; continue }
        if ($f ~ /^[a-z]+$/ && $(f + 1) ~ /^[0-9.]+$/ && f > 4) {
            if (!($f in seen)) { seen[$f] = 1; order[++phases] = $f }
            v[NR, $f] = $(f + 1) + 0; last = $f; f++
        }
    }
}
END {
    printf "wall %.2f |", median("wall")
    for (p = 1; p <= phases; p++) {
        printf " %s %.2f", order[p], median(order[p])
        if (th[order[p]] > 1) printf " (%d threads)", th[order[p]]
    }
    printf "   (%d runs)\n", NR
}
AWK
    done
}

cleanup() {
    [ ! -e "$sroot" ] || s unshare rm -rf "$sroot" 2>/dev/null || true
    [ ! -e "$work/base-store" ] || "$strata_bin" --root "$work/base-store" unshare rm -rf "$work/base-store" 2>/dev/null || true
    b unshare rm -rf "$broot" "$brun" 2>/dev/null || true
    rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

for w in "$@"; do
    dir="$(workload_dir "$w")"
    base="$(base_of "$dir")"
    make_base "$base"
    ctx="$work/ctx-$w"
    deep=
    [ "$w" = w3 ] && w3_tree "$ctx"
    upper="$(echo "$w" | tr '[:lower:]' '[:upper:]')"
    default=5
    case "$w" in w3 | w4 | w5) default=3 ;; esac
    runs_var="STRATA_BENCH_RUNS_$upper"
    runs="${!runs_var:-${STRATA_BENCH_RUNS:-$default}}"
    for i in $(seq 1 "$runs"); do
        log "$w run $i of $runs"
        one_run strata
        one_run buildah
    done
    rm -rf "$ctx"
done
report "$@"
report_trace "$@"
