#!/bin/sh
# Installs the build into a staging directory and checks it as a consumer
# would: pkg-config finds quark-1.0, the ten-line C program from examples/
# compiles against the installed headers, links, and lists the installed quark
# backend; the typelib loads from Python.
#
# Usage: test-install.sh BUILDDIR SRCDIR
set -eu
builddir=$1
srcdir=$2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

DESTDIR="$stage" meson install -C "$builddir" --no-rebuild --quiet >/dev/null

pc=$(find "$stage" -name quark-1.0.pc | head -n 1)
[ -n "$pc" ] || { echo "not ok: quark-1.0.pc was not installed"; exit 1; }
# the staged prefix stands for the configured one: relocate a copy of the .pc
mkdir "$stage/pc"
prefix=$(sed -n 's/^prefix=//p' "$pc")
sed "s|^prefix=.*|prefix=$stage$prefix|" "$pc" > "$stage/pc/quark-1.0.pc"
export PKG_CONFIG_PATH="$stage/pc"
flags=$(pkg-config --cflags --libs quark-1.0)
backenddir=$(pkg-config --variable=backenddir quark-1.0)
libdir=$(pkg-config --variable=libdir quark-1.0)

cc "$srcdir/examples/list-backends.c" $flags -o "$stage/list-backends"
out=$(env -u QUARK_BACKEND_PATH QUARK_BACKEND_SYSTEM_PATH="$backenddir" LD_LIBRARY_PATH="$libdir" \
      "$stage/list-backends")
echo "$out"
echo "$out" | grep -q '^quark: AMD Quark' || { echo "not ok: the installed quark backend is not listed"; exit 1; }
echo "$out" | grep -q '^brevitas: Brevitas' || { echo "not ok: the installed brevitas backend is not listed"; exit 1; }

test -f "$(dirname "$(find "$stage" -name quark.h -path '*quark-1.0/quark/*' | head -n 1)")/quark-version.h"
# the kernel API: its own header, not in the umbrella one
printf '#include <quark/quark-kernels.h>\nint main (void) { return quark_kernel_f16_to_f32 (0x3c00) == 1.0f ? 0 : 1; }\n' \
  > "$stage/kernel.c"
cc "$stage/kernel.c" $flags -o "$stage/kernel" && LD_LIBRARY_PATH="$libdir" "$stage/kernel" ||
  { echo "not ok: a program of the kernel API does not build or run"; exit 1; }
! grep -q kernels "$(find "$stage" -name quark.h -path '*quark-1.0/quark/*' | head -n 1)" ||
  { echo "not ok: the umbrella header includes the kernels"; exit 1; }
# the library exports its API and nothing else (no resolvers, no _private)
lib=$(find "$stage" -name 'libquark-1.0.so.0*' -type f | head -n 1)
others=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^quark_' || true)
[ -z "$others" ] || { echo "not ok: exported beyond the API: $others"; exit 1; }
test -n "$(find "$stage" -name 'quark-1.0.vapi')"
test -n "$(find "$stage" -name 'Quark-1.0.typelib')"
typelibdir=$(dirname "$(find "$stage" -name 'Quark-1.0.typelib' | head -n 1)")
env -u QUARK_BACKEND_PATH QUARK_BACKEND_SYSTEM_PATH="$backenddir" LD_LIBRARY_PATH="$libdir" \
    GI_TYPELIB_PATH="$typelibdir" /usr/bin/python3 -c "
import gi
gi.require_version('Quark', '1.0')
from gi.repository import Quark
assert sorted(b.get_name() for b in Quark.Registry.get_default().list_backends()) == ['brevitas', 'quark']
"
# the PyGObject override is installed where the configured interpreter
# looks for modules (under the prefix), so that the numpy helpers are there
override=$(find "$stage" -path '*gi/overrides/Quark.py' | head -n 1)
test -n "$override" || { echo "not ok: gi/overrides/Quark.py was not installed"; exit 1; }
site=$(dirname "$(dirname "$(dirname "${override#"$stage"}")")")
/usr/bin/python3 -E -s -c "import sys; assert '$site' in sys.path, ('$site', sys.path)" ||
  { echo "not ok: the override went to $site, which /usr/bin/python3 does not search"; exit 1; }
env -u QUARK_BACKEND_PATH QUARK_BACKEND_SYSTEM_PATH="$backenddir" LD_LIBRARY_PATH="$libdir" \
    GI_TYPELIB_PATH="$typelibdir" PYTHONPATH="$stage$site" /usr/bin/python3 -c "
import gi
gi.require_version('Quark', '1.0')
from gi.repository import Quark
assert hasattr(Quark, 'tensor_from_array'), 'the override did not load'
"
echo "installed library, headers, pkg-config, backends, typelib, overrides and vapi work"
