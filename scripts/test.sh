#!/usr/bin/env bash
# The README's second command, and what CI runs (.ci/run).
#
# 1. scripts/deps.sh: the Debian packages and a Rust toolchain.
# 2. cargo fmt --check; cargo clippy --all-targets -- -D warnings, once without and once
#    with the fault-injection feature so that both sides of its cfg are linted.
# 3. cargo build --release, and a check that the release binary has no test hook in it
#    (`strings | grep STRATA_TEST_`: the hooks exist only with --features fault-injection).
# 4. Unit and conformance tests as whoever runs this script.
# 5. End-to-end tests (tests/e2e.rs) as an UNPRIVILEGED user with subuid/subgid ranges:
#    as root, user strata-test is created when missing and the test binary, strata and
#    the fixtures are copied to a fresh directory that user can read; otherwise they run
#    as the current user. STRATA_REQUIRE_SANDBOX=1 turns "cannot sandbox here" skips into
#    failures. The tests, and the strata binary they run, are built with
#    --features fault-injection: the crash and single-id tests need its hooks (and fail,
#    saying so, against a binary without them).
#
# 6. As root only: scripts/test-demo.sh, scripts/demo.sh run by a new user with no Rust
#    toolchain (it installs Debian's cargo-web through sudo), ending with the greeting.
#
# Ends with the demo stage's line; exits non-zero on any failure.
# Environment: STRATA_TEST_USER (default strata-test), STRATA_E2E_THREADS (default 2),
# STRATA_E2E_FILTER (a libtest name filter for the e2e tests), STRATA_FUZZ_SECONDS (the
# fuzz smoke pass per target, default 15; 0 skips it).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$STRATA_REPO"

test_user="${STRATA_TEST_USER:-strata-test}"
threads="${STRATA_E2E_THREADS:-2}"
subid_range="200000-265535"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Every build of the tests, and of the strata binary the e2e tests run: with the test
# hooks of src/fault.rs. Release builds (below, demo.sh, bench.sh) never have them.
test_features=(--features fault-injection)

log "dependencies"
bash scripts/deps.sh </dev/null
ensure_cargo

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
log "cargo clippy --all-targets ${test_features[*]} -- -D warnings"
cargo clippy --all-targets "${test_features[@]}" -- -D warnings

# What users run: no fault-injection hook may be compiled in. The names of all of them
# start with STRATA_TEST_ (src/fault.rs); `strings` is in binutils (scripts/deps.sh).
log "cargo build --release, and no test hook in it"
release="$(cargo build --release --message-format=json-render-diagnostics </dev/null)"
release_bin="$(jq -r 'select(.reason == "compiler-artifact" and .target.name == "strata"
                             and (.target.kind | index("bin"))) | .executable // empty' <<<"$release" | tail -n1)"
[[ -n $release_bin && -x $release_bin ]] || die "could not find the release strata binary in cargo's output"
command -v strings >/dev/null 2>&1 || die "strings is missing (binutils): run scripts/deps.sh"
release_strings="$(strings -a "$release_bin")" || die "strings $release_bin failed"
if hooks="$(grep STRATA_TEST_ <<<"$release_strings")"; then
    printf '%s\n' "$hooks" >&2
    die "$release_bin contains test hooks (above): they must be under #[cfg(feature = \"fault-injection\")]"
fi
unset release_strings

if [ -f src/lib.rs ]; then
    log "unit tests: cargo test --lib"
    cargo test "${test_features[@]}" --lib -- --skip conformance_tests </dev/null
    # The conformance tests print an N/N tally per corpus: show it even when they pass.
    log "conformance: ../shared/conformance/buildkit"
    if conformance="$(cargo test "${test_features[@]}" --lib conformance_tests -- --show-output </dev/null 2>&1)"; then
        grep -E '^(parser|parser-negative|envVarTest|wordsTest) [0-9]+/[0-9]+$|^test result' <<<"$conformance"
    else
        printf '%s\n' "$conformance"
        die "conformance tests failed"
    fi
fi

