#!/usr/bin/env bash
# The local fleet's "target hosts": real OpenSSH sshd processes on 127.0.0.1 ports, each with
# its own ed25519 host key, sshd_config, docker login state (DOCKER_CONFIG) and app dir. All
# share the machine's real Docker engine: hosts differ by compose project and published port.
#
#   start N   idempotent: hosts $FLEET_NAME-1 … $FLEET_NAME-N on ports FLEET_BASE_PORT+1 … +N,
#             restarted only when their config changed; hosts of this fleet numbered above N
#             are stopped and their host dirs removed. Writes the client key, authorized_keys, known_hosts and an inventory.
#   stop      stops every sshd of this state dir (containers keep running; see clean)
#   status    one line per host; exit 0 when all are running, 3 otherwise
#   clean     docker compose down -v for every compose project whose working dir is a host's
#             app dir or below it (the deployed stacks, their networks and volumes)
#
# Environment:
#   DROPSHIP_STATE        state dir (default <repo>/.fleet, which inventory/local.toml expects)
#   FLEET_NAME            host name prefix                     (default: local → local-1, local-2…)
#   FLEET_BASE_PORT       host K's sshd listens on this + K      (default: 2200)
#   FLEET_HTTP_BASE_PORT  host K's http_port in the inventory    (default: 8080)
#   FLEET_APP_ROOT        host K's app dir is $FLEET_APP_ROOT/$FLEET_NAME-K
#                         (default: /tmp/dropship-demo with the default state, else $DROPSHIP_STATE/apps)
#   REGISTRY_PORT         the registry named in the generated inventory (default: 5000)
#   FLEET_SSH_CHECK       1 (default): after start, ssh into every host once; 0: skip
#   FLEET_COMPOSE         the inventory's `compose` setting for every host: auto (default:
#                         written as nothing), plugin (`docker compose`, Compose v2) or
#                         standalone (`docker-compose`, Compose v1 on Debian)
#   FLEET_DOCKER_STANDIN  opt-in (default unset): a script copied to each host as
#                         hosts/NAME/bin/docker, that bin dir first on the hosts' PATH (the
#                         benchmark's docker stand-in, benches/fleet/run.sh), and
#                         .docker/cli-plugins/docker-compose so compose is found as a plugin
#                         (the stand-in answers `docker compose`); unset: no change
#
# State ($DROPSHIP_STATE): id_ed25519{,.pub} (client key), authorized_keys, known_hosts
# ([127.0.0.1]:PORT lines), inventory.toml (paths relative to it), secrets/ (the example
# playbook's three secrets, made if missing), hosts/NAME/{sshd_config, ssh_host_ed25519_key,
# sshd.pid, sshd.log, port, app_dir, .docker/}.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    echo "usage: scripts/localfleet/hosts.sh start N | stop | status | clean" >&2
    exit 2
}
[ $# -ge 1 ] || usage

SSHD=/usr/sbin/sshd
NAME=${FLEET_NAME:-local}
BASE_PORT=${FLEET_BASE_PORT:-2200}
HTTP_BASE_PORT=${FLEET_HTTP_BASE_PORT:-8080}
if [ -n "${FLEET_APP_ROOT:-}" ]; then
    APP_ROOT=$FLEET_APP_ROOT
elif [ "$LF_STATE_IS_DEFAULT" = 1 ]; then
    APP_ROOT=/tmp/dropship-demo
else
    APP_ROOT=$LF_STATE/apps
fi
HOSTS_DIR=$LF_STATE/hosts
KEY=$LF_STATE/id_ed25519
KNOWN_HOSTS=$LF_STATE/known_hosts
AUTHORIZED_KEYS=$LF_STATE/authorized_keys
SSH_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

case "$NAME" in '' | *[!A-Za-z0-9_-]*) die "FLEET_NAME may only have letters, digits, - and _: $NAME" ;; esac
for v in "$BASE_PORT" "$HTTP_BASE_PORT"; do
    case "$v" in '' | *[!0-9]*) die "ports must be numbers: $v" ;; esac
