#!/usr/bin/env bash
# The README's first command: installs what is missing (Debian packages; Debian's cargo-web
# when no cargo is found, see ensure_cargo in lib.sh), builds strata, builds the busybox
# base image and fixtures/hello, then runs the hello image.
#
# Run by an ordinary user (with /etc/subuid and /etc/subgid ranges) everything after the
# package installation (done through sudo) is rootless; run as root, strata uses no user
# namespace. The images go to strata's default store ($XDG_DATA_HOME/strata), or to the
# store named by STRATA_ROOT.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$STRATA_REPO"

log "checking dependencies"
bash scripts/deps.sh
ensure_cargo

if [ "$(id -u)" -ne 0 ]; then
    user="$(id -un)"
    if ! grep -qE "^($user|$(id -u)):" /etc/subuid 2>/dev/null; then
        log "warning: $user has no range in /etc/subuid: strata will map a single id"
        log "  add one with: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $user"
    fi
fi

log "cargo build --release"
cargo build --release
target_dir="${CARGO_TARGET_DIR:-$STRATA_REPO/target}"
[[ $target_dir == /* ]] || target_dir="$STRATA_REPO/$target_dir"
STRATA="$target_dir/release/strata"
export STRATA

log "strata build -t busybox:latest (fixtures/busybox + the host's static busybox)"
scripts/busybox-base.sh

log "strata build -t hello fixtures/hello"
"$STRATA" build -t hello fixtures/hello

log "strata images"
"$STRATA" images

log "strata run hello"
"$STRATA" run --rm hello

# Offer strata on PATH the way most users have it: ~/.local/bin.
if [ -d "$HOME/.local/bin" ] && [ ! -e "$HOME/.local/bin/strata" ] && [ "$(id -u)" -ne 0 ]; then
    ln -s "$STRATA" "$HOME/.local/bin/strata"
    log "linked $HOME/.local/bin/strata -> $STRATA"
fi
command -v strata >/dev/null 2>&1 ||
    log "to type 'strata': export PATH=\"$target_dir/release:\$PATH\""

# Completions and man pages where a user's own are looked for: bash-completion's
# and fish's per-user directories, man's ~/.local/share/man (found through
# ~/.local/bin on PATH); zsh has no such directory, so its file comes with a hint.
data="${XDG_DATA_HOME:-$HOME/.local/share}"
fish_dir="${XDG_CONFIG_HOME:-$HOME/.config}/fish/completions"
mkdir -p "$data/bash-completion/completions" "$data/zsh/site-functions" "$fish_dir" "$data/man/man1"
"$STRATA" completion bash >"$data/bash-completion/completions/strata"
"$STRATA" completion zsh >"$data/zsh/site-functions/_strata"
"$STRATA" completion fish >"$fish_dir/strata.fish"
"$STRATA" man --dir "$data/man/man1"
log "completions (bash, zsh, fish) and man pages installed under $data; try: man strata-build"
log "  zsh: add fpath=($data/zsh/site-functions \$fpath) before compinit in ~/.zshrc"
