#!/usr/bin/python3
# Checks that the kernels kept their vector form in a build: in the
# x86-64-v4 and x86-64-v3 clones of every multiversioned kernel, scalar
# float arithmetic (vaddss, vmulss, vmaxss, ...) may not outnumber the
# vector arithmetic (vaddps, vmulps, vmaxps, ...) beyond a small allowance
# for set-up and tails. A kernel whose lane-wise helpers were compiled one
# lane at a time (GCC 12 at -O3 did that: 5 to 10 times slower) has one
# scalar operation per lane and fails. An inspection of the generated code, not a timing:
# it gives the same answer on a busy machine. In the x86-64-v3 clones,
# moreover, at most PIECES_ALLOWANCE vpinsrq: GCC 12 without
# -mmove-max=512 moves whole 64-byte vectors there in 16-byte pieces
# through general registers (hundreds of vpinsrq in the hot kernels, which
# took 2 to 3 times as long).
#
# Usage: check-vector.py LIBRARY
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import re
import subprocess
import sys

ALLOWANCE = 16
PIECES_ALLOWANCE = 4
text = subprocess.run(['objdump', '-d', '--no-show-raw-insn', sys.argv[1]], check=True, capture_output=True,
                      text=True).stdout
functions, current = {}, None
for line in text.splitlines():
    m = re.match(r'^[0-9a-f]+ <(.*)>:$', line)
    if m:
        current = m.group(1)
        functions[current] = []
    elif current and '\t' in line:
        fields = line.split('\t')[1].split()
        if fields:
            functions[current].append(fields[0])

SUFFIXES = ('.arch_x86_64_v4', '.arch_x86_64_v3')
clones = {name: ins for name, ins in functions.items() if name.endswith(SUFFIXES)}
if not clones:
    print('check-vector: no x86-64-v4 or v3 clones in %s (a build without multiversioning): nothing to check'
          % sys.argv[1])
    sys.exit(0)
failed = []
for name, ins in sorted(clones.items()):
    scalar = sum(1 for i in ins if re.fullmatch(r'v(max|min|mul|div|add|sub)ss', i))
    vector = sum(1 for i in ins if re.fullmatch(r'v(max|min|mul|div|add|sub)ps', i))
    if scalar > max(ALLOWANCE, vector):
        failed.append('%s: %d scalar float operations, %d vector ones' % (name, scalar, vector))
    pieces = sum(1 for i in ins if i == 'vpinsrq')
    if name.endswith('.arch_x86_64_v3') and pieces > PIECES_ALLOWANCE:
        failed.append('%s: %d vpinsrq (64-byte vectors moved in 16-byte pieces)' % (name, pieces))
if failed:
    print('check-vector: kernels that lost their vector form in %s:' % sys.argv[1])
    for f in failed:
        print('  ' + f)
    sys.exit(1)
print('check-vector: %d kernel clones keep their vector form in %s' % (len(clones), sys.argv[1]))
