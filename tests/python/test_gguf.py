# GGUF (`quark quantize --export-format gguf --type TYPE`): the blocks equal
# llama.cpp's (llama-quantize --pure, as committed hashes from
# tests/data/gguf/make-reference.py, and live when a build of the llama.cpp
# oracle is at $QUARK_LLAMA_CPP_BIN), the file is read here by a GGUF
# parser of the test's own, decoded with numpy, the conversion follows
# convert_hf_to_gguf.py, and llama.cpp itself loads and runs the result.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess

import pytest

np = pytest.importorskip('numpy')

from test_quantize_cli import read_safetensors, from_bf16  # noqa: E402
from gguf_fixture import write_kquant_model  # noqa: E402

QUARK = os.environ['QUARK_TOOL']
HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, '..', 'data', 'gguf', 'tiny-llama')
REFERENCE = os.path.join(HERE, '..', 'data', 'gguf', 'llama-quantize.json')
ORACLE = os.path.join(HERE, '..', '..', '..', 'shared', 'oracles', 'llama.cpp')
DOCS_LLAMA = os.path.join(HERE, '..', '..', '..', 'shared', 'models', 'docs-llama')
LLAMA_BIN = os.environ.get('QUARK_LLAMA_CPP_BIN', '')

# gguf-py/gguf/constants.py: GGMLQuantizationType and the block sizes
GGML = {0: ('F32', 1, 4), 1: ('F16', 1, 2), 2: ('Q4_0', 32, 18), 3: ('Q4_1', 32, 20), 6: ('Q5_0', 32, 22),
        7: ('Q5_1', 32, 24), 8: ('Q8_0', 32, 34), 10: ('Q2_K', 256, 84), 11: ('Q3_K', 256, 110),
        12: ('Q4_K', 256, 144), 13: ('Q5_K', 256, 176), 14: ('Q6_K', 256, 210), 20: ('IQ4_NL', 32, 18),
        30: ('BF16', 1, 2), 39: ('MXFP4', 32, 17)}
KQUANTS = ['Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K']
# llama-quantize's file types (llama.h's llama_ftype: general.file_type)
FILE_TYPE = {'F32': 0, 'F16': 1, 'Q4_0': 2, 'Q4_1': 3, 'Q8_0': 7, 'Q5_0': 8, 'Q5_1': 9, 'Q2_K': 10, 'Q3_K_S': 11,
             'Q3_K_M': 12, 'Q3_K_L': 13, 'Q4_K_S': 14, 'Q4_K_M': 15, 'Q5_K_S': 16, 'Q5_K_M': 17, 'Q6_K': 18,
             'BF16': 32, 'IQ4_NL': 25, 'MXFP4_MOE': 38}
SCHEMES = list(FILE_TYPE)
LEGACY = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'IQ4_NL', 'MXFP4_MOE']
# ggml-common.h: kvalues_iq4nl, kvalues_mxfp4 (E2M1 doubled)
KVALUES_IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float32)
KVALUES_MXFP4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], np.float32)


