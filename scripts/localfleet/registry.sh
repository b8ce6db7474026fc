#!/usr/bin/env bash
# A private Docker registry for the local fleet: Debian's docker-registry (distribution v2) as a
# background process (not a container) on 127.0.0.1:$REGISTRY_PORT, plain HTTP (docker treats
# 127.0.0.0/8 registries as insecure by default), htpasswd (bcrypt) auth with one user.
#
#   start    idempotent; makes the password file if missing (0600), (re)writes the htpasswd
#            when the password changed, waits until /v2/ answers 401 to an anonymous request
#   stop     stops it (the storage stays: images.sh need not push again)
#   status   running or not, where everything is; exit 0 when running, 3 when not
#
# Environment: DROPSHIP_STATE (default <repo>/.fleet), REGISTRY_PORT (5000), REGISTRY_USER
# (pixel), REGISTRY_PASSWORD_FILE (default $DROPSHIP_STATE/secrets/registry_password).
# State: $DROPSHIP_STATE/registry-$REGISTRY_PORT/{config.yml,htpasswd,registry.pid,registry.log,data/}
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    echo "usage: scripts/localfleet/registry.sh start|stop|status" >&2
    exit 2
}
[ $# -eq 1 ] || usage

DIR=$LF_STATE/registry-$LF_REGISTRY_PORT
CONFIG=$DIR/config.yml
HTPASSWD=$DIR/htpasswd
PIDFILE=$DIR/registry.pid
LOGFILE=$DIR/registry.log
URL=http://$LF_REGISTRY/v2/
BIN=$(command -v docker-registry || echo /usr/bin/docker-registry)

running() { lf_pid_alive "$PIDFILE" "$CONFIG"; }

write_config() {
    local secret_file=$DIR/http_secret
    [ -s "$secret_file" ] || (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$secret_file")
    (
        umask 077
        cat >"$CONFIG.tmp" <<YAML
# Written by scripts/localfleet/registry.sh: the local fleet's registry.
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$LF_REGISTRY_PORT
  secret: $(cat "$secret_file")
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: dropship-localfleet
    path: $HTPASSWD
YAML
        mv -f "$CONFIG.tmp" "$CONFIG"
    )
}

# The htpasswd already holds this password? (htpasswd -v reads it from stdin: never argv.)
htpasswd_current() {
    [ -s "$HTPASSWD" ] && lf_registry_password | htpasswd -vi "$HTPASSWD" "$LF_REGISTRY_USER" >/dev/null 2>&1
}

start() {
    command -v "$BIN" >/dev/null || [ -x "$BIN" ] || die "docker-registry is not installed (apt-get install docker-registry)"
    command -v htpasswd >/dev/null || die "htpasswd is not installed (apt-get install apache2-utils)"
    lf_ensure_secrets
    mkdir -p "$DIR/data"
    chmod 700 "$DIR"
    exec 9>"$DIR/lock"
    flock 9

    local restart=0
    if ! htpasswd_current; then
        log "htpasswd for user $LF_REGISTRY_USER (bcrypt; password from $LF_REGISTRY_PASSWORD_FILE)"
        (umask 077 && lf_registry_password | htpasswd -Bic "$HTPASSWD.tmp" "$LF_REGISTRY_USER" >/dev/null 2>&1)
        mv -f "$HTPASSWD.tmp" "$HTPASSWD"
        restart=1 # distribution 2.8 reads the htpasswd file once, at start
    fi
    local old=""
    [ -f "$CONFIG" ] && old=$(cat "$CONFIG")
    write_config
    [ "$old" = "$(cat "$CONFIG")" ] || restart=1

    if running; then
        if [ "$restart" = 1 ]; then
            log "registry: config or password changed, restarting"
            lf_kill_pidfile "$PIDFILE" "$CONFIG"
        elif [ "$(lf_http_code "$URL")" = 401 ]; then
            log "registry already running on $LF_REGISTRY (pid $(cat "$PIDFILE"))"
            return 0
        fi
    fi
    if ! running; then
        if [ "$(lf_http_code "$URL")" != 000 ]; then
            die "something else already answers on $LF_REGISTRY (pick another REGISTRY_PORT)"
        fi
        log "starting docker-registry on $LF_REGISTRY (log: $LOGFILE)"
        # setsid: its own session, so the caller's terminal or job control never signals it.
        setsid "$BIN" serve "$CONFIG" >>"$LOGFILE" 2>&1 </dev/null 9>&- &
        echo $! >"$PIDFILE"
    fi
    local code=000 pid
    pid=$(cat "$PIDFILE")
    for _ in $(seq 1 100); do
        code=$(lf_http_code "$URL")
        [ "$code" = 401 ] && break
        # Alive is enough here: until it has exec'd, its command line is still this script's
        # (`running` would say no on a busy machine, and the start was given up at once).
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ "$code" != 401 ]; then
        tail -n 20 "$LOGFILE" >&2 || true
        die "registry did not answer 401 on $URL (got $code)"
    fi
    log "registry ready: $URL answers 401 without credentials (user $LF_REGISTRY_USER)"
}

stop() {
    if running; then
        log "stopping docker-registry on $LF_REGISTRY (pid $(cat "$PIDFILE"))"
        lf_kill_pidfile "$PIDFILE" "$CONFIG"
    else
        rm -f "$PIDFILE"
        log "registry on $LF_REGISTRY: not running"
    fi
}

status() {
    if running; then
        echo "registry: running, pid $(cat "$PIDFILE"), $URL -> $(lf_http_code "$URL")"
    else
        echo "registry: not running ($LF_REGISTRY)"
    fi
    echo "  user:          $LF_REGISTRY_USER"
    echo "  password file: $LF_REGISTRY_PASSWORD_FILE"
    echo "  config:        $CONFIG"
    echo "  storage:       $DIR/data ($(du -sh "$DIR/data" 2>/dev/null | cut -f1 || echo -))"
    echo "  log:           $LOGFILE"
    running || exit 3
}

case "$1" in
start) start ;;
stop) stop ;;
status) status ;;
*) usage ;;
esac
