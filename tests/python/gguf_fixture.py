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
