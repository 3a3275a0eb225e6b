#!/bin/sh
# tools/sanitize.sh [BUILDDIR]            ASan + UBSan
# tools/sanitize.sh --thread [BUILDDIR]   ThreadSanitizer
#
# Builds libquark with AddressSanitizer and UndefinedBehaviorSanitizer in
# BUILDDIR (default build-asan) and runs every C test suite, then the CLI
# tests (which drive the sanitized `quark` tool) under it. Any leak, memory
# error or undefined behaviour fails the run. Introspection is left out:
# loading a sanitized library into the Python, GJS or Vala interpreters
# needs the sanitizer runtime preloaded and reports the interpreters' own
# allocations.
#
# Run tools/setup.sh first (it installs the packages).
set -eu
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--thread" ]; then
  # ThreadSanitizer: the threads suite (registry, configs and quantizers
  # shared between threads). GLib itself is not instrumented, so the test
  # synchronises with atomics rather than GMutex (futexes TSan cannot see).
  dir=${2:-build-tsan}
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Db_sanitize=thread -Db_lundef=false \
      -Dintrospection=disabled -Dvapi=disabled -Ddocs=disabled
  fi
  export TSAN_OPTIONS=halt_on_error=1 G_SLICE=always-malloc
  # builds what the suite runs, nothing else
  exec meson test -C "$dir" --print-errorlogs --suite threads
fi
dir=${1:-build-asan}
if [ ! -f "$dir/build.ninja" ]; then
  # -fno-sanitize-recover=all: UBSan stops at its first report, as
  # UBSAN_OPTIONS below asks at run time anyway; compiled in, no path goes
  # on past a failed check, and GCC 12 no longer warns (-Warray-bounds) of
  # reads through the null pointer such a path would have made
  meson setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args=-fno-sanitize-recover=all \
    -Dintrospection=disabled -Dvapi=disabled -Ddocs=disabled
fi
# what the suites and the CLI tests run: meson test builds its tests; the
# tool and the backend modules for the CLI tests (not the examples and
# benchmarks)
ninja -C "$dir" tools/quark libquark/backends/quark/libquark-backend-quark.so \
  libquark/backends/brevitas/libquark-backend-brevitas.so
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# GSlice's magazines would hide leaked JSON nodes and objects from LeakSanitizer
export G_SLICE=always-malloc
meson test -C "$dir" --print-errorlogs \
  --suite core --suite config --suite numerics --suite files --suite backends --suite fuzzing \
  --suite threads
G_TEST_SRCDIR="$PWD/tests" QUARK_TOOL="$PWD/$dir/tools/quark" \
QUARK_BACKEND_SYSTEM_PATH= QUARK_BACKEND_PATH="$PWD/$dir/libquark/backends/quark:$PWD/$dir/libquark/backends/brevitas" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    tests/python/test_cli.py tests/python/test_quantize_cli.py tests/python/test_bad_inputs.py \
    tests/python/test_brevitas.py tests/python/test_export_formats.py tests/python/test_gguf.py
