#!/usr/bin/env python3
# The activation API against a copy and PyTorch, in the same run: one
# activation of --tokens x --features float32 values quantized by
# QuarkModelQuantizer.quantize_activation() (codes, scales, zero points)
# with each backend's spec, and the PyTorch pipeline that computes the same
# codes (torch.quantize_per_tensor for static int8; for dynamic per-token
# int8, the row maxima, the scales and the rounding), next to numpy's copy
# of the same array. Prints the best of --repeat runs, in ms and as ratios
# to the copy and to PyTorch. One thread (the activation path is per call).
#
# Usage: /usr/bin/python3 bench/bench-activations.py [BUILDDIR] [--tokens 2048] [--features 4096]
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

ap = argparse.ArgumentParser()
ap.add_argument('builddir', nargs='?', default=os.path.join(ROOT, 'build'))
ap.add_argument('--tokens', type=int, default=2048)
ap.add_argument('--features', type=int, default=4096)
ap.add_argument('--repeat', type=int, default=7)
args = ap.parse_args()

build = os.path.abspath(args.builddir)
if os.environ.get('LD_LIBRARY_PATH') != os.path.join(build, 'libquark'):
    os.environ['GI_TYPELIB_PATH'] = os.path.join(build, 'libquark')
    os.environ['LD_LIBRARY_PATH'] = os.path.join(build, 'libquark')
    os.environ['PYTHONPATH'] = os.pathsep.join([os.path.join(ROOT, 'bindings', 'python'),
                                                os.environ.get('PYTHONPATH', '')])
    os.environ['QUARK_BACKEND_PATH'] = ':'.join(os.path.join(build, 'libquark', 'backends', b)
                                                for b in ('quark', 'brevitas'))
    os.execv(sys.executable, [sys.executable] + sys.argv)

import gi  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

gi.require_version('Quark', '1.0')
from gi.repository import Quark  # noqa: E402

torch.set_num_threads(1)
REGISTRY = Quark.Registry.get_default()
rng = np.random.default_rng(0)
x = (rng.standard_normal((args.tokens, args.features)) * 2).astype(np.float32)
t = Quark.tensor_from_array('x', x)
xt = torch.from_numpy(x)


def best(fn):
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def quantizer(backend, spec):
    config = REGISTRY.config_from_string(json.dumps({'backend': backend, 'global_quant_config': {'input_tensors': spec}}))
    return REGISTRY.new_quantizer(config), config.get_tensor_spec('fc', 'Linear', Quark.Role.INPUT)


copy_ms = best(lambda: x.copy())
scale = float(np.abs(x).max() / 128)
st = Quark.Tensor.new_from_floats('s', [], [scale])
zt = Quark.Tensor.new_from_floats('z', [], [0.0])


def torch_per_token():
    s = xt.abs().amax(dim=1, keepdim=True) / 127.5
    return torch.clamp(torch.round(xt / s), -128, 127).to(torch.int8), s


cases = [
    ('int8 static per tensor, brevitas (Int8ActPerTensorFloat)', 'brevitas', {'preset': 'Int8ActPerTensorFloat'},
     (st, zt), lambda: torch.quantize_per_tensor(xt, scale, 0, torch.qint8)),
    ('int8 static per tensor, quark', 'quark', {'dtype': 'int8', 'qscheme': 'per_tensor'}, (st, zt),
     lambda: torch.quantize_per_tensor(xt, scale, 0, torch.qint8)),
    ('int8 dynamic per token, quark', 'quark', {'dtype': 'int8', 'qscheme': 'per_channel', 'ch_axis': 0,
                                                 'is_dynamic': True}, (None, None), torch_per_token),
    ('int8 dynamic per row, brevitas (Int8DynamicActPerRowFloat)', 'brevitas', {'preset': 'Int8DynamicActPerRowFloat'},
     (None, None), torch_per_token),
    ('FP8 E4M3 static per tensor, brevitas', 'brevitas', {'preset': 'Fp8e4m3OCPActPerTensorFloat'},
     (Quark.Tensor.new_from_floats('s', [], [scale / 3.5]), None), None),
    ('MXFP4 dynamic, quark', 'quark', {'dtype': 'fp4', 'qscheme': 'per_group', 'group_size': 32, 'ch_axis': -1,
                                       'is_dynamic': True, 'scale_format': 'e8m0'}, (None, None), None),
]
print('activation %d x %d float32 (%.0f MiB); numpy copy %.2f ms; best of %d, one thread' %
      (args.tokens, args.features, x.nbytes / 2**20, copy_ms, args.repeat))
print()
print('| case | ms | copy / case | PyTorch ms | PyTorch / case |')
print('|---|---|---|---|---|')
for name, backend, spec, (s, z), reference in cases:
    q, sp = quantizer(backend, spec)
    ms = best(lambda: q.quantize_activation(t, sp, s, z))
    ref = best(reference) if reference else None
    print('| %s | %.2f | %.2f | %s | %s |' % (name, ms, copy_ms / ms, '%.2f' % ref if ref else '—',
                                              '%.2f' % (ref / ms) if ref else '—'))
