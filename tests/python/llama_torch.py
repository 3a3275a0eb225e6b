# A plain Llama-family forward pass in torch (float32), written from the
# architecture's definition, as an independent reference for Quark.Executor
# and for the quality measurements: RMSNorm, rotary embeddings on halves of
# each head, grouped-query attention with a causal mask, SwiGLU.
#
# Usage: LlamaTorch(config_dict, {name: float32 tensor}).logits(ids) or
# .perplexity(ids, ctx, stride); hooks=callable(layer, x) sees every linear
# layer's input.
import math

import torch


class LlamaTorch:
    def __init__(self, config, weights, hooks=None):
        self.c = config
        self.w = weights
        self.hooks = hooks
        self.H = config['hidden_size']
        self.nh = config['num_attention_heads']
        self.nkv = config.get('num_key_value_heads') or self.nh
        self.hd = config.get('head_dim') or self.H // self.nh
        self.eps = config.get('rms_norm_eps', 1e-6)
        theta = config.get('rope_theta') or (config.get('rope_parameters') or {}).get('rope_theta', 10000.0)
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        scaling = config.get('rope_scaling') or {}
        if scaling.get('rope_type', scaling.get('type')) == 'llama3':
            # Llama 3.1's rescaling: long wavelengths divided by factor,
            # short ones kept, a linear blend in between
            factor, low, high = scaling['factor'], scaling['low_freq_factor'], scaling['high_freq_factor']
            original = scaling['original_max_position_embeddings']
            scaled = []
            for f in self.inv_freq.tolist():
                wavelen = 2 * math.pi / f
                if wavelen > original / low:
                    f = f / factor
                elif wavelen >= original / high:
                    smooth = (original / wavelen - low) / (high - low)
                    f = (1 - smooth) * f / factor + smooth * f
                scaled.append(f)
            self.inv_freq = torch.tensor(scaled, dtype=torch.float32)
        self.window = config.get('sliding_window') if config.get('model_type') == 'mistral' else None
        self.L = config['num_hidden_layers']
        self.head = weights.get('lm_head.weight', weights['model.embed_tokens.weight'])

    def _norm(self, x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def _linear(self, name, x):
        if self.hooks:
            self.hooks(name, x)
        y = x @ self.w[name + '.weight'].T
        b = self.w.get(name + '.bias')
        return y + b if b is not None else y

    def _rope(self, x, T):
        freqs = torch.outer(torch.arange(T, dtype=torch.float32), self.inv_freq)
        cos, sin = torch.cat([freqs, freqs], -1).cos(), torch.cat([freqs, freqs], -1).sin()
        half = self.hd // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos[:, None, :] + rotated * sin[:, None, :]

    @torch.no_grad()
    def hidden(self, ids):
        T = len(ids)
        x = self.w['model.embed_tokens.weight'][torch.as_tensor(ids, dtype=torch.long)]
        mask = torch.full((T, T), float('-inf')).triu(1)
        if self.window:
            mask = mask + torch.full((T, T), float('-inf')).tril(-self.window)
        for i in range(self.L):
            p = 'model.layers.%d.' % i
            h = self._norm(x, self.w[p + 'input_layernorm.weight'])
            q = self._rope(self._linear(p + 'self_attn.q_proj', h).view(T, self.nh, self.hd), T)
            k = self._rope(self._linear(p + 'self_attn.k_proj', h).view(T, self.nkv, self.hd), T)
            v = self._linear(p + 'self_attn.v_proj', h).view(T, self.nkv, self.hd)
            rep = self.nh // self.nkv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
            s = torch.einsum('qhd,khd->hqk', q, k) / math.sqrt(self.hd) + mask
            a = torch.einsum('hqk,khd->qhd', s.softmax(-1), v).reshape(T, self.nh * self.hd)
            x = x + self._linear(p + 'self_attn.o_proj', a)
            h = self._norm(x, self.w[p + 'post_attention_layernorm.weight'])
            g = self._linear(p + 'mlp.gate_proj', h)
            u = self._linear(p + 'mlp.up_proj', h)
            x = x + self._linear(p + 'mlp.down_proj', torch.nn.functional.silu(g) * u)
        return self._norm(x, self.w['model.norm.weight'])

    def logits(self, ids):
        h = self.hidden(ids)
        if self.hooks:
            self.hooks('lm_head', h)
        return h @ self.head.T

    @torch.no_grad()
    def perplexity(self, ids, ctx, stride=None):
        """Windows as Quark.Executor.evaluate makes them."""
        stride = stride or ctx
        nll, n, scored_to, start = 0.0, 0, 0, 0
        while True:
            window = ids[start:start + ctx]
            first = scored_to - start if scored_to > start else 1
            if len(window) > first:
                logp = torch.log_softmax(self.logits(window).double(), -1)
                targets = torch.as_tensor(window[first:], dtype=torch.long)
                nll -= logp[first - 1:len(window) - 1].gather(1, targets[:, None]).sum().item()
                n += len(window) - first
            scored_to = start + len(window)
            if scored_to >= len(ids):
                break
            start += stride
        return math.exp(nll / n), n


def load(model_dir):
    """config.json and the float32 weights of a safetensors model directory."""
    import json
    import os

    import numpy as np
    with open(os.path.join(model_dir, 'config.json')) as f:
        config = json.load(f)
    weights = {}
    for name in sorted(os.listdir(model_dir)):
        if name.endswith('.safetensors'):
            weights.update(read_safetensors(os.path.join(model_dir, name), np))
    return config, weights


def read_safetensors(path, np):
    import json
    import struct
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        a, b = info['data_offsets']
        raw = data[a:b]
        if info['dtype'] == 'BF16':
            t = torch.frombuffer(bytearray(raw), dtype=torch.bfloat16).float()
        elif info['dtype'] == 'F16':
            t = torch.frombuffer(bytearray(raw), dtype=torch.float16).float()
        elif info['dtype'] == 'F32':
            t = torch.frombuffer(bytearray(raw), dtype=torch.float32).clone()
        else:
            raise ValueError('%s: dtype %s' % (name, info['dtype']))
        out[name] = t.reshape(info['shape'])
    return out
