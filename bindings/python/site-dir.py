#!/usr/bin/python3
# Prints the directory under PREFIX where this interpreter looks for
# modules (its purelib for that prefix), so that the PyGObject override is
# installed where `import gi` finds it: /usr/local/lib/python3.X/dist-packages
# for /usr/local on Debian, /usr/lib/python3/dist-packages for /usr. Fails
# with a message when the interpreter searches nowhere under PREFIX.
#
# Usage: site-dir.py PREFIX
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import os
import sys

prefix = os.path.normpath(sys.argv[1])
found = []
for entry in sys.path:
    if not entry or not os.path.isabs(entry):
        continue
    rel = os.path.relpath(os.path.normpath(entry), prefix)
    if rel.startswith('lib') and os.path.basename(entry) in ('dist-packages', 'site-packages'):
        found.append(entry)
if not found:
    sys.exit('%s searches no directory under the prefix %s for modules (its path: %s), so the Python '
             'helpers (gi/overrides/Quark.py) would not be found there; choose one with '
             '-Dpython_overrides_dir=DIR (a directory on the Python path) or build with -Dintrospection=disabled'
             % (sys.executable, prefix, ':'.join(p for p in sys.path if p)))
# Debian's own directory for the system prefix, else the first one searched
system = [p for p in found if p.endswith(os.path.join('python3', 'dist-packages'))]
print((system or found)[0])
