#!/usr/bin/env bash
# dropship's fleet speed benchmark: N real sshd hosts on 127.0.0.1 with a docker stand-in, and
# in one run, alternating for several rounds (floor → steady → cold each round):
#
#   floor   plain OpenSSH: `ssh … root@127.0.0.1 true` to all N hosts at once, wait for all
#   steady  `dropship deploy` of benches/fleet/playbook.toml when every file already matches
#   cold    the same deploy after the hosts' app dirs were emptied (3 uploads per host)
#
# Prints one JSON line per measurement, then medians/min/max, the dropship/floor ratios,
# dropship's own CPU time per host and peak RSS, and PASS/MISS against the targets.
# See benches/fleet/README.md.
#
#   benches/fleet/run.sh [N] [--rounds R] [--rtt MS] [--forks F] [--handshakes H] [--wait-idle] [--keep] [--strict]
#   benches/fleet/run.sh --smoke [N]     CI smoke: N=10, 1 round, targets not enforced
#
#   N             hosts (default 50, or $BENCH_HOSTS)
#   --rounds R    measured rounds (default 5, or $BENCH_ROUNDS; --smoke: 1)
#   --rtt MS      put a delaying TCP forwarder (benches/fleet/delay.py, MS/2 each way) between
#                 the clients (ssh, dropship) and every host, and report wall times in RTTs
#   --forks F, --handshakes H   passed to dropship deploy (default: dropship's own, 64 and 64)
#   --wait-idle   before each round, wait until the machine is >= 90% idle (other work skews
#                 wall times; the JSON lines' other_cpu_ms says how much CPU it took meanwhile)
#   --keep        leave the fleet running afterwards (a later run with the same N reuses it)
#   --strict      exit 3 when a target applicable at this N is missed
#
# Exit status: 0 every run succeeded, 1 a floor ssh or a dropship deploy failed (or reported
# the wrong changed count), 2 usage, 3 --strict and a target missed.
#
# Environment:
#   BENCH_STATE      state dir: keys, known_hosts, inventory, hosts, app dirs, logs
#                    (default /tmp/dropship-bench)
#   BENCH_BASE_PORT  host K's sshd listens on 127.0.0.1:BASE+K (default 30000, below the
#                    usual ephemeral range so N=500 never collides with client sockets)
#   DROPSHIP_BIN     the dropship binary to measure; default: `cargo build --release --locked`
#                    and ${CARGO_TARGET_DIR:-<repo>/target}/release/dropship
#   BENCH_IDLE_TIMEOUT  --wait-idle gives up waiting after this many seconds (default 600)
#   BENCH_TIME       GNU time (default /usr/bin/time; installed with apt-get when missing)
#
# Needs: bash 5, OpenSSH client and server, GNU time, awk, pgrep. Runs as root (the hosts are
# root@127.0.0.1 with the fleet's key; root's ~/.bashrc is skipped through SetEnv SHLVL=1).
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
HOSTS_SH=$REPO/scripts/localfleet/hosts.sh
STANDIN=$REPO/tests/fixtures/docker-standin.sh
PLAYBOOK=$HERE/playbook.toml

usage() { # [exit status]
    sed -n '13,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}
die() {
    printf 'run.sh: error: %s\n' "$*" >&2
    exit 1
}
note() { printf '# %s\n' "$*" >&2; }

# Percentage of the machine's CPU left idle over one second.
idle_pct() {
    local a b
    a=$(awk '$1 == "cpu" { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat)
    sleep 1
    b=$(awk '$1 == "cpu" { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        d = y[2] - x[2]; printf "%.0f", (d > 0 ? (y[1] - x[1]) * 100 / d : 100) }'
}

N=${BENCH_HOSTS:-}
ROUNDS=${BENCH_ROUNDS:-}
SMOKE=0
KEEP=0
STRICT=0
WAIT_IDLE=0
FORKS=
HANDSHAKES=
RTT_MS=0
while [ $# -gt 0 ]; do
    case "$1" in
    --smoke) SMOKE=1 ;;
    --rounds) [ $# -ge 2 ] || usage; ROUNDS=$2; shift ;;
    --rounds=*) ROUNDS=${1#*=} ;;
    --forks) [ $# -ge 2 ] || usage; FORKS=$2; shift ;;
    --forks=*) FORKS=${1#*=} ;;
    --handshakes) [ $# -ge 2 ] || usage; HANDSHAKES=$2; shift ;;
    --handshakes=*) HANDSHAKES=${1#*=} ;;
    --rtt) [ $# -ge 2 ] || usage; RTT_MS=$2; shift ;;
    --rtt=*) RTT_MS=${1#*=} ;;
    --keep) KEEP=1 ;;
    --strict) STRICT=1 ;;
    --wait-idle) WAIT_IDLE=1 ;;
    -h | --help) usage 0 ;;
    [0-9]*) N=$1 ;;
    *) usage ;;
    esac
    shift
