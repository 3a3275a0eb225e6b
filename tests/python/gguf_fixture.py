# A Llama-shaped model for the GGUF k-quant tests, made from integers only
# (a 64-bit LCG gives bfloat16 bit patterns), so that it is the same on every
# machine and numpy version: rows of 256, one super-block of the k-quants.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import shutil

import numpy as np

from safetensors_writer import write_safetensors

H, F, V, NH, NKV = 256, 256, 264, 4, 2
TINY = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data', 'gguf', 'tiny-llama')


def lcg_bf16(n, seed, exponents=(116, 124)):
    """n bfloat16 bit patterns: random sign and mantissa, exponents in a
    range (magnitudes from 2^-11 to 2^-3), a few zeros."""
    out = np.empty(n, np.uint16)
    state = (seed * 6364136223846793005 + 1442695040888963407) % 2 ** 64
    lo, hi = exponents
    for i in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2 ** 64
        r = state >> 33
        sign, mant, e = r & 1, (r >> 1) & 0x7F, lo + (r >> 8) % (hi - lo + 1)
        out[i] = 0 if (r >> 20) % 97 == 0 else (sign << 15) | (e << 7) | mant
    return out


def write_kquant_model(d):
    """Writes the model (and tiny-llama's tokenizer) to directory d."""
    os.makedirs(d, exist_ok=True)
    shapes = {'model.embed_tokens.weight': (V, H), 'model.norm.weight': (H,), 'lm_head.weight': (V, H),
              'model.layers.0.input_layernorm.weight': (H,), 'model.layers.0.post_attention_layernorm.weight': (H,),
              'model.layers.0.self_attn.q_proj.weight': (H, H),
              'model.layers.0.self_attn.k_proj.weight': (H // NH * NKV, H),
              'model.layers.0.self_attn.v_proj.weight': (H // NH * NKV, H),
              'model.layers.0.self_attn.o_proj.weight': (H, H), 'model.layers.0.mlp.gate_proj.weight': (F, H),
              'model.layers.0.mlp.up_proj.weight': (F, H), 'model.layers.0.mlp.down_proj.weight': (H, F)}
    tensors = {}
    for k, (name, shape) in enumerate(sorted(shapes.items())):
        n = int(np.prod(shape))
        bits = lcg_bf16(n, k + 1, (126, 127) if len(shape) == 1 else (116, 124))
        if len(shape) == 1:
            bits &= 0x7FFF                      # norms: positive, about 1
        tensors[name] = ('BF16', bits.reshape(shape))
    write_safetensors(os.path.join(d, 'model.safetensors'), tensors, {'format': 'pt'})
    cfg = json.load(open(os.path.join(TINY, 'config.json')))
    cfg.update({'hidden_size': H, 'intermediate_size': F, 'num_attention_heads': NH, 'num_key_value_heads': NKV})
    json.dump(cfg, open(os.path.join(d, 'config.json'), 'w'))
    for f in ('tokenizer.json', 'tokenizer_config.json'):
        shutil.copy(os.path.join(TINY, f), os.path.join(d, f))
