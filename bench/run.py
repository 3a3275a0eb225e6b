#!/usr/bin/env python3
# Runs bench-kernels and, for each kernel, the equivalent torch pipeline on
# the same BF16 input shape, one thread each, and prints a table with both
# ratios: the kernel's bytes moved per second over memcpy's, and its speed
# over torch's (int8: torch.quantize_per_channel; int4 per group: the same
# arithmetic in tensor operations; FP8 and MXFP4: none where torch has no
# such type, and the table says so). Then the same for the backend's
# quantize call, as the library API, the CLI and the bindings run it
# (bench-quantize: quark_model_quantizer_quantize_tensor() on 1 and 2
# threads, tensor buffers reused and fresh, the input 16 bytes past a
# cache line as malloc() gives it and at one as the CLI reads it), and the
# call from Python (gi.repository.Quark, the tensor made from the bytes)
# against torch.
# The default shape, 8192 x 8192 BF16 (128 MiB), is larger than the
# last-level cache.
#
# Usage: /usr/bin/python3 bench/run.py BUILDDIR [ROWS COLS]
import json
import os
import subprocess
import sys
import time

builddir = sys.argv[1] if len(sys.argv) > 1 else 'build'
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 8192
cols = int(sys.argv[3]) if len(sys.argv) > 3 else 8192

out = subprocess.run([os.path.join(builddir, 'bench', 'bench-kernels'), str(rows), str(cols), '15'],
                     check=True, capture_output=True, text=True).stdout
results = [json.loads(line) for line in out.splitlines()]

