#!/usr/bin/env bash
# Benchmarks strata beside Buildah (Debian's buildah, the anchor) on the same
# workloads, rootless, and prints seconds and ratios. Benchmarks, not tests: nothing
# here asserts a time.
#
# Workloads (each built from a clean store, then again with the store warm):
#   base       fixtures/busybox: FROM scratch, COPY busybox, RUN --install
#   hello      fixtures/hello on top of the base
#   manyfiles  COPY of a context with 20,000 small files
#   bigfile    COPY of one 512 MiB file of random data (compression throughput)
#   cached20   a fully cached rebuild of a 20-step Dockerfile (built once before):
#              the median of STRATA_BENCH_RUNS (default 5) rebuilds per tool; every
#              strata rebuild must mark each step CACHED and give the first build's
#              image id, and the figure is judged against the goal (PASS/FAIL: under
#              0.2 s and at least 10x faster than buildah)
#   platforms  (not in the default set) issue 15's Dockerfile (a RUN writing
#              `uname -m` and $TARGETARCH, a FROM --platform=$BUILDPLATFORM stage, a
#              COPY --from) built for linux/amd64,linux/arm64 (arm64 through qemu's
#              binfmt_misc handler): strata `build --platform` beside `buildah build
#              --platform ... --manifest`, each from a fresh store holding only the
#              two-platform base (pushed by strata to a local docker-registry, which
#              buildah pulls from, both platforms, before its timing): the median of
#              STRATA_BENCH_RUNS
#   registry2g (not in the default set) a 2 GiB layer of random data built, pushed
#              to a local docker-registry and pulled into an empty store: seconds
#              and peak RSS (GNU time's maximum resident set) of strata for each,
#              judged against the goal (PASS/FAIL: push and pull under 100 MiB)
#
# STRATA_BENCH_WORKLOADS (default "base hello manyfiles bigfile cached20") picks
# workloads; base always runs, the others build on it.
#
# The shared workloads w1 ... w7 (the shared directory's bench/README.md) run when
# named there, e.g. STRATA_BENCH_WORKLOADS="w1 w2 w5": scripts/bench-workloads.sh
# reads them in place from STRATA_BENCH_SHARED (default
# $STRATA_REPO/../shared/bench/workloads) and prints workload, metric, seconds of
# each tool, the ratio strata/buildah and peak RSS. STRATA_BENCH_RUNS_W5 (etc.) sets
# one workload's runs; STRATA_BENCH_FLAGS adds strata build flags for A/B runs
# (e.g. "--network host"); the debian base's debootstrap tarball is cached in
# STRATA_CACHE (default /var/cache/strata-e2e when run as root, shared with the e2e
# tests); STRATA_DEBIAN_MIRROR picks the mirror.
#
# Buildah runs with --isolation chroot: its OCI-runtime isolation fails on hosts with
# hybrid cgroups (crun: "cgroups in hybrid mode not supported"), and chroot is the
# lighter of its modes, so the comparison does not favour strata.
#
# Run as an ordinary user with subuid ranges; run as root, it re-runs itself as
# STRATA_TEST_USER (default strata-test, created by scripts/test.sh).
set -euo pipefail
trap 'echo "bench.sh: line $LINENO: $BASH_COMMAND failed" >&2' ERR
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$STRATA_REPO"

