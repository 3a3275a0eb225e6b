#!/usr/bin/python3
# Makes tests/data/gguf/tiny-llama/: a one-layer Llama (hidden 64, 4 query
# heads and 2 key/value heads, SwiGLU 128, vocabulary 264) with bfloat16
# weights and a byte-level BPE tokenizer.json of its own (the 256 GPT-2
# byte symbols, 5 merges, 3 special tokens). Run once; the output is
# committed. SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'python'))
from safetensors_writer import write_safetensors  # noqa: E402
from gguf_fixture import llama_shapes  # noqa: E402

H, F, V, L, NH, NKV = 64, 128, 264, 1, 4, 2
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tiny-llama')
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(2026)


def bf16(a):
    return (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


shapes = llama_shapes(H, F, V, L, NH, NKV)
tensors = {}
for name, shape in shapes.items():
    if len(shape) == 1:
        a = 1 + 0.1 * rng.standard_normal(shape)
    else:
        a = rng.standard_normal(shape) * 0.05 * rng.uniform(0.25, 4, (shape[0], 1))
        a[0, :5] = [0.0, -0.0, 1e-9, -3.0, 3.0]      # zeros, a tiny value and ties of magnitude
    tensors[name] = ('BF16', bf16(a))
write_safetensors(os.path.join(out, 'model.safetensors'), tensors, {'format': 'pt'})
json.dump({'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'hidden_size': H, 'intermediate_size': F,
           'num_attention_heads': NH, 'num_key_value_heads': NKV, 'num_hidden_layers': L, 'vocab_size': V,
           'max_position_embeddings': 256, 'rms_norm_eps': 1e-5, 'rope_theta': 10000.0, 'torch_dtype': 'bfloat16',
           'tie_word_embeddings': False, 'bos_token_id': 256, 'eos_token_id': 257},
          open(os.path.join(out, 'config.json'), 'w'), indent=1)

# GPT-2's byte-to-symbol map
bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
cs = bs[:]
n = 0
for b in range(256):
    if b not in bs:
        bs.append(b)
        cs.append(256 + n)
        n += 1
symbols = [chr(c) for _, c in sorted(zip(bs, cs))]
vocab = {s: i for i, s in enumerate(symbols)}
specials = ['<s>', '</s>', '<unk>']
merges = [['Ġ', 't'], ['h', 'e'], ['Ġt', 'he'], ['i', 'n'], ['Ġ', 'a']]
next_id = 256 + len(specials)
for a, b in merges:
    vocab[a + b] = next_id
    next_id += 1
for k, s in enumerate(specials):
    vocab[s] = 256 + k
assert next_id == V
tokenizer = {
    'version': '1.0', 'truncation': None, 'padding': None,
    'added_tokens': [{'id': 256 + k, 'content': s, 'single_word': False, 'lstrip': False, 'rstrip': False,
                      'normalized': False, 'special': True} for k, s in enumerate(specials)],
    'normalizer': None,
    'pre_tokenizer': {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True},
    'post_processor': {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': False, 'use_regex': True},
    'decoder': {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': True, 'use_regex': True},
    'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': None,
              'end_of_word_suffix': None, 'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': False,
              'vocab': vocab, 'merges': merges},
}
json.dump(tokenizer, open(os.path.join(out, 'tokenizer.json'), 'w', encoding='utf-8'), ensure_ascii=False)
json.dump({'bos_token': '<s>', 'eos_token': '</s>', 'unk_token': '<unk>', 'model_max_length': 10 ** 30,
           'tokenizer_class': 'PreTrainedTokenizerFast'}, open(os.path.join(out, 'tokenizer_config.json'), 'w'))
