#!/usr/bin/env bash
# dropship's zero-downtime benchmark (issue 12): a demo-style fleet of its own (real Docker
# engine, private registry, sshd hosts on 127.0.0.1, scripts/localfleet/), 6 clients per host
# looping `GET /` through each host's nginx (benches/zero-downtime/load.py) while dropship runs:
#
#   playbooks/zero-downtime.toml   deploy A (not measured), then under load:
#                                  A → B; rollback (→ A); a release whose image does not exist
#                                  (--var version=nope); a release that never becomes healthy
#                                  (its .env has a database password the database does not
#                                  know: the app answers /healthz 503)
#   playbooks/deploy.toml          A → B, for comparison (fresh stacks, deploy A first)
#   playbooks/release.toml         A → B and rollback, for comparison (fresh stacks, A first)
#
# Prints a table: requests ok/failed, switch time per host (dropship's JSON report), when each
# host's version flipped, the version served afterwards, exit status; PASS/MISS against the
# target (0 failed requests, every host on the expected version, the expected exit status) for
# the zero-downtime rows. See benches/zero-downtime/README.md.
#
#   benches/zero-downtime/run.sh [--hosts N] [--clients C] [--no-compare | --compare-only] [--keep]
#
#   --hosts N      hosts (default 3)
#   --clients C    load clients per host (default 6)
#   --no-compare   skip the deploy.toml / release.toml rows
#   --compare-only only those rows
#   --keep         leave the fleet (hosts, registry, stacks) running afterwards; a later run
#                  reuses it
#
# Exit status: 0 every zero-downtime row PASS, 3 a row missed its target, 1 the setup or a
# run that had to succeed failed, 2 usage.
#
# Environment:
#   ZDB_STATE       work dir: the project copy (playbooks/, templates/), its .fleet/ state
#                   (keys, inventory, secrets, registry, hosts, app dirs) and results/
#                   (default /tmp/dropship-zdbench)
#   ZDB_BASE_PORT   host K's sshd listens on 127.0.0.1:BASE+K, its nginx on BASE+100+K, the
#                   registry on BASE+99 (default 12200: clear of the demo's 2200/8080/5000,
#                   the tests' 20000-40000 and the ephemeral range)
#   DROPSHIP_BIN    the dropship binary; default: `cargo build --release --locked` and
#                   ${CARGO_TARGET_DIR:-<repo>/target}/release/dropship
#
# Needs: bash 5, python3, OpenSSH client and server, docker (engine, compose), docker-registry,
# what scripts/localfleet/ needs. Runs as root, like the local fleet.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LOCALFLEET=$REPO/scripts/localfleet

usage() { # [exit status]
    sed -n '18,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}
die() {
    printf 'run.sh: error: %s\n' "$*" >&2
    exit 1
}
note() { printf '# %s\n' "$*" >&2; }

N=3
CLIENTS=6
COMPARE=1
ZERO_DOWNTIME=1
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
    --hosts) [ $# -ge 2 ] || usage; N=$2; shift ;;
    --hosts=*) N=${1#*=} ;;
    --clients) [ $# -ge 2 ] || usage; CLIENTS=$2; shift ;;
    --clients=*) CLIENTS=${1#*=} ;;
    --no-compare) COMPARE=0 ;;
    --compare-only) ZERO_DOWNTIME=0 ;;
    --keep) KEEP=1 ;;
    -h | --help) usage 0 ;;
    *) usage ;;
    esac
    shift
done
for v in "$N" "$CLIENTS"; do
    case "$v" in '' | *[!0-9]* | 0) echo "run.sh: counts must be positive numbers: $v" >&2; usage ;; esac
done
[ "$N" -lt 99 ] || die "at most 98 hosts (the registry port is BASE+99)"

