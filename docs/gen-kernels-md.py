#!/usr/bin/python3
# Generates the manual's kernel API page from the sources: the sections and
# prototypes of libquark/kernels/quark-kernels.h, and each function's and
# type's documentation comment (in the header or in kernels/*.c). A kernel
# without a documentation comment fails the build, so the page and the API
# cannot drift apart.
#
# Usage: gen-kernels-md.py SRCDIR OUTPUT
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import glob
import os
import re
import sys

srcdir, output = sys.argv[1], sys.argv[2]
header_path = os.path.join(srcdir, 'libquark', 'kernels', 'quark-kernels.h')
header = open(header_path).read()
sources = header + ''.join(open(p).read() for p in sorted(glob.glob(os.path.join(srcdir, 'libquark', 'kernels', '*.c'))))


def doc_comments(text):
    """name -> the lines of its /** name: ... */ comment."""
    docs = {}
    for m in re.finditer(r'/\*\*\n \* ([A-Za-z_][A-Za-z0-9_]*):?[^\n]*\n(.*?)\*/', text, re.S):
        lines = [re.sub(r'^ \* ?', '', l) for l in m.group(2).split('\n')]
        docs.setdefault(m.group(1), lines)
    return docs


def markup(text):
    text = re.sub(r'%([A-Za-z][A-Za-z0-9_]*)', r'`\1`', text)
    text = re.sub(r'@([a-z_][a-z0-9_]*)', r'`\1`', text)
    text = re.sub(r'#([A-Z][A-Za-z0-9]*)', r'`\1`', text)
    text = re.sub(r'(?<![`\w])([a-z_][a-z0-9_]*\(\))', r'`\1`', text)
    return text


def render(lines):
    params, body = [], []
    for line in lines:
        m = re.match(r'@([a-z_][a-z0-9_]*): ?(.*)', line)
        if m:
            params.append([m.group(1), m.group(2)])
        elif params and line.startswith('  ') and not body:
            params[-1][1] += ' ' + line.strip()
        else:
            body.append(line)
    out = []
    if params:
        out += ['- `%s`: %s' % (name, markup(text)) for name, text in params] + ['']
    text = '\n'.join(body).strip('\n')
    text = re.sub(r'^Returns:', '**Returns:**', text, flags=re.M)
    out.append(markup(text))
    return '\n'.join(out).rstrip() + '\n'


docs = doc_comments(sources)
missing = []
parts = []
# sections, types and functions in header order
token = re.compile(r'/\* ([A-Z][^\n]*?) -{3,} \*/|'
                   r'QUARK_AVAILABLE_IN_1_0\n([^;{]*?\b(quark_kernel_[a-z0-9_]+)\s*\([^;]*\));|'
                   r'typedef struct[^{]*\{.*?\}\s*(Quark[A-Za-z0-9]+);', re.S)
for m in token.finditer(header):
    if m.group(1):
        parts.append('## %s\n' % m.group(1).strip())
    elif m.group(3):
        name = m.group(3)
        proto = re.sub(r'[ \t]+', ' ', m.group(2)).replace('\n ', '\n    ')
        if name not in docs:
            missing.append(name)
            continue
        parts.append('### %s\n\n```c\n%s;\n```\n\n%s' % (name, proto.strip(), render(docs[name])))
    elif m.group(4):
        name = m.group(4)
        if name in docs:
            parts.append('### %s\n\n```c\n%s\n```\n\n%s' % (name, m.group(0).strip(), render(docs[name])))

if missing:
    sys.exit('gen-kernels-md.py: kernels without a documentation comment: ' + ', '.join(missing))

intro = '''Title: The kernel API

# The kernel API

The arithmetic of libquark is a set of plain C functions: no GObject, no
allocation behind your back, buffers in and buffers out. Backends, the
`quark` tool and the benchmarks are built on them, and they are a public,
stable part of the library for people who need the real integers and
minifloats: FPGA flows, runtimes, other quantizers.

```c
#include <quark/quark-kernels.h>     /* also includes <quark/quark.h> */
```

They are not part of the umbrella header `<quark/quark.h>` and not in the
GObject-Introspection data (they take raw pointers); from Python, GJS and
Vala use [method@Quark.ModelQuantizer.quantize_tensor] and
[method@Quark.TensorSpec.dequantize] instead.

**The scalar-reference guarantee.** Every kernel with a vector path exports
its scalar reference too, under the same name with `_scalar` appended, and
the two give the same bits for every input: NaN, infinities, subnormals,
ties, every length and alignment. The test suite checks this against the
references and exhaustive enumeration, on the machine's own vector width and
on every other x86-64 target the library is built for (SSE2, AVX2,
AVX-512). Numerics follow docs/numerics.md: inputs are converted to binary32
first, every operation is a binary32 operation rounded to nearest even, and
no multiply-add is contracted.

This page is generated from the header and the functions' documentation
comments (`docs/gen-kernels-md.py`).
'''
with open(output, 'w') as f:
    f.write(intro + '\n' + '\n'.join(parts))
