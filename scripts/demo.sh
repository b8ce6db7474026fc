#!/usr/bin/env bash
# The README's first command. `scripts/demo.sh check`: build dropship, make the example's local
# secrets if missing (.fleet/secrets/, never committed) and check the example playbook against
# the local inventory: every template rendered for every host, no connection.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="${1:-check}"
cargo build --locked -q
mkdir -p .fleet/secrets
chmod 700 .fleet .fleet/secrets
for name in django_secret_key postgres_password registry_password; do
    f=.fleet/secrets/$name
    if [ ! -s "$f" ]; then
        (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$f")
        echo "made secret $f"
    fi
done

case "$mode" in
check)
    ./target/debug/dropship check -i inventory/local.toml playbooks/deploy.toml
    ;;
*)
    echo "usage: scripts/demo.sh [check]" >&2
    exit 2
    ;;
esac