if [ "$(id -u)" -eq 0 ] && [ -z "${STRATA_BENCH_INNER:-}" ]; then
    bash scripts/deps.sh </dev/null
    for p in buildah bc docker-registry debootstrap python3; do
        command -v "$p" >/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" </dev/null
    done
    # `time` is also a shell keyword: look for GNU time's binary itself.
    [ -x /usr/bin/time ] || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time </dev/null
    ensure_cargo
    cargo build --release -q
    user="${STRATA_TEST_USER:-strata-test}"
    id -u "$user" >/dev/null 2>&1 || die "user $user missing: run scripts/test.sh once first"
    work="$(mktemp -d /tmp/strata-bench.XXXXXX)"
    chmod 0755 "$work"
    cp target/release/strata "$work/strata"
    cp -a fixtures scripts "$work/"
    # The shared workloads stay where they are: only their path goes along.
    shared="${STRATA_BENCH_SHARED:-$STRATA_REPO/../shared/bench/workloads}"
    [ -d "$shared" ] && shared="$(cd "$shared" && pwd)"
    cache="${STRATA_CACHE:-/var/cache/strata-e2e}"
    mkdir -p "$cache"
    chown "$user:" "$cache"
    chmod -R a+rX "$work"
    mkdir -p "$work/home"
    chown "$user:" "$work/home"
    chown "$user:" "$work"
    trap 'runuser -u "$user" -- env HOME="$work/home" "$work/strata" --root "$work/s" unshare rm -rf "$work" >/dev/null 2>&1 || true; rm -rf "$work" 2>/dev/null || true' EXIT
    runuser -u "$user" -- env -i HOME="$work/home" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
        STRATA_BENCH_WORKLOADS="${STRATA_BENCH_WORKLOADS:-}" STRATA_BENCH_RUNS="${STRATA_BENCH_RUNS:-}" STRATA_BENCH_INNER=1 STRATA="$work/strata" STRATA_REPO="$work" \
        STRATA_BENCH_SHARED="$shared" STRATA_CACHE="$cache" STRATA_BENCH_FLAGS="${STRATA_BENCH_FLAGS:-}" \
        STRATA_DEBIAN_MIRROR="${STRATA_DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
        $(env | grep -E '^STRATA_BENCH_RUNS_W[1-7]=' || true) bash "$work/scripts/bench.sh" </dev/null
    exit 0
fi

strata_bin="${STRATA:-$STRATA_REPO/target/release/strata}"
[ -x "$strata_bin" ] || die "build strata first (cargo build --release)"
command -v buildah >/dev/null || die "buildah is not installed (apt-get install buildah)"
workloads="${STRATA_BENCH_WORKLOADS:-base hello manyfiles bigfile cached20}"
runs="${STRATA_BENCH_RUNS:-5}"
# The shared workloads (w1 ... w7) first, then the rest, if any was named.
shared_workloads=()
own_workloads=()
for w in $workloads; do
    case "$w" in
        w[1-7]) shared_workloads+=("$w") ;;
        *) own_workloads+=("$w") ;;
    esac
done
if [ "${#shared_workloads[@]}" -gt 0 ]; then
    STRATA="$strata_bin" bash scripts/bench-workloads.sh "${shared_workloads[@]}"
    [ "${#own_workloads[@]}" -gt 0 ] || exit 0
fi
want() { [[ " $workloads " == *" $1 "* ]]; }
work="$(mktemp -d)"
sroot="$work/strata-store"
broot="$work/buildah-store"
brun="$work/buildah-run"
mkdir -p "$brun"

