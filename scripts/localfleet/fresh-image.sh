#!/usr/bin/env bash
# Builds the "fresh server" image of the provisioning test: a minimal Debian bookworm
# (debootstrap --variant=minbase + openssh-server; no sudo, no docker) whose apt sources are the
# Debian mirror this machine's apt uses (written by debootstrap, never printed), imported as
# dropship-localfleet/fresh-debian:<hash of this script, suite, arch>. Prints the image name.
# Cached: the image in the engine, the .debs under $DROPSHIP_CACHE/debs (shared with images.sh).
# Cold: ~1-2 min (debootstrap); warm: instant.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SUITE=bookworm
ARCH=$(dpkg --print-architecture)
HASH=$(printf '%s %s\n%s\n' "$SUITE" "$ARCH" "$(sha256sum <"${BASH_SOURCE[0]}")" | sha256sum | cut -c1-16)
IMAGE=dropship-localfleet/fresh-debian:$HASH

mkdir -p "$LF_CACHE/debs"
exec 9>"$LF_CACHE/fresh-image.lock"
flock 9
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    printf '%s\n' "$IMAGE"
    exit 0
fi
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || die "debootstrap is not installed"
mirror=$(debian_mirror)
WORK=$(mktemp -d "$LF_CACHE/fresh.XXXXXX")
cleanup() {
    awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
log "debootstrap $SUITE (minbase + openssh-server) for $IMAGE" >&2
if ! PATH="/usr/sbin:/sbin:$PATH" debootstrap --variant=minbase --arch="$ARCH" --components=main \
    --include=openssh-server --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    --cache-dir="$LF_CACHE/debs" "$SUITE" "$WORK/rootfs" "$mirror" >"$LF_CACHE/fresh-debootstrap.log" 2>&1; then
    tail -n 30 "$LF_CACHE/fresh-debootstrap.log" >&2
    die "debootstrap failed (see $LF_CACHE/fresh-debootstrap.log)"
fi
# No cached .debs, no host keys or identity from the build; docker provides resolv.conf.
rm -rf "$WORK/rootfs"/var/cache/apt/archives/*.deb "$WORK/rootfs"/var/lib/apt/lists/*
rm -f "$WORK/rootfs"/etc/ssh/ssh_host_* "$WORK/rootfs"/etc/resolv.conf "$WORK/rootfs"/etc/machine-id
tar --numeric-owner -C "$WORK/rootfs" --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* \
    --exclude=./run/* --exclude=./debootstrap -c . |
    docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
log "imported $IMAGE" >&2
printf '%s\n' "$IMAGE"
