#!/usr/bin/env bash
# Slims and prepares a debootstrapped rootfs for docker: `trim.sh ROOTFS_DIR` (runs on the
# build machine, no chroot). Part of the rootfs cache key: editing it rebuilds the rootfs.
set -euo pipefail
root=${1:?usage: trim.sh ROOTFS_DIR}
[ -x "$root/bin/sh" ] || { echo "trim.sh: $root is not a rootfs" >&2; exit 1; }
cd "$root"

# apt: no package lists, no cached .debs, and no sources (the images never run apt; this also
# keeps the build machine's mirror out of the images).
rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb var/cache/debconf/*-old
rm -f etc/apt/sources.list etc/apt/sources.list.d/*

# Docs, man pages, translations.
rm -rf usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/lintian usr/share/locale/*

# PostgreSQL JIT (LLVM, ~100 MB): postgres disables JIT by itself when llvmjit.so is absent,
# and the postgres image sets jit=off as well.
rm -f usr/lib/*/libLLVM-*.so* usr/lib/*/libz3.so* usr/lib/postgresql/*/lib/llvmjit*.so
rm -rf usr/lib/postgresql/*/lib/bitcode
# Debian's /usr/bin/psql, pg_isready, … are postgresql-common's perl wrapper (pg_wrapper): the
# real binaries go first on PATH instead, and perl (~50 MB, nothing else uses it) goes.
for b in usr/lib/postgresql/*/bin/*; do
    ln -sfn "/$b" "usr/local/bin/${b##*/}"
done
rm -rf usr/share/perl/5.* usr/lib/*/perl/5.* usr/lib/*/libperl.so*
# Locale sources (the images use C.UTF-8, built into glibc).
rm -rf usr/share/i18n/locales usr/share/i18n/charmaps
# The cluster postgresql-common's postinst made: the postgres image runs its own initdb.
rm -rf var/lib/postgresql/[0-9]* etc/postgresql/[0-9]*

# nginx: only the compose-mounted /etc/nginx/conf.d/default.conf; logs to docker.
rm -f etc/nginx/sites-enabled/default
ln -sfn /dev/stdout var/log/nginx/access.log
ln -sfn /dev/stderr var/log/nginx/error.log

# Things docker provides at run time; logs and machine identity from the build.
rm -f etc/resolv.conf etc/hostname etc/machine-id var/lib/dbus/machine-id
: >etc/hosts
find var/log -type f -exec truncate -s 0 {} +
rm -rf tmp/* var/tmp/* root/.cache