# Contexts.
base_ctx="$work/base"
mkdir -p "$base_ctx"
cp fixtures/busybox/* "$base_ctx/"
cp /bin/busybox "$base_ctx/busybox"
many="$work/many"
mkdir -p "$many"
want manyfiles && for d in $(seq 1 100); do
    mkdir -p "$many/d$d"
    for f in $(seq 1 200); do echo "file $d $f" >"$many/d$d/f$f"; done
done
printf 'FROM busybox\nCOPY . /app\n' >"$many/Dockerfile"
big="$work/big"
mkdir -p "$big"
want bigfile && head -c $((512 * 1024 * 1024)) /dev/urandom >"$big/blob"
printf 'FROM busybox\nCOPY blob /blob\n' >"$big/Dockerfile"

steps="$work/steps"
mkdir -p "$steps"
{
    echo "FROM busybox"
    for i in $(seq 1 6); do
        echo "file $i" >"$steps/f$i"
        echo "COPY f$i /opt/f$i"
        echo "RUN echo step $i >> /opt/log"
        echo "ENV STEP$i=$i"
    done
    echo "WORKDIR /opt"
} >"$steps/Dockerfile"

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }

s() { "$strata_bin" --root "$sroot" "$@" >/dev/null 2>&1; }
b() { buildah --root "$broot" --runroot "$brun" --storage-driver overlay "$@" >/dev/null 2>&1; }

declare -A T
measure() { # name tool command...
    local name=$1 tool=$2
    shift 2
    local t0 t1
    t0=$(now)
    "$@" || die "$tool $name failed"
    t1=$(now)
    T[$name.$tool]=$(elapsed "$t0" "$t1")
}

for round in cold warm; do
    if [ "$round" = cold ]; then
        "$strata_bin" --root "$sroot" unshare rm -rf "$sroot" 2>/dev/null || true
        buildah unshare rm -rf "$broot" "$brun" 2>/dev/null || true
        mkdir -p "$brun"
    fi
    measure "base.$round" strata s build -t busybox "$base_ctx"
    measure "base.$round" buildah b bud --isolation chroot --layers -t busybox "$base_ctx"
    if want hello; then
        measure "hello.$round" strata s build -t hello fixtures/hello
        measure "hello.$round" buildah b bud --isolation chroot --layers -t hello fixtures/hello
    fi
    if want manyfiles; then
        measure "manyfiles.$round" strata s build -t many "$many"
        measure "manyfiles.$round" buildah b bud --isolation chroot --layers -t many "$many"
    fi
    if want bigfile; then
        measure "bigfile.$round" strata s build -t big "$big"
        measure "bigfile.$round" buildah b bud --isolation chroot --layers -t big "$big"
    fi
done

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# A fully cached rebuild: both tools built it once before the timing. Each strata
# rebuild is checked: every step after FROM marked CACHED, the same image id.
cached_ok=1
if want cached20; then
    first_id="$("$strata_bin" --root "$sroot" build -t steps "$steps" 2>/dev/null)" || die "strata steps failed"
    b bud --isolation chroot --layers -t steps "$steps" || die "buildah steps failed"
    : >"$work/strata.times"
    : >"$work/buildah.times"
    for i in $(seq 1 "$runs"); do
        t0=$(now)
        id="$("$strata_bin" --root "$sroot" build -t steps "$steps" 2>"$work/cached.err")" || die "strata cached rebuild failed"
        t1=$(now)
        elapsed "$t0" "$t1" >>"$work/strata.times"
        nsteps=$(grep -cE 'STEP [0-9]+/[0-9]+: ' "$work/cached.err")
        ncached=$(grep -c -- '--> CACHED$' "$work/cached.err" || true)
        if [ "$ncached" -ne $((nsteps - 1)) ] || [ "$id" != "$first_id" ]; then
            echo "cached20 run $i: $ncached of $((nsteps - 1)) steps CACHED, id $id (first build: $first_id)" >&2
            cached_ok=0
        fi
        measure "cached20.once" buildah b bud --isolation chroot --layers -t steps "$steps"
        echo "${T[cached20.once.buildah]}" >>"$work/buildah.times"
    done
    T[cached20.warm.strata]=$(median <"$work/strata.times")
    T[cached20.warm.buildah]=$(median <"$work/buildah.times")
fi

# Starts Debian's docker-registry on a free loopback port, its data below $1: sets
# reg (host:port) and reg_pid; it is stopped on any exit, a failed step's included.
start_registry() {
    local dir=$1 port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    reg="127.0.0.1:$port"
    mkdir -p "$dir"
    printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
        "$dir/data" "$reg" >"$dir/config.yml"
    docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    reg_pid=$!
    trap 'kill "$reg_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
}

# A 2 GiB layer through a registry: memory must stay flat, whatever the layer size.
reg_ok=1
if want registry2g; then
    mkdir -p "$work/huge"
    start_registry "$work/registry"
    printf 'FROM busybox\nRUN head -c %s /dev/urandom > /huge\n' $((2 * 1024 * 1024 * 1024)) >"$work/huge/Dockerfile"
    # GNU time appends "seconds kib" to the file after the command's own output.
    timed() { # name command...
        local name=$1
        shift
        /usr/bin/time -f '%e %M' -o "$work/time.$name" "$@" >/dev/null 2>"$work/err.$name" || {
            cat "$work/err.$name" >&2
            die "$name failed"
        }
        read -r "REG_S[$name]" "REG_K[$name]" <"$work/time.$name"
    }
    declare -A REG_S REG_K
    timed build "$strata_bin" --root "$sroot" build -t huge "$work/huge"
    timed push "$strata_bin" --root "$sroot" push huge "$reg/bench/huge:1"
    timed pull "$strata_bin" --root "$work/pull-store" pull "$reg/bench/huge:1"
    pushed_id="$("$strata_bin" --root "$sroot" inspect huge 2>/dev/null | jq -r '.[0].Digest' || true)"
    pulled_id="$("$strata_bin" --root "$work/pull-store" inspect "$reg/bench/huge:1" 2>/dev/null | jq -r '.[0].Digest' || true)"
    kill "$reg_pid" 2>/dev/null || true
    wait "$reg_pid" 2>/dev/null || true
    layer_bytes=$(du -sb "$work/registry/data" | cut -f1)
    for step in push pull; do
        [ "${REG_K[$step]}" -lt $((100 * 1024)) ] || reg_ok=0
    done
    [ -n "$pushed_id" ] && [ "$pushed_id" = "$pulled_id" ] || reg_ok=0
fi

# Two platforms in one build, through qemu for arm64.
if want platforms; then
    mkdir -p "$work/pbase" "$work/multi" "$work/arm64"
    start_registry "$work/pregistry"
    preg=$reg
    # The base: fixtures/busybox's recipe, each platform's busybox picked by TARGETARCH.
    cp fixtures/busybox/* "$work/pbase/"
    cp /bin/busybox "$work/pbase/busybox-amd64"
    deb="$(ls "${STRATA_ARM64_DEBS:-/var/cache/strata-arm64}"/busybox-static_*_arm64.deb 2>/dev/null | head -n1)"
    [ -n "$deb" ] || die "no busybox-static arm64 .deb: run scripts/deps.sh as root"
    dpkg-deb -x "$deb" "$work/arm64"
    cp "$work/arm64/bin/busybox" "$work/pbase/busybox-arm64"
    sed -i 's/^FROM scratch$/FROM scratch\nARG TARGETARCH/; s#COPY busybox /bin/busybox#COPY busybox-${TARGETARCH} /bin/busybox#' "$work/pbase/Dockerfile"
    pstore="$work/pbase-store"
    "$strata_bin" --root "$pstore" build -q --platform linux/amd64,linux/arm64 -t pbase "$work/pbase" >/dev/null || die "building the two-platform base failed"
    "$strata_bin" --root "$pstore" push pbase "$preg/bench/pbase:1" >/dev/null 2>&1 || die "pushing the base failed"
    cat >"$work/multi/Dockerfile" <<'EOF'
ARG BASE
FROM --platform=$BUILDPLATFORM $BASE AS cross
ARG TARGETARCH
RUN echo "built on $(uname -m) for $TARGETARCH" > /per-target
FROM $BASE
ARG TARGETARCH
RUN echo "$(uname -m) $TARGETARCH" > /arch
COPY --from=cross /per-target /per-target
EOF
    : >"$work/pstrata.times"
    : >"$work/pbuildah.times"
    for i in $(seq 1 "$runs"); do
        ps="$work/pstrata-$i"
        "$strata_bin" --root "$ps" pull -q --all-platforms "$preg/bench/pbase:1" >/dev/null || die "strata pull of the base failed"
        t0=$(now)
        "$strata_bin" --root "$ps" build -q --platform linux/amd64,linux/arm64 --build-arg "BASE=$preg/bench/pbase:1" -t multi "$work/multi" >/dev/null ||
            die "strata multi-platform build failed"
        elapsed "$t0" "$(now)" >>"$work/pstrata.times"
        pb="$work/pbuildah-$i"
        for p in linux/amd64 linux/arm64; do
            buildah --root "$pb" --runroot "$pb-run" --storage-driver overlay pull -q --tls-verify=false --platform "$p" "$preg/bench/pbase:1" >/dev/null 2>&1 ||
                die "buildah pull of the base failed"
        done
        t0=$(now)
        buildah --root "$pb" --runroot "$pb-run" --storage-driver overlay build -q --isolation chroot --layers --tls-verify=false \
            --platform linux/amd64,linux/arm64 --manifest multi --build-arg "BASE=$preg/bench/pbase:1" "$work/multi" >/dev/null 2>&1 ||
            die "buildah multi-platform build failed"
        elapsed "$t0" "$(now)" >>"$work/pbuildah.times"
        "$strata_bin" --root "$ps" unshare rm -rf "$ps" 2>/dev/null || true
        buildah unshare rm -rf "$pb" "$pb-run" 2>/dev/null || true
    done
    kill "$reg_pid" 2>/dev/null || true
    wait "$reg_pid" 2>/dev/null || true
    T[platforms.cold.strata]=$(median <"$work/pstrata.times")
    T[platforms.cold.buildah]=$(median <"$work/pbuildah.times")
fi

printf '%-18s %10s %10s %8s\n' workload strata_s buildah_s ratio
for w in base hello manyfiles bigfile cached20 platforms; do
    want "$w" || [ "$w" = base ] || continue
    for round in cold warm; do
        [ "$w" = cached20 ] && [ "$round" = cold ] && continue
        [ "$w" = platforms ] && [ "$round" = warm ] && continue
        st=${T[$w.$round.strata]}
        bt=${T[$w.$round.buildah]}
        printf '%-18s %10.3f %10.3f %7.2fx\n' "$w ($round)" "$st" "$bt" "$(echo "$bt / $st" | bc -l)"
    done
done
echo "(ratio = buildah / strata: above 1 means strata is faster)"
if want cached20; then
    st=${T[cached20.warm.strata]}
    bt=${T[cached20.warm.buildah]}
    verdict=PASS
    if [ "$cached_ok" -ne 1 ] || [ "$(echo "$st < 0.2" | bc -l)" -ne 1 ] || [ "$(echo "$bt >= 10 * $st" | bc -l)" -ne 1 ]; then
        verdict=FAIL
    fi
    printf 'cached20 goal (median of %s; every step CACHED, same id; < 0.2 s; >= 10x buildah): %s (strata %.3f s, buildah %.3f s, %s)\n' \
        "$runs" "$verdict" "$st" "$bt" "$([ "$cached_ok" -eq 1 ] && echo "all runs fully cached, same id" || echo "NOT fully cached")"
fi
if want registry2g; then
    for step in build push pull; do
        printf 'registry2g %-5s %8.1f s  peak RSS %7.1f MiB\n' "$step" "${REG_S[$step]}" "$(echo "${REG_K[$step]} / 1024" | bc -l)"
    done
    printf 'registry2g goal (2 GiB layer, %s bytes in the registry; push and pull peak RSS < 100 MiB; same digest after the round trip): %s\n' \
        "$layer_bytes" "$([ "$reg_ok" -eq 1 ] && echo PASS || echo FAIL)"
fi
"$strata_bin" --root "$sroot" unshare rm -rf "$work" 2>/dev/null || true
buildah unshare rm -rf "$work" 2>/dev/null || true
