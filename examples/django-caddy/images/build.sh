#!/usr/bin/env bash
# Builds the django-caddy example's two images with no registry to pull from, like the demo's
# (scripts/localfleet/images.sh), and pushes them to the demo's registry:
#
#   <registry>/django-caddy/app:1     Django + gunicorn (Debian's python3-django, gunicorn) and
#                                     the stand-in project in app/src
#   <registry>/django-caddy/caddy:2   Caddy 2 (Debian's caddy)
#
# One Debian bookworm rootfs (debootstrap --variant=minbase from the mirror apt uses, packages
# in ./packages), imported into docker once and cached in $DROPSHIP_CACHE, then `docker build`
# of app/ and caddy/ FROM it. Start the registry first (scripts/demo.sh, or
# scripts/localfleet/registry.sh start). Environment: as scripts/localfleet/common.sh
# (DROPSHIP_STATE, DROPSHIP_CACHE, REGISTRY_PORT, REGISTRY_USER, REGISTRY_PASSWORD_FILE).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../../scripts/localfleet/common.sh
. "$HERE/../../../scripts/localfleet/common.sh"

SUITE=bookworm
ARCH=$(dpkg --print-architecture)
HASH=$(cat "$HERE/packages" "$HERE/build.sh" | sha256sum | cut -c1-16)
BASE=django-caddy/base:$HASH
TARBALL=$LF_CACHE/django-caddy-rootfs-$SUITE-$ARCH-$HASH.tar
APP_TAG=1
CADDY_TAG=2

WORK=
cleanup() {
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        # debootstrap mounts /proc, /sys, … inside the target: never rm -rf through a mount.
        awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r |
            while read -r m; do umount -l "$m" 2>/dev/null || true; done
        rm -rf --one-file-system "$WORK"
    fi
}
trap cleanup EXIT

make_rootfs() {
    local pkgs mirror rootfs
    pkgs=$(grep -v '^[[:space:]]*#' "$HERE/packages" | tr -s ' \t\n' ',' | sed 's/^,//; s/,$//')
    command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || die "debootstrap is not installed (apt-get install debootstrap)"
    mirror=$(debian_mirror)
    mkdir -p "$LF_CACHE/debs"
    WORK=$(mktemp -d "$LF_CACHE/work.XXXXXX")
    rootfs=$WORK/rootfs
    log "debootstrap $SUITE (minbase + $pkgs) (log: $LF_CACHE/django-caddy-debootstrap.log)"
    PATH="/usr/sbin:/sbin:$PATH" debootstrap --variant=minbase --arch="$ARCH" --components=main \
        --include="$pkgs" --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        --cache-dir="$LF_CACHE/debs" "$SUITE" "$rootfs" "$mirror" >"$LF_CACHE/django-caddy-debootstrap.log" 2>&1 ||
        { tail -n 30 "$LF_CACHE/django-caddy-debootstrap.log" >&2; die "debootstrap failed"; }
    # Slim it: no apt lists or sources, docs, man pages, translations; what docker provides.
    (
        cd "$rootfs"
        rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb
        rm -f etc/apt/sources.list etc/apt/sources.list.d/*
        rm -rf usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/*
        rm -f etc/resolv.conf etc/hostname etc/machine-id
        : >etc/hosts
        rm -rf tmp/* var/tmp/* root/.cache
    )
    tar --numeric-owner --xattrs -C "$rootfs" \
        --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* --exclude=./run/* --exclude=./debootstrap \
        -cf "$TARBALL.tmp" .
    mv -f "$TARBALL.tmp" "$TARBALL"
    cleanup
    WORK=
}

lf_docker_ok
mkdir -p "$LF_CACHE"
exec 8>"$LF_CACHE/lock"
flock 8 # one build at a time (the demo's images.sh takes the same lock)
if docker image inspect "$BASE" >/dev/null 2>&1; then
    log "base image $BASE: cached"
else
    [ -s "$TARBALL" ] || make_rootfs
    log "docker import -> $BASE"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        "$TARBALL" "$BASE" >/dev/null
fi
log "docker build django-caddy/app:$APP_TAG and django-caddy/caddy:$CADDY_TAG"
docker build -q --build-arg "BASE=$BASE" -t "django-caddy/app:$APP_TAG" "$HERE/app" >/dev/null
docker build -q --build-arg "BASE=$BASE" -t "django-caddy/caddy:$CADDY_TAG" "$HERE/caddy" >/dev/null
exec 8>&-

# Push with a docker login of our own: root's ~/.docker and the hosts' logins stay untouched.
code=$(lf_http_code "http://$LF_REGISTRY/v2/")
[ "$code" = 401 ] || die "no registry answering 401 on http://$LF_REGISTRY/v2/ (got $code): run scripts/demo.sh or scripts/localfleet/registry.sh start"
cfg=$LF_STATE/.docker-push
lf_state_dir
mkdir -p "$cfg"
chmod 700 "$cfg"
lf_registry_password | DOCKER_CONFIG=$cfg docker login "$LF_REGISTRY" --username "$LF_REGISTRY_USER" --password-stdin >/dev/null 2>&1 ||
    die "docker login $LF_REGISTRY failed"
for image in "django-caddy/app:$APP_TAG" "django-caddy/caddy:$CADDY_TAG"; do
    log "push $LF_REGISTRY/$image"
    docker tag "$image" "$LF_REGISTRY/$image"
    DOCKER_CONFIG=$cfg docker push -q "$LF_REGISTRY/$image" >/dev/null || die "docker push $LF_REGISTRY/$image failed"
    docker rmi "$LF_REGISTRY/$image" >/dev/null # hosts pull it, with their own login
done
log "done: $LF_REGISTRY/django-caddy/app:$APP_TAG, $LF_REGISTRY/django-caddy/caddy:$CADDY_TAG"
