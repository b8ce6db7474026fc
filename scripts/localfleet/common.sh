# Sourced by the scripts in scripts/localfleet/: shared settings and helpers. Not executable.
#
# Environment (all optional):
#   DROPSHIP_STATE   state dir: keys, known_hosts, secrets, hosts, registry   (default: <repo>/.fleet)
#   DROPSHIP_CACHE   build cache: debootstrap .debs and rootfs tarballs (default: /var/cache/dropship-localfleet)
#   REGISTRY_PORT    the registry's port on 127.0.0.1                          (default: 5000)
#   REGISTRY_USER    the registry's one user                                   (default: pixel)
#   REGISTRY_PASSWORD_FILE  its password                      (default: $DROPSHIP_STATE/secrets/registry_password)
# shellcheck shell=bash disable=SC2034  # the settings are for the scripts that source this

LF_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LF_STATE_IS_DEFAULT=1
if [ -n "${DROPSHIP_STATE:-}" ]; then
    LF_STATE_IS_DEFAULT=0
fi
LF_STATE=${DROPSHIP_STATE:-$LF_REPO/.fleet}
LF_CACHE=${DROPSHIP_CACHE:-/var/cache/dropship-localfleet}
LF_REGISTRY_PORT=${REGISTRY_PORT:-5000}
LF_REGISTRY="127.0.0.1:$LF_REGISTRY_PORT"
LF_REGISTRY_USER=${REGISTRY_USER:-pixel}
LF_REGISTRY_PASSWORD_FILE=${REGISTRY_PASSWORD_FILE:-$LF_STATE/secrets/registry_password}

log() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

case "$LF_STATE" in
/*) ;;
*) LF_STATE="$(pwd)/$LF_STATE" ;;
esac
case "$LF_STATE" in
*[[:space:]]* | *'"'* | *"'"*) die "DROPSHIP_STATE must not contain spaces or quotes: $LF_STATE" ;;
esac
case "$LF_REGISTRY_PORT" in
'' | *[!0-9]*) die "REGISTRY_PORT must be a number: $LF_REGISTRY_PORT" ;;
esac

# lf_state_dir: creates the state dir (0700: it holds keys and secrets).
lf_state_dir() {
    mkdir -p "$LF_STATE"
    chmod 700 "$LF_STATE"
}

# lf_ensure_secret FILE: makes a random secret (0600) when FILE is missing or empty, in the
# same format as scripts/demo.sh. Never prints it.
lf_ensure_secret() {
    local f=$1
    if [ ! -s "$f" ]; then
        mkdir -p "$(dirname "$f")"
        chmod 700 "$(dirname "$f")"
        (
            umask 077
            head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$f.tmp.$$"
            mv -f "$f.tmp.$$" "$f"
        )
        log "made secret $f"
    fi
}

# lf_ensure_secrets: the example playbook's three secrets under $LF_STATE/secrets (and the
# registry password wherever REGISTRY_PASSWORD_FILE points).
lf_ensure_secrets() {
    lf_state_dir
    lf_ensure_secret "$LF_STATE/secrets/django_secret_key"
    lf_ensure_secret "$LF_STATE/secrets/postgres_password"
    lf_ensure_secret "$LF_REGISTRY_PASSWORD_FILE"
}

# lf_registry_password: the password, trailing newline trimmed (like dropship's `file` secrets).
lf_registry_password() {
    [ -s "$LF_REGISTRY_PASSWORD_FILE" ] || die "no registry password in $LF_REGISTRY_PASSWORD_FILE (run registry.sh start)"
    local pw
    pw=$(cat "$LF_REGISTRY_PASSWORD_FILE")
    printf '%s' "$pw"
}

# lf_http_code URL: the HTTP status of a GET (000 when nothing answers).
lf_http_code() {
    curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" 2>/dev/null || true
}

# lf_pid_alive PIDFILE NEEDLE: succeeds when PIDFILE names a live process whose command line
# contains NEEDLE (so a recycled pid is never mistaken for ours).
lf_pid_alive() {
    local pidfile=$1 needle=$2 pid
    [ -s "$pidfile" ] || return 1
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$needle"
}

# lf_kill_pidfile PIDFILE NEEDLE: TERM, wait up to 10 s, then KILL. Only that one pid.
lf_kill_pidfile() {
    local pidfile=$1 needle=$2 pid
    if lf_pid_alive "$pidfile" "$needle"; then
        pid=$(cat "$pidfile")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            lf_pid_alive "$pidfile" "$needle" || break
            sleep 0.1
        done
        if lf_pid_alive "$pidfile" "$needle"; then
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
    fi
    rm -f "$pidfile"
}

# lf_docker_ok: the engine answers, else say how to start it.
lf_docker_ok() {
    docker info >/dev/null 2>&1 || die "the docker engine does not answer (start it: nohup dockerd >/tmp/dockerd.log 2>&1 &)"
}

# The Debian mirror apt uses for $SUITE (set by the caller) (deb822 .sources first, then sources.list), never
# printed. LOCALFLEET_MIRROR overrides it.
debian_mirror() {
    if [ -n "${LOCALFLEET_MIRROR:-}" ]; then
        printf '%s\n' "$LOCALFLEET_MIRROR"
        return
    fi
    local f m
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        # Stanzas are separated by blank lines; take the first URI of a `deb` stanza whose
        # Suites has exactly "bookworm".
        m=$(awk -v suite="$SUITE" '
            function flush() { if (isdeb && hassuite && uri != "" && out == "") out = uri; isdeb = 0; hassuite = 0; uri = "" }
            /^[[:space:]]*$/ { flush(); next }
            /^[[:space:]]*#/ { next }
            tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") isdeb = 1 }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) hassuite = 1 }
            tolower($1) == "uris:" { uri = $2 }
            END { flush(); print out }' "$f")
        if [ -n "$m" ]; then
            printf '%s\n' "$m"
            return
        fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        m=$(awk -v suite="$SUITE" '$1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit } }' "$f")
        if [ -n "$m" ]; then
            printf '%s\n' "$m"
            return
        fi
    done
    die "no Debian $SUITE mirror in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
}