WORK=${ZDB_STATE:-/tmp/dropship-zdbench}
case "$WORK" in /*) ;; *) WORK=$(pwd)/$WORK ;; esac
BASE_PORT=${ZDB_BASE_PORT:-12200}
case "$BASE_PORT" in '' | *[!0-9]*) die "ZDB_BASE_PORT must be a number" ;; esac
[ $((BASE_PORT + 200)) -le 65535 ] || die "ZDB_BASE_PORT too high"
NAME=zdb
PROJECT=$WORK/project
STATE=$PROJECT/.fleet
INVENTORY=$STATE/inventory.toml
HTTP_BASE=$((BASE_PORT + 100))
REGISTRY_PORT=$((BASE_PORT + 99))
RESULTS=$WORK/results/$(date -u +%Y%m%dT%H%M%SZ)
[ "${BASH_VERSINFO[0]}" -ge 5 ] || die "needs bash 5 (EPOCHREALTIME)"
[ "$(id -u)" = 0 ] || die "run as root: the hosts are root@127.0.0.1 sshd processes"
command -v python3 >/dev/null || die "needs python3"

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
[ "$ZERO_DOWNTIME" = 0 ] || [ -f "$REPO/playbooks/zero-downtime.toml" ] ||
    die "no playbooks/zero-downtime.toml in $REPO"

fleet() { # SCRIPT ARGS...
    local script=$1
    shift
    DROPSHIP_STATE=$STATE REGISTRY_PORT=$REGISTRY_PORT FLEET_NAME=$NAME FLEET_BASE_PORT=$BASE_PORT \
        FLEET_HTTP_BASE_PORT=$HTTP_BASE bash "$LOCALFLEET/$script" "$@"
}

LOAD_PID=
cleanup() {
    if [ -n "$LOAD_PID" ]; then
        kill -TERM "$LOAD_PID" 2>/dev/null || true
        wait "$LOAD_PID" 2>/dev/null || true
    fi
    if [ "$KEEP" = 1 ]; then
        note "fleet left running (--keep); to stop it:"
        note "  DROPSHIP_STATE=$STATE FLEET_NAME=$NAME $LOCALFLEET/hosts.sh clean"
        note "  DROPSHIP_STATE=$STATE FLEET_NAME=$NAME $LOCALFLEET/hosts.sh stop"
        note "  DROPSHIP_STATE=$STATE REGISTRY_PORT=$REGISTRY_PORT $LOCALFLEET/registry.sh stop"
    else
        note "stopping the fleet"
        fleet hosts.sh clean >/dev/null 2>&1 || true
        fleet hosts.sh stop >/dev/null 2>&1 || true
        fleet registry.sh stop >/dev/null 2>&1 || true
    fi
}

# ---------------------------------------------------------------------------------------------
# The fleet: the example project copied (playbooks/ and templates/ side by side, secrets in
# .fleet/secrets/ as the playbooks expect), a registry with the demo's images, N hosts.

mkdir -p "$PROJECT" "$RESULTS"
chmod 700 "$WORK"
rm -rf "$PROJECT/playbooks" "$PROJECT/templates"
cp -r "$REPO/playbooks" "$REPO/templates" "$PROJECT/"
trap cleanup EXIT
trap 'exit 130' INT TERM
note "fleet: $N host(s), sshd on 127.0.0.1:$((BASE_PORT + 1)).., nginx on :$((HTTP_BASE + 1)).., registry :$REGISTRY_PORT (state $STATE)"
for step in "registry.sh start" "images.sh" "hosts.sh start $N"; do
    # shellcheck disable=SC2086 # the step's words
    fleet $step >"$RESULTS/fleet-setup.log" 2>&1 || {
        tail -n 20 "$RESULTS/fleet-setup.log" >&2
        die "$step failed (log: $RESULTS/fleet-setup.log)"
    }
done

TARGETS=()
for ((k = 1; k <= N; k++)); do
    TARGETS+=("$NAME-$k=$((HTTP_BASE + k))")
done

# Every stack of this fleet down (volumes too), app dirs and dropship's host state (locks,
# audit) emptied: each playbook starts from a fresh host.
reset_hosts() {
    fleet hosts.sh clean >>"$RESULTS/fleet-setup.log" 2>&1 || die "hosts.sh clean failed"
    rm -rf "${STATE:?}/apps" "$STATE"/hosts/"$NAME"-*/.dropship
}

SEQ=0
# Runs `dropship COMMAND` unmeasured (the first deploy of a playbook); it must succeed.
prepare() { # playbook command args...
    local pb=$1 cmd=$2 log
    shift 2
    SEQ=$((SEQ + 1))
    log=$RESULTS/setup-$SEQ.log
    note "$cmd $pb $* (not measured)"
    "$DROPSHIP" "$cmd" -i "$INVENTORY" "$PROJECT/playbooks/$pb" "$@" >"$log" 2>&1 || {
        tail -n 30 "$log" >&2
        die "dropship $cmd $pb $* failed (log: $log)"
    }
}

