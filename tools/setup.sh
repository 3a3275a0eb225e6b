#!/bin/sh
# Installs what libquark needs on Debian 12 (apt), then configures and builds
# it in ./build. Safe to run again: it installs only missing packages and
# reuses an existing build directory.
#
# Usage: tools/setup.sh [BUILDDIR]
set -eu

builddir="${1:-build}"
cd "$(dirname "$0")/.."

packages="build-essential pkg-config meson ninja-build
libglib2.0-dev libjson-glib-dev gobject-introspection libgirepository1.0-dev
cmake libopenblas-dev liblapacke-dev python3-gi python3-pytest python3-numpy python3-torch python3-sklearn gjs valac gi-docgen valgrind clang"

missing=""
for p in $packages; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done

if [ -n "$missing" ]; then
  echo "Installing:$missing"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
  # shellcheck disable=SC2086
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing </dev/null
fi

if [ -d "$builddir/meson-private" ]; then
  meson setup --reconfigure "$builddir"
else
  meson setup "$builddir"
fi
ninja -C "$builddir"