done
case "$APP_ROOT" in /*) ;; *) die "FLEET_APP_ROOT must be absolute: $APP_ROOT" ;; esac
COMPOSE=${FLEET_COMPOSE:-auto}
case "$COMPOSE" in auto | plugin | standalone) ;; *) die "FLEET_COMPOSE must be auto, plugin or standalone: $COMPOSE" ;; esac
if [ -n "${FLEET_DOCKER_STANDIN:-}" ] && [ ! -f "$FLEET_DOCKER_STANDIN" ]; then
    die "FLEET_DOCKER_STANDIN is not a file: $FLEET_DOCKER_STANDIN"
fi

host_running() { lf_pid_alive "$1/sshd.pid" "$1/sshd_config"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_sshd_config() {
    local dir=$1 port=$2 path=$SSH_PATH
    if [ -n "${FLEET_DOCKER_STANDIN:-}" ]; then
        path=$dir/bin:$SSH_PATH
    fi
    cat <<CFG
# Written by scripts/localfleet/hosts.sh: one local fleet host.
Port $port
ListenAddress 127.0.0.1
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $AUTHORIZED_KEYS
StrictModes no
UsePAM no
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxStartups 100:30:200
MaxSessions 100
PrintMotd no
PrintLastLog no
UseDNS no
LogLevel VERBOSE
Subsystem sftp internal-sftp
# SHLVL=1: root's bash skips ~/.bashrc. DOCKER_CONFIG: this host's own registry logins.
# HOME: this host's own home (dropship's lock and audit log live in ~/.dropship/).
SetEnv PATH=$path DOCKER_CONFIG=$dir/.docker SHLVL=1 HOME=$dir
CFG
}

start_host() {
    local k=$1 name=$NAME-$1 port=$((BASE_PORT + $1)) dir cfg app
    dir=$HOSTS_DIR/$name
    cfg=$dir/sshd_config
    app=$APP_ROOT/$name
    mkdir -p "$dir/.docker" "$app"
    chmod 700 "$dir" "$dir/.docker"
    if [ ! -s "$dir/ssh_host_ed25519_key" ]; then
        ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$dir/ssh_host_ed25519_key" </dev/null >/dev/null
    fi
    if [ -n "${FLEET_DOCKER_STANDIN:-}" ]; then
        mkdir -p "$dir/bin"
        if ! cmp -s "$FLEET_DOCKER_STANDIN" "$dir/bin/docker"; then
            cp -f "$FLEET_DOCKER_STANDIN" "$dir/bin/docker.tmp"
            chmod 0755 "$dir/bin/docker.tmp"
            mv -f "$dir/bin/docker.tmp" "$dir/bin/docker"
        fi
        # The stand-in answers `docker compose`: mark compose as an installed CLI plugin where
        # dropship (like the docker CLI) looks for it, $DOCKER_CONFIG/cli-plugins.
        if [ ! -x "$dir/.docker/cli-plugins/docker-compose" ]; then
            mkdir -p "$dir/.docker/cli-plugins"
            printf '#!/bin/sh\n# answered by the docker stand-in in %s/bin\nexec "%s/bin/docker" compose "$@"\n' "$dir" "$dir" \
                >"$dir/.docker/cli-plugins/docker-compose"
            chmod 0755 "$dir/.docker/cli-plugins/docker-compose"
        fi
    fi
    echo "$port" >"$dir/port"
    echo "$app" >"$dir/app_dir"
    local want
    want=$(write_sshd_config "$dir" "$port")
    if [ ! -f "$cfg" ] || [ "$(cat "$cfg")" != "$want" ]; then
        if host_running "$dir"; then
            log "$name: sshd_config changed, restarting"
            lf_kill_pidfile "$dir/sshd.pid" "$cfg"
        fi
        printf '%s\n' "$want" >"$cfg"
    fi
    if host_running "$dir"; then
        return 0
    fi
    if port_open "$port"; then
        die "$name: port $port is taken by another process (pick another FLEET_BASE_PORT)"
    fi
    rm -f "$dir/sshd.pid"
    # sshd detaches by itself and writes its PidFile; -E appends its log there.
    if ! "$SSHD" -f "$cfg" -E "$dir/sshd.log" 9>&-; then
        tail -n 20 "$dir/sshd.log" >&2 || true
        die "$name: sshd failed to start"
    fi
    started+=("$name:$port")
}

host_dirs() {
    # Every host of this state dir (any FLEET_NAME), in name order.
    local d
    for d in "$HOSTS_DIR"/*/; do
        [ -f "$d/sshd_config" ] && printf '%s\n' "${d%/}"
    done | sort -V
}