def quantize(src, out, *args):
    return subprocess.run([QUARK, 'quantize', str(src), '-o', str(out), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def read_gguf(path):
    """A GGUF v3 reader of the test's own (docs/gguf.md of ggml): returns
    the key-values and {name: (type name, shape as PyTorch orders it, bytes)}."""
    raw = open(path, 'rb').read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from('<' + fmt, raw, pos)
        pos += struct.calcsize('<' + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take('Q')
        s = raw[pos:pos + n].decode('utf-8')
        pos += n
        return s

    scalar = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take('I'), take('Q')
            return [value(et) for _ in range(n)]
        return take(scalar[t])

    assert raw[:4] == b'GGUF'
    pos = 4
    assert take('I') == 3
    n_tensors, n_kv = take('Q'), take('Q')
    kv = {}
    for _ in range(n_kv):
        key = string()
        kv[key] = value(take('I'))
    infos = []
    for _ in range(n_tensors):
        name = string()
        nd = take('I')
        ne = [take('Q') for _ in range(nd)]
        infos.append((name, ne, take('I'), take('Q')))
    align = kv.get('general.alignment', 32)
    data = (pos + align - 1) // align * align
    tensors = {}
    for name, ne, t, off in infos:
        tname, block, size = GGML[t]
        n = int(np.prod(ne))
        assert off % align == 0
        tensors[name] = (tname, tuple(reversed(ne)), raw[data + off:data + off + n // block * size])
    return kv, tensors


def half(b, at):
    return b[:, at:at + 2].copy().view(np.float16).astype(np.float32)


def decode_k(tname, raw, shape):
    """The k-quants to floats (ggml's dequantize_row_*_K, in numpy), per
    super-block of 256."""
    size = GGML[[k for k, v in GGML.items() if v[0] == tname][0]][2]
    b = np.frombuffer(raw, np.uint8).reshape(-1, size)
    e = np.arange(256)
    if tname == 'Q6_K':
        ql, qh, sc, d = b[:, :128].astype(np.int32), b[:, 128:192].astype(np.int32), \
            b[:, 192:208].view(np.int8).astype(np.float32), half(b, 208)
        n, r = e // 128, e % 128
        k, l = r // 32, r % 32
        low = np.where(k < 2, ql[:, n * 64 + l + 32 * (k % 2)] & 15, ql[:, n * 64 + l + 32 * (k % 2)] >> 4)
        q = (low | (((qh[:, n * 32 + l] >> (2 * k)) & 3) << 4)) - 32
        y = (d * sc[:, n * 8 + l // 16 + 2 * k]) * q
    elif tname in ('Q4_K', 'Q5_K'):
        d, dmin, s12 = half(b, 0), half(b, 2), b[:, 4:16].astype(np.int32)
        j = np.arange(8)
        sc = np.where(j < 4, s12[:, j % 4] & 63, (s12[:, (j % 4) + 8] & 15) | ((s12[:, j % 4] >> 6) << 4))
        mn = np.where(j < 4, s12[:, (j % 4) + 4] & 63, (s12[:, (j % 4) + 8] >> 4) | ((s12[:, (j % 4) + 4] >> 6) << 4))
        chunk, r = e // 64, e % 64
        ql = b[:, 48:176] if tname == 'Q5_K' else b[:, 16:144]
        q = np.where(r < 32, ql[:, chunk * 32 + r % 32] & 15, ql[:, chunk * 32 + r % 32] >> 4).astype(np.int32)
        if tname == 'Q5_K':
            qh = b[:, 16:48].astype(np.int32)
            q = q + 16 * ((qh[:, r % 32] >> (2 * chunk + (r >= 32))) & 1)
        sub = 2 * chunk + (r >= 32)
        y = (d * sc[:, sub]) * q - dmin * mn[:, sub]
    elif tname == 'Q2_K':
        sc, qs, d, dmin = b[:, :16].astype(np.int32), b[:, 16:80].astype(np.int32), half(b, 80), half(b, 82)
        n, r = e // 128, e % 128
        q = (qs[:, n * 32 + r % 32] >> (2 * (r // 32))) & 3
        y = (d * (sc[:, e // 16] & 15)) * q - dmin * (sc[:, e // 16] >> 4)
    else:   # Q3_K
        hm, qs, s12, d = b[:, :32].astype(np.int32), b[:, 32:96].astype(np.int32), b[:, 96:108].astype(np.int32), \
            half(b, 108)
        j = np.arange(16)
        s = np.where(j < 8, s12[:, j % 8] & 15, s12[:, j % 8] >> 4) | (((s12[:, 8 + j % 4] >> (2 * (j // 4))) & 3) << 4)
        n, r = e // 128, e % 128
        q = ((qs[:, n * 32 + r % 32] >> (2 * (r // 32))) & 3) - np.where(hm[:, e % 32] & (1 << (e // 32)), 0, 4)
        y = (d * (s[:, e // 16] - 32)) * q
    return y.astype(np.float32).reshape(shape)


def decode(tname, raw, shape):
    """Blocks to floats, as ggml's dequantize_row_* (numpy)."""
    if tname in KQUANTS:
        return decode_k(tname, raw, shape)
    if tname == 'F32':
        return np.frombuffer(raw, np.float32).reshape(shape)
    if tname == 'F16':
        return np.frombuffer(raw, np.float16).astype(np.float32).reshape(shape)
    if tname == 'BF16':
        return from_bf16(np.frombuffer(raw, np.uint16)).reshape(shape)
    size = {'Q4_0': 18, 'Q4_1': 20, 'Q5_0': 22, 'Q5_1': 24, 'Q8_0': 34, 'IQ4_NL': 18, 'MXFP4': 17}[tname]
    b = np.frombuffer(raw, np.uint8).reshape(-1, size)
    if tname in ('IQ4_NL', 'MXFP4'):
        qs = b[:, 2:] if tname == 'IQ4_NL' else b[:, 1:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1)
        if tname == 'IQ4_NL':
            return (half(b, 0) * KVALUES_IQ4NL[q]).reshape(shape)
        # E8M0 halved: 2^(e - 128)
        scale = np.ldexp(np.float32(1), b[:, :1].astype(np.int32) - 128).astype(np.float32)
        return (KVALUES_MXFP4[q] * scale).reshape(shape)
    d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
    if tname == 'Q8_0':
        q = b[:, 2:].view(np.int8).astype(np.float32)
        return (q * d).reshape(shape)
    one = tname in ('Q4_1', 'Q5_1')
    m = b[:, 2:4].copy().view(np.float16).astype(np.float32) if one else 0
    start = 4 if one else 2
    if tname.startswith('Q5'):
        qh = b[:, start:start + 4].copy().view('<u4')[:, 0]
        qs = b[:, start + 4:]
        hi = ((qh[:, None] >> np.arange(32, dtype=np.uint32)) & 1).astype(np.int32) << 4
    else:
        qs = b[:, start:]
        hi = 0
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32) + hi
    if one:
        return (q.astype(np.float32) * d + m).reshape(shape)
    return ((q - (16 if tname == 'Q5_0' else 8)).astype(np.float32) * d).reshape(shape)


def permute(w, heads):
    """convert_hf_to_gguf.py's LlamaModel.permute."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.fixture(scope='module')
def originals():
    return {k: from_bf16(v[1]) if v[0] == 'BF16' else v[1]
            for k, v in read_safetensors(os.path.join(TINY, 'model.safetensors')).items()}


@pytest.fixture(scope='module')
def kquant_model(tmp_path_factory):
    d = tmp_path_factory.mktemp('kquant') / 'model'
    write_kquant_model(str(d))
    return str(d), {k: from_bf16(v[1]) if v[0] == 'BF16' else v[1]
                    for k, v in read_safetensors(os.path.join(d, 'model.safetensors')).items()}


@pytest.mark.parametrize('pure', [False, True])
@pytest.mark.parametrize('scheme', SCHEMES)
def test_blocks_equal_llama_quantize(tmp_path, originals, kquant_model, scheme, pure):
    """Every tensor's type and bytes as llama-quantize's (with its per-tensor
    choices, and with --pure) on the same float32 GGUF."""
    src = TINY
    if scheme not in LEGACY:
        src, originals = kquant_model
    out = tmp_path / 'm.gguf'
    r = quantize(src, out, '--export-format', 'gguf', '--type', scheme, *(['--pure'] if pure else []))
    assert r.returncode == 0, r.stderr
    kv, tensors = read_gguf(out)
    ref = json.load(open(REFERENCE))['types'].get(scheme + (':pure' if pure else ''))
    assert ref is not None or scheme == 'F32'
    gtype = tensors['blk.0.ffn_gate.weight'][0]
    if ref is not None and 'digest' in ref:
        # the generated model: llama-quantize's tensor order and types, and the bytes
        assert [[n, t[0]] for n, t in tensors.items()] == ref['order']
        assert hashlib.sha256(b''.join(t[2] for t in tensors.values())).hexdigest() == ref['digest']
    elif ref is not None:
        assert set(ref) == set(tensors)
        for name, (tname, digest) in ref.items():
            assert tensors[name][0] == tname, name
            assert hashlib.sha256(tensors[name][2]).hexdigest() == digest, name
    # every block decodes, here, to within the type's error of the original
    cfg = json.load(open(os.path.join(src, 'config.json')))
    nh, nkv = cfg['num_attention_heads'], cfg['num_key_value_heads']
    for hf, gg, heads in [('model.layers.0.self_attn.q_proj.weight', 'blk.0.attn_q.weight', nh),
                          ('model.layers.0.self_attn.k_proj.weight', 'blk.0.attn_k.weight', nkv),
                          ('model.layers.0.mlp.down_proj.weight', 'blk.0.ffn_down.weight', 0),
                          ('lm_head.weight', 'output.weight', 0), ('model.embed_tokens.weight', 'token_embd.weight', 0)]:
        x = permute(originals[hf], heads) if heads else originals[hf]
        tname, shape, raw = tensors[gg]
        assert shape == x.shape
        y = decode(tname, raw, shape)
        tol = {'F32': 0, 'F16': 1e-3, 'BF16': 0, 'Q8_0': 0.02, 'Q4_0': 0.2, 'Q4_1': 0.2, 'Q5_0': 0.1,
               'Q5_1': 0.1, 'Q2_K': 0.6, 'Q3_K': 0.35, 'Q4_K': 0.2, 'Q5_K': 0.1, 'Q6_K': 0.05, 'IQ4_NL': 0.2,
               'MXFP4': 0.3}[tname]
        err = np.sqrt(np.mean((x - y) ** 2)) / np.sqrt(np.mean(x ** 2))
        assert err <= tol, (gg, err)
    # norms stay F32 (convert_hf_to_gguf.py: 1-D tensors and *_norm.weight)
    assert tensors['blk.0.attn_norm.weight'][0] == 'F32' and tensors['output_norm.weight'][0] == 'F32'
    assert kv['general.file_type'] == FILE_TYPE[scheme]
    # llama-quantize's choices: output Q6_K where rows are whole super-blocks, Q8_0 else (Q8_0 stays)
    if not pure and scheme not in ('F32', 'F16', 'BF16', 'Q8_0', 'MXFP4_MOE'):
        assert tensors['output.weight'][0] == ('Q6_K' if src != TINY else 'Q8_0')
    if scheme == 'MXFP4_MOE':      # MXFP4 for experts only: Q8_0 in a dense model, MXFP4 with --pure
        assert tensors['blk.0.attn_q.weight'][0] == ('MXFP4' if pure else 'Q8_0')


def test_metadata_follows_convert_hf_to_gguf(tmp_path):
    """The keys llama.cpp's loader reads for the llama architecture
    (convert_hf_to_gguf.py: TextModel and LlamaModel.set_gguf_parameters,
    _set_vocab_gpt2; gguf-py/gguf/constants.py: Keys, TokenType)."""
    out = tmp_path / 'm.gguf'
    assert quantize(TINY, out, '--export-format', 'gguf', '--type', 'Q8_0').returncode == 0
    kv, tensors = read_gguf(out)
    cfg = json.load(open(os.path.join(TINY, 'config.json')))
    expected = {
        'general.architecture': 'llama', 'general.quantization_version': 2,
        'llama.block_count': cfg['num_hidden_layers'], 'llama.context_length': cfg['max_position_embeddings'],
        'llama.embedding_length': cfg['hidden_size'], 'llama.feed_forward_length': cfg['intermediate_size'],
        'llama.attention.head_count': cfg['num_attention_heads'],
        'llama.attention.head_count_kv': cfg['num_key_value_heads'], 'llama.vocab_size': cfg['vocab_size'],
        'llama.rope.dimension_count': cfg['hidden_size'] // cfg['num_attention_heads'],
        'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.pre': 'gpt-2',
        'tokenizer.ggml.bos_token_id': 256, 'tokenizer.ggml.eos_token_id': 257,
        'tokenizer.ggml.unknown_token_id': 258,
    }
    for k, v in expected.items():
        assert kv[k] == v, k
    assert kv['llama.rope.freq_base'] == np.float32(cfg['rope_theta'])
    assert kv['llama.attention.layer_norm_rms_epsilon'] == np.float32(cfg['rms_norm_eps'])
    tok = json.load(open(os.path.join(TINY, 'tokenizer.json'), encoding='utf-8'))
    by_id = {i: t for t, i in tok['model']['vocab'].items()}
    assert kv['tokenizer.ggml.tokens'] == [by_id[i] for i in range(cfg['vocab_size'])]
    # NORMAL 1, CONTROL 3 (special added tokens)
    assert kv['tokenizer.ggml.token_type'] == [3 if 256 <= i < 259 else 1 for i in range(cfg['vocab_size'])]
    assert kv['tokenizer.ggml.merges'] == [' '.join(m) for m in tok['model']['merges']]
    assert set(tensors) == {'token_embd.weight', 'output_norm.weight', 'output.weight', 'blk.0.attn_norm.weight',
                            'blk.0.ffn_norm.weight', 'blk.0.attn_q.weight', 'blk.0.attn_k.weight',
                            'blk.0.attn_v.weight', 'blk.0.attn_output.weight', 'blk.0.ffn_gate.weight',
                            'blk.0.ffn_up.weight', 'blk.0.ffn_down.weight'}


def tiny_with(tmp_path, **config):
    """The tiny model with config.json members replaced."""
    d = tmp_path / 'model'
    shutil.copytree(TINY, d)
    cfg = json.load(open(d / 'config.json'))
    cfg.update(config)
    (d / 'config.json').write_text(json.dumps(cfg))
    return str(d)


def test_rope_scaling(tmp_path):
    """RoPE scaling as convert_hf_to_gguf.py writes it: llama3 as a
    rope_freqs tensor of per-pair factors (LlamaModel.generate_extra_tensors,
    computed here with PyTorch as that code does), linear as two keys
    (LlamaModel.set_gguf_parameters); other kinds refused, nothing written."""
    torch = pytest.importorskip('torch')
    import math
    rs = {'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': 1.0, 'high_freq_factor': 4.0}
    src = tiny_with(tmp_path, rope_scaling=rs, rope_theta=500000.0, original_max_position_embeddings=64)
    out = tmp_path / 'l3.gguf'
    r = quantize(src, out, '--export-format', 'gguf', '--type', 'Q8_0')
    assert r.returncode == 0, r.stderr
    kv, tensors = read_gguf(out)
    dim = 64 // 4
    freqs = 1.0 / (500000.0 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    want = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < 64 / 4.0:
            want.append(1)
        elif wavelen > 64 / 1.0:
            want.append(8.0)
        else:
            smooth = (64 / wavelen - 1.0) / (4.0 - 1.0)
            want.append(1 / ((1 - smooth) / 8.0 + smooth))
    want = torch.tensor(want, dtype=torch.float32).numpy()
    kind, shape, data = tensors['rope_freqs.weight']
    assert kind == 'F32' and list(shape) == [dim // 2]
    assert np.frombuffer(data, dtype=np.float32).tobytes() == want.tobytes()
    assert len(set(want.tolist())) > 2          # the three regimes all occur
    assert 'llama.rope.scaling.type' not in kv

    out = tmp_path / 'lin.gguf'
    src = tiny_with(tmp_path / 'b', rope_scaling={'type': 'linear', 'factor': 2.0})
    assert quantize(src, out, '--export-format', 'gguf', '--type', 'Q8_0').returncode == 0
    kv, tensors = read_gguf(out)
    assert kv['llama.rope.scaling.type'] == 'linear' and kv['llama.rope.scaling.factor'] == 2.0
    assert 'rope_freqs.weight' not in tensors

    out = tmp_path / 'yarn.gguf'
    src = tiny_with(tmp_path / 'c', rope_scaling={'rope_type': 'yarn', 'factor': 4.0,
                                                  'original_max_position_embeddings': 64})
    r = quantize(src, out, '--export-format', 'gguf', '--type', 'Q8_0')
    assert r.returncode != 0 and 'yarn' in r.stderr and not out.exists()


def sentencepiece_model(pieces):
    """A SentencePiece ModelProto with the given (piece, score, type)
    pieces, written with the protobuf wire format by hand: field 1 of the
    model, each a message of piece = 1 (string), score = 2 (float),
    type = 3 (varint); a trainer_spec (field 2) the reader must skip."""
    def varint(v):
        out = b''
        while True:
            b, v = v & 0x7f, v >> 7
            out += bytes([b | (0x80 if v else 0)])
            if not v:
                return out

    def field(num, wt, payload):
        return varint(num << 3 | wt) + payload

    def length(b):
        return varint(len(b)) + b
    out = field(2, 2, length(field(3, 0, varint(1000))))
    for piece, score, kind in pieces:
        msg = field(1, 2, length(piece.encode('utf-8'))) + field(2, 5, struct.pack('<f', score))
        if kind != 1:
            msg += field(3, 0, varint(kind))
        out += field(1, 2, length(msg))
    return out


def test_sentencepiece_tokenizer_model(tmp_path):
    """tokenizer.model comes first for llama (LlamaModel.set_vocab), as
    _create_vocab_sentencepiece reads it: the pieces' real scores and
    types (user-defined pieces count as normal), [PADi] slots up to
    vocab_size, added_tokens.json user-defined, tokenizer_config.json's
    added_tokens_decoder control or user-defined, score -1000."""
    src = tiny_with(tmp_path)
    pieces = [('<unk>', 0.0, 2), ('<s>', 0.0, 3), ('</s>', 0.0, 3)]
    pieces += [('<0x%02X>' % b, 0.0, 6) for b in range(256)]
    pieces += [('\u2581a', -1.5, 1), ('bc', -2.25, 1), ('<user>', 0.0, 4)]
    with open(os.path.join(src, 'tokenizer.model'), 'wb') as f:
        f.write(sentencepiece_model(pieces))                       # 262 pieces for 264 slots
    with open(os.path.join(src, 'added_tokens.json'), 'w') as f:
        json.dump({'<extra>': 262, '<beyond>': 999}, f)
    tc = json.load(open(os.path.join(src, 'tokenizer_config.json')))
    tc['added_tokens_decoder'] = {'263': {'content': '<|im_end|>', 'special': False},
                                  '261': {'content': '\u2581x', 'special': False}}
    with open(os.path.join(src, 'tokenizer_config.json'), 'w') as f:
        json.dump(tc, f)
    out = tmp_path / 'sp.gguf'
    r = quantize(src, out, '--export-format', 'gguf', '--type', 'Q8_0')
    assert r.returncode == 0, r.stderr
    kv, _ = read_gguf(out)
    assert kv['tokenizer.ggml.model'] == 'llama' and kv['tokenizer.ggml.pre'] == 'default'
    tokens, scores, types = kv['tokenizer.ggml.tokens'], kv['tokenizer.ggml.scores'], kv['tokenizer.ggml.token_type']
    assert len(tokens) == len(scores) == len(types) == 264
    assert tokens[:3] == ['<unk>', '<s>', '</s>'] and types[:3] == [2, 3, 3]
    assert tokens[3] == '<0x00>' and types[3:259] == [6] * 256
    assert tokens[259:261] == ['\u2581a', 'bc'] and scores[259:261] == [-1.5, -2.25] and types[259:261] == [1, 1]
    assert tokens[261] == ' x' and types[261] == 4 and scores[261] == -1000.0      # decoder, not special
    assert tokens[262] == '<extra>' and types[262] == 4 and scores[262] == -1000.0
    assert tokens[263] == '<|im_end|>' and types[263] == 3                          # looks special
    # a damaged model is an error naming the file, and nothing is written
    with open(os.path.join(src, 'tokenizer.model'), 'wb') as f:
        f.write(b'\x0a\xff\xff')
    out = tmp_path / 'bad.gguf'
    r = quantize(src, out, '--export-format', 'gguf', '--type', 'Q8_0')
    assert r.returncode != 0 and 'tokenizer.model' in r.stderr and not out.exists()


def test_reads_back_and_verifies(tmp_path, originals):
    out = tmp_path / 'm.gguf'
    assert quantize(TINY, out, '--export-format', 'gguf', '--type', 'Q4_0').returncode == 0
    r = subprocess.run([QUARK, 'verify', TINY, str(out), '--json'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    report = {t['name']: t['sqnr_db'] for t in json.loads(r.stdout)['tensors']}
    # q and k come back un-permuted, under their Hugging Face names
    assert report['model.layers.0.self_attn.q_proj.weight'] > 15
    assert report['model.layers.0.self_attn.k_proj.weight'] > 15
    r = subprocess.run([QUARK, 'inspect', str(out), '--json'], capture_output=True, text=True)
    info = json.loads(r.stdout)
    assert r.returncode == 0 and info['format'] == 'gguf' and info['gguf']['general.architecture'] == 'llama'


def test_refusals_leave_nothing(tmp_path):
    out = tmp_path / 'm.gguf'
    r = quantize(TINY, out, '--export-format', 'gguf')
    assert r.returncode == 2 and '--type' in r.stderr
    r = quantize(TINY, out, '--export-format', 'gguf', '--type', 'Q4_0', '--preset', 'int8')
    assert r.returncode == 2 and 'llama.cpp' in r.stderr
    r = quantize(TINY, out, '--export-format', 'gguf', '--type', 'Q3_X')
    assert r.returncode == 1 and 'Q3_X' in r.stderr and 'Q4_0' in r.stderr
    assert not out.exists() and os.listdir(tmp_path) == []
    out.write_bytes(b'precious')
    r = quantize(TINY, out, '--export-format', 'gguf', '--type', 'Q4_0')
    assert r.returncode == 1 and 'exists' in r.stderr and out.read_bytes() == b'precious'
    r = quantize(TINY, out, '--export-format', 'gguf', '--type', 'Q4_0', '--force')
    assert r.returncode == 0 and out.read_bytes()[:4] == b'GGUF'
    assert sorted(os.listdir(tmp_path)) == ['m.gguf']
    # a model type without a conversion, named
    bad = tmp_path / 'gpt2'
    shutil.copytree(TINY, bad)
    cfg = json.load(open(bad / 'config.json'))
    cfg['model_type'] = 'gpt2'
    (bad / 'config.json').write_text(json.dumps(cfg))
    r = quantize(bad, tmp_path / 'x.gguf', '--export-format', 'gguf', '--type', 'Q4_0')
    assert r.returncode == 1 and 'gpt2' in r.stderr and not (tmp_path / 'x.gguf').exists()


def test_write_failures_leave_nothing(tmp_path):
    """A write that fails anywhere in the file (RLIMIT_FSIZE, with SIGXFSZ
    ignored so that write() returns EFBIG): while the header is written,
    while a tensor is, or in the last padding. The run fails naming the
    output, and no file is left behind."""
    import resource
    import signal
    full = tmp_path / 'full.gguf'
    assert quantize(TINY, full, '--export-format', 'gguf', '--type', 'Q4_0', '--threads', '2').returncode == 0
    size = full.stat().st_size
    full.unlink()
    for limit in (100, size // 3, size // 2 + 7, size - 1):
        out = tmp_path / ('cut-%d.gguf' % limit)

        def limited(limit=limit):
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        r = subprocess.run([QUARK, 'quantize', str(TINY), '-o', str(out), '--export-format', 'gguf', '--type', 'Q4_0',
                            '--threads', '2'], capture_output=True, text=True, preexec_fn=limited)
        assert r.returncode == 1 and str(out) in r.stderr and 'too large' in r.stderr, (limit, r.stderr)
        assert os.listdir(tmp_path) == [], (limit, os.listdir(tmp_path))


@pytest.mark.parametrize('change', ['shrink', 'touch', 'replace'])
def test_input_changed_while_read(tmp_path, change):
    """The input's rows are read from the file (pread, no page of the mapping
    touched), and the file is checked before the GGUF is renamed into
    place: `truncate` on it while the GGUF is written, a new modification
    time, or another file renamed over it fails the run with
    QUARK_ERROR_IO naming the input (no SIGBUS, no file made from two
    versions of the input), and nothing is left behind. The model is large
    enough (120 MB of BF16 weights, Q4_K_M on one thread) for the change to
    come while the tensors are read."""
    from early_stop import run_caught_early
    from safetensors_writer import write_safetensors
    from test_bad_inputs import change_input
    src = tmp_path / 'model'
    shutil.copytree(TINY, src)
    cfg = json.load(open(src / 'config.json'))
    cfg.update(hidden_size=1024, intermediate_size=4096, num_attention_heads=8, num_key_value_heads=4,
               num_hidden_layers=4)
    (src / 'config.json').write_text(json.dumps(cfg))
    block = (np.random.default_rng(3).standard_normal(4096 * 1024).astype(np.float32) * 0.02).view(np.uint32)
    block = (block >> 16).astype(np.uint16)
    shapes = {'model.embed_tokens.weight': (264, 1024), 'model.norm.weight': (1024,), 'lm_head.weight': (264, 1024)}
    for i in range(4):
        p = 'model.layers.%d.' % i
        shapes.update({p + 'input_layernorm.weight': (1024,), p + 'post_attention_layernorm.weight': (1024,),
                       p + 'self_attn.q_proj.weight': (1024, 1024), p + 'self_attn.k_proj.weight': (512, 1024),
                       p + 'self_attn.v_proj.weight': (512, 1024), p + 'self_attn.o_proj.weight': (1024, 1024),
                       p + 'mlp.gate_proj.weight': (4096, 1024), p + 'mlp.up_proj.weight': (4096, 1024),
                       p + 'mlp.down_proj.weight': (1024, 4096)})
    weights = src / 'model.safetensors'
    write_safetensors(weights, {k: ('BF16', block[:int(np.prod(v))].reshape(v)) for k, v in shapes.items()},
                      {'format': 'pt'})
    if change == 'replace':
        shutil.copy(weights, tmp_path / 'same.safetensors')    # the same bytes, another file
    out = tmp_path / 'out.gguf'
    # the change lands while less than a quarter of the GGUF (about 36 MB)
    # is written. A modification or replacement is found when the run ends,
    # after every tensor: 34-40 s under AddressSanitizer (-O0) on a machine
    # where the main suite takes 8 min, past a minute where it takes 19
    status, stdout, stderr = run_caught_early(
        [QUARK, 'quantize', str(src), '-o', str(out), '--export-format', 'gguf', '--type', 'Q4_K_M',
         '--threads', '1', '--json'], tmp_path, 8 << 20,
        lambda p: change_input(weights, change, tmp_path / 'same.safetensors' if change == 'replace' else None),
        lambda: out.unlink(), marker='quark-tmp', timeout=600)
    assert status == 1, stderr
    error = json.loads(stdout)['error']
    assert (error['domain'], error['code']) == ('quark-error', 'io'), error
    assert str(weights) in error['message'], error
    assert {'shrink': 'shrank', 'touch': 'modified', 'replace': 'replaced'}[change] in error['message'], error
    assert sorted(os.listdir(tmp_path)) == ['model']


def test_presets_list_the_types():
    r = subprocess.run([QUARK, 'presets', '--export-format', 'gguf', '--json'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    listed = {p['name']: p['description'] for p in json.loads(r.stdout)}
    assert set(listed) == set(SCHEMES)
    assert listed['Q4_0'].startswith('Q4_0, 4.50 bits per weight')      # 18 bytes per 32
    assert listed['Q4_K_M'].startswith('Q4_K, 4.50 bits per weight')     # 144 bytes per 256


def llama_bin(name):
    """A llama.cpp program of the build at $QUARK_LLAMA_CPP_BIN: the test
    skips without one, or fails in the interop suite
    (tests/interop/run-interop.sh), which builds it."""
    path = os.path.join(LLAMA_BIN, name)
    if not LLAMA_BIN or not os.access(path, os.X_OK):
        if os.environ.get('QUARK_REQUIRE_LLAMA_CPP'):
            pytest.fail('%s is not in the llama.cpp build at %r' % (name, LLAMA_BIN))
        pytest.skip('no llama.cpp build ($QUARK_LLAMA_CPP_BIN; ../shared/oracles/README.md says how to build one)')
    return path


def llama_perplexity(model, text):
    """llama-perplexity on a GGUF over a text, 512-token windows: the final
    estimate and its error, as printed."""
    r = subprocess.run([llama_bin('llama-perplexity'), '-m', str(model), '-f', str(text), '-c', '512', '-b', '512',
                        '-t', '2'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return re.search(r'Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)', r.stdout + r.stderr).groups()


@pytest.mark.parametrize('pure', [False, True])
@pytest.mark.parametrize('scheme', [s for s in SCHEMES if s != 'F32'])
def test_live_llama_quantize(tmp_path, kquant_model, scheme, pure):
    """Against the oracle itself: llama-quantize on libquark's F32
    conversion gives byte for byte the file libquark writes directly."""
    quantizer = llama_bin('llama-quantize')
    src = TINY if scheme in LEGACY else kquant_model[0]
    f32, ours, theirs = tmp_path / 'f32.gguf', tmp_path / 'ours.gguf', tmp_path / 'theirs.gguf'
    assert quantize(src, f32, '--export-format', 'gguf', '--type', 'F32').returncode == 0
    assert quantize(src, ours, '--export-format', 'gguf', '--type', scheme,
                    *(['--pure'] if pure else [])).returncode == 0
    subprocess.run([quantizer, *(['--pure'] if pure else []), str(f32), str(theirs), scheme], check=True,
                   capture_output=True)
    kv_a, a = read_gguf(ours)
    kv_b, b = read_gguf(theirs)
    assert list(a) == list(b)
    for name in a:
        assert a[name][0] == b[name][0] and a[name][2] == b[name][2], name
    assert kv_a == kv_b
    assert ours.read_bytes() == theirs.read_bytes()      # the whole file


@pytest.mark.skipif(not os.path.isdir(DOCS_LLAMA), reason='../shared/models/docs-llama is not here')
def test_llama_cpp_runs_the_real_model(tmp_path):
    """llama.cpp loads libquark's GGUF of a real trained Llama and its
    perplexity is that of the float model, within what Q8_0/Q4_0 lose."""
    llama_bin('llama-perplexity')      # skips early without a build
    text = tmp_path / 'dev.txt'
    text.write_bytes(open(os.path.join(DOCS_LLAMA, 'data', 'dev.txt'), 'rb').read()[:40000])
    ppl = {}
    for gtype in ('F32', 'Q8_0', 'Q4_0', 'Q4_K_M'):
        out = tmp_path / (gtype + '.gguf')
        assert quantize(DOCS_LLAMA, out, '--export-format', 'gguf', '--type', gtype).returncode == 0
        ppl[gtype] = float(llama_perplexity(out, text)[0])
    assert 5 < ppl['F32'] < 40            # a trained model, not noise (the vocabulary is 8192)
    assert abs(ppl['Q8_0'] - ppl['F32']) < 0.01 * ppl['F32']
    assert ppl['F32'] <= ppl['Q4_0'] < 1.1 * ppl['F32']
    assert ppl['F32'] <= ppl['Q4_K_M'] < ppl['Q4_0']      # the k-quant search beats round-to-nearest


@pytest.mark.skipif(not os.path.isdir(DOCS_LLAMA), reason='../shared/models/docs-llama is not here')
def test_llama_cpp_runs_llama3_rope_scaling(tmp_path):
    """llama.cpp reads the rope_freqs tensor: docs-llama with Llama 3's RoPE
    scaling added to its config scores differently from the plain model,
    and still as a trained model."""
    llama_bin('llama-perplexity')
    src = tmp_path / 'scaled'
    src.mkdir()
    for name in os.listdir(DOCS_LLAMA):
        if name != 'config.json' and not os.path.isdir(os.path.join(DOCS_LLAMA, name)):
            os.symlink(os.path.join(os.path.abspath(DOCS_LLAMA), name), src / name)
    cfg = json.load(open(os.path.join(DOCS_LLAMA, 'config.json')))
    cfg['rope_scaling'] = {'rope_type': 'llama3', 'factor': 4.0, 'low_freq_factor': 1.0, 'high_freq_factor': 4.0,
                           'original_max_position_embeddings': 128}
    cfg['original_max_position_embeddings'] = 128
    (src / 'config.json').write_text(json.dumps(cfg))
    text = tmp_path / 'dev.txt'
    text.write_bytes(open(os.path.join(DOCS_LLAMA, 'data', 'dev.txt'), 'rb').read()[:20000])
    ppl = {}
    for name, model in (('plain', DOCS_LLAMA), ('scaled', str(src))):
        out = tmp_path / (name + '.gguf')
        r = quantize(model, out, '--export-format', 'gguf', '--type', 'F32')
        assert r.returncode == 0, r.stderr
        ppl[name] = float(llama_perplexity(out, text)[0])
    assert ppl['scaled'] != ppl['plain'] and 5 < ppl['scaled'] < 3 * ppl['plain']


def test_qwen2_and_tied_embeddings(tmp_path, originals):
    """qwen2 (convert_hf_to_gguf.py's Qwen2Model): no rotary permutation,
    attention biases as F32, no llama-only keys; a model without lm_head
    (tied embeddings) has no output tensor, and llama-quantize's output rule
    applies to token_embd instead."""
    src = tmp_path / 'qwen2'
    shutil.copytree(TINY, src)
    cfg = json.load(open(src / 'config.json'))
    cfg['model_type'] = 'qwen2'
    cfg['tie_word_embeddings'] = True
    (src / 'config.json').write_text(json.dumps(cfg))
    tensors = read_safetensors(src / 'model.safetensors')
    del tensors['lm_head.weight']
    rng = np.random.default_rng(0)
    for p in ('q', 'k', 'v'):
        rows = tensors['model.layers.0.self_attn.%s_proj.weight' % p][1].shape[0]
        tensors['model.layers.0.self_attn.%s_proj.bias' % p] = ('F32', rng.standard_normal(rows).astype(np.float32))
    from safetensors_writer import write_safetensors
    write_safetensors(src / 'model.safetensors', tensors, {'format': 'pt'})
    out = tmp_path / 'q.gguf'
    r = quantize(src, out, '--export-format', 'gguf', '--type', 'F32')
    assert r.returncode == 0, r.stderr
    kv, t = read_gguf(out)
    assert kv['general.architecture'] == 'qwen2' and kv['qwen2.block_count'] == 1
    assert 'qwen2.vocab_size' not in kv and 'qwen2.rope.dimension_count' not in kv
    assert np.array_equal(decode(*t['blk.0.attn_q.weight'][:1], t['blk.0.attn_q.weight'][2], t['blk.0.attn_q.weight'][1]),
                          originals['model.layers.0.self_attn.q_proj.weight'])
    for p in ('q', 'k', 'v'):
        name, shape, raw = t['blk.0.attn_%s.bias' % p]
        assert name == 'F32'
        assert np.array_equal(np.frombuffer(raw, np.float32), tensors['model.layers.0.self_attn.%s_proj.bias' % p][1])
    assert 'output.weight' not in t
    r = quantize(src, tmp_path / 'q8.gguf', '--export-format', 'gguf', '--type', 'Q4_0')
    assert r.returncode == 0, r.stderr
    kv, t = read_gguf(tmp_path / 'q8.gguf')
    assert t['token_embd.weight'][0] == 'Q8_0'      # the output rule (rows of 64: Q8_0, not Q6_K)
    assert t['blk.0.attn_q.weight'][0] == 'Q4_0'


def test_smollm_pre_tokenizer(tmp_path):
    """SmolLM's byte-level chain, each digit alone and then GPT-2's split (a
    Sequence of Digits with individual_digits and ByteLevel with use_regex),
    is llama.cpp's "smollm" pre-tokenizer (convert_hf_to_gguf.py names it so
    from SmolLM's hash; src/llama-vocab.cpp splits \\p{N} and then GPT-2's
    pattern). The tiny tokenizer's merges i+n and Ġ+a become 1+2 and Ġ+1, so
    that the split shows: " 12" is Ġ 1 2 with the digits apart, Ġ 12 with
    GPT-2's split alone. llama.cpp's tokenizer reading the file and
    libquark's own (Quark.Tokenizer) give the ids worked out here."""
    src = tmp_path / 'smol'
    shutil.copytree(TINY, src)
    tok = json.load(open(src / 'tokenizer.json', encoding='utf-8'))
    vocab = tok['model']['vocab']
    renamed = {'in': '12', 'Ġa': 'Ġ1'}
    for old, new in renamed.items():
        vocab[new] = vocab.pop(old)
    tok['model']['merges'] = [['1', '2'] if m == ['i', 'n'] else ['Ġ', '1'] if m == ['Ġ', 'a'] else m
                              for m in tok['model']['merges']]
    tok['pre_tokenizer'] = {'type': 'Sequence', 'pretokenizers': [
        {'type': 'Digits', 'individual_digits': True},
        {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True}]}
    (src / 'tokenizer.json').write_text(json.dumps(tok, ensure_ascii=False), encoding='utf-8')
    out = tmp_path / 'smol.gguf'
    r = quantize(src, out, '--export-format', 'gguf', '--type', 'Q8_0')
    assert r.returncode == 0, r.stderr
    kv, _ = read_gguf(out)
    assert (kv['tokenizer.ggml.model'], kv['tokenizer.ggml.pre']) == ('gpt2', 'smollm')
    assert '1 2' in kv['tokenizer.ggml.merges'] and 'Ġ 1' in kv['tokenizer.ggml.merges']
    text = 'the 12 a1234'
    # "the ", "1", "2", " a", "1", "2", "3", "4" after Digits; GPT-2's split
    # then gives "the" (t, he by the merge h+e) and " " alone; " a" is Ġ a
    expected = [vocab[t] for t in ('t', 'he', 'Ġ', '1', '2', 'Ġ', 'a', '1', '2', '3', '4')]
    try:
        import gi
        gi.require_version('Quark', '1.0')
        from gi.repository import Quark
    except (ImportError, ValueError):
        Quark = None
    if Quark is not None:
        assert list(Quark.Tokenizer.new_from_file(str(src)).encode(text, -1, False)) == expected
    if LLAMA_BIN and os.access(os.path.join(LLAMA_BIN, 'llama-tokenize'), os.X_OK):
        r = subprocess.run([os.path.join(LLAMA_BIN, 'llama-tokenize'), '-m', str(out), '-p', text, '--ids',
                            '--no-bos', '--log-disable'], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-1000:]
        assert [int(x) for x in r.stdout.strip().splitlines()[-1].strip('[]').split(',') if x.strip()] == expected
    # a chain llama.cpp has no name for is refused, naming the file
    tok['pre_tokenizer']['pretokenizers'][0]['individual_digits'] = False
    (src / 'tokenizer.json').write_text(json.dumps(tok, ensure_ascii=False), encoding='utf-8')
    r = quantize(src, tmp_path / 'no.gguf', '--export-format', 'gguf', '--type', 'Q8_0')
    assert r.returncode != 0 and 'tokenizer.json' in r.stderr and 'pre-tokenizer' in r.stderr
    assert not (tmp_path / 'no.gguf').exists()


@pytest.mark.skipif(not os.path.isdir(DOCS_LLAMA), reason='../shared/models/docs-llama is not here')
def test_llama_cpp_generates_and_scores_as_llama_quantize(tmp_path):
    """llama-cli loads libquark's GGUF of docs-llama and generates the
    tokens a greedy PyTorch forward of the float model picks; libquark's
    Q4_K_M file is llama-quantize's byte for byte, so llama-perplexity
    gives the same number on both."""
    cli, quantizer = llama_bin('llama-cli'), llama_bin('llama-quantize')
    torch = pytest.importorskip('torch')
    import gi
    gi.require_version('Quark', '1.0')
    from gi.repository import Quark
    from llama_torch import LlamaTorch, load
    f32 = tmp_path / 'f32.gguf'
    assert quantize(DOCS_LLAMA, f32, '--export-format', 'gguf', '--type', 'F32').returncode == 0
    prompt, n = 'The history of the city', 12
    r = subprocess.run([cli, '-m', str(f32), '-p', prompt, '-n', str(n), '-no-cnv', '--temp', '0', '-s', '1',
                        '-t', '2'], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    tok = Quark.Tokenizer.new_from_file(DOCS_LLAMA)
    # BOS first only where the GGUF says so (docs-llama's tokenizer does not add one)
    add_bos = read_gguf(f32)[0].get('tokenizer.ggml.add_bos_token', False)
    ids = ([tok.get_bos_id()] if add_bos else []) + list(tok.encode(prompt, -1, False))
    model = LlamaTorch(*load(DOCS_LLAMA))
    new = []
    for _ in range(n):
        nxt = int(model.logits(ids + new)[-1].argmax())
        if nxt == tok.get_eos_id():
            break
        new.append(nxt)
    # llama-cli ends its output with a newline of its own
    assert len(new) >= 4 and r.stdout.rstrip('\n') == (prompt + tok.decode(new, True)).rstrip('\n'), r.stdout
    # the same perplexity on libquark's file and on llama-quantize's
    text = tmp_path / 'dev.txt'
    text.write_bytes(open(os.path.join(DOCS_LLAMA, 'data', 'dev.txt'), 'rb').read()[:20000])
    ours, theirs = tmp_path / 'ours.gguf', tmp_path / 'theirs.gguf'
    assert quantize(DOCS_LLAMA, ours, '--export-format', 'gguf', '--type', 'Q4_K_M').returncode == 0
    subprocess.run([quantizer, str(f32), str(theirs), 'Q4_K_M'], check=True, capture_output=True)
    assert ours.read_bytes() == theirs.read_bytes()
    ppl = []
    for f in (ours, theirs):
        ppl.append(llama_perplexity(f, text))
    assert ppl[0] == ppl[1] and 5 < float(ppl[0][0]) < 40


@pytest.mark.skipif(not os.path.isdir(DOCS_LLAMA), reason='../shared/models/docs-llama is not here')
def test_llama_cpp_tokenizes_as_the_tokenizers_library(tmp_path):
    """llama.cpp's own tokenizer, reading libquark's GGUF, gives the ids the
    `tokenizers` library gave for the held-out documents (data/dev_tokens.npy:
    BOS, the document's ids, EOS per document)."""
    tokenize = llama_bin('llama-tokenize')
    out = tmp_path / 'm.gguf'
    assert quantize(DOCS_LLAMA, out, '--export-format', 'gguf', '--type', 'Q8_0').returncode == 0
    docs = open(os.path.join(DOCS_LLAMA, 'data', 'dev.txt'), encoding='utf-8').read().split('\n\n<|document|>\n\n')
    toks = np.load(os.path.join(DOCS_LLAMA, 'data', 'dev_tokens.npy'))
    ends = np.where(toks == 1)[0]
    starts = np.concatenate([[0], ends[:-1] + 1])
    for k in (0, 1, 2, 40, 88):
        (tmp_path / 'doc.txt').write_text(docs[k], encoding='utf-8')
        r = subprocess.run([tokenize, '-m', str(out), '-f', str(tmp_path / 'doc.txt'), '--ids', '--no-bos',
                            '--log-disable'], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-1000:]
        ids = [int(x) for x in r.stdout.strip().splitlines()[-1].strip('[]').split(',') if x.strip()]
        assert ids == list(toks[starts[k] + 1:ends[k]]), k


def sentencepiece_style_model(d):
    """tiny-llama's weights with a SentencePiece-style tokenizer.json of its
    own (Llama 2's kind: BPE with byte fallback, ▁ for spaces, a Sequence
    decoder, <s> prepended by the post-processor): 3 specials, 256 byte
    tokens, 5 pieces and one merge, 264 in all."""
    shutil.copytree(TINY, d)
    vocab = {'<unk>': 0, '<s>': 1, '</s>': 2}
    vocab.update({'<0x%02X>' % b: 3 + b for b in range(256)})
    for piece in ('▁', 't', 'h', 'e', '▁t'):
        vocab[piece] = len(vocab)
    tok = {
        'version': '1.0', 'truncation': None, 'padding': None,
        'added_tokens': [{'id': i, 'content': s, 'single_word': False, 'lstrip': False, 'rstrip': False,
                          'normalized': False, 'special': True} for s, i in list(vocab.items())[:3]],
        'normalizer': {'type': 'Sequence', 'normalizers': [{'type': 'Prepend', 'prepend': '▁'},
                                                           {'type': 'Replace', 'pattern': {'String': ' '},
                                                            'content': '▁'}]},
        'pre_tokenizer': None,
        'post_processor': {'type': 'TemplateProcessing',
                           'single': [{'SpecialToken': {'id': '<s>', 'type_id': 0}},
                                      {'Sequence': {'id': 'A', 'type_id': 0}}],
                           'pair': [], 'special_tokens': {'<s>': {'id': '<s>', 'ids': [1], 'tokens': ['<s>']}}},
        'decoder': {'type': 'Sequence', 'decoders': [{'type': 'Replace', 'pattern': {'String': '▁'}, 'content': ' '},
                                                      {'type': 'ByteFallback'}, {'type': 'Fuse'},
                                                      {'type': 'Strip', 'content': ' ', 'start': 1, 'stop': 0}]},
        'model': {'type': 'BPE', 'dropout': None, 'unk_token': '<unk>', 'continuing_subword_prefix': None,
                  'end_of_word_suffix': None, 'fuse_unk': True, 'byte_fallback': True, 'ignore_merges': False,
                  'vocab': vocab, 'merges': [['▁', 't']]},
    }
    (d / 'tokenizer.json').write_text(json.dumps(tok, ensure_ascii=False), encoding='utf-8')
    (d / 'tokenizer_config.json').write_text(json.dumps({'bos_token': '<s>', 'eos_token': '</s>',
                                                         'unk_token': '<unk>'}))
    return vocab


def test_sentencepiece_style_tokenizer(tmp_path):
    """convert_hf_to_gguf.py's _set_vocab_llama_hf (gguf-py's LlamaHfVocab):
    tokenizer.ggml.model llama, pre-tokenizer default, every score -1000,
    <0xXX> BYTE (6), specials CONTROL (3), the rest NORMAL (1); BOS added
    because the post-processor's template starts with <s> (gguf-py's
    SpecialVocab)."""
    vocab = sentencepiece_style_model(tmp_path / 'sp')
    out = tmp_path / 'sp.gguf'
    r = quantize(tmp_path / 'sp', out, '--export-format', 'gguf', '--type', 'Q8_0')
    assert r.returncode == 0, r.stderr
    kv, _ = read_gguf(out)
    by_id = sorted(vocab, key=vocab.get)
    assert (kv['tokenizer.ggml.model'], kv['tokenizer.ggml.pre']) == ('llama', 'default')
    assert kv['tokenizer.ggml.tokens'] == by_id
    assert kv['tokenizer.ggml.scores'] == [-1000.0] * len(vocab)
    assert kv['tokenizer.ggml.token_type'] == [3] * 3 + [6] * 256 + [1] * 5
    assert (kv['tokenizer.ggml.bos_token_id'], kv['tokenizer.ggml.eos_token_id'],
            kv['tokenizer.ggml.unknown_token_id']) == (1, 2, 0)
    assert kv['tokenizer.ggml.add_bos_token'] is True and kv['tokenizer.ggml.add_eos_token'] is False
    assert 'tokenizer.ggml.merges' not in kv
    # llama.cpp's own tokenizer reads it: BOS, then pieces and byte tokens
    # that spell the text back
    if LLAMA_BIN and os.access(os.path.join(LLAMA_BIN, 'llama-tokenize'), os.X_OK):
        r = subprocess.run([os.path.join(LLAMA_BIN, 'llama-tokenize'), '-m', str(out), '-p', 'tt ét', '--ids',
                            '--log-disable'], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-1000:]
        ids = [int(x) for x in r.stdout.strip().splitlines()[-1].strip('[]').split(',') if x.strip()]
        assert ids[0] == 1
        raw = b''
        for i in ids[1:]:
            piece = by_id[i]
            raw += bytes([int(piece[3:5], 16)]) if piece.startswith('<0x') else piece.replace('▁', ' ').encode()
        assert raw.decode('utf-8').lstrip(' ') == 'tt ét'


def test_python_api(tmp_path, originals):
    """The formats from Python (GObject introspection): list them, write a
    GGUF with a format's own numerics, find a file's format by its bytes,
    read it back under the Hugging Face names."""
    try:
        import gi
        gi.require_version('Quark', '1.0')
        from gi.repository import Quark
    except (ImportError, ValueError) as e:
        pytest.skip('no Quark typelib: %s' % e)
    registry = Quark.Registry.get_default()
    assert {'quark', 'compressed-tensors', 'awq', 'fp8', 'gguf'} <= set(registry.list_formats())
    gguf = registry.new_format('gguf')
    assert gguf.writes_files() and 'Q4_K_M' in gguf.list_schemes()
    assert gguf.describe_scheme('Q4_0').startswith('Q4_0, 4.50 bits per weight')
    model = Quark.Model.load(TINY, None)
    out = tmp_path / 'm.gguf'
    assert gguf.write_model(model, 'Q8_0', str(out), False, None)
    with pytest.raises(gi.repository.GLib.Error) as e:
        gguf.write_model(model, 'Q8_0', str(out), False, None)       # exists: not replaced
    assert e.value.matches(Quark.error_quark(), Quark.Error.EXISTS)
    found = registry.format_for_file(str(out))
    assert found is not None and found.get_name() == 'gguf'
    assert registry.format_for_file(os.path.join(TINY, 'config.json')) is None
    back = found.read_file(str(out), True)
    w = np.asarray(back.get_tensor('model.layers.0.self_attn.k_proj.weight').to_numpy())
    x = originals['model.layers.0.self_attn.k_proj.weight']
    assert w.shape == x.shape and np.abs(w - x).max() <= np.abs(x).max() / 127 + 1e-6
    with pytest.raises(gi.repository.GLib.Error) as e:
        registry.new_format('nope')
    assert e.value.matches(Quark.error_quark(), Quark.Error.NOT_FOUND)


def test_tokenizer_json_errors_name_the_member(tmp_path):
    """model.vocab and model.merges are read member by member, outside the
    tree of the rest of tokenizer.json (a tree of a 150 000-token vocabulary
    took most of a small model's conversion): they are still checked as the
    rest, and their errors name the file and the member; nothing is
    written."""
    text = json.dumps(json.load(open(os.path.join(TINY, 'tokenizer.json'))), ensure_ascii=False)
    assert text.count('"vocab": {') == 1 and text.count('"merges": [') == 1
    cases = [
        # a name twice in the vocabulary, the vocabulary twice
        (text.replace('"vocab": {', '"vocab": {"twice": 1, "twice": 2, '), ['duplicate key', 'model.vocab.twice']),
        (text.replace('"vocab": {', '"vocab": 7, "vocab": {'), ['duplicate key', 'model.vocab']),
        # syntax inside them, with the line and column
        (text.replace('"merges": [', '"merges": [["a", "b"],]  , "x": ['), ['trailing comma in an array']),
        (text.replace('"vocab": {', '"vocab": {"big": 1e999, '), ['model.vocab.big', 'too large']),
        # what they hold
        (text.replace('"vocab": {', '"vocab": {"neg": -1, '), ['model.vocab: an id outside']),
        (text.replace('"merges": [', '"merges": [["a", 3], '), ['model.merges: expected pairs of strings']),
        (text.replace('"merges": [', '"merges": [{"a": "b"}, '), ['model.merges: expected strings or pairs']),
        (json.dumps(dict(json.loads(text), model=dict(json.loads(text)['model'], vocab=[1, 2]))),
         ['model.vocab: expected an object']),
    ]
    for k, (bad, needles) in enumerate(cases):
        src = tmp_path / ('m%d' % k)
        shutil.copytree(TINY, src)
        (src / 'tokenizer.json').write_text(bad, encoding='utf-8')
        out = tmp_path / ('o%d.gguf' % k)
        r = quantize(src, out, '--export-format', 'gguf', '--type', 'Q8_0')
        assert r.returncode == 1, (k, r.stderr)
        assert 'tokenizer.json' in r.stderr and all(n in r.stderr for n in needles), (k, r.stderr)
        assert not out.exists() and not [f for f in os.listdir(tmp_path) if not (tmp_path / f).is_dir()], k
    # no tokenizer.json: the error names it, and nothing is left
    src = tmp_path / 'none'
    shutil.copytree(TINY, src)
    (src / 'tokenizer.json').unlink()
    r = quantize(src, tmp_path / 'o-none.gguf', '--export-format', 'gguf', '--type', 'Q4_K_M')
    assert r.returncode == 1 and 'tokenizer.json' in r.stderr, r.stderr
    assert not [f for f in os.listdir(tmp_path) if not (tmp_path / f).is_dir()]
    # merges as "a b" strings, the older form, and the pairs give the same file
    src = tmp_path / 'strings'
    shutil.copytree(TINY, src)
    tok = json.loads(text)
    tok['model']['merges'] = [' '.join(m) for m in tok['model']['merges']]
    (src / 'tokenizer.json').write_text(json.dumps(tok, ensure_ascii=False), encoding='utf-8')
    for m, out in ((TINY, tmp_path / 'pairs.gguf'), (src, tmp_path / 'strings.gguf')):
        assert quantize(m, out, '--export-format', 'gguf', '--type', 'Q8_0').returncode == 0
    assert read_gguf(tmp_path / 'pairs.gguf')[0]['tokenizer.ggml.merges'] == \
        read_gguf(tmp_path / 'strings.gguf')[0]['tokenizer.ggml.merges']


def test_damaged_files_are_errors(tmp_path):
    """Truncated or corrupted GGUF files: quark inspect and quark verify
    fail with an error naming the file (exit 1), never crash or hang."""
    good = tmp_path / 'good.gguf'
    assert quantize(TINY, good, '--export-format', 'gguf', '--type', 'Q4_0').returncode == 0
    raw = good.read_bytes()
    rng = np.random.default_rng(5)
    cases = [raw[:n] for n in (3, 8, 24, 100, 1000, len(raw) // 2, len(raw) - 1)]
    for _ in range(40):
        b = bytearray(raw)
        for pos in rng.integers(4, 4096, size=rng.integers(1, 4)):
            b[pos] = rng.integers(0, 256)
        cases.append(bytes(b))
    # a tensor with no elements (ne[0] = 0) is read, not divided by
    def gstr(x):
        return struct.pack('<Q', len(x)) + x.encode()
    empty = b'GGUF' + struct.pack('<IQQ', 3, 1, 0) + gstr('t.weight') + struct.pack('<IQQIQ', 2, 0, 4, 0, 0)
    cases.append(empty + b'\0' * ((32 - len(empty) % 32) % 32))
    bad = tmp_path / 'bad.gguf'
    for k, data in enumerate(cases):
        bad.write_bytes(data)
        for cmd in (['inspect', str(bad)], ['verify', TINY, str(bad)]):
            r = subprocess.run([QUARK, *cmd], capture_output=True, text=True, timeout=60)
            assert r.returncode in (0, 1), (k, cmd, r.returncode, r.stderr[-500:])
            if r.returncode == 1:
                assert 'bad.gguf' in r.stderr or 'tensor' in r.stderr, (k, r.stderr)


@pytest.mark.parametrize('scheme', ['Q4_K_M', 'Q8_0'])
def test_threads_do_not_change_the_bytes(tmp_path, kquant_model, scheme):
    """--threads splits each tensor's rows between that many threads
    (quark_checkpoint_format_set_threads()); the file is the same whatever
    the split, and the same as without --threads (one per processor)."""
    src, _ = kquant_model
    files = []
    for threads in (None, '1', '3'):
        out = tmp_path / ('m-%s.gguf' % threads)
        r = quantize(src, out, '--export-format', 'gguf', '--type', scheme, *(['--threads', threads] if threads else []))
        assert r.returncode == 0, r.stderr
        files.append(out.read_bytes())
    assert files[0] == files[1] == files[2]
    r = quantize(src, tmp_path / 'x.gguf', '--export-format', 'gguf', '--type', scheme, '--threads', '0')
    assert r.returncode == 2 and '--threads' in r.stderr and not (tmp_path / 'x.gguf').exists()


@pytest.mark.parametrize('scheme', ['Q2_K', 'Q3_K_M', 'Q4_K_M', 'Q5_K_M', 'Q6_K', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0',
                                    'IQ4_NL'])
def test_vector_searches_equal_the_scalar_reference(tmp_path, kquant_model, scheme):
    """The k-quants' searches run sixteen sub-blocks at once in vector lanes
    (and groups of sixteen interleaved: two or four of make_qkx2_quants
    and of make_q3_quants, where the super-blocks are at hand), the legacy
    types' blocks in two vectors each (quark-gguf-search.c);
    QUARK_GGUF_SCALAR=1 runs the scalar reference one sub-block at a time:
    the same file, with and without an importance matrix, on rows of one
    super-block (padded lanes) and of nine."""
    from gguf_fixture import imatrix_entries, gguf_imatrix_bytes
    src, originals = kquant_model
    # rows of 2304: nine super-blocks; Q4_K's 72 sub-blocks of 32 are four
    # interleaved groups of 16 lanes and a padded group, Q2_K's 144 of 16
    # two such fours and a full group, Q3_K's the same in its first round,
    # then those still going gathered
    wide = tmp_path / 'wide'
    shutil.copytree(src, wide)
    cfg = json.load(open(wide / 'config.json'))
    rng = np.random.default_rng(7)
    from safetensors_writer import write_safetensors
    tensors = {k: ('F32', v.astype(np.float32)) for k, v in originals.items()}
    H, F = cfg['hidden_size'], 2304
    for k in list(tensors):
        shape = {'gate_proj': (F, H), 'up_proj': (F, H), 'down_proj': (H, F)}.get(k.split('.')[-2])
        if shape:
            tensors[k] = ('F32', (rng.standard_normal(shape) * 0.02).astype(np.float32))
    write_safetensors(str(wide / 'model.safetensors'), tensors, {'format': 'pt'})
    cfg['intermediate_size'] = F
    json.dump(cfg, open(wide / 'config.json', 'w'))
    for model in (src, str(wide)):
        f32, imatrix = tmp_path / 'f32.gguf', tmp_path / 'im.gguf'
        assert quantize(model, f32, '--export-format', 'gguf', '--type', 'F32', '-f').returncode == 0
        imatrix.write_bytes(gguf_imatrix_bytes(imatrix_entries(
            {n: t[1] for n, t in read_gguf(f32)[1].items() if len(t[1]) == 2})))
        for extra in ([], ['--imatrix', str(imatrix)]):
            files = []
            for scalar in ('0', '1'):
                out = tmp_path / ('m%s.gguf' % scalar)
                r = subprocess.run([QUARK, 'quantize', model, '-o', str(out), '--export-format', 'gguf', '--type',
                                    scheme, '-f', *extra], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                   env=dict(os.environ, QUARK_GGUF_SCALAR=scalar))
                assert r.returncode == 0, r.stderr
                files.append(out.read_bytes())
            assert files[0] == files[1], (model, extra)


@pytest.mark.parametrize('scheme', ['Q2_K', 'Q3_K_M', 'Q4_K_M', 'Q5_K_M', 'Q6_K'])
def test_vector_searches_on_long_rows_and_zero_sub_blocks(tmp_path, kquant_model, scheme):
    """The vector searches against QUARK_GGUF_SCALAR=1 (as above) where the
    lanes meet their edge cases: rows of 65 super-blocks (Q3_K's search takes
    up to 64 at once and gathers the sub-blocks still going across them, so
    such a row takes two calls), sub-blocks of zeros, of values below the
    1e-15 that counts as zero, of one non-zero value, and rows of zeros,
    which get codes 0 and scale 0; every tensor in the type (--pure)."""
    from safetensors_writer import write_safetensors
    src, originals = kquant_model
    model = tmp_path / 'long'
    shutil.copytree(src, model)
    cfg = json.load(open(model / 'config.json'))
    H, F = cfg['hidden_size'], 65 * 256
    rng = np.random.default_rng(11)
    tensors = {k: ('F32', v.astype(np.float32)) for k, v in originals.items()
               if not k.startswith('model.layers.') or k.startswith('model.layers.0.')}
    for name, shape in (('gate_proj', (F, H)), ('up_proj', (F, H)), ('down_proj', (H, F))):
        w = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        w[0] = 0                                   # a row of zeros
        w[1, :16 * 40] = 1e-16                     # sub-blocks below 1e-15
        for r in range(2, shape[0], 3):            # zero and one-value sub-blocks at varying places
            c = 16 * ((r * 7) % (shape[1] // 16))
            w[r, c:c + 16] = 0
            w[r + 1 if r + 1 < shape[0] else r, c + 5] = 0.5 if name != 'up_proj' else -0.5
        tensors['model.layers.0.mlp.%s.weight' % name] = ('F32', w)
    write_safetensors(str(model / 'model.safetensors'), tensors, {'format': 'pt'})
    cfg.update({'intermediate_size': F, 'num_hidden_layers': 1})
    json.dump(cfg, open(model / 'config.json', 'w'))
    files = []
    for scalar in ('0', '1'):
        out = tmp_path / ('m%s.gguf' % scalar)
        r = subprocess.run([QUARK, 'quantize', str(model), '-o', str(out), '--export-format', 'gguf', '--type', scheme,
                            '--pure'], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           env=dict(os.environ, QUARK_GGUF_SCALAR=scalar))
        assert r.returncode == 0, r.stderr
        files.append(out.read_bytes())
    kv, parsed = read_gguf(tmp_path / 'm0.gguf')
    assert parsed['blk.0.ffn_down.weight'][1] == (H, F)
    assert files[0] == files[1]
