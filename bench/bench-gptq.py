#!/usr/bin/env python3
# GPTQ on one layer: libquark's quark_gptq_quantize() against a
# straightforward torch implementation of the same algorithm (blocks of
# 128 columns, desc_act, static groups from round-to-nearest's scales,
# lazy batch updates: the GPTQ paper's algorithm as its reference code
# writes it), on the same weight, Hessian and threads, in the same run.
# Both start from the Gram matrix and round-to-nearest's scales; the times
# cover the Cholesky factorizations and the column loop. torch runs in
# float32, as the GPTQ reference does; libquark factors in float64 and
# updates the weights in float32. Then libquark alone on one processor
# against --threads (the speedup of the threads; the codes must not change).
#
# Usage: /usr/bin/python3 bench/bench-gptq.py [BUILDDIR] [--size 4096] [--threads 2]
import argparse
import ctypes
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

ap = argparse.ArgumentParser()
ap.add_argument('builddir', nargs='?', default=os.path.join(ROOT, 'build'))
ap.add_argument('--size', type=int, default=4096)
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--group', type=int, default=128)
args = ap.parse_args()
build = os.path.abspath(args.builddir)
if os.environ.get('LD_LIBRARY_PATH') != os.path.join(build, 'libquark'):
    os.environ.update(GI_TYPELIB_PATH=os.path.join(build, 'libquark'), LD_LIBRARY_PATH=os.path.join(build, 'libquark'),
                      OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
                      QUARK_BACKEND_PATH=os.path.join(build, 'libquark', 'backends', 'quark'))
    os.execv(sys.executable, [sys.executable] + sys.argv)

import gi  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

gi.require_version('Quark', '1.0')
from gi.repository import GLib, Quark  # noqa: E402

torch.set_num_threads(args.threads)
n = args.size
rng = np.random.default_rng(0)
w = (rng.standard_normal((n, n)) * 0.02).astype(np.float32)
x = rng.standard_normal((2 * n, n)).astype(np.float32)
x[:, rng.choice(n, 16, replace=False)] *= 10
gram = x.astype(np.float64).T @ x.astype(np.float64)

registry = Quark.Registry.get_default()
quantizer = registry.new_quantizer(registry.config_from_string(
    '{"backend": "quark", "global_quant_config": {"weight": {"dtype": "int8"}}}', -1))
spec = Quark.TensorSpec.new(Quark.DType.INT4, Quark.QScheme.PER_GROUP)
spec.set_property('group-size', args.group)
spec.set_property('ch-axis', -1)


def tensor(name, a, dtype):
    return Quark.Tensor.new(name, dtype, list(a.shape), GLib.Bytes.new(np.ascontiguousarray(a).tobytes()))


wt = tensor('w', w, Quark.DType.FLOAT32)
logical = quantizer.quantize_tensor(wt, spec)
codes, scale = logical.get_tensor('w'), logical.get_tensor('w_scale')
gt = tensor('gram', gram, Quark.DType.FLOAT64)


def run_quark():
    t0 = time.perf_counter()
    result = Quark.gptq_quantize(wt, spec, codes, scale, None, gt, 0.01, 128, True)
    return time.perf_counter() - t0, np.frombuffer(result.get_data().get_data(), dtype=np.int8).reshape(n, n)


# libquark's column loop takes one thread per processor the calling thread
# may run on (g_get_num_processors follows its affinity mask), and LAPACK
# runs on OpenBLAS's threads (started with the process, so their own masks
# stay: they are set to one thread instead). The same call on one processor
# and on --threads, alternating, best of 3 each.
cpus = sorted(os.sched_getaffinity(0))
try:
    openblas = ctypes.CDLL(os.environ.get('QUARK_BLAS_LIBRARIES', 'libopenblas.so.0').split(':')[0])
    openblas.openblas_set_num_threads
except (OSError, AttributeError):
    openblas = None


def on_processors(k):
    os.sched_setaffinity(0, cpus[:k])
    if openblas is not None:
        openblas.openblas_set_num_threads(k)


one_s, many_s = [], []
for _ in range(3):
    on_processors(1)
    t, ours_one = run_quark()
    one_s.append(t)
    on_processors(args.threads)
    t, ours = run_quark()
    many_s.append(t)
os.sched_setaffinity(0, cpus)
quark_s = min(many_s)

scales = torch.from_numpy(np.frombuffer(scale.get_data().get_data(), dtype=np.float32).reshape(n, -1).copy())


@torch.no_grad()
def torch_gptq(W, H, scales, group, blocksize=128, percdamp=0.01):
    W = W.clone()
    columns = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    perm = torch.argsort(torch.diag(H), descending=True)
    W = W[:, perm]
    H = H[perm][:, perm]
    invperm = torch.argsort(perm)
    H[range(columns), range(columns)] += percdamp * torch.mean(torch.diag(H))
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    Hinv = torch.linalg.cholesky(H, upper=True)
    Q = torch.zeros_like(W)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w = W1[:, i]
            d = Hinv1[i, i]
            s = scales[:, perm[i1 + i] // group]
            q = torch.clamp(torch.round(w * (1 / s)), -8, 7)
            Q1[:, i] = q
            err = (w - q * s) / d
            W1[:, i:] -= err.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return Q[:, invperm]


Wt = torch.from_numpy(w)
Ht = torch.from_numpy(gram.astype(np.float32))
t0 = time.perf_counter()
theirs = torch_gptq(Wt, Ht.clone(), scales, args.group)
torch_s = time.perf_counter() - t0
agree = np.mean(theirs.numpy().astype(np.int8) == ours)
print('GPTQ, int4 groups of %d, %d x %d weight, %d x %d Hessian, %d threads (torch %s)' %
      (args.group, n, n, n, n, args.threads, torch.__version__))
print('libquark: %.2f s   torch: %.2f s   ratio %.2fx   codes equal: %.2f %%' %
      (quark_s, torch_s, torch_s / quark_s, 100 * agree))
print('libquark on one processor: %.2f s; on %d: %.2f s, %.2fx one (the same codes: %s)%s' %
      (min(one_s), min(args.threads, len(cpus)), quark_s, min(one_s) / quark_s,
       'yes' if np.array_equal(ours_one, ours) else 'NO',
       '' if openblas else ' (LAPACK on all of its threads both times: no OpenBLAS to set)'))
