#!/usr/bin/env bash
# The README's first command: a real deploy of the example Pixel app to a throwaway local fleet.
#
#   scripts/demo.sh [up]   install what is missing (apt), start the Docker engine if needed,
#                          build dropship and the images (debootstrap + import, cached), start a
#                          private registry (htpasswd) and 3 sshd "hosts" on 127.0.0.1, then
#                          `dropship deploy` the example; prints each host's URL and answer, the
#                          next commands to try, and leaves it all running.
#   scripts/demo.sh stop   tears the fleet down (containers, volumes, hosts, registry, the files
#                          rendered on the hosts, .env secrets included) and says what is left.
#   scripts/demo.sh purge  stop, then remove what stop leaves: .fleet/ (keys, secrets, registry
#                          data), the image build cache and the demo's docker images.
#   scripts/demo.sh check  only builds dropship and checks the example (no connection).
#
# Two checkouts side by side: give the second one other names and ports, e.g.
#   DEMO_NAME=two DEMO_SSH_BASE_PORT=2300 DEMO_HTTP_BASE_PORT=8180 REGISTRY_PORT=5100 scripts/demo.sh
# (the commands it prints then name the inventory it wrote, .fleet/inventory.toml).
#
# Environment (all optional):
#   DEMO_NAME            host names NAME-1..3, also their compose projects  (default: local)
#   DEMO_SSH_BASE_PORT   host K's sshd on 127.0.0.1:BASE+K                   (default: 2200)
#   DEMO_HTTP_BASE_PORT  host K's nginx on 127.0.0.1:BASE+K                  (default: 8080)
#   DEMO_APP_ROOT        host K's app dir is ROOT/NAME-K                     (default: /tmp/dropship-demo)
#   REGISTRY_PORT        the private registry on 127.0.0.1                   (default: 5000)
#   DROPSHIP_CACHE       the image build cache            (default: /var/cache/dropship-localfleet)
#   DEMO_VERSION         the app version the first deploy rolls out          (default: A)
#
# Everything listens on 127.0.0.1 only. State (keys, secrets, registry data) lives in .fleet/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="${1:-up}"
hosts=3 # as many as inventory/local.toml lists
version="${DEMO_VERSION:-A}"
lf=scripts/localfleet

export FLEET_NAME=${DEMO_NAME:-local}
export FLEET_BASE_PORT=${DEMO_SSH_BASE_PORT:-2200}
export FLEET_HTTP_BASE_PORT=${DEMO_HTTP_BASE_PORT:-8080}
export FLEET_APP_ROOT=${DEMO_APP_ROOT:-/tmp/dropship-demo}
export REGISTRY_PORT=${REGISTRY_PORT:-5000}
unset DROPSHIP_STATE # the demo's state is this checkout's .fleet/, where the playbooks look for secrets
cache=${DROPSHIP_CACHE:-/var/cache/dropship-localfleet}
bin=target/debug/dropship

# inventory/local.toml describes the default names and ports; any other choice uses the
# inventory hosts.sh writes for exactly this fleet.
if [ "$FLEET_NAME" = local ] && [ "$FLEET_BASE_PORT" = 2200 ] && [ "$FLEET_HTTP_BASE_PORT" = 8080 ] &&
    [ "$FLEET_APP_ROOT" = /tmp/dropship-demo ] && [ "$REGISTRY_PORT" = 5000 ]; then
    inventory=inventory/local.toml
else
    inventory=.fleet/inventory.toml
fi

log() { printf '==> %s\n' "$*"; }

build() {
    log "building dropship (cargo build; the first build takes 2-3 minutes, then seconds)"
    local status
    set +o pipefail
    cargo build --locked 2>&1 | awk '
        /^ *Compiling/ { n++; if (n % 25 == 0) printf "    … %d crates compiled\n", n; next }
        /^ *(Finished|error|warning)/ { print "    " $0 }'
    status=${PIPESTATUS[0]}
    set -o pipefail
    [ "$status" = 0 ] || { echo "cargo build failed (run: cargo build --locked)" >&2; exit 1; }
}

# du -sh of a path, or "nothing" when it is missing or empty.
size_of() {
    if [ -e "$1" ]; then du -sh "$1" 2>/dev/null | cut -f1; else echo nothing; fi
}

demo_images() { # the demo's image tags in the local engine
    docker images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null |
        grep -E "^(dropship-localfleet/|127\.0\.0\.1:$REGISTRY_PORT/pixel/)" || true
}

stop_fleet() {
    "$lf/hosts.sh" clean || true
    "$lf/hosts.sh" stop
    "$lf/registry.sh" stop
    # The files dropship rendered on the hosts (.env files hold the demo's secrets).
    local k dir
    for k in $(seq 1 "$hosts"); do
        dir=$FLEET_APP_ROOT/$FLEET_NAME-$k
        [ ! -e "$dir" ] || rm -rf -- "$dir"
    done
    rmdir -- "$FLEET_APP_ROOT" 2>/dev/null || true
}

case "$mode" in
check)
    build
    bash -c '. scripts/localfleet/common.sh; lf_ensure_secrets'
    "./$bin" check -i inventory/local.toml playbooks/deploy.toml
    ;;
up)
    started=$(date +%s)
    bash scripts/install-deps.sh
    build
    "$lf/registry.sh" start
    "$lf/images.sh"
    "$lf/hosts.sh" start "$hosts"
    log "deploying version $version with dropship"
    "./$bin" deploy -i "$inventory" playbooks/deploy.toml --var "version=$version"
    echo
    log "the fleet answers (through each host's nginx):"
    for i in $(seq 1 "$hosts"); do
        url="http://127.0.0.1:$((FLEET_HTTP_BASE_PORT + i))/"
        printf '%s\n' "--- $FLEET_NAME-$i: $url"
        curl -s -m 10 "$url" || echo "(no answer)"
    done
    echo
    log "ready in $(($(date +%s) - started)) s. dropship is $PWD/$bin; to call it by name:"
    echo "    export PATH=\"$PWD/target/debug:\$PATH\""
    log "then try:"
    echo "    dropship deploy -i $inventory playbooks/deploy.toml --var version=B"
    echo "    dropship deploy -i $inventory playbooks/zero-downtime.toml --var version=A"
    echo "    dropship releases -i $inventory playbooks/release.toml"
    log "stop it all with: scripts/demo.sh stop   (scripts/demo.sh purge also removes caches and images)"
    ;;
stop)
    stop_fleet
    log "stopped: containers, volumes, hosts, registry and the files rendered on the hosts are gone"
    log "left, for a faster next start (scripts/demo.sh purge removes them):"
    echo "    .fleet/ ($(size_of .fleet)): the fleet's keys, the demo's secrets, the registry's data"
    echo "    $cache ($(size_of "$cache")): the image build cache"
    echo "    $(demo_images | wc -l) docker image tag(s): $(demo_images | tr '\n' ' ')"
    ;;
purge)
    stop_fleet
    tags=$(demo_images)
    [ -z "$tags" ] || docker image rm $tags >/dev/null 2>&1 || true
    rm -rf -- .fleet "$cache"
    log "purged: .fleet/, $cache and the demo's docker images ($(echo "$tags" | grep -c . || true) tag(s))"
    ;;
*)
    echo "usage: scripts/demo.sh [up|stop|purge|check]" >&2
    exit 2
    ;;
esac
