#!/usr/bin/env python3
# Runs bench-kernels and torch.quantize_per_channel on the same BF16 input
# shape, one thread each, and prints a table with both ratios: the kernel's
# bytes moved per second over memcpy's, and its speed over torch's.
#
# Usage: /usr/bin/python3 bench/run.py BUILDDIR [ROWS COLS]
import json
import os
import subprocess
import sys
import time

builddir = sys.argv[1] if len(sys.argv) > 1 else 'build'
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 4096
cols = int(sys.argv[3]) if len(sys.argv) > 3 else 4096

out = subprocess.run([os.path.join(builddir, 'bench', 'bench-kernels'), str(rows), str(cols), '15'],
                     check=True, capture_output=True, text=True).stdout
results = [json.loads(line) for line in out.splitlines()]

torch_seconds = None
try:
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(1)
    w = (torch.rand(rows, cols) + torch.rand(rows, cols) + torch.rand(rows, cols) - 1.5) * 0.05
    w = w.to(torch.bfloat16)
    best = float('inf')
    for _ in range(5):
        t0 = time.perf_counter()
        f = w.float()
        scales = f.abs().amax(dim=1).double() / 127.5
        q = torch.quantize_per_channel(f, scales, torch.zeros(rows, dtype=torch.int64), 0, torch.qint8)
        best = min(best, time.perf_counter() - t0)
    torch_seconds = best
except ImportError:
    pass

memcpy_best = next(r for r in results if r['kernel'] == 'memcpy')
best_rate = memcpy_best['bytes_per_second']
print('%-36s %9s %12s %10s %10s %10s %9s' % ('kernel', 'ms', 'elements/s', 'memcpy ms', 'of best', 'of rounds', 'vs torch'))
print('%-36s %9.3f %12s %10s %10s %10s %9s' % ('memcpy (%d MiB, best of run)' % (rows * cols * 2 >> 20),
                                              memcpy_best['seconds'] * 1e3, '', '', '1.000', '', ''))
for r in results:
    if r['kernel'] == 'memcpy':
        continue
    vs = '%.1fx' % (torch_seconds / r['seconds']) if torch_seconds else 'n/a'
    print('%-36s %9.3f %12.3e %10.3f %10.3f %10.3f %9s' % (r['kernel'], r['seconds'] * 1e3, r['elements_per_second'],
                                                          r['memcpy_seconds'] * 1e3, r['bytes_per_second'] / best_rate,
                                                          r['fraction_of_memcpy'], vs))
if torch_seconds:
    print('%-36s %9.3f   (bf16 -> float, amax, quantize_per_channel qint8; 1 thread)'
          % ('torch.quantize_per_channel', torch_seconds * 1e3))
print('bytes moved (read + written) per second over memcpy\'s: "of best" against the best memcpy of the\n'
      'run, "of rounds" against memcpy timed in rounds alternating with the kernel; one thread; best of 15')