# Each kernel against the equivalent torch pipeline on the same input, one
# thread, best of 5; a format torch has no type for is said so, never
# divided by another format's time.
torch_seconds = {}
torch_missing = {}
try:
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(1)
    w = (torch.rand(rows, cols) + torch.rand(rows, cols) + torch.rand(rows, cols) - 1.5) * 0.05
    w = w.to(torch.bfloat16)

    def best_of(fn):
        best = float('inf')
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    def int8_per_channel():
        f = w.float()
        scales = f.abs().amax(dim=1).double() / 127.5
        torch.quantize_per_channel(f, scales, torch.zeros(rows, dtype=torch.int64), 0, torch.qint8)

    def int4_groups_packed():
        # torch has no int4 type: the same arithmetic in tensor operations,
        # scales per group of 128, codes clamped to [-8, 7], eight to a word
        f = w.float().view(rows, cols // 128, 128)
        s = f.abs().amax(dim=2, keepdim=True) / 7.5
        q = torch.clamp(torch.round(f / s), -8, 7).to(torch.int32).view(rows, cols // 8, 8) & 0xF
        shifts = torch.arange(0, 32, 4, dtype=torch.int32)
        (q << shifts).sum(dim=2, dtype=torch.int32)

    torch_seconds['bf16_to_int8_per_channel'] = best_of(int8_per_channel)
    torch_seconds['bf16_to_int4_per_group_128_packed'] = best_of(int4_groups_packed)
    has_fp8 = hasattr(torch, 'float8_e4m3fn')
    torch_missing['bf16_to_fp8_e4m3_per_channel'] = None if has_fp8 else 'no FP8 (torch %s)' % torch.__version__
    torch_missing['bf16_to_mxfp4_packed'] = 'no MXFP4 (torch %s)' % torch.__version__
    if has_fp8:
        def fp8_per_channel():
            f = w.float()
            s = f.abs().amax(dim=1, keepdim=True) / 448.0
            (f / s).to(torch.float8_e4m3fn)
        torch_seconds['bf16_to_fp8_e4m3_per_channel'] = best_of(fp8_per_channel)
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
    vs = '%.1fx' % (torch_seconds[r['kernel']] / r['seconds']) if r['kernel'] in torch_seconds \
        else torch_missing.get(r['kernel']) or 'n/a'
    print('%-36s %9.3f %12.3e %10.3f %10.3f %10.3f %9s' % (r['kernel'], r['seconds'] * 1e3, r['elements_per_second'],
                                                          r['memcpy_seconds'] * 1e3, r['bytes_per_second'] / best_rate,
                                                          r['fraction_of_memcpy'], vs))
for kernel, seconds in torch_seconds.items():
    print('%-36s %9.3f   torch pipeline for %s (1 thread)' % ('torch', seconds * 1e3, kernel))
print('bytes moved (read + written) per second over memcpy\'s: "of best" against the best memcpy of the\n'
      'run, "of rounds" against memcpy timed in rounds alternating with the kernel; one thread; best of 15')

# ---- the backend's quantize call --------------------------------------------
env = dict(os.environ, QUARK_BACKEND_PATH=os.path.join(builddir, 'libquark', 'backends', 'quark'),
           QUARK_BACKEND_SYSTEM_PATH='', GI_TYPELIB_PATH=os.path.join(builddir, 'libquark'),
           LD_LIBRARY_PATH=os.path.join(builddir, 'libquark'))
out = subprocess.run([os.path.join(builddir, 'bench', 'bench-quantize'), str(rows), str(cols), '7'],
                     check=True, capture_output=True, text=True, env=env).stdout
calls = [json.loads(line) for line in out.splitlines()]
# FP8 again on heavy-tailed values (Student's t, 3 degrees of freedom): the
# one scheme whose work depends on them (subnormal codes take the lane
# encoder)
out = subprocess.run([os.path.join(builddir, 'bench', 'bench-quantize'), str(rows), str(cols), '7', 'fp8_per_channel',
                      'BF16', 't3'], check=True, capture_output=True, text=True, env=env).stdout
calls += [json.loads(line) for line in out.splitlines()]
# Every scheme again with the tensor's bytes at a cache line, where the
# CLI's reads put them (the runs above: 16 bytes past one, where malloc()
# puts a large block): the per-group integer kernels read each row twice,
# and rows that start between lines cost them more
out = subprocess.run([os.path.join(builddir, 'bench', 'bench-quantize'), str(rows), str(cols), '7', 'all',
                      'BF16', 'uniform3', 'aligned'], check=True, capture_output=True, text=True, env=env).stdout
calls += [json.loads(line) for line in out.splitlines()]
torch_for = {'int8_per_channel': 'bf16_to_int8_per_channel', 'int4_per_group_128': 'bf16_to_int4_per_group_128_packed',
             'fp8_per_channel': 'bf16_to_fp8_e4m3_per_channel', 'mxfp4': 'bf16_to_mxfp4_packed'}
print()
print('%-22s %7s %7s %7s %9s %10s %12s %12s %9s' % ('quantize call', 'input', 'threads', 'buffers', 'ms', 'memcpy ms',
                                                   'of memcpy/thr', 'same threads', 'vs torch'))
for c in calls:
    k = torch_for.get(c['scheme'])   # uint4 (asymmetric): no torch pipeline here
    vs = '%.1fx' % (torch_seconds[k] / c['seconds']) if k in torch_seconds and c['threads'] == 1 \
        else (torch_missing.get(k) or 'n/a') if c['threads'] == 1 else ''
    name = c['scheme'] + ('' if c['values'] == 'uniform3' else ' (%s)' % c['values'])
    print('%-22s %7s %7d %7s %9.3f %10.3f %12.3f %12.3f %9s' % (name, c['input'], c['threads'], c['buffers'],
                                                                c['seconds'] * 1e3, c['memcpy_seconds'] * 1e3,
                                                                c['of_memcpy_per_thread'], c['of_memcpy_same_threads'],
                                                                vs))
print('bytes moved (input read + codes and scales written) per second over memcpy\'s (read + written), per\n'
      'thread: "of memcpy/thr" against memcpy on one thread (memcpy ms) times the threads, "same threads"\n'
      'against memcpy on as many threads at once, each copying its share (two copies at once share the\n'
      'memory\'s bandwidth); median of 7 rounds, each timing memcpy, the call and (two threads) the two\n'
      'copies; torch on 1 thread, best of 5; input: the tensor\'s bytes 16 bytes past a cache line (malloc)\n'
      'or at one (aligned, as the CLI reads them)')

# ---- from Python -------------------------------------------------------------
PY = r"""
import sys, time
import numpy as np
import gi
gi.require_version('Quark', '1.0')
from gi.repository import GLib, Quark
rows, cols = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(1)
w = ((rng.random((rows, cols)) + rng.random((rows, cols)) + rng.random((rows, cols)) - 1.5) * 0.05).astype(np.float32)
bf16 = (w.view(np.uint32) >> 16).astype(np.uint16).tobytes()
config = Quark.Registry.get_default().config_from_string(
    '{"backend": "quark", "global_quant_config": {"weight": {"dtype": "int8"}}}', -1)
q = Quark.Registry.get_default().new_quantizer(config)
spec = Quark.TensorSpec.new(Quark.DType.INT8, Quark.QScheme.PER_CHANNEL)
best = {'with the bytes copied': float('inf'), 'tensor already made': float('inf')}
t = Quark.Tensor.new('w', Quark.DType.BFLOAT16, [rows, cols], GLib.Bytes.new(bf16))
for _ in range(5):
    t0 = time.perf_counter()
    t2 = Quark.Tensor.new('w', Quark.DType.BFLOAT16, [rows, cols], GLib.Bytes.new(bf16))
    q.quantize_tensor(t2, spec)
    best['with the bytes copied'] = min(best['with the bytes copied'], time.perf_counter() - t0)
    t0 = time.perf_counter()
    q.quantize_tensor(t, spec)
    best['tensor already made'] = min(best['tensor already made'], time.perf_counter() - t0)
for k, v in best.items():
    print('%s %.6f' % (k, v))
"""
r = subprocess.run(['/usr/bin/python3', '-c', PY, str(rows), str(cols)], env=env, capture_output=True, text=True)
if r.returncode == 0 and 'bf16_to_int8_per_channel' in torch_seconds:
    print()
    for line in r.stdout.splitlines():
        what, seconds = line.rsplit(' ', 1)
        print('python int8 per channel, %-22s %9.3f ms  %.1fx torch (1 thread)'
              % (what, float(seconds) * 1e3, torch_seconds['bf16_to_int8_per_channel'] / float(seconds)))
else:
    print('python: not measured (%s)' % (r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'no torch'))