# Runs `dropship COMMAND` with the load loop going from a second before to a second after it.
measure() { # label playbook want_exit want_version compared command args...
    local label=$1 pb=$2 want_exit=$3 want_version=$4 compared=$5 cmd=$6 out rc t0 t1 i
    shift 6
    SEQ=$((SEQ + 1))
    out=$RESULTS/case-$(printf '%02d' "$SEQ")
    mkdir -p "$out"
    note "$label: $cmd $pb $* (under load)"
    python3 "$HERE/load.py" --clients "$CLIENTS" --ready "$out/ready" --out "$out/load.json" \
        "${TARGETS[@]}" 2>"$out/load.log" &
    LOAD_PID=$!
    for ((i = 0; i < 600; i++)); do
        [ -e "$out/ready" ] && break
        kill -0 "$LOAD_PID" 2>/dev/null || die "the load loop ended early: $(cat "$out/load.log")"
        sleep 0.1
    done
    [ -e "$out/ready" ] || die "$label: some host never answered GET / with 200 before the run"
    sleep 1
    t0=$EPOCHREALTIME
    rc=0
    "$DROPSHIP" "$cmd" -i "$INVENTORY" "$PROJECT/playbooks/$pb" "$@" --json "$out/report.json" \
        >"$out/dropship.log" 2>&1 || rc=$?
    t1=$EPOCHREALTIME
    sleep 1
    kill -TERM "$LOAD_PID"
    wait "$LOAD_PID" || die "the load loop failed: $(cat "$out/load.log")"
    LOAD_PID=
    python3 - "$out/meta.json" "$label" "$pb" "$cmd $*" "$rc" "$want_exit" "$want_version" "$compared" "$t0" "$t1" <<'PY'
import json, sys
path, label, pb, command, rc, want_exit, want_version, compared, t0, t1 = sys.argv[1:]
json.dump({"label": label, "playbook": pb, "command": command, "exit": int(rc),
           "want_exit": int(want_exit), "want_version": want_version,
           "comparison": compared == "1", "t0": float(t0), "t1": float(t1)},
          open(path, "w"), indent=1)
PY
    note "  exit $rc, $(cat "$out/load.log")"
}

# ---------------------------------------------------------------------------------------------
# Zero-downtime rows.

if [ "$ZERO_DOWNTIME" = 1 ]; then
    reset_hosts
    prepare zero-downtime.toml deploy --var version=A
    measure "A → B" zero-downtime.toml 0 B 0 deploy --var version=B
    # Before the broken releases: each one is a release directory too, and with [release]
    # keep = 3 two of them would prune A, leaving rollback nothing to go back to.
    measure "rollback (→ A)" zero-downtime.toml 0 A 0 rollback
    measure "image missing (version=nope)" zero-downtime.toml 1 A 0 deploy --var version=nope
    # A release whose app never becomes healthy: its own .env (only the release's: the
    # shared stack's database is not touched, so it does not restart) has a database password
    # the database does not know, so its /healthz answers 503 until the health check's timeout.
    sed 's/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=not-the-database-password/' \
        "$PROJECT/templates/env.j2" >"$PROJECT/templates/env-broken.j2"
    sed 's|src = "templates/env.j2", dest = "{{ release.dir }}/.env"|src = "templates/env-broken.j2", dest = "{{ release.dir }}/.env"|' \
        "$PROJECT/playbooks/zero-downtime.toml" >"$PROJECT/playbooks/zero-downtime-unhealthy.toml"
    grep -q env-broken "$PROJECT/playbooks/zero-downtime-unhealthy.toml" ||
        die "playbooks/zero-downtime.toml's release .env step changed: update run.sh"
    measure "never healthy (wrong db password in the release)" zero-downtime-unhealthy.toml 1 A 0 \
        deploy --var version=B
fi

# ---------------------------------------------------------------------------------------------
# Comparison rows: the same fleet, fresh stacks.

if [ "$COMPARE" = 1 ]; then
    reset_hosts
    prepare deploy.toml deploy --var version=A
    measure "A → B" deploy.toml 0 B 1 deploy --var version=B
    reset_hosts
    prepare release.toml deploy --var version=A
    measure "A → B" release.toml 0 B 1 deploy --var version=B
    measure "rollback (→ A)" release.toml 0 A 1 rollback
fi

# ---------------------------------------------------------------------------------------------

rc=0
python3 "$HERE/table.py" --hosts "$N" --clients "$CLIENTS" "$RESULTS" | tee "$RESULTS/table.txt" || rc=$?
note "results: $RESULTS"
exit "$rc"
