#!/usr/bin/python3
# Writes tests/data/gguf/llama-quantize.json: for each llama-quantize file
# type, with and without --pure, and with the importance matrix of
# gguf_fixture.imatrix_entries (NAME:imatrix), the SHA-256 of every tensor's
# bytes that llama.cpp's llama-quantize makes from the float32 GGUF of
# tiny-llama (which `quark quantize --export-format gguf --type F32`
# converts). Needs a build of the llama.cpp
# snapshot in ../shared/oracles (its README says how) and its gguf-py:
#
#   QUARK_TOOL=build/tools/quark QUARK_LLAMA_CPP_BIN=/path/to/build/bin \
#     /usr/bin/python3 tests/data/gguf/make-reference.py
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import hashlib
import json
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
oracle = os.path.join(here, '..', '..', '..', '..', 'shared', 'oracles', 'llama.cpp')
sys.path.insert(0, os.path.join(oracle, 'gguf-py'))
import gguf  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(here, '..', '..', 'python'))
from gguf_fixture import write_kquant_model, imatrix_entries, gguf_imatrix_bytes  # noqa: E402

# llama-quantize's file types, and the model each is checked on (the legacy
# types on tiny-llama, rows of 64; the k-quants on the generated model, rows
# of 256 and twelve layers)
SCHEMES = {'Q8_0': 'tiny', 'Q4_0': 'tiny', 'Q4_1': 'tiny', 'Q5_0': 'tiny', 'Q5_1': 'tiny', 'F16': 'tiny',
           'BF16': 'tiny', 'Q2_K': 'kquant', 'Q3_K_S': 'kquant', 'Q3_K_M': 'kquant', 'Q3_K_L': 'kquant',
           'Q4_K_S': 'kquant', 'Q4_K_M': 'kquant', 'Q5_K_S': 'kquant', 'Q5_K_M': 'kquant', 'Q6_K': 'kquant',
           'IQ4_NL': 'tiny', 'MXFP4_MOE': 'tiny'}
tool, bindir = os.environ['QUARK_TOOL'], os.environ['QUARK_LLAMA_CPP_BIN']
out = {'source': 'llama.cpp 10e97801 (2025-11-18), llama-quantize (NAME), llama-quantize --pure (NAME:pure) and llama-quantize '
                 '--imatrix (NAME:imatrix, the importance matrix of gguf_fixture.imatrix_entries), from the F32 GGUF of '
                 'tiny-llama (legacy types) or of gguf_fixture.write_kquant_model (k-quants)',
       'types': {}}
with tempfile.TemporaryDirectory() as tmp:
    models = {'tiny': os.path.join(here, 'tiny-llama'), 'kquant': os.path.join(tmp, 'kquant')}
    write_kquant_model(models['kquant'])
    f32 = {}
    for m, path in models.items():
        f32[m] = os.path.join(tmp, m + '-f32.gguf')
        subprocess.run([tool, 'quantize', path, '-o', f32[m], '--export-format', 'gguf', '--type', 'F32'],
                       check=True)
    imatrix = {}
    for m in models:
        weights = {x.name: tuple(int(d) for d in reversed(x.shape)) for x in gguf.GGUFReader(f32[m]).tensors
                   if len(x.shape) == 2}
        imatrix[m] = os.path.join(tmp, m + '-imatrix.gguf')
        open(imatrix[m], 'wb').write(gguf_imatrix_bytes(imatrix_entries(weights)))
    for t, m in SCHEMES.items():
        for variant in ('', ':pure', ':imatrix'):
            if variant == ':imatrix' and t in ('F16', 'BF16'):
                continue
            q = os.path.join(tmp, t + '.gguf')
            args = {'': [], ':pure': ['--pure'], ':imatrix': ['--imatrix', imatrix[m]]}[variant]
            subprocess.run([os.path.join(bindir, 'llama-quantize')] + args + [f32[m], q, t],
                           check=True, capture_output=True)
            r = gguf.GGUFReader(q)
            if m == 'tiny':
                out['types'][t + variant] = {
                    x.name: [x.tensor_type.name,
                             hashlib.sha256(np.asarray(x.data).view(np.uint8).tobytes()).hexdigest()]
                    for x in r.tensors}
            else:
                # 111 tensors: their order and types, and one digest of all their bytes
                h = hashlib.sha256()
                for x in r.tensors:
                    h.update(np.asarray(x.data).view(np.uint8).tobytes())
                out['types'][t + variant] = {
                    'order': [[x.name, x.tensor_type.name] for x in r.tensors], 'digest': h.hexdigest()}
json.dump(out, open(os.path.join(here, 'llama-quantize.json'), 'w'), indent=1, sort_keys=True)
