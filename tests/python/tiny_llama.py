# Tiny Llama-family checkpoints the executor runs, and a byte-level
# tokenizer for them: shared by the executor, algorithm and export tests.
# No GObject-Introspection here, so that tests run against a build without
# a typelib (the sanitizer runs) can make models too.
import json
import math
import os

import numpy as np

from safetensors_writer import write_safetensors

BASE = {'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'hidden_size': 32, 'num_hidden_layers': 2,
        'num_attention_heads': 4, 'num_key_value_heads': 2, 'head_dim': 8, 'intermediate_size': 48,
        'vocab_size': 40, 'max_position_embeddings': 64, 'rms_norm_eps': 1e-5, 'rope_theta': 10000.0,
        'tie_word_embeddings': False}

VARIANTS = {
    'llama': {},
    'llama3-tied': {'tie_word_embeddings': True, 'rope_theta': 500000.0,
                    'rope_scaling': {'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': 1.0,
                                     'high_freq_factor': 4.0, 'original_max_position_embeddings': 16}},
    'qwen2': {'model_type': 'qwen2', 'num_key_value_heads': 4, 'rms_norm_eps': 1e-6},
    'mistral': {'model_type': 'mistral', 'sliding_window': 5},
}


def make_model(directory, variant='llama', dtype='F32', seed=0, scale=1.0, **overrides):
    config = dict(BASE, **VARIANTS[variant], **overrides)
    rng = np.random.default_rng(seed)
    H, F, V = config['hidden_size'], config['intermediate_size'], config['vocab_size']
    q, kv = config['num_attention_heads'] * 8, config['num_key_value_heads'] * 8
    shapes = {'model.embed_tokens.weight': (V, H)}
    for i in range(config['num_hidden_layers']):
        p = 'model.layers.%d.' % i
        shapes.update({p + 'input_layernorm.weight': (H,), p + 'self_attn.q_proj.weight': (q, H),
                       p + 'self_attn.k_proj.weight': (kv, H), p + 'self_attn.v_proj.weight': (kv, H),
                       p + 'self_attn.o_proj.weight': (H, q), p + 'post_attention_layernorm.weight': (H,),
                       p + 'mlp.gate_proj.weight': (F, H), p + 'mlp.up_proj.weight': (F, H),
                       p + 'mlp.down_proj.weight': (H, F)})
        if config['model_type'] == 'qwen2':
            shapes.update({p + 'self_attn.q_proj.bias': (q,), p + 'self_attn.k_proj.bias': (kv,),
                           p + 'self_attn.v_proj.bias': (kv,)})
    shapes['model.norm.weight'] = (H,)
    if not config['tie_word_embeddings']:
        shapes['lm_head.weight'] = (V, H)
    tensors = {}
    for name, shape in shapes.items():
        if name.endswith('norm.weight'):
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            a = scale * rng.standard_normal(shape) / math.sqrt(shape[-1])
        a = a.astype(np.float32)
        if dtype == 'F32':
            tensors[name] = ('F32', a)
        elif dtype == 'F16':
            tensors[name] = ('F16', a.astype(np.float16))
        else:
            tensors[name] = ('BF16', (a.view(np.uint32) >> 16).astype(np.uint16))
    os.makedirs(directory, exist_ok=True)
    write_safetensors(os.path.join(directory, 'model.safetensors'), tensors)
    with open(os.path.join(directory, 'config.json'), 'w') as f:
        json.dump(config, f)
    return directory


def byte_tokenizer(directory):
    """A byte-level tokenizer of 40 ids: BOS 0, EOS 1, and the bytes of
    'a'..'z', ' ', '.', ... as ids 2 up."""
    chars = "abcdefghijklmnopqrstuvwxyz .,\n'ABCDEFG"
    vocab = {'<s>': 0, '</s>': 1}
    for i, c in enumerate(chars):
        vocab['Ċ' if c == '\n' else 'Ġ' if c == ' ' else c] = i + 2
    tokenizer = {'added_tokens': [{'id': 0, 'content': '<s>', 'special': True},
                                  {'id': 1, 'content': '</s>', 'special': True}],
                 'normalizer': None,
                 'pre_tokenizer': {'type': 'ByteLevel', 'add_prefix_space': False, 'use_regex': True},
                 'model': {'type': 'BPE', 'vocab': vocab, 'merges': []}}
    with open(os.path.join(directory, 'tokenizer.json'), 'w', encoding='utf-8') as f:
        json.dump(tokenizer, f, ensure_ascii=False)
    with open(os.path.join(directory, 'tokenizer_config.json'), 'w') as f:
        json.dump({'bos_token': '<s>', 'eos_token': '</s>'}, f)