write_inventory() {
    local n=$1 k name port app
    {
        echo "# Written by scripts/localfleet/hosts.sh start $n: this local fleet (paths relative to this file)."
        if [ "$COMPOSE" != auto ]; then
            echo "compose = \"$COMPOSE\""
            echo
        fi
        echo "[ssh]"
        echo 'user = "root"'
        echo 'identity_file = "id_ed25519"'
        echo 'known_hosts = "known_hosts"'
        echo 'host_key_policy = "strict"'
        echo 'connect_timeout = "5s"'
        echo
        echo "[vars]"
        echo "registry = \"$LF_REGISTRY\""
        echo "registry_user = \"$LF_REGISTRY_USER\""
        echo 'server_name = "localhost"'
        echo 'http_bind = "127.0.0.1"'
        echo
        echo "[groups.web]"
        for k in $(seq 1 "$n"); do
            name=$NAME-$k
            port=$((BASE_PORT + k))
            app=$APP_ROOT/$name
            echo
            echo "[hosts.$name]"
            echo 'address = "127.0.0.1"'
            echo 'groups = ["web"]'
            echo "ssh = { port = $port }"
            echo "vars = { app_dir = \"$app\", http_port = $((HTTP_BASE_PORT + k)), stage = \"$name\" }"
        done
    } >"$LF_STATE/inventory.toml.tmp"
    mv -f "$LF_STATE/inventory.toml.tmp" "$LF_STATE/inventory.toml"
}

start() {
    local n=$1 k
    case "$n" in '' | *[!0-9]* | 0) die "N must be a positive number: $n" ;; esac
    [ $((BASE_PORT + n)) -le 65535 ] || die "ports past 65535"
    [ -x "$SSHD" ] || die "$SSHD not found (apt-get install openssh-server)"
    lf_ensure_secrets
    mkdir -p "$HOSTS_DIR" /run/sshd
    chmod 0755 /run/sshd
    exec 9>"$LF_STATE/hosts.lock"
    flock 9

    if [ ! -s "$KEY" ]; then
        log "client key $KEY"
        ssh-keygen -q -t ed25519 -N '' -C dropship-localfleet -f "$KEY" </dev/null >/dev/null
    fi
    (umask 077 && cp "$KEY.pub" "$AUTHORIZED_KEYS.tmp" && mv -f "$AUTHORIZED_KEYS.tmp" "$AUTHORIZED_KEYS")

    # Hosts of this fleet numbered above N go away.
    local d base idx
    while read -r d; do
        [ -n "$d" ] || continue
        base=$(basename "$d")
        idx=${base#"$NAME"-}
        case "$idx" in '' | *[!0-9]*) continue ;; esac
        if [ "$idx" -gt "$n" ]; then
            log "$base: removing (above N=$n; its app dir stays)"
            lf_kill_pidfile "$d/sshd.pid" "$d/sshd_config"
            rm -rf "$d"
        fi
    done < <(host_dirs)

    log "starting $n host(s): $NAME-1..$NAME-$n on 127.0.0.1:$((BASE_PORT + 1))..$((BASE_PORT + n)), app dirs $APP_ROOT/$NAME-K"
    started=()
    for k in $(seq 1 "$n"); do
        start_host "$k"
    done

    # known_hosts: every host of this fleet, [127.0.0.1]:PORT TYPE KEY.
    local kh=$KNOWN_HOSTS.tmp.$$
    : >"$kh"
    for k in $(seq 1 "$n"); do
        printf '[127.0.0.1]:%s %s\n' "$((BASE_PORT + k))" \
            "$(cut -d' ' -f1,2 "$HOSTS_DIR/$NAME-$k/ssh_host_ed25519_key.pub")" >>"$kh"
    done
    mv -f "$kh" "$KNOWN_HOSTS"
    write_inventory "$n"

    # Wait until every port accepts.
    local port ok
    for k in $(seq 1 "$n"); do
        port=$((BASE_PORT + k))
        ok=0
        for _ in $(seq 1 100); do
            if port_open "$port"; then
                ok=1
                break
            fi
            sleep 0.05
        done
        if [ "$ok" != 1 ]; then
            tail -n 20 "$HOSTS_DIR/$NAME-$k/sshd.log" >&2 || true
            die "$NAME-$k: sshd does not accept on port $port"
        fi
    done
    if [ "${#started[@]}" -gt 0 ]; then
        log "started ${#started[@]} sshd(s); $((n - ${#started[@]})) already running"
    else
        log "all $n host(s) already running"
    fi

    if [ "${FLEET_SSH_CHECK:-1}" = 1 ]; then
        # In waves: thousands of handshakes at once time out in the banner exchange on a small
        # machine (and bash forgets the status of the oldest of that many finished children).
        local pids=() failed=0 p first=1 last wave=${FLEET_SSH_CHECK_WAVE:-100}
        while [ "$first" -le "$n" ]; do
            last=$((first + wave - 1))
            [ "$last" -le "$n" ] || last=$n
            pids=()
            for k in $(seq "$first" "$last"); do
                ssh_to "$k" true </dev/null >/dev/null 2>"$HOSTS_DIR/$NAME-$k/ssh-check.err" &
                pids+=($!)
            done
            k=$((first - 1))
            for p in "${pids[@]}"; do
                k=$((k + 1))
                if ! wait "$p"; then
                    failed=1
                    warn "$NAME-$k: ssh check failed: $(cat "$HOSTS_DIR/$NAME-$k/ssh-check.err")"
                fi
                rm -f "$HOSTS_DIR/$NAME-$k/ssh-check.err"
            done
            first=$((last + 1))
        done
        [ "$failed" = 0 ] || die "ssh into some hosts failed"
        log "ssh check: all $n host(s) accept $KEY with strict host key checking"
    fi
    log "fleet ready: key $KEY, known_hosts $KNOWN_HOSTS, inventory $LF_STATE/inventory.toml"
}