done
if [ "$SMOKE" = 1 ]; then
    N=${N:-10}
    ROUNDS=1
fi
N=${N:-50}
ROUNDS=${ROUNDS:-5}
case "$RTT_MS" in '' | *[!0-9]*) echo "run.sh: --rtt takes whole milliseconds: $RTT_MS" >&2; usage ;; esac
for v in "$N" "$ROUNDS" ${FORKS:+"$FORKS"} ${HANDSHAKES:+"$HANDSHAKES"}; do
    case "$v" in '' | *[!0-9]* | 0) echo "run.sh: counts must be positive numbers: $v" >&2; usage ;; esac
done

STATE=${BENCH_STATE:-/tmp/dropship-bench}
case "$STATE" in /*) ;; *) STATE=$(pwd)/$STATE ;; esac
BASE_PORT=${BENCH_BASE_PORT:-30000}
NAME=bench
APPS=$STATE/apps
LOGS=$STATE/logs
INVENTORY=$STATE/inventory.toml
KEY=$STATE/id_ed25519
KNOWN_HOSTS=$STATE/known_hosts
# With --rtt the clients reach host K through the forwarder on 127.0.0.1:PROXY_BASE+K.
PROXY_BASE=$(( ${BENCH_BASE_PORT:-30000} + 10000 ))
TIME_BIN=${BENCH_TIME:-/usr/bin/time}
[ $((BASE_PORT + N)) -le 65535 ] || die "ports past 65535 (lower BENCH_BASE_PORT or N)"
[ "$RTT_MS" = 0 ] || [ $((PROXY_BASE + N)) -le 65535 ] || die "forwarder ports past 65535 (lower BENCH_BASE_PORT or N)"
[ "${BASH_VERSINFO[0]}" -ge 5 ] || die "needs bash 5 (EPOCHREALTIME)"
[ "$(id -u)" = 0 ] || die "run as root: the hosts are root@127.0.0.1 sshd processes"

# ---------------------------------------------------------------------------------------------
# Tools: GNU time, the dropship binary, enough file descriptors.

if ! "$TIME_BIN" -f '%M' -o /dev/null true 2>/dev/null; then
    if [ "$TIME_BIN" = /usr/bin/time ] && command -v apt-get >/dev/null; then
        note "installing GNU time (apt-get install time)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null ||
            { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; } ||
            die "cannot install GNU time"
    fi
    "$TIME_BIN" -f '%M' -o /dev/null true 2>/dev/null || die "GNU time not found at $TIME_BIN (apt-get install time)"
fi

if [ -n "${DROPSHIP_BIN:-}" ]; then
    DROPSHIP=$DROPSHIP_BIN
else
    note "building dropship (cargo build --release --locked)"
    (cd "$REPO" && cargo build --release --locked --quiet) || die "cargo build failed"
    target=${CARGO_TARGET_DIR:-$REPO/target}
    case "$target" in /*) ;; *) target=$REPO/$target ;; esac
    DROPSHIP=$target/release/dropship
fi
[ -x "$DROPSHIP" ] || die "no dropship binary at $DROPSHIP"

# Sockets: dropship holds one per host (plus tokio's own), the floor's ssh processes one each.
need_fds=$((4 * N + 1024))
soft=$(ulimit -Sn)
if [ "$soft" != unlimited ] && [ "$soft" -lt "$need_fds" ]; then
    hard=$(ulimit -Hn)
    if [ "$hard" = unlimited ] || [ "$hard" -ge "$need_fds" ]; then
        ulimit -Sn "$need_fds"
    else
        ulimit -Sn "$hard"
        note "warning: ulimit -n is $hard (hard), wanted $need_fds for $N hosts"
    fi
fi

# ---------------------------------------------------------------------------------------------
# The fleet: scripts/localfleet/hosts.sh with the docker stand-in first on the hosts' PATH.

fleet() {
    DROPSHIP_STATE=$STATE FLEET_NAME=$NAME FLEET_BASE_PORT=$BASE_PORT FLEET_APP_ROOT=$APPS \
        FLEET_HTTP_BASE_PORT=$((BASE_PORT + 1000)) FLEET_DOCKER_STANDIN=$STANDIN \
        "$HOSTS_SH" "$@"
}

# Our sshd pids (each checked against its own config path, so a recycled pid is never ours).
sshd_pids() {
    local k d pid
    for ((k = 1; k <= N; k++)); do
        d=$STATE/hosts/$NAME-$k
        pid=$(cat "$d/sshd.pid" 2>/dev/null) || continue
        [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$d/sshd_config" &&
            echo "$pid"
    done
}

stop_fleet() {
    # TERM every one of our sshds at once (hosts.sh stop waits for them one by one), then let
    # hosts.sh stop tidy up the pid files.
    local pid
    for pid in $(sshd_pids); do
        kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.5
    fleet stop >/dev/null 2>&1 || true
}

# Hosts of an earlier, bigger run: TERM their sshds at once (hosts.sh start would stop them one
# by one, ~0.1 s each, before removing them).
stop_stale_hosts() {
    local d idx pid
    for d in "$STATE"/hosts/"$NAME"-*/; do
        [ -d "$d" ] || continue
        d=${d%/}
        idx=${d##*/"$NAME"-}
        case "$idx" in '' | *[!0-9]*) continue ;; esac
        [ "$idx" -gt "$N" ] || continue
        pid=$(cat "$d/sshd.pid" 2>/dev/null) || continue
        [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$d/sshd_config" &&
            kill -TERM "$pid" 2>/dev/null
    done
    return 0
}

