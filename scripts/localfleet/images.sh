#!/usr/bin/env bash
# Builds the local fleet's images with no registry to pull from, and pushes them to the local
# registry (scripts/localfleet/registry.sh start, first):
#
#   <registry>/pixel/app:A, <registry>/pixel/app:B   the demo app (images/app), B differs from A
#                                                    only by /app/IMAGE_TAG and a label
#   <registry>/pixel/nginx:1                         nginx (images/nginx)
#   <registry>/pixel/postgres:15                     PostgreSQL 15 (images/postgres)
#
# All are one Debian bookworm rootfs (debootstrap --variant=minbase from the Debian mirror apt
# is configured with, packages in images/base/packages, slimmed by images/base/trim.sh),
# imported once, plus one tiny layer each: images/NAME/Dockerfile applied with docker
# create + cp + commit (see apply_dockerfile). Nothing is pulled from any registry.
#
# Cached: the .debs and the rootfs tarball under $DROPSHIP_CACHE (keyed by images/base/*), the
# images in the engine as dropship-localfleet/* (each labelled with a hash of the base's
# inputs, its images/NAME/ files, its tag and this script). A second run only re-tags and
# pushes (~1 s); editing a build input rebuilds what it affects. Cold: ~1.5-2.5 min (debootstrap).
#
# Environment: DROPSHIP_STATE, DROPSHIP_CACHE, REGISTRY_PORT, REGISTRY_USER,
# REGISTRY_PASSWORD_FILE (see common.sh), and
#   LOCALFLEET_APP_TAGS   app image tags to build          (default: "A B")
#   LOCALFLEET_KEEP_TAGS  1: keep the <registry>/… tags in the local engine after the push
#                         (default 0: untag them, so a host's `compose pull` really pulls —
#                         and needs its registry login — while the layers stay cached)
#   LOCALFLEET_MIRROR     a Debian mirror URL instead of the one apt uses
# Pushing logs in with its own DOCKER_CONFIG ($DROPSHIP_STATE/.docker-push): root's
# ~/.docker and the hosts' logins are never touched.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    echo "usage: scripts/localfleet/images.sh [build|push|all]   (default: all = build, then push)" >&2
    exit 2
}
mode=${1:-all}
case "$mode" in
build | push | all) ;;
-h | --help) usage ;;
*) usage ;;
esac
[ $# -le 1 ] || usage

IMAGES_DIR=$LF_REPO/images
SUITE=bookworm
VARIANT=minbase
ARCH=$(dpkg --print-architecture)
APP_TAGS=${LOCALFLEET_APP_TAGS:-A B}
KEEP_TAGS=${LOCALFLEET_KEEP_TAGS:-0}
LABEL=org.dropship.localfleet.inputs

t_start=$(date +%s)
elapsed() { echo "$(($(date +%s) - t_start))s"; }

# hash_files FILE...: one sha256 over the files' paths (relative to the repo) and contents.
hash_files() {
    local f
    for f in "$@"; do
        printf '%s\0' "${f#"$LF_REPO"/}"
        sha256sum <"$f"
    done | sha256sum | cut -c1-64
}

image_label() {
    docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true
}

image_size() {
    local bytes
    bytes=$(docker image inspect -f '{{ .Size }}' "$1")
    echo "$((bytes / 1000000)) MB"
}

# --- the shared base rootfs --------------------------------------------------------------
base_inputs=("$IMAGES_DIR/base/packages" "$IMAGES_DIR/base/trim.sh")
BASE_HASH=$(printf '%s %s %s\n%s\n' "$SUITE" "$VARIANT" "$ARCH" "$(hash_files "${base_inputs[@]}")" | sha256sum | cut -c1-16)
BASE_IMAGE=dropship-localfleet/base:$BASE_HASH
TARBALL=$LF_CACHE/rootfs-$SUITE-$ARCH-$BASE_HASH.tar

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

make_rootfs_tarball() {
    local pkgs mirror rootfs t0
    pkgs=$(grep -v '^[[:space:]]*#' "$IMAGES_DIR/base/packages" | tr -s ' \t\n' ',' | sed 's/^,//; s/,$//')
    [ -n "$pkgs" ] || die "no packages in images/base/packages"
    command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || die "debootstrap is not installed (apt-get install debootstrap)"
    mirror=$(debian_mirror)
    mkdir -p "$LF_CACHE/debs"
    WORK=$(mktemp -d "$LF_CACHE/work.XXXXXX")
    rootfs=$WORK/rootfs
    log "debootstrap $SUITE ($VARIANT + $pkgs) from the Debian mirror configured for apt (log: $LF_CACHE/debootstrap.log)"
    t0=$(date +%s)
    if ! PATH="/usr/sbin:/sbin:$PATH" debootstrap --variant="$VARIANT" --arch="$ARCH" --components=main \
        --include="$pkgs" --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        --cache-dir="$LF_CACHE/debs" "$SUITE" "$rootfs" "$mirror" >"$LF_CACHE/debootstrap.log" 2>&1; then
        tail -n 30 "$LF_CACHE/debootstrap.log" >&2
        [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
        die "debootstrap failed (see $LF_CACHE/debootstrap.log)"
    fi
    log "debootstrap done in $(($(date +%s) - t0))s; trimming (images/base/trim.sh, at $(elapsed))"
    bash "$IMAGES_DIR/base/trim.sh" "$rootfs"
    log "packing $TARBALL (at $(elapsed))"
    tar --numeric-owner --xattrs -C "$rootfs" \
        --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* --exclude=./run/* --exclude=./debootstrap \
        -cf "$TARBALL.tmp" .
    mv -f "$TARBALL.tmp" "$TARBALL"
    log "packed (at $(elapsed))"
    cleanup
    WORK=
    # Older rootfs tarballs (other inputs) are dead weight.
    find "$LF_CACHE" -maxdepth 1 -name "rootfs-*.tar" ! -name "$(basename "$TARBALL")" -delete
}

ensure_base() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        log "base image $BASE_IMAGE: cached"
        return
    fi
    if [ -s "$TARBALL" ]; then
        log "rootfs tarball: cached ($TARBALL)"
    else
        make_rootfs_tarball
    fi
    log "docker import -> $BASE_IMAGE"
    local t0
    t0=$(date +%s)
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        "$TARBALL" "$BASE_IMAGE" >/dev/null
    log "imported in $(($(date +%s) - t0))s"
}

# --- the derived images ---------------------------------------------------------------------
# Each image is images/NAME/Dockerfile applied to the base. The legacy builder commits a
# container for every instruction (~13 s an image on this engine), so images.sh applies the
# Dockerfile itself: one `docker create`, the COPYs as one tar through `docker cp`, one
# `docker commit` with the metadata instructions as --change (~2 s an image). Only a subset is
# understood (ARG, FROM ${BASE}, COPY, LABEL, ENV, WORKDIR, EXPOSE, CMD, ENTRYPOINT, USER,
# VOLUME, STOPSIGNAL; one instruction a line); anything else is an error. The same Dockerfile
# also builds with `docker build --build-arg BASE=… --build-arg IMAGE_TAG=…` (after writing
# IMAGE_TAG into the context).

# local name (no registry) : registry repository:tag : image dir : IMAGE_TAG build arg
targets=()
for t in $APP_TAGS; do
    targets+=("dropship-localfleet/pixel-app:$t pixel/app:$t app $t")
done
targets+=("dropship-localfleet/pixel-nginx:1 pixel/nginx:1 nginx 1")
targets+=("dropship-localfleet/pixel-postgres:15 pixel/postgres:15 postgres 15")

# The inputs of one image: the base's, its directory, this script, its tag.
image_hash() {
    local dir=$1 tag=$2 files
    mapfile -t files < <(find "$IMAGES_DIR/$dir" -type f | LC_ALL=C sort)
    printf '%s %s %s %s\n' "$BASE_HASH" "$tag" "$(hash_files "${files[@]}")" \
        "$(hash_files "$LF_REPO/scripts/localfleet/images.sh" "$LF_REPO/scripts/localfleet/common.sh")" |
        sha256sum | cut -c1-64
}

# apply_dockerfile LOCAL_NAME DIR TAG HASH
apply_dockerfile() {
    local local_name=$1 dir=$2 tag=$3 hash=$4
    local ctx stage line instr rest var val dest src parts=() create_args=() changes=() saw_from=0
    local -A args=()
    ctx=$(mktemp -d)
    stage=$ctx/.stage
    cp -a "$IMAGES_DIR/$dir/." "$ctx/"
    printf '%s\n' "$tag" >"$ctx/IMAGE_TAG"
    mkdir -p "$stage"
    # shellcheck disable=SC2016
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in '' | '#'*) continue ;; esac
        case "$line" in *\\) die "images/$dir/Dockerfile: line continuations are not supported: $line" ;; esac
        instr=${line%%[[:space:]]*}
        rest=${line#"$instr"}
        rest=${rest#"${rest%%[![:space:]]*}"}
        instr=${instr^^}
        if [ "$instr" != ARG ]; then
            # ${NAME} of the ARGs seen so far (BASE and IMAGE_TAG come from the build).
            for var in "${!args[@]}"; do
                rest=${rest//"\${$var}"/${args[$var]}}
                rest=${rest//"\$$var"/${args[$var]}}
            done
        fi
        case "$instr" in
        ARG)
            var=${rest%%=*}
            val=""
            [ "$var" = "$rest" ] || val=${rest#*=}
            case "$var" in
            BASE) val=$BASE_IMAGE ;;
            IMAGE_TAG) val=$tag ;;
            esac
            args[$var]=$val
            ;;
        FROM)
            [ "$rest" = "$BASE_IMAGE" ] || die "images/$dir/Dockerfile: FROM must be \${BASE} (got: $rest)"
            saw_from=1
            ;;
        COPY)
            read -r -a parts <<<"$rest"
            [ "${#parts[@]}" -ge 2 ] || die "images/$dir/Dockerfile: bad COPY: $line"
            dest=${parts[-1]}
            unset 'parts[-1]'
            case "$dest" in /*) ;; *) die "images/$dir/Dockerfile: COPY needs an absolute destination: $line" ;; esac
            for src in "${parts[@]}"; do
                [ -f "$ctx/$src" ] || die "images/$dir/Dockerfile: COPY source is not a file: $src"
                if [ "${#parts[@]}" -gt 1 ] || [ "${dest%/}" != "$dest" ]; then
                    mkdir -p "$stage$dest"
                    cp -p "$ctx/$src" "$stage${dest%/}/"
                else
                    mkdir -p "$stage$(dirname "$dest")"
                    cp -p "$ctx/$src" "$stage$dest"
                fi
            done
            ;;
        STOPSIGNAL) create_args+=(--stop-signal "$rest") ;;
        LABEL | ENV | WORKDIR | EXPOSE | CMD | ENTRYPOINT | USER | VOLUME) changes+=(--change "$instr $rest") ;;
        *) die "images/$dir/Dockerfile: images.sh does not apply $instr (see the comment above apply_dockerfile)" ;;
        esac
    done <"$IMAGES_DIR/$dir/Dockerfile"
    [ "$saw_from" = 1 ] || die "images/$dir/Dockerfile: no FROM \${BASE}"
    changes+=(--change "LABEL $LABEL=$hash")

    local cid top=()
    cid=$(docker create "${create_args[@]}" "$BASE_IMAGE")
    # Only the staged top-level entries: never "." (it would reset the modes of /).
    find "$stage" -type d -exec chmod 0755 {} +
    mapfile -t top < <(cd "$stage" && find . -mindepth 1 -maxdepth 1 -printf '%P\n')
    if [ "${#top[@]}" -gt 0 ]; then
        tar --owner=0 --group=0 --numeric-owner -C "$stage" -c "${top[@]}" | docker cp - "$cid:/" >/dev/null ||
            { docker rm -f "$cid" >/dev/null; die "docker cp into $local_name failed"; }
    fi
    docker commit "${changes[@]}" "$cid" "$local_name" >/dev/null ||
        { docker rm -f "$cid" >/dev/null; die "docker commit of $local_name failed"; }
    docker rm "$cid" >/dev/null
    rm -rf "$ctx"
}

do_build() {
    lf_docker_ok
    mkdir -p "$LF_CACHE"
    exec 8>"$LF_CACHE/lock"
    flock 8 # one build at a time (parallel test runs)
    local stale=() entry local_name repo dir tag hash
    for entry in "${targets[@]}"; do
        read -r local_name repo dir tag <<<"$entry"
        hash=$(image_hash "$dir" "$tag")
        [ "$(image_label "$local_name")" = "$hash" ] || stale+=("$entry $hash")
    done
    if [ "${#stale[@]}" -eq 0 ]; then
        log "images: all ${#targets[@]} cached (base ${BASE_HASH})"
    else
        ensure_base
        for entry in "${stale[@]}"; do
            read -r local_name repo dir tag hash <<<"$entry"
            log "build $local_name (images/$dir/Dockerfile on the base, at $(elapsed))"
            apply_dockerfile "$local_name" "$dir" "$tag" "$hash"
        done
        # Images of older inputs: drop the untagged ones this script made, and older bases.
        docker image prune -f --filter "label=$LABEL" >/dev/null 2>&1 || true
        docker image ls --format '{{.Repository}}:{{.Tag}}' dropship-localfleet/base | grep -vxF "$BASE_IMAGE" |
            xargs -r docker rmi >/dev/null 2>&1 || true
    fi
    exec 8>&-
}

do_push() {
    lf_docker_ok
    local code
    code=$(lf_http_code "http://$LF_REGISTRY/v2/")
    [ "$code" = 401 ] || die "no registry answering 401 on http://$LF_REGISTRY/v2/ (got $code): run scripts/localfleet/registry.sh start"
    # A login of our own: root's ~/.docker and the hosts' DOCKER_CONFIGs stay logged out.
    local cfg=$LF_STATE/.docker-push entry local_name repo dir tag
    lf_state_dir
    mkdir -p "$cfg"
    chmod 700 "$cfg"
    log "docker login $LF_REGISTRY as $LF_REGISTRY_USER (password from $LF_REGISTRY_PASSWORD_FILE)"
    lf_registry_password | DOCKER_CONFIG=$cfg docker login "$LF_REGISTRY" --username "$LF_REGISTRY_USER" --password-stdin >/dev/null 2>&1 ||
        die "docker login $LF_REGISTRY failed (is the password file the one registry.sh started with?)"
    for entry in "${targets[@]}"; do
        read -r local_name repo dir tag <<<"$entry"
        docker image inspect "$local_name" >/dev/null 2>&1 || die "$local_name is not built (run: images.sh build)"
        log "push $LF_REGISTRY/$repo (at $(elapsed))"
        docker tag "$local_name" "$LF_REGISTRY/$repo"
        if ! out=$(DOCKER_CONFIG=$cfg docker push "$LF_REGISTRY/$repo" 2>&1); then
            printf '%s\n' "$out" >&2
            die "docker push $LF_REGISTRY/$repo failed"
        fi
        if [ "$KEEP_TAGS" != 1 ]; then
            docker rmi "$LF_REGISTRY/$repo" >/dev/null
        fi
    done
}

case "$mode" in
build) do_build ;;
push) do_push ;;
all)
    do_build
    do_push
    ;;
esac

log "images ($(elapsed)):"
for entry in "${targets[@]}"; do
    read -r local_name repo dir tag <<<"$entry"
    printf '    %-34s %-40s %s\n' "$LF_REGISTRY/$repo" "($local_name)" "$(image_size "$local_name")"
done