ssh_to() {
    local k=$1
    shift
    ssh -i "$KEY" -o IdentitiesOnly=yes -o UserKnownHostsFile="$KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null \
        -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR \
        -p "$((BASE_PORT + k))" root@127.0.0.1 "$@"
}

stop() {
    local d n=0
    while read -r d; do
        [ -n "$d" ] || continue
        if host_running "$d"; then
            lf_kill_pidfile "$d/sshd.pid" "$d/sshd_config"
            n=$((n + 1))
        fi
    done < <(host_dirs)
    log "stopped $n sshd(s) of $HOSTS_DIR"
}

status() {
    local d total=0 up=0
    while read -r d; do
        [ -n "$d" ] || continue
        total=$((total + 1))
        if host_running "$d"; then
            up=$((up + 1))
            printf '%-12s running  pid %-7s port %-5s app %s\n' "$(basename "$d")" "$(cat "$d/sshd.pid")" "$(cat "$d/port")" "$(cat "$d/app_dir" 2>/dev/null)"
        else
            printf '%-12s stopped            port %-5s app %s\n' "$(basename "$d")" "$(cat "$d/port")" "$(cat "$d/app_dir" 2>/dev/null)"
        fi
    done < <(host_dirs)
    echo "$up of $total host(s) running (state $LF_STATE)"
    [ "$total" -gt 0 ] && [ "$up" = "$total" ] || exit 3
}

compose_cmd() {
    if docker compose version >/dev/null 2>&1; then
        echo "docker compose"
    else
        echo "docker-compose"
    fi
}

clean() {
    lf_docker_ok
    local d app project wd compose
    compose=$(compose_cmd)
    while read -r d; do
        [ -n "$d" ] || continue
        app=$(cat "$d/app_dir" 2>/dev/null) || continue
        # Projects run from the app dir or below it (releases/<id>/ behind `current`), in
        # reverse name order: blue/green colors (P-blue, P-green) leave the network of their
        # shared stack (P) before it goes.
        while read -r project wd; do
            [ -n "$project" ] || continue
            log "$(basename "$d"): $compose -p $project down -v ($wd)"
            if [ -f "$wd/docker-compose.yml" ]; then
                (cd "$wd" && DOCKER_CONFIG=$d/.docker $compose -p "$project" down -v --remove-orphans) >/dev/null 2>&1 ||
                    warn "$project: compose down failed"
            fi
            # Whatever compose could not reach (a pruned release dir): remove by label.
            docker ps -aq --filter "label=com.docker.compose.project=$project" | xargs -r docker rm -f >/dev/null
            docker volume ls -q --filter "label=com.docker.compose.project=$project" | xargs -r docker volume rm >/dev/null 2>&1 || true
            docker network ls -q --filter "label=com.docker.compose.project=$project" | xargs -r docker network rm >/dev/null 2>&1 || true
        done < <(docker ps -a --format '{{ .Label "com.docker.compose.project" }} {{ .Label "com.docker.compose.project.working_dir" }}' |
            awk -v app="$app" '$2 == app || index($2, app "/") == 1 { print $1, $2 }' | sort -ru)
    done < <(host_dirs)
    log "clean: done"
}

case "$1" in
start)
    [ $# -eq 2 ] || usage
    start "$2"
    ;;
stop) stop ;;
status) status ;;
clean) clean ;;
*) usage ;;
esac
