#!/usr/bin/env bash
# The README's first command, checked the way a newcomer meets it: scripts/demo.sh, run
# by a new user with no Rust toolchain, ends with the demo's greeting. scripts/test.sh
# runs this as root, after the other tests.
#
# 1. No Rust for that user: rustup's toolchains live in root's home; a cargo-web left
#    by an interrupted run is removed first, and any other cargo on the user's PATH
#    fails the stage (it would hide the installation this checks).
# 2. User strata-demo is made afresh (userdel -r, useradd) with a subordinate range and
#    passwordless sudo for exactly the two apt-get command lines of install_debian_cargo
#    (scripts/lib.sh), nothing else. scripts/deps.sh has installed every other package
#    already, so those are all demo.sh asks root for here; on a bare machine it would
#    also ask for the apt-get install of deps.sh's packages.
# 3. demo.sh runs from a git clone of HEAD (not the working tree) in the user's home:
#    it installs cargo-web and rustc-web through sudo, builds strata with them, builds
#    the busybox base and fixtures/hello, and runs hello. The stage asserts that the
#    installation happened, that the greeting is the last thing hello printed, and
#    that the completions and man pages are where the user's shell and man look.
# 4. Afterwards cargo-web and rustc-web are removed again (this machine's Rust is
#    rustup's, in root's home), and the user and its sudoers file deleted.
#
# Cargo's target dir and crate downloads are kept in $STRATA_DEMO_CACHE (default
# /var/cache/strata-demo), so a run compiles only what changed since the last one; a
# cold cache costs a full release build (minutes on two cores).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$STRATA_REPO"

[ "$(id -u)" -eq 0 ] || die "scripts/test-demo.sh makes a user and a sudoers rule: run it as root"
user=strata-demo
subid_range=300000-365535
cache="${STRATA_DEMO_CACHE:-/var/cache/strata-demo}"
sudoers=/etc/sudoers.d/strata-demo
greeting="Hello from strata! I am app (uid 1000), working in /app."
user_path=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
command -v sudo >/dev/null 2>&1 || die "sudo is missing: run scripts/deps.sh"

apt_quiet() {
    env DEBIAN_FRONTEND=noninteractive apt-get -q -y "${APT_LOCK_WAIT[@]}" "$@" </dev/null >/dev/null
}
installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}
remove_debian_rust() {
    if installed cargo-web || installed rustc-web; then
        apt_quiet remove cargo-web rustc-web
    fi
}
cleanup() {
    remove_debian_rust || log "warning: could not remove cargo-web and rustc-web"
    rm -f "$sudoers"
    if id -u "$user" >/dev/null 2>&1; then
        userdel --force --remove "$user" 2>/dev/null || log "warning: could not delete user $user"
    fi
}

remove_debian_rust
if found="$(env -i PATH="$user_path" sh -c 'command -v cargo || command -v rustc')"; then
    die "$found is on a new user's PATH: this stage needs a machine where only root has Rust"
fi

if id -u "$user" >/dev/null 2>&1; then
    userdel --force --remove "$user"
fi
trap cleanup EXIT
useradd --create-home --shell /bin/bash --user-group "$user"
# useradd gives a new user a range of its own where login.defs says so (Debian's does);
# a second one would overlap the next user's and make newuidmap refuse the map.
for file in /etc/subuid /etc/subgid; do
    if ! grep -qE "^($user|$(id -u "$user")):" "$file" 2>/dev/null; then
        usermod "$([ "$file" = /etc/subuid ] && echo --add-subuids || echo --add-subgids)" "$subid_range" "$user"
    fi
done
home="$(getent passwd "$user" | cut -d: -f6)"

# sudoers wants , : = and \ in arguments escaped.
sudo_cmd() {
    local out="/usr/bin/$1" arg
    shift
    for arg in "$@"; do
        out+=" $(sed 's/[\\,:=]/\\&/g' <<<"$arg")"
    done
    printf '%s' "$out"
}
rule="$user ALL=(root) NOPASSWD: $(sudo_cmd "${APT_RUST_UPDATE[@]}"), $(sudo_cmd "${APT_RUST_INSTALL[@]}")"
printf '%s\n' "$rule" >"$sudoers.new"
chmod 0440 "$sudoers.new"
visudo -cqf "$sudoers.new" || die "visudo rejects the rule: $rule"
mv "$sudoers.new" "$sudoers"

mkdir -p "$cache/target" "$cache/cargo-home" "$home/run"
chown -R "$user:" "$cache" "$home/run"
chmod 0700 "$home/run"
git clone --quiet "$STRATA_REPO" "$home/strata"
chown -R "$user:" "$home/strata"

log "scripts/demo.sh as $user (uid $(id -u "$user"), no Rust toolchain), from a clone of $(git rev-parse --short HEAD)"
start=$SECONDS
set +e
out="$(runuser -u "$user" -- env -i \
    HOME="$home" USER="$user" LOGNAME="$user" PATH="$user_path" LANG=C.UTF-8 \
    XDG_RUNTIME_DIR="$home/run" CARGO_TERM_COLOR=never \
    CARGO_TARGET_DIR="$cache/target" CARGO_HOME="$cache/cargo-home" \
    bash "$home/strata/scripts/demo.sh" </dev/null 2>&1)"
rc=$?
set -e
elapsed=$((SECONDS - start))
if [ "$rc" -ne 0 ]; then
    printf '%s\n' "$out" | tail -n 40 >&2
    die "scripts/demo.sh exited $rc after ${elapsed}s (its last lines are above)"
fi
grep -q "installing Debian's cargo-web" <<<"$out" ||
    { printf '%s\n' "$out" | tail -n 40 >&2; die "demo.sh did not install cargo-web: the path under test did not run"; }
hello="$(sed -n '/==> strata run hello/,$p' <<<"$out" | grep -v '^==> ')"
grep -qF "$greeting" <<<"$hello" ||
    { printf '%s\n' "$out" | tail -n 40 >&2; die "demo.sh did not end with the greeting '$greeting'"; }
for installed_file in .local/share/bash-completion/completions/strata .config/fish/completions/strata.fish .local/share/man/man1/strata-build.1; do
    [ -s "$home/$installed_file" ] || die "demo.sh did not install ~/$installed_file"
done
log "demo.sh as a new user: $(grep -o 'installed cargo [^ ]*' <<<"$out"), greeting printed, ${elapsed}s"
