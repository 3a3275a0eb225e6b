#!/usr/bin/python3
# Writes tests/data/gguf/llama-quantize-pure.json: for each GGUF type, the
# SHA-256 of every tensor's bytes that llama.cpp's llama-quantize --pure
# makes from the float32 GGUF of tiny-llama (which `quark quantize
# --export-format gguf --type F32` converts). Needs a build of the llama.cpp
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
from gguf_fixture import write_kquant_model  # noqa: E402

# libquark's type -> (the model, llama-quantize's name for the type)
TYPES = {'Q8_0': ('tiny', 'Q8_0'), 'Q4_0': ('tiny', 'Q4_0'), 'Q4_1': ('tiny', 'Q4_1'), 'Q5_0': ('tiny', 'Q5_0'),
         'Q5_1': ('tiny', 'Q5_1'), 'F16': ('tiny', 'F16'), 'BF16': ('tiny', 'BF16'),
         'Q2_K': ('kquant', 'Q2_K'), 'Q3_K': ('kquant', 'Q3_K_M'), 'Q4_K': ('kquant', 'Q4_K_M'),
         'Q5_K': ('kquant', 'Q5_K_M'), 'Q6_K': ('kquant', 'Q6_K')}
tool, bindir = os.environ['QUARK_TOOL'], os.environ['QUARK_LLAMA_CPP_BIN']
out = {'source': 'llama.cpp 10e97801 (2025-11-18), llama-quantize --pure, from the F32 GGUF of tiny-llama '
                 '(legacy types) or of gguf_fixture.write_kquant_model (k-quants)',
       'types': {}}
with tempfile.TemporaryDirectory() as tmp:
    models = {'tiny': os.path.join(here, 'tiny-llama'), 'kquant': os.path.join(tmp, 'kquant')}
    write_kquant_model(models['kquant'])
    f32 = {}
    for m, path in models.items():
        f32[m] = os.path.join(tmp, m + '-f32.gguf')
        subprocess.run([tool, 'quantize', path, '-o', f32[m], '--export-format', 'gguf', '--type', 'F32'],
                       check=True)
    for t, (m, name) in TYPES.items():
        q = os.path.join(tmp, t + '.gguf')
        subprocess.run([os.path.join(bindir, 'llama-quantize'), '--pure', f32[m], q, name], check=True,
                       capture_output=True)
        r = gguf.GGUFReader(q)
        out['types'][t] = {x.name: [x.tensor_type.name,
                                    hashlib.sha256(np.asarray(x.data).view(np.uint8).tobytes()).hexdigest()]
                           for x in r.tensors}
json.dump(out, open(os.path.join(here, 'llama-quantize-pure.json'), 'w'), indent=1, sort_keys=True)
