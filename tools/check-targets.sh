#!/bin/sh
# tools/check-targets.sh [DIR]
#
# The kernels' hot loops are compiled for x86-64-v4, x86-64-v3 and the
# baseline and picked at load time (target_clones), so a test run only ever
# exercises the clone the machine picks. This builds the library once per
# lower target, the whole of it compiled with -march=TARGET and the clones
# turned off (-DQK_NO_MULTIVERSION), into DIR-TARGET (default
# build-target-TARGET), and runs the numerics and backends suites there: the
# vector paths against their scalar references and the reference vectors,
# as each target compiles them (the clones are those targets; GCC lowers a
# clone's generic vectors slightly differently, the C semantics are the
# same). x86-64-v3 is tested only where the CPU has AVX2. Then the same with
# clang, where it is installed: clang has no __builtin_shuffle with a mask
# vector, so the kernels' shuffles are lane loops there (the libFuzzer
# builds use clang), with warnings as errors (clang warns of things GCC
# does not: -Wall -Wextra stays clean for both). Then the build types other than the default
# (debugoptimized): release (-O3) and plain (no -O flag); in each, every
# kernel clone must keep its vector form (tools/check-vector.py inspects the
# generated code), and the release build runs the numerics suite. Each
# build makes only what its checks use (meson test builds the tests it
# runs), not the tools, examples, fuzzers and benchmarks. Run
# tools/setup.sh first.
set -eu
cd "$(dirname "$0")/.."
prefix=${1:-build-target}
if [ "$(uname -m)" != x86_64 ]; then
  echo "check-targets: not an x86-64 machine, nothing to do"
  exit 0
fi
targets=x86-64
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw bmi2 /proc/cpuinfo; then
  targets="$targets x86-64-v3"
fi
for t in $targets; do
  dir=$prefix-$t
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Dc_args="-DQK_NO_MULTIVERSION -march=$t" \
      -Dintrospection=disabled -Dvapi=disabled -Ddocs=disabled
  fi
  meson test -C "$dir" --print-errorlogs --suite numerics --suite backends
done
for buildtype in release plain; do
  dir=$prefix-$buildtype
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" --buildtype "$buildtype" -Dintrospection=disabled -Dvapi=disabled -Ddocs=disabled
  fi
  ninja -C "$dir" libquark/libquark-1.0.so.0.1.0
  /usr/bin/python3 tools/check-vector.py "$dir/libquark/libquark-1.0.so.0.1.0"
  if [ "$buildtype" = release ]; then
    meson test -C "$dir" --print-errorlogs --suite numerics --suite backends
  fi
done
if command -v clang >/dev/null 2>&1; then
  dir=$prefix-clang
  if [ ! -f "$dir/build.ninja" ]; then
    CC=clang meson setup "$dir" -Dwerror=true -Dintrospection=disabled -Dvapi=disabled -Ddocs=disabled
  fi
  meson test -C "$dir" --print-errorlogs --suite numerics --suite backends
fi
