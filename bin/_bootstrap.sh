# Shared by bin/cmux and bin/test: make sure the repo's virtual environment
# exists and is current, and that tmux (>= 3.2) and git are on this machine.
# Sourced, not run. Sets CMUX_REPO and CMUX_VENV.
CMUX_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CMUX_VENV="${CMUX_VENV:-$CMUX_REPO/.venv}"

say() { printf 'cmux: %s\n' "$*" >&2; }

need_tmux() {
    local v
    if command -v tmux >/dev/null 2>&1; then
        v="$(tmux -V | sed -E 's/^tmux (next-)?([0-9]+)\.([0-9]+).*/\2 \3/')"
        set -- $v
        if [ "${1:-0}" -gt 3 ] || { [ "${1:-0}" -eq 3 ] && [ "${2:-0}" -ge 2 ]; }; then
            return 0
        fi
        say "tmux $(tmux -V) is too old: cmux needs tmux >= 3.2."
    else
        say "tmux is not installed."
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing tmux with apt-get ..."
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux) >&2 \
            || { say "apt-get could not install tmux."; exit 1; }
    else
        say "install it, for example:  sudo apt-get install tmux   (or: brew install tmux)"
        exit 1
    fi
}

need_git() {
    command -v git >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing git with apt-get ..."
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git) >&2 \
            || { say "apt-get could not install git."; exit 1; }
    else
        say "git is not installed; install it, for example:  sudo apt-get install git"
        exit 1
    fi
}

need_chromium() {
    # Debian's chromium for the browser tier (tests/browser, `bin/test -m browser`).
    # Optional: without it that tier is skipped with its reason, the rest runs.
    # CMUX_CHROMIUM names another binary; CMUX_NO_CHROMIUM=1 skips the install.
    local bin="${CMUX_CHROMIUM:-/usr/bin/chromium}"
    [ -x "$bin" ] && return 0
    [ -n "${CMUX_NO_CHROMIUM:-}" ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        say "chromium is not installed and there is no apt-get; the browser tests will be skipped."
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo -n"
        else
            say "chromium is not installed (not root, no sudo): the browser tests will be skipped;"
            say "  install it with:  sudo apt-get install chromium"
            return 0
        fi
    fi
    say "installing chromium with apt-get for the browser tests ..."
    ($sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium) >&2 \
        || say "apt-get could not install chromium; the browser tests will be skipped."
    return 0
}

need_nats_server() {
    # For the cluster tier (tests/cluster/): Debian's nats-server. Never fatal:
    # without it that tier is skipped, and says so.
    command -v nats-server >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing nats-server with apt-get for the cluster tier ..."
        (apt-get -o DPkg::Lock::Timeout=120 update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 \
                install -y -qq nats-server) >&2 \
            || say "apt-get could not install nats-server; the cluster tier will be skipped."
    else
        say "nats-server is not installed (not root, or no apt-get): the cluster tier will be" \
            "skipped; to run it:  sudo apt-get install nats-server"
    fi
}

pick_python() {
    local p
    for p in "${CMUX_BOOT_PYTHON:-}" python3 python3.13 python3.12 python3.11 python3.10; do
        [ -n "$p" ] || continue
        command -v "$p" >/dev/null 2>&1 || continue
        if "$p" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            echo "$p"; return 0
        fi
    done
    say "cmux needs Python >= 3.10; none found on PATH."
    exit 1
}

need_venv() {
    # $1: "dev" to include the test tools.
    local extra="" stamp="$CMUX_VENV/.cmux-installed" want
    # The dev venv holds the test tools and the cluster extra (nats-py) too.
    [ "${1:-}" = dev ] && extra="[dev,cluster]"
    want="$(cat "$CMUX_REPO/pyproject.toml" | cksum | cut -d' ' -f1)$extra compat"
    if [ -x "$CMUX_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    if [ ! -x "$CMUX_VENV/bin/python" ]; then
        say "creating a virtual environment in ${CMUX_VENV#$CMUX_REPO/} (first run only) ..."
        "$(pick_python)" -m venv "$CMUX_VENV" || { say "could not create $CMUX_VENV"; exit 1; }
    fi
    say "installing cmux$extra into it ..."
    # editable_mode=compat: a plain path entry instead of an import hook that
    # costs every Python process in the venv ~20 ms at start-up (each hook
    # and tools/ call is a new process).
    "$CMUX_VENV/bin/python" -m pip install -q --disable-pip-version-check \
        --config-settings editable_mode=compat -e "$CMUX_REPO$extra" >&2 \
        || { say "pip install failed; see the messages above."; exit 1; }
    echo "$want" > "$stamp"
}