# Every integration test binary except e2e (conformance and the like) runs here as is.
for t in tests/*.rs tests/*/main.rs; do
    [ -e "$t" ] || continue
    case "$t" in
        tests/*/main.rs) name="$(basename "$(dirname "$t")")" ;;
        *) name="$(basename "$t" .rs)" ;;
    esac
    [ "$name" = e2e ] && continue
    log "integration tests: cargo test --test $name"
    cargo test "${test_features[@]}" --test "$name" </dev/null
done

# A short pass of each fuzz target: catches a target that no longer builds and
# findings the corpus reaches quickly. STRATA_FUZZ_SECONDS=0 skips it.
fuzz_seconds="${STRATA_FUZZ_SECONDS:-15}"
if [ "$fuzz_seconds" -gt 0 ]; then
    log "fuzz smoke pass: scripts/fuzz.sh all $fuzz_seconds"
    bash scripts/fuzz.sh all "$fuzz_seconds"
fi

log "building the e2e test binary and strata (${test_features[*]})"
artifacts="$(cargo test "${test_features[@]}" --test e2e --no-run --message-format=json-render-diagnostics </dev/null)"
e2e_bin="$(jq -r 'select(.reason == "compiler-artifact" and .target.name == "e2e"
                         and .profile.test == true) | .executable // empty' <<<"$artifacts" | tail -n1)"
strata_bin="$(jq -r 'select(.reason == "compiler-artifact" and .target.name == "strata"
                            and (.target.kind | index("bin"))) | .executable // empty' <<<"$artifacts" | tail -n1)"
[[ -n $e2e_bin && -x $e2e_bin ]] || die "could not find the e2e test binary in cargo's output"
[[ -n $strata_bin && -x $strata_bin ]] || die "could not find the strata binary in cargo's output"
# The other side of the release check: the hooks' names are found where they exist, so
# an empty grep above means they are absent, not that the pattern is wrong. (No grep -q:
# under pipefail, strings killed by SIGPIPE would fail the pipeline.)
strings -a "$strata_bin" | grep STRATA_TEST_ >/dev/null ||
    die "$strata_bin was built with ${test_features[*]} but has no STRATA_TEST_ hook in it"

filter=()
[ -n "${STRATA_E2E_FILTER:-}" ] && filter=("$STRATA_E2E_FILTER")

# Gives $test_user its own subordinate id range unless it has one already.
ensure_subids() {
    local file="$1" flag="$2"
    touch "$file"
    if ! grep -qE "^($test_user|$(id -u "$test_user")):" "$file"; then
        usermod "$flag" "$subid_range" "$test_user"
    fi
}

if [ "$(id -u)" -eq 0 ]; then
    if ! id -u "$test_user" >/dev/null 2>&1; then
        log "creating user $test_user"
        useradd --create-home --shell /bin/bash --user-group "$test_user"
    fi
    ensure_subids /etc/subuid --add-subuids
    ensure_subids /etc/subgid --add-subgids
    # A supplementary group of the caller, to show it never follows a command into a
    # container (buildah's CVE-2022-2990; tests/e2e/escapes.rs).
    groupadd -f strata-test-extra
    id -nG "$test_user" | grep -qw strata-test-extra || usermod -aG strata-test-extra "$test_user"
    # Debian ships /dev/fuse 0666; some machines have it 0600: make it like a normal host
    # so that the unprivileged fuse-overlayfs path can be tested.
    if [ -c /dev/fuse ]; then
        chmod 0666 /dev/fuse
    fi
    # Likewise /dev/net/tun (udev makes it 0666): pasta and slirp4netns need it for
    # the private network of RUN steps.
    if [ -c /dev/net/tun ]; then
        chmod 0666 /dev/net/tun
    fi

    work="$(mktemp -d /tmp/strata-e2e.XXXXXX)"
    trap 'rm -rf "$work" >/dev/null 2>&1 || true' EXIT
    chmod 0755 "$work"
    mkdir -p "$work/bin" "$work/home" "$work/tmp" "$work/run"
    cp "$e2e_bin" "$work/bin/e2e"
    cp "$strata_bin" "$work/bin/strata"
    cp -a fixtures "$work/fixtures"
    chmod -R a+rX "$work/bin" "$work/fixtures"
    chown -R "$test_user:" "$work/home" "$work/tmp" "$work/run"
    chmod 0700 "$work/run"
    # The debootstrap tarball of the real-workload test outlives this run.
    cache=/var/cache/strata-e2e
    mkdir -p "$cache"
    chown "$test_user:" "$cache"

    log "e2e tests as $test_user (uid $(id -u "$test_user")): $(grep -E "^$test_user:" /etc/subuid | head -n1)"
    runuser -u "$test_user" -- env -i \
        HOME="$work/home" \
        USER="$test_user" \
        LOGNAME="$test_user" \
        PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
        TMPDIR="$work/tmp" \
        XDG_RUNTIME_DIR="$work/run" \
        LANG=C.UTF-8 \
        STRATA_BIN="$work/bin/strata" \
        STRATA_FIXTURES="$work/fixtures" \
        STRATA_CACHE="$cache" \
        STRATA_REQUIRE_SANDBOX=1 \
        "$work/bin/e2e" --test-threads="$threads" "${filter[@]}" </dev/null

    # Setups B and C of docs/ci.md as the issue states them: rootful podman. The
    # same tests ran rootless above; as root they start rootful containers.
    log "e2e container setups B and C again as root (rootful podman)"
    (cd "$work/tmp" && TMPDIR="$work/tmp" STRATA_BIN="$work/bin/strata" STRATA_FIXTURES="$work/fixtures" \
        STRATA_REQUIRE_SANDBOX=1 "$work/bin/e2e" --test-threads="$threads" \
        ci_setups::setup_b_ ci_setups::setup_c_ </dev/null)

    # The README's first command as a newcomer runs it: a new user, no Rust toolchain.
    log "scripts/test-demo.sh: demo.sh as a new user with no Rust toolchain"
    bash scripts/test-demo.sh
else
    log "not run as $(id -un): scripts/test-demo.sh (it creates a user, so it needs root)"
    log "e2e tests as $(id -un) (uid $(id -u))"
    STRATA_BIN="$strata_bin" \
        STRATA_FIXTURES="$STRATA_REPO/fixtures" \
        STRATA_CACHE="${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-e2e}" \
        STRATA_REQUIRE_SANDBOX=1 \
        "$e2e_bin" --test-threads="$threads" "${filter[@]}" </dev/null
fi
