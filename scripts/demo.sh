#!/usr/bin/env bash
# The README's first command: a real deploy of the example Pixel app to a throwaway local fleet.
#
#   scripts/demo.sh [up]   install what is missing (apt), start the Docker engine if needed,
#                          build dropship and the images (debootstrap + import, cached), start a
#                          private registry (htpasswd) and 3 sshd "hosts" on 127.0.0.1, then
#                          `dropship deploy` the example; prints each host's URL and answer and
#                          leaves it all running.
#   scripts/demo.sh stop   tears it all down (containers, volumes, hosts, registry).
#   scripts/demo.sh check  only builds dropship and checks the example (no connection).
#
# Everything listens on 127.0.0.1 only. State (keys, secrets, registry data) lives in .fleet/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="${1:-up}"
hosts=3 # as many as inventory/local.toml lists
version="${DEMO_VERSION:-A}"
lf=scripts/localfleet

log() { printf '==> %s\n' "$*"; }

build() {
    log "building dropship"
    cargo build --locked -q
}

case "$mode" in
check)
    build
    bash -c '. scripts/localfleet/common.sh; lf_ensure_secrets'
    ./target/debug/dropship check -i inventory/local.toml playbooks/deploy.toml
    ;;
up)
    bash scripts/install-deps.sh
    build
    "$lf/registry.sh" start
    "$lf/images.sh"
    "$lf/hosts.sh" start "$hosts"
    log "deploying version $version with dropship"
    ./target/debug/dropship deploy -i inventory/local.toml playbooks/deploy.toml --var "version=$version"
    echo
    log "the fleet answers (through each host's nginx):"
    for i in $(seq 1 "$hosts"); do
        url="http://127.0.0.1:$((8080 + i))/"
        printf '%s\n' "--- local-$i: $url"
        curl -s -m 10 "$url" || echo "(no answer)"
    done
    echo
    log "running. Try: ./target/debug/dropship deploy -i inventory/local.toml playbooks/deploy.toml --var version=B"
    log "stop it all with: scripts/demo.sh stop"
    ;;
stop)
    "$lf/hosts.sh" clean || true
    "$lf/hosts.sh" stop
    "$lf/registry.sh" stop
    log "stopped: containers, volumes, hosts and registry are gone (images and .fleet/ keys stay cached)"
    ;;
*)
    echo "usage: scripts/demo.sh [up|stop|check]" >&2
    exit 2
    ;;
esac
