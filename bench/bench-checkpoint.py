#!/usr/bin/env python3
# Quantizes a generated checkpoint of BF16 weights (2 GiB by default) with
# `quark quantize` to fp8 per channel (ptpc_fp8) and to int4_wo_128, and
# prints the wall time as a ratio to `cp -r` of the same directory measured
# in the same run (warm page cache), on 2 threads, and the peak resident memory of each
# run against the size of the largest tensor.
#
# Usage: /usr/bin/python3 bench/bench-checkpoint.py BUILDDIR [GIB]
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

builddir = sys.argv[1] if len(sys.argv) > 1 else 'build'
gib = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
quark = os.path.join(builddir, 'tools', 'quark')
env = dict(os.environ, QUARK_BACKEND_PATH=os.path.join(builddir, 'libquark', 'backends', 'quark'))

H, F = 4096, 11008
per_layer = 4 * H * H + 3 * H * F          # q, k, v, o and the MLP, in elements
layers = max(1, int(gib * 2 ** 30 / 2 / per_layer))


def write_shard(path, tensors):
    header, offset = {'__metadata__': {'format': 'pt'}}, 0
    for name, shape in tensors:
        size = int(np.prod(shape)) * 2
        header[name] = {'dtype': 'BF16', 'shape': list(shape), 'data_offsets': [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b' ' * (-len(text) % 8)
    rng = np.random.default_rng(0)
    block = (rng.standard_normal(1 << 22).astype(np.float32) * 0.02).view(np.uint32) >> 16
    block = block.astype(np.uint16).tobytes()
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text)
        for name, shape in tensors:
            left = int(np.prod(shape)) * 2
            while left:
                chunk = block[:min(left, len(block))]
                f.write(chunk)
                left -= len(chunk)


def timed(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit('%s failed: %s' % (cmd, r.stderr))
    return elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


with tempfile.TemporaryDirectory(dir=os.environ.get('TMPDIR', '/tmp')) as tmp:
    src = os.path.join(tmp, 'model')
    os.mkdir(src)
    tensors = []
    for i in range(layers):
        p = 'model.layers.%d.' % i
        tensors += [(p + 'self_attn.q_proj.weight', (H, H)), (p + 'self_attn.k_proj.weight', (H, H)),
                    (p + 'self_attn.v_proj.weight', (H, H)), (p + 'self_attn.o_proj.weight', (H, H)),
                    (p + 'mlp.gate_proj.weight', (F, H)), (p + 'mlp.up_proj.weight', (F, H)),
                    (p + 'mlp.down_proj.weight', (H, F))]
    write_shard(os.path.join(src, 'model.safetensors'), tensors)
    with open(os.path.join(src, 'config.json'), 'w') as f:
        json.dump({'model_type': 'llama', 'hidden_size': H}, f)
    size = os.path.getsize(os.path.join(src, 'model.safetensors'))
    largest = H * F * 2

    subprocess.run(['cat', os.path.join(src, 'model.safetensors')], stdout=subprocess.DEVNULL)  # warm the cache
    cp = min(timed(['cp', '-r', src, os.path.join(tmp, 'copy%d' % i)])[0] for i in range(3))
    print('checkpoint: %.2f GiB of BF16 weights, %d tensors, largest %.0f MiB' % (size / 2 ** 30, len(tensors), largest / 2 ** 20))
    print('cp -r: %.2f s' % cp)
    for preset in ('ptpc_fp8', 'int4_wo_128'):
        out = os.path.join(tmp, preset)
        t, rss = timed([quark, 'quantize', src, '-o', out, '--preset', preset, '--threads', '2'])
        print('%-12s %7.2f s  %5.2fx cp   peak RSS %7.0f MiB = %5.1fx the largest tensor'
              % (preset, t, t / cp, rss / 2 ** 20, rss / largest))
        shutil.rmtree(out)