cleanup() {
    [ -z "${DELAY_PID:-}" ] || kill "$DELAY_PID" 2>/dev/null || true
    if [ "$KEEP" = 1 ]; then
        note "fleet left running (--keep): DROPSHIP_STATE=$STATE FLEET_NAME=$NAME $HOSTS_SH stop"
    else
        stop_fleet
    fi
}

mkdir -p "$STATE" "$LOGS"
rm -f "$LOGS"/*.json # a kept fleet's earlier reports: the timeline summarises this run only
chmod 700 "$STATE"
# How idle the machine is before we load it (the fleet's start itself is busy).
IDLE_START=$(idle_pct)
if [ "$IDLE_START" -lt 80 ]; then
    note "warning: the machine is only ${IDLE_START}% idle before the run: other work will skew wall times (try --wait-idle)"
fi
note "starting $N host(s) on 127.0.0.1:$((BASE_PORT + 1))..$((BASE_PORT + N)) (state $STATE)"
trap cleanup EXIT
trap 'exit 130' INT TERM
stop_stale_hosts
fleet start "$N" >"$LOGS/fleet-start.log" 2>&1 || {
    tail -n 20 "$LOGS/fleet-start.log" >&2
    die "fleet start failed (log: $LOGS/fleet-start.log)"
}
SSHD_PIDS=$(sshd_pids | paste -sd, -)
[ "$(tr ',' '\n' <<<"$SSHD_PIDS" | grep -c .)" = "$N" ] || die "expected $N running sshd(s), found: $SSHD_PIDS"

# --rtt: the forwarder, and an inventory and known_hosts that name its ports instead of the hosts'.
CLIENT_BASE=$BASE_PORT
if [ "$RTT_MS" != 0 ]; then
    command -v python3 >/dev/null || die "--rtt needs python3 (benches/fleet/delay.py)"
    rm -f "$STATE/delay.ready"
    python3 "$HERE/delay.py" --delay-ms "$(awk -v r="$RTT_MS" 'BEGIN { print r / 2 }')" \
        --listen-base "$PROXY_BASE" --target-base "$BASE_PORT" --count "$N" \
        --ready "$STATE/delay.ready" >"$LOGS/delay.log" 2>&1 &
    DELAY_PID=$!
    for ((i = 0; i < 300; i++)); do
        [ -f "$STATE/delay.ready" ] && break
        kill -0 "$DELAY_PID" 2>/dev/null || die "the forwarder did not start (log: $LOGS/delay.log)"
        sleep 0.1
    done
    [ -f "$STATE/delay.ready" ] || die "the forwarder did not listen within 30 s"
    awk -v b="$BASE_PORT" -v p="$PROXY_BASE" '{ split($1, a, "]:"); $1 = "[127.0.0.1]:" (a[2] - b + p); print }' \
        "$KNOWN_HOSTS" >"$STATE/known_hosts-rtt"
    awk -v b="$BASE_PORT" -v p="$PROXY_BASE" '
        /^ssh = \{ port = [0-9]+ \}$/ { sub(/[0-9]+/, $6 - b + p) }
        /^known_hosts = / { $0 = "known_hosts = \"known_hosts-rtt\"" }
        { print }' "$INVENTORY" >"$STATE/inventory-rtt.toml"
    INVENTORY=$STATE/inventory-rtt.toml
    KNOWN_HOSTS=$STATE/known_hosts-rtt
    CLIENT_BASE=$PROXY_BASE
    note "--rtt $RTT_MS: clients reach host K through 127.0.0.1:$((PROXY_BASE + 1))..$((PROXY_BASE + N)) (delay.py, $((RTT_MS / 2)) ms each way)"
fi

# The floor's client: the options from the issue, plus -F none / IdentitiesOnly so no local
# ssh_config or agent changes what is measured.
SSH_OPTS=(-F none -o KexAlgorithms=curve25519-sha256 -o BatchMode=yes -o StrictHostKeyChecking=yes
    -o UserKnownHostsFile="$KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes
    -o ConnectTimeout=60 -o LogLevel=ERROR -i "$KEY")

# The hosts must run the stand-in, or the deploy would drive a real docker.
got=$(ssh "${SSH_OPTS[@]}" -p $((CLIENT_BASE + 1)) root@127.0.0.1 'command -v docker' </dev/null) ||
    die "ssh to $NAME-1 failed"
[ "$got" = "$STATE/hosts/$NAME-1/bin/docker" ] || die "$NAME-1 runs docker from $got, not the stand-in"

BENCH_DB_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
BENCH_REGISTRY_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
export BENCH_DB_PASSWORD BENCH_REGISTRY_PASSWORD
DEPLOY_ARGS=(deploy -i "$INVENTORY" "$PLAYBOOK")
[ -z "$FORKS" ] || DEPLOY_ARGS+=(--forks "$FORKS")
[ -z "$HANDSHAKES" ] || DEPLOY_ARGS+=(--handshakes "$HANDSHAKES")

# ---------------------------------------------------------------------------------------------
# Measurements.

FAILURES=0
RESULTS=$LOGS/results.tsv # kind round wall_ms client_cpu_ms max_rss_kib failed server_cpu_ms other_cpu_ms
: >"$RESULTS"

ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
per_host() { awk -v c="$1" -v n="$N" 'BEGIN { if (c == "-") print "null"; else printf "%.2f", c / n }'; }

# Waits (up to 10 s) until no session of the previous measurement is still winding down on any
# host, so it does not eat the next one's CPU (and its CPU time has reached sshd_cpu_ms).
settle() {
    local i
    for ((i = 0; i < 100; i++)); do
        pgrep -P "$SSHD_PIDS" >/dev/null || return 0
        sleep 0.1
    done
    note "warning: sshd sessions still running after 10 s"
}

# CPU time (ms) of the hosts' sshds so far: each listener's own utime + stime (accepting,
# forking) and cutime + cstime (every finished connection: the per-connection sshd, its privsep
# children, the sessions' shells and everything they ran, as reaped). To 10 ms per host; the
# difference over a measurement is its server side — on a real fleet that work is spread over
# the hosts' own CPUs, here it shares this machine's cores with the client.
sshd_cpu_ms() {
    local tick
    tick=$(getconf CLK_TCK)
    tr ',' '\n' <<<"$SSHD_PIDS" | sed 's|.*|/proc/&/stat|' | xargs cat |
        awk -v t="$tick" '{ s += $14 + $15 + $16 + $17 } END { printf "%.0f", s * 1000 / t }'
}

# Busy CPU time (ms) of the whole machine so far, from /proc/stat: with the client and server
# CPU of a measurement it tells how much CPU other work took meanwhile ("other_cpu_ms").
busy_cpu_ms() {
    awk -v t="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%.0f", ($2 + $3 + $4 + $7 + $8 + $9) * 1000 / t; exit }' /proc/stat
}


# --wait-idle: before each round, wait (up to $BENCH_IDLE_TIMEOUT s, default 600) until the
# machine is at least 90% idle over a second, so other work does not skew the round.
wait_idle() {
    [ "$WAIT_IDLE" = 1 ] || return 0
    local deadline=$((SECONDS + ${BENCH_IDLE_TIMEOUT:-600})) idle said=0
    while :; do
        idle=$(idle_pct)
        [ "$idle" -ge 90 ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            note "warning: machine still busy (${idle}% idle) after ${BENCH_IDLE_TIMEOUT:-600} s; measuring anyway"
            return 0
        fi
        [ "$said" = 1 ] || note "waiting for the machine to go idle (${idle}% idle now)"
        said=1
        sleep 2
    done
}

# `times` output of a subshell → "user_s sys_s" of its waited-for children (with `all`: plus
# the subshell's own).
children_cpu() {
    awk -v all="${2:-}" 'NR == 2 || (NR == 1 && all != "") {
            for (i = 1; i <= 2; i++) { split($i, t, "m"); sub(/s$/, "", t[2]); v[i] += t[1] * 60 + t[2] } }
        END { printf "%.3f %.3f\n", v[1], v[2] }' "$1"
}

emit() { # kind round wall_ms client_cpu_ms rss_kib ok failed changed exit server_cpu_ms busy_ms
    local kind=$1 round=$2 wall=$3 cpu=$4 rss=$5 ok=$6 failed=$7 changed=$8 rc=$9 server=${10} other
    other=$(awk -v b="${11}" -v c="$cpu" -v s="$server" 'BEGIN { printf "%.0f", b - c - s }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$round" "$wall" "$cpu" "$rss" "$failed" "$server" "$other" >>"$RESULTS"
    if [ "$kind" = floor ]; then
        printf '{"bench":"fleet","kind":"floor","round":%s,"hosts":%s,"wall_ms":%s,"client_cpu_ms":%s,"client_cpu_ms_per_host":%s,"server_cpu_ms":%s,"server_cpu_ms_per_host":%s,"other_cpu_ms":%s,"ok":%s,"failed":%s}\n' \
            "$round" "$N" "$wall" "$cpu" "$(per_host "$cpu")" "$server" "$(per_host "$server")" "$other" "$ok" "$failed"
    else
        printf '{"bench":"fleet","kind":"%s","round":%s,"hosts":%s,"wall_ms":%s,"cpu_ms":%s,"cpu_ms_per_host":%s,"max_rss_kib":%s,"server_cpu_ms":%s,"server_cpu_ms_per_host":%s,"other_cpu_ms":%s,"ok":%s,"failed":%s,"changed":%s,"exit":%s}\n' \
            "$kind" "$round" "$N" "$wall" "$cpu" "$(per_host "$cpu")" "$rss" "$server" "$(per_host "$server")" \
            "$other" "$ok" "$failed" "$changed" "$rc"
    fi
}

floor_once() { # round
    local round=$1 t0 t1 failed server0 server1 busy0 busy1 user sys err=$LOGS/floor.err
    : >"$err"
    settle
    server0=$(sshd_cpu_ms)
    busy0=$(busy_cpu_ms)
    t0=$EPOCHREALTIME
    (
        pids=()
        for ((k = 1; k <= N; k++)); do
            ssh "${SSH_OPTS[@]}" -p $((CLIENT_BASE + k)) root@127.0.0.1 true </dev/null >/dev/null 2>>"$err" &
            pids+=($!)
        done
        failed=0
        for p in "${pids[@]}"; do
            wait "$p" || failed=$((failed + 1))
        done
        echo "$failed" >"$LOGS/floor.failed"
        times >"$LOGS/floor.times" # this subshell (spawning) and its children (the ssh clients)
    )
    t1=$EPOCHREALTIME
    failed=$(cat "$LOGS/floor.failed")
    settle
    server1=$(sshd_cpu_ms)
    busy1=$(busy_cpu_ms)
    read -r user sys < <(children_cpu "$LOGS/floor.times" all)
    if [ "$failed" != 0 ]; then
        FAILURES=$((FAILURES + 1))
        note "floor round $round: $failed ssh(s) failed: $(sort "$err" | uniq -c | head -n 5)"
    fi
    [ "$round" = warmup ] && return 0
    emit floor "$round" "$(ms_between "$t0" "$t1")" \
        "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", (u + s) * 1000 }')" - \
        $((N - failed)) "$failed" - - $((server1 - server0)) $((busy1 - busy0))
}

dropship_once() { # kind round
    local kind=$1 round=$2 out=$LOGS/$1-$2.log tf=$LOGS/time.out t0 t1 rc server0 server1
    local busy0 busy1 user sys rss summary ok failed changed want problem=
    settle
    server0=$(sshd_cpu_ms)
    busy0=$(busy_cpu_ms)
    # In a subshell, so `times` (getrusage of the waited-for children, to the millisecond)
    # counts this one deploy: dropship, plus GNU time's own ~1-2 ms. GNU time gives the peak
    # RSS (its %U/%S are only to 10 ms).
    t0=$EPOCHREALTIME
    (
        set +e
        "$TIME_BIN" -f '%e %U %S %M' -o "$tf" "$DROPSHIP" "${DEPLOY_ARGS[@]}" \
            --json "$LOGS/$kind-$round.json" >"$out" 2>&1
        echo "$?" >"$tf.rc"
        times >"$tf.times" # not in a pipe or $(…): a forked `times` would see no children
    )
    t1=$EPOCHREALTIME
    rc=$(cat "$tf.rc")
    read -r user sys < <(children_cpu "$tf.times")
    # On a non-zero exit GNU time writes "Command exited with non-zero status N" first.
    rss=$(tail -n 1 "$tf" | awk '{ print $4 }')
    settle
    server1=$(sshd_cpu_ms)
    busy1=$(busy_cpu_ms)
    summary=$(grep -E '^[0-9]+ host\(s\): [0-9]+ ok, [0-9]+ failed' "$out" | tail -n 1 || true)
    ok=$(sed -E 's/^[0-9]+ host\(s\): ([0-9]+) ok.*/\1/' <<<"${summary:-0 host(s): 0 ok}")
    failed=$((N - ok))
    changed=$(grep -cE '^\[[^]]+\] changed ' "$out" || true)
    case "$kind" in
    steady) want=0 ;;
    *) want=$((3 * N)) ;;
    esac
    [ "$rc" = 0 ] || problem="exit status $rc"
    [ "$ok" = "$N" ] || problem="${problem:+$problem; }$failed of $N host(s) failed"
    if [ "$changed" != "$want" ] && [ "$round" != warmup ]; then
        problem="${problem:+$problem; }$changed file(s) changed, expected $want"
    fi
    if [ -n "$problem" ]; then
        FAILURES=$((FAILURES + 1))
        note "dropship $kind round $round: $problem (log: $out)"
        grep -E 'FAILED|^\[[^]]+\]     ' "$out" | head -n 10 >&2 || true
    fi
    [ "$round" = warmup ] && return 0
    emit "$kind" "$round" "$(ms_between "$t0" "$t1")" \
        "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", (u + s) * 1000 }')" \
        "$rss" "$ok" "$failed" "$changed" "$rc" $((server1 - server0)) $((busy1 - busy0))
}

