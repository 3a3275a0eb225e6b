# A Llama-shaped model for the GGUF k-quant tests, made from integers only
# (splitmix64 gives bfloat16 bit patterns), so that it is the same on every
# machine and numpy version: rows of 256, one super-block of the k-quants,
# and twelve layers, so that llama-quantize's per-layer choices differ and
# its numeric order of the blocks (blk.2 before blk.10) matters.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import shutil
import struct

import numpy as np

from safetensors_writer import write_safetensors

H, F, V, NH, NKV, L = 256, 256, 264, 4, 2, 12
TINY = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data', 'gguf', 'tiny-llama')


def lcg_bf16(n, seed, exponents=(116, 124)):
    """n bfloat16 bit patterns from splitmix64 of (seed, index): random sign
    and mantissa, exponents in a range (magnitudes 2^-11 to 2^-3), a few
    zeros."""
    with np.errstate(over='ignore'):
        x = np.arange(n, dtype=np.uint64) + np.uint64(seed) * np.uint64(1 << 32)
        x = x * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    r = (x >> np.uint64(20)).astype(np.int64)
    lo, hi = exponents
    sign, mant, e = r & 1, (r >> 1) & 0x7F, lo + (r >> 8) % (hi - lo + 1)
    bits = ((sign << 15) | (e << 7) | mant).astype(np.uint16)
    bits[(r >> 24) % 97 == 0] = 0
    return bits


def llama_shapes(H, F, V, L, NH, NKV):
    """Tensor name -> shape of a Llama with grouped-query attention."""
    shapes = {'model.embed_tokens.weight': (V, H), 'model.norm.weight': (H,), 'lm_head.weight': (V, H)}
    for i in range(L):
        p = 'model.layers.%d.' % i
        shapes.update({p + 'input_layernorm.weight': (H,), p + 'post_attention_layernorm.weight': (H,),
                       p + 'self_attn.q_proj.weight': (H, H), p + 'self_attn.k_proj.weight': (H // NH * NKV, H),
                       p + 'self_attn.v_proj.weight': (H // NH * NKV, H), p + 'self_attn.o_proj.weight': (H, H),
                       p + 'mlp.gate_proj.weight': (F, H), p + 'mlp.up_proj.weight': (F, H),
                       p + 'mlp.down_proj.weight': (H, F)})
    return shapes


def write_kquant_model(d):
    """Writes the model (and tiny-llama's tokenizer) to directory d."""
    os.makedirs(d, exist_ok=True)
    shapes = llama_shapes(H, F, V, L, NH, NKV)
    tensors = {}
    for k, (name, shape) in enumerate(sorted(shapes.items())):
        n = int(np.prod(shape))
        bits = lcg_bf16(n, k + 1, (126, 127) if len(shape) == 1 else (116, 124))
        if len(shape) == 1:
            bits &= 0x7FFF                      # norms: positive, about 1
        tensors[name] = ('BF16', bits.reshape(shape))
    write_safetensors(os.path.join(d, 'model.safetensors'), tensors, {'format': 'pt'})
    cfg = json.load(open(os.path.join(TINY, 'config.json')))
    cfg.update({'hidden_size': H, 'intermediate_size': F, 'num_attention_heads': NH, 'num_key_value_heads': NKV,
                'num_hidden_layers': L})
    json.dump(cfg, open(os.path.join(d, 'config.json'), 'w'))
    for f in ('tokenizer.json', 'tokenizer_config.json'):
        shutil.copy(os.path.join(TINY, f), os.path.join(d, f))


def imatrix_entries(weights):
    """An importance matrix for a GGUF's 2-D weights ({GGUF name: (rows,
    columns)}): every block weight and output.weight (token_embd has none,
    as llama-imatrix leaves it out), per column a float32 from splitmix64 of
    the name and column, 2^-6 to 2^6 times 1 + a 7-bit fraction, so the
    same on every machine. Returns {name: float32 values}."""
    out = {}
    for name, shape in sorted(weights.items()):
        if name == 'token_embd.weight':
            continue
        seed = sum(ord(c) * 131 ** i for i, c in enumerate(name)) % (1 << 31)
        bits = lcg_bf16(shape[-1], seed, (121, 133)) & 0x7FFF       # positive bfloat16 patterns
        values = (bits.astype(np.uint32) << 16).view(np.float32)
        values[values == 0] = 1.0
        out[name] = values
    return out


def gguf_imatrix_bytes(entries, count=512, datasets=('calibration.txt',), chunk_size=512):
    """llama-imatrix's GGUF file (tools/imatrix/imatrix.cpp save_imatrix) for
    {name: mean x² per column}: NAME.in_sum2 = values · count (exact: count
    is a power of two) and NAME.counts, sorted by name, written here by the
    test's own GGUF writer (docs/gguf.md)."""
    def s(text):
        b = text.encode()
        return struct.pack('<Q', len(b)) + b
    kv = [s('general.type') + struct.pack('<I', 8) + s('imatrix'),
          s('imatrix.datasets') + struct.pack('<IIQ', 9, 8, len(datasets)) + b''.join(s(d) for d in datasets),
          s('imatrix.chunk_count') + struct.pack('<II', 4, 4),
          s('imatrix.chunk_size') + struct.pack('<II', 4, chunk_size)]
    tensors = []
    for name in sorted(entries):
        tensors.append((name + '.in_sum2', entries[name].astype(np.float32) * np.float32(count)))
        tensors.append((name + '.counts', np.array([count], np.float32)))
    head = b'GGUF' + struct.pack('<IQQ', 3, len(tensors), len(kv)) + b''.join(kv)
    data, offset = b'', 0
    for name, values in tensors:
        head += s(name) + struct.pack('<IQQIQ', 2, values.size, 1, 0, offset)
        blob = values.astype('<f4').tobytes()
        blob += b'\0' * (-len(blob) % 32)
        data += blob
        offset += len(blob)
    return head + b'\0' * (-len(head) % 32) + data


def legacy_imatrix_bytes(entries, ncall=4, dataset='calibration.txt'):
    """The older format (llama-imatrix --output-format dat): per entry the
    mean x² times the call count, which llama-quantize divides again."""
    out = struct.pack('<i', len(entries))
    for name in sorted(entries):
        b = name.encode()
        out += struct.pack('<i', len(b)) + b + struct.pack('<ii', ncall, entries[name].size)
        out += (entries[name].astype(np.float32) * np.float32(ncall)).astype('<f4').tobytes()
    return out + struct.pack('<ii', ncall, len(dataset)) + dataset.encode()
