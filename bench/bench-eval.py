#!/usr/bin/env python3
# `quark eval` against Debian's torch running the same Llama forward pass
# (tests/python/llama_torch.py, float32, weights widened from the
# checkpoint's dtype) on the same tokens, windows and threads, in the same
# run: tokens per second of each, their ratio, both perplexities, and the
# peak resident memory of `quark eval` (GNU time: /usr/bin/time) against
# the size of the model's weights.
#
# The model is ../shared/models/docs-llama (27M parameters, BF16) with its
# data/dev.txt unless --model and --text say otherwise; --documents takes
# the first N documents of a text whose documents are separated as
# docs-llama's are. The torch side tokenizes with libquark's tokenizer
# (the ids are identical to the tokenizers library's; the tests check it),
# so both score exactly the same windows.
#
# Usage: /usr/bin/python3 bench/bench-eval.py [BUILDDIR] [--threads 1,2]
#            [--documents N] [--ctx 512] [--model DIR --text FILE]
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEPARATOR = '\n\n<|document|>\n\n'

ap = argparse.ArgumentParser()
ap.add_argument('builddir', nargs='?', default=os.path.join(ROOT, 'build'))
ap.add_argument('--model', default=os.path.join(ROOT, '..', 'shared', 'models', 'docs-llama'))
ap.add_argument('--text', default=None)
ap.add_argument('--documents', type=int, default=12)
ap.add_argument('--ctx', type=int, default=512)
ap.add_argument('--threads', default='1,2')
args = ap.parse_args()

build = os.path.abspath(args.builddir)
if os.environ.get('LD_LIBRARY_PATH') != os.path.join(build, 'libquark'):
    # the dynamic loader reads LD_LIBRARY_PATH at start: run again with it
    os.environ['GI_TYPELIB_PATH'] = os.path.join(build, 'libquark')
    os.environ['LD_LIBRARY_PATH'] = os.path.join(build, 'libquark')
    os.execv(sys.executable, [sys.executable] + sys.argv)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'python'))
if not os.path.isdir(args.model):
    sys.exit('no model at %s (give --model DIR --text FILE)' % args.model)
text_file = args.text or os.path.join(args.model, 'data', 'dev.txt')

import gi  # noqa: E402
import torch  # noqa: E402

gi.require_version('Quark', '1.0')
from gi.repository import Quark  # noqa: E402
from llama_torch import LlamaTorch, load  # noqa: E402

with open(text_file, encoding='utf-8') as f:
    documents = f.read().split(SEPARATOR)[:args.documents]
tmp = tempfile.mkdtemp(prefix='bench-eval-')
text = os.path.join(tmp, 'text.txt')
with open(text, 'w', encoding='utf-8') as f:
    f.write(SEPARATOR.join(documents))

tokenizer = Quark.Tokenizer.new_from_file(args.model)
ids = []
for doc in documents:
    ids += [tokenizer.get_bos_id()] + list(tokenizer.encode(doc, -1, False)) + [tokenizer.get_eos_id()]
weights_bytes = sum(os.path.getsize(os.path.join(args.model, n)) for n in os.listdir(args.model)
                    if n.endswith('.safetensors'))
TORCH_RUN = r"""
import json, sys, time
import torch
sys.path.insert(0, sys.argv[1])
from llama_torch import LlamaTorch, load
torch.set_num_threads(int(sys.argv[4]))
ids = json.load(open(sys.argv[3]))
model = LlamaTorch(*load(sys.argv[2]))
t0 = time.perf_counter()
ppl, n = model.perplexity(ids, int(sys.argv[5]))
print(json.dumps({'seconds': time.perf_counter() - t0, 'perplexity': ppl, 'predictions': n}))
"""
ids_file = os.path.join(tmp, 'ids.json')
with open(ids_file, 'w') as f:
    json.dump(ids, f)


def run_torch(intra, blas):
    """torch in a process of its own: intra-op threads, and OpenBLAS's
    (which torch's matrix products use, and torch.set_num_threads does not
    set)"""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(blas), OMP_NUM_THREADS=str(intra))
    p = subprocess.run([sys.executable, '-c', TORCH_RUN, os.path.join(ROOT, 'tests', 'python'), args.model, ids_file,
                        str(intra), str(args.ctx)], capture_output=True, text=True, check=True, env=env)
    return json.loads(p.stdout)


print('model %s (%.1f MB of weights), %d documents, %d tokens, windows of %d; torch %s' %
      (args.model, weights_bytes / 1e6, len(documents), len(ids), args.ctx, torch.__version__))
print('%-8s %12s %12s %8s %12s %8s %11s %11s %10s' % ('threads', 'quark tok/s', 'torch tok/s', 'ratio',
                                                        'torch best', 'ratio', 'quark ppl', 'torch ppl', 'peak MB'))
for threads in [int(t) for t in args.threads.split(',')]:
    cmd = ['/usr/bin/time', '-f', '%M', os.path.join(build, 'tools', 'quark'), 'eval', args.model, '--text', text,
           '--ctx', str(args.ctx), '--document-separator', SEPARATOR, '--threads', str(threads), '--json']
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    quark_time = time.perf_counter() - t0
    result = json.loads(p.stdout)
    peak_mb = int(p.stderr.strip().splitlines()[-1]) / 1024
    assert result['tokens'] == len(ids)
    same = run_torch(threads, threads)          # every pool at N threads
    best = run_torch(1, threads)                # one intra-op thread, OpenBLAS at N: faster here
    assert same['predictions'] == best['predictions'] == result['predictions']
    print('%-8d %12.0f %12.0f %7.2fx %12.0f %7.2fx %11.4f %11.4f %10.0f' %
          (threads, len(ids) / quark_time, len(ids) / same['seconds'], same['seconds'] / quark_time,
           len(ids) / best['seconds'], best['seconds'] / quark_time, result['perplexity'], same['perplexity'],
           peak_mb))
print('torch tok/s: intra-op and OpenBLAS threads both N; torch best: 1 intra-op thread, OpenBLAS at N.')
print('quark\'s time includes starting the process, loading the model and tokenizing the text; '
      'torch\'s is the forward passes alone. Weights: %.1f MB.' % (weights_bytes / 1e6))