# Empties every host's app dir (keeps the dir itself): the next deploy uploads all 3 files.
empty_app_dirs() {
    find "$APPS" -mindepth 2 -delete
}

CORES=$(nproc)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM_GIB=$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
note "dropship fleet benchmark: $N host(s), $ROUNDS round(s), $CORES core(s) $CPU_MODEL, ${MEM_GIB} GiB, $(uname -sr), $(ssh -V 2>&1)"
note "warm-up: one floor pass and one deploy (puts the files in place for the first steady run)"
floor_once warmup
dropship_once cold warmup

for ((round = 1; round <= ROUNDS; round++)); do
    wait_idle
    floor_once "$round"
    dropship_once steady "$round"
    empty_app_dirs
    dropship_once cold "$round"
done

# ---------------------------------------------------------------------------------------------
# Report.

# agg KIND COLUMN FUNC: median / min / max of one column (3 wall, 4 client cpu, 5 rss,
# 7 server cpu) of one kind.
agg() {
    awk -F'\t' -v k="$1" -v c="$2" '$1 == k { print $c }' "$RESULTS" | sort -g | awk -v f="$3" '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "nan"; exit }
            if (f == "min") print v[1]
            else if (f == "max") print v[NR]
            else if (NR % 2) print v[(NR + 1) / 2]
            else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

# dropship's own timeline (the `timeline` of each host in its --json report): per phase the
# median over all hosts and rounds of the phase's duration, in ms and (with --rtt) in RTTs; and
# the longest wait for a handshake slot (the connect phase's start: a later wave's hosts).
timeline_table() {
    command -v python3 >/dev/null || { note "no python3: dropship's timeline not summarised"; return 0; }
    python3 - "$LOGS" "$RTT_MS" <<'PY'
import glob, json, statistics, sys
logs, rtt = sys.argv[1], float(sys.argv[2])
phases = ["connect", "lock", "steps", "release", "disconnect"]
def medians(kind):
    got = {p: [] for p in phases + ["queued", "host"]}
    for path in sorted(glob.glob(f"{logs}/{kind}-[0-9]*.json")):
        for h in json.load(open(path))["hosts"]:
            t = h.get("timeline", {})
            for p in phases:
                if p in t:
                    got[p].append(t[p]["ms"])
            if "connect" in t:
                got["queued"].append(t["connect"]["start_ms"])
            got["host"].append(h["elapsed_ms"])
    out = {p: statistics.median(v) if v else None for p, v in got.items()}
    # The hosts that waited at all are the later handshake waves: the longest wait shows them.
    out["queued"] = max(got["queued"]) if got["queued"] else None
    return out
kinds = {k: medians(k) for k in ("steady", "cold")}
unit = f"ms; RTTs of {rtt:g} ms" if rtt else "ms"
print(f"{'dropship timeline (median ' + unit + ')':<38} {'steady':>16} {'cold':>16}")
label = {"queued": "longest wait for a handshake slot", "host": "whole host run"}
for p in ["queued"] + phases + ["host"]:
    cells = []
    for k in ("steady", "cold"):
        v = kinds[k][p]
        if v is None:
            cells.append("-")
        elif rtt:
            cells.append(f"{v:.0f} ({v / rtt:.1f})")
        else:
            cells.append(f"{v:.1f}")
    print(f"  {label.get(p, p):<36} {cells[0]:>16} {cells[1]:>16}")
print()
PY
}

F_MED=$(agg floor 3 median) F_MIN=$(agg floor 3 min) F_MAX=$(agg floor 3 max)
S_MED=$(agg steady 3 median) S_MIN=$(agg steady 3 min) S_MAX=$(agg steady 3 max)
C_MED=$(agg cold 3 median) C_MIN=$(agg cold 3 min) C_MAX=$(agg cold 3 max)
S_RATIO=$(calc %.2f "$S_MED / $F_MED")
C_RATIO=$(calc %.2f "$C_MED / $F_MED")
S_CPU=$(calc %.2f "$(agg steady 4 median) / $N") S_CPU_MAX=$(calc %.2f "$(agg steady 4 max) / $N")
C_CPU=$(calc %.2f "$(agg cold 4 median) / $N") C_CPU_MAX=$(calc %.2f "$(agg cold 4 max) / $N")
S_RSS=$(calc %.1f "$(agg steady 5 max) / 1024")
C_RSS=$(calc %.1f "$(agg cold 5 max) / 1024")
CPU_WORST=$(calc %.2f "($S_CPU > $C_CPU ? $S_CPU : $C_CPU)")
RSS_WORST=$(calc %.1f "($S_RSS > $C_RSS ? $S_RSS : $C_RSS)")

verdict() { # condition (awk) → PASS / MISS
    if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISS; fi
}
MISSES=0
target() { # label value verdict applies-at
    local applies=$4 scope
    if [ "$SMOKE" = 1 ]; then
        scope="(smoke: not enforced)"
    elif [ "$applies" = any ] || [ "$applies" = "$N" ]; then
        scope=""
        [ "$3" = PASS ] || MISSES=$((MISSES + 1))
    else
        scope="(target is at N=$applies; informative at N=$N)"
    fi
    printf '  %-44s %-14s %s %s\n' "$1" "$2" "$3" "$scope"
}

echo
echo "dropship fleet benchmark: N=$N hosts, $ROUNDS round(s), RTT ${RTT_MS} ms, --forks ${FORKS:-64 (default)} --handshakes ${HANDSHAKES:-64 (default)}"
echo "machine: $CORES cores ($CPU_MODEL), ${MEM_GIB} GiB RAM, $(uname -sr), $(ssh -V 2>&1 | cut -d, -f1)"
echo "CPU idle before the run: ${IDLE_START}% (over 1 s)"
echo
printf '%-30s %10s %10s %10s\n' "wall time (ms)" median min max
printf '%-30s %10s %10s %10s\n' "floor   (ssh … true, N at once)" "$F_MED" "$F_MIN" "$F_MAX"
printf '%-30s %10s %10s %10s\n' "steady  (dropship, no change)" "$S_MED" "$S_MIN" "$S_MAX"
printf '%-30s %10s %10s %10s\n' "cold    (dropship, 3N uploads)" "$C_MED" "$C_MIN" "$C_MAX"
echo
if [ "$RTT_MS" != 0 ]; then
    printf '%-30s %10s %10s %10s\n' "wall time in RTTs (median)" floor steady cold
    printf '%-30s %10s %10s %10s\n' "  ($RTT_MS ms each)" "$(calc %.1f "$F_MED / $RTT_MS")" \
        "$(calc %.1f "$S_MED / $RTT_MS")" "$(calc %.1f "$C_MED / $RTT_MS")"
    printf '%-30s %10s %10s %10s\n' "  dropship − floor" "" "$(calc %+.1f "($S_MED - $F_MED) / $RTT_MS")" \
        "$(calc %+.1f "($C_MED - $F_MED) / $RTT_MS")"
    echo
fi
timeline_table
printf '%-30s %10s %10s\n' "dropship" steady cold
printf '%-30s %9sx %9sx\n' "wall / floor (medians)" "$S_RATIO" "$C_RATIO"
printf '%-30s %10s %10s\n' "CPU ms per host (median)" "$S_CPU" "$C_CPU"
printf '%-30s %10s %10s\n' "CPU ms per host (max)" "$S_CPU_MAX" "$C_CPU_MAX"
printf '%-30s %10s %10s\n' "peak RSS MiB (max)" "$S_RSS" "$C_RSS"
echo
# Where the CPU goes: the client side (ssh processes / the dropship process) and the server side
# (all hosts' sshd + sessions). On this one machine they share $CORES cores, so when the run is
# CPU-bound, wall time is about (client + server) x N / cores.
printf '%-30s %10s %10s %10s %12s\n' "CPU ms per host (median)" client server total "x N / cores"
for kind in floor steady cold; do
    cl=$(calc %.2f "$(agg $kind 4 median) / $N")
    sv=$(calc %.2f "$(agg $kind 7 median) / $N")
    printf '%-30s %10s %10s %10s %12s\n' "$kind $([ $kind = floor ] && echo '(ssh / sshd)' || echo '(dropship / sshd)')" \
        "$cl" "$sv" "$(calc %.2f "$cl + $sv")" "$(calc %.0f "($cl + $sv) * $N / $CORES") ms"
done
echo "other processes' CPU during the measurements (ms, median): floor $(agg floor 8 median)," \
    "steady $(agg steady 8 median), cold $(agg cold 8 median) (of wall x $CORES cores)"
echo
echo "targets:"
target "steady wall <= 1.5 x floor (50 hosts)" "${S_RATIO}x" "$(verdict "$S_RATIO <= 1.5")" 50
target "cold wall <= 2 x floor (50 hosts)" "${C_RATIO}x" "$(verdict "$C_RATIO <= 2")" 50
target "dropship CPU <= 10 ms per host per deploy" "${CPU_WORST} ms" "$(verdict "$CPU_WORST <= 10")" any
target "dropship peak RSS <= 60 MiB (500 hosts)" "${RSS_WORST} MiB" "$(verdict "$RSS_WORST <= 60")" 500
target "every run succeeded ($N hosts each)" "$FAILURES failed" "$(verdict "$FAILURES == 0")" any
printf '{"bench":"fleet","kind":"summary","hosts":%s,"rtt_ms":%s,"rounds":%s,"cores":%s,"floor_ms":%s,"steady_ms":%s,"cold_ms":%s,"steady_ratio":%s,"cold_ratio":%s,"cpu_ms_per_host_steady":%s,"cpu_ms_per_host_cold":%s,"max_rss_mib":%s,"failures":%s,"idle_before_pct":%s}\n' \
    "$N" "$RTT_MS" "$ROUNDS" "$CORES" "$F_MED" "$S_MED" "$C_MED" "$S_RATIO" "$C_RATIO" "$S_CPU" "$C_CPU" "$RSS_WORST" "$FAILURES" "$IDLE_START"
echo "logs: $LOGS"

if [ "$FAILURES" != 0 ]; then
    exit 1
fi
if [ "$STRICT" = 1 ] && [ "$SMOKE" = 0 ] && [ "$MISSES" != 0 ]; then
    exit 3
fi
exit 0
