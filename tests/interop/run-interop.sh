#!/bin/sh
# The interop suite (meson test --suite interop): llama.cpp itself against
# libquark's GGUF. Builds llama-quantize, llama-perplexity, llama-cli,
# llama-tokenize and llama-imatrix once from the llama.cpp sources in
# ../shared/oracles/llama.cpp (or $QUARK_LLAMA_CPP_SRC) into a cache
# directory ($QUARK_LLAMA_CPP_CACHE, default BUILDDIR/llama.cpp; later runs
# only check it is up to date), or takes a build from $QUARK_LLAMA_CPP_BIN,
# then runs the tests that call llama.cpp, which fail rather than skip
# without it. Skips (exit 77) when the source is not there.
#
# Usage: run-interop.sh SOURCEDIR BUILDDIR
#
# SPDX-License-Identifier: LGPL-2.1-or-later
set -eu
src=$1
build=$2

if [ -z "${QUARK_LLAMA_CPP_BIN:-}" ]; then
  oracle=${QUARK_LLAMA_CPP_SRC:-$src/../shared/oracles/llama.cpp}
  if [ ! -f "$oracle/CMakeLists.txt" ]; then
    echo "SKIP: no llama.cpp source at $oracle (../shared/oracles/README.md; or set QUARK_LLAMA_CPP_SRC or QUARK_LLAMA_CPP_BIN)"
    exit 77
  fi
  cache=${QUARK_LLAMA_CPP_CACHE:-$build/llama.cpp}
  mkdir -p "$cache"
  log=$cache/quark-build.log
  echo "llama.cpp: building into $cache (log: $log)"
  if [ ! -f "$cache/CMakeCache.txt" ]; then
    # the oracle README's configuration: CPU only, no network, the tools alone
    cmake -S "$oracle" -B "$cache" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=ON > "$log" 2>&1 ||
      { tail -20 "$log"; exit 1; }
  fi
  cmake --build "$cache" -j "$(nproc)" --target llama-quantize llama-perplexity llama-cli llama-tokenize \
    llama-imatrix >> "$log" 2>&1 || { tail -40 "$log"; exit 1; }
  QUARK_LLAMA_CPP_BIN=$cache/bin
fi
export QUARK_LLAMA_CPP_BIN
export QUARK_REQUIRE_LLAMA_CPP=1
echo "llama.cpp: $QUARK_LLAMA_CPP_BIN"
cd "$build"
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider -rs -k "live or llama_cpp" \
  "$src/tests/python/test_gguf.py" "$src/tests/python/test_gguf_imatrix.py" \
  "$src/tests/python/test_gguf_bridge.py"
