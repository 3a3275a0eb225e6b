# `quark quantize` on generated Llama-shaped checkpoints: the output's names,
# dtypes and shapes per scheme (format reference 2.6), config.json's
# quantization_config, untouched files, dequantized weights within the
# format's error (decoded here independently, with numpy), bad inputs.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import struct
import subprocess

import pytest

np = pytest.importorskip('numpy')

from safetensors_writer import write_safetensors  # noqa: E402

QUARK = os.environ['QUARK_TOOL']
H, F, V, L = 256, 512, 320, 2       # hidden, intermediate, vocab, layers
PT = {'format': 'pt'}               # the __metadata__ torch writes


def to_bf16(a):
    return (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def from_bf16(h):
    return (h.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    kinds = {'BF16': np.uint16, 'F32': np.float32, 'I8': np.int8, 'U8': np.uint8, 'I32': np.int32,
             'F8_E4M3': np.uint8, 'F8_E5M2': np.uint8, 'F16': np.float16, 'I64': np.int64}
    out = {}
    for k, v in header.items():
        if k == '__metadata__':
            continue
        b, e = v['data_offsets']
        out[k] = (v['dtype'], np.frombuffer(raw[8 + n + b:8 + n + e], kinds[v['dtype']]).reshape(v['shape']))
    return out


def read_checkpoint(d):
    tensors = {}
    for name in sorted(os.listdir(d)):
        if name.endswith('.safetensors'):
            tensors.update(read_safetensors(os.path.join(d, name)))
    return tensors


def llama_shapes(H, F, V, L):
    """Tensor name -> shape of a Llama-shaped checkpoint."""
    shapes = {'model.embed_tokens.weight': (V, H), 'model.norm.weight': (H,), 'lm_head.weight': (V, H)}
    for i in range(L):
        p = 'model.layers.%d.' % i
        shapes.update({p + 'input_layernorm.weight': (H,), p + 'post_attention_layernorm.weight': (H,),
                       p + 'self_attn.q_proj.weight': (H, H), p + 'self_attn.k_proj.weight': (H // 2, H),
                       p + 'self_attn.v_proj.weight': (H // 2, H), p + 'self_attn.o_proj.weight': (H, H),
                       p + 'mlp.gate_proj.weight': (F, H), p + 'mlp.up_proj.weight': (F, H),
                       p + 'mlp.down_proj.weight': (H, F)})
    return shapes


@pytest.fixture(scope='module')
def llama(tmp_path_factory):
    d = tmp_path_factory.mktemp('llama')
    rng = np.random.default_rng(42)
    shapes = llama_shapes(H, F, V, L)
    arrays = {k: to_bf16(rng.standard_normal(s) * 0.02 * rng.uniform(0.5, 2, (s[0],) + (1,) * (len(s) - 1)))
              for k, s in shapes.items()}
    names = list(shapes)
    half = len(names) // 2
    shard_names = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']
    write_safetensors(d / shard_names[0], {k: ('BF16', arrays[k]) for k in names[:half]}, PT)
    write_safetensors(d / shard_names[1], {k: ('BF16', arrays[k]) for k in names[half:]}, PT)
    (d / 'model.safetensors.index.json').write_text(json.dumps({
        'metadata': {'total_size': sum(a.nbytes for a in arrays.values())},
        'weight_map': {k: shard_names[0] if i < half else shard_names[1] for i, k in enumerate(names)}}))
    (d / 'config.json').write_text(json.dumps({'architectures': ['LlamaForCausalLM'], 'model_type': 'llama',
                                              'hidden_size': H, 'intermediate_size': F, 'vocab_size': V,
                                              'num_hidden_layers': L, 'torch_dtype': 'bfloat16'}))
    (d / 'tokenizer.json').write_text('{"version": "1.0", "model": {"type": "BPE"}}')
    (d / 'generation_config.json').write_text('{"do_sample": false}')
    return d, {k: from_bf16(a) for k, a in arrays.items()}


def quantize(src, out, *args):
    return subprocess.run([QUARK, 'quantize', str(src), '-o', str(out), *args],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


LINEAR = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj',
          'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']


def unpack_int4(words, reorder=True, signed=True):
    order = [0, 2, 4, 6, 1, 3, 5, 7] if reorder else list(range(8))
    w = words.astype(np.uint32)
    nib = np.stack([(w >> (4 * k)) & 0xF for k in range(8)], axis=-1).astype(np.int8)
    if signed:
        nib = np.where(nib >= 8, nib - 16, nib).astype(np.int8)
    out = np.empty_like(nib)
    out[..., order] = nib
    return out.reshape(words.shape[:-1] + (words.shape[-1] * 8,))


def check_common(src, out, originals):
    cfg = json.loads((out / 'config.json').read_text())
    qc = cfg['quantization_config']
    assert qc['quant_method'] == 'quark'
    assert isinstance(qc['export']['kv_cache_group'], list)
    assert qc['export']['weight_format'] == 'real_quantized'
    assert 'lm_head' in qc['exclude']
    assert cfg['hidden_size'] == H                   # other keys preserved
    for f in ('tokenizer.json', 'generation_config.json'):
        assert (out / f).read_bytes() == (src / f).read_bytes()
    t = read_checkpoint(out)
    # left in float, byte for byte
    for k in ('model.embed_tokens.weight', 'model.norm.weight', 'lm_head.weight',
              'model.layers.0.input_layernorm.weight'):
        assert t[k][0] == 'BF16' and np.array_equal(from_bf16(t[k][1]), originals[k])
    return t, qc


def test_int4_wo_128(llama, tmp_path):
    src, originals = llama
    out = tmp_path / 'int4'
    r = quantize(src, out, '--preset', 'int4_wo_128')
    assert r.returncode == 0, r.stderr
    t, qc = check_common(src, out, originals)
    assert qc['global_quant_config']['weight']['dtype'] == 'int4'
    assert qc['export']['pack_method'] == 'reorder'
    for i in range(L):
        for m in LINEAR:
            name = 'model.layers.%d.%s' % (i, m)
            o, n_in = originals[name + '.weight'].shape
            dt, w = t[name + '.weight']
            assert (dt, w.shape) == ('I32', (n_in, o // 8))
            assert t[name + '.weight_scale'][1].shape == (n_in // 128, o)
            assert t[name + '.weight_zero_point'][0] == 'I32'
            assert t[name + '.weight_zero_point'][1].shape == (n_in // 128, o // 8)
            assert not np.any(t[name + '.weight_zero_point'][1])
            # decode independently: unpack, transpose back, scale per group
            q = unpack_int4(w).T                                    # [O, I]
            s = t[name + '.weight_scale'][1].T                      # [O, G]
            x_hat = q.astype(np.float32) * np.repeat(s, 128, axis=1)
            x = originals[name + '.weight']
            assert q.min() >= -8 and q.max() <= 7
            assert np.all(np.abs(x_hat - x) <= np.repeat(s, 128, axis=1) * 0.5 * (1 + 1e-5))


def test_uint4_order_and_mxfp4_and_ptpc(llama, tmp_path):
    src, originals = llama
    name = 'model.layers.1.mlp.down_proj'
    x = originals[name + '.weight']
    o, n_in = x.shape

    out = tmp_path / 'mxfp4'
    r = quantize(src, out, '--preset', 'mxfp4')
    assert r.returncode == 0, r.stderr
    t, qc = check_common(src, out, originals)
    assert qc['global_quant_config']['weight']['scale_format'] == 'e8m0'
    assert t[name + '.weight'][0] == 'U8' and t[name + '.weight'][1].shape == (o, n_in // 2)
    assert t[name + '.weight_scale'][0] == 'U8' and t[name + '.weight_scale'][1].shape == (o, n_in // 32)
    assert name + '.weight_zero_point' not in t
    fp4 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)
    b = t[name + '.weight'][1]
    codes = np.stack([b & 0xF, b >> 4], axis=-1).reshape(o, n_in)
    scale = np.ldexp(np.float32(1), t[name + '.weight_scale'][1].astype(np.int32) - 127)
    x_hat = fp4[codes] * np.repeat(scale, 32, axis=1)
    rel = np.abs(x_hat - x).max() / np.abs(x).max()
    assert rel < 0.25                                   # FP4: a few steps of 2^-1 relative

    out = tmp_path / 'ptpc'
    r = quantize(src, out, '--preset', 'ptpc_fp8', '--json')
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary['output'] == str(out)
    t, _ = check_common(src, out, originals)
    assert t[name + '.weight'][0] == 'F8_E4M3' and t[name + '.weight'][1].shape == (o, n_in)
    assert t[name + '.weight_scale'][1].shape == (o,)
    assert name + '.input_scale' not in t             # dynamic: nothing stored

    cfg = tmp_path / 'uint4.json'
    cfg.write_text(json.dumps({'backend': 'quark', 'global_quant_config': {'weight': {
        'dtype': 'uint4', 'qscheme': 'per_group', 'ch_axis': -1, 'group_size': 64, 'symmetric': False}},
        'exclude': ['lm_head'], 'export': {'pack_method': 'order'}}))
    out = tmp_path / 'uint4'
    r = quantize(src, out, '--config', str(cfg), '--exclude', 'model.layers.0.*')
    assert r.returncode == 0, r.stderr
    t, qc = check_common(src, out, originals)
    assert qc['export']['pack_method'] == 'order'
    assert t['model.layers.0.mlp.up_proj.weight'][0] == 'BF16'      # --exclude
    q = unpack_int4(t[name + '.weight'][1], reorder=False, signed=False).T
    z = unpack_int4(t[name + '.weight_zero_point'][1], reorder=False, signed=False).T
    s = t[name + '.weight_scale'][1].T
    x_hat = (q.astype(np.float32) - np.repeat(z, 64, axis=1)) * np.repeat(s, 64, axis=1)
    assert np.all(np.abs(x_hat - x) <= np.repeat(s, 64, axis=1) * 0.5 * (1 + 1e-5))


def test_static_presets_need_calibration(llama, tmp_path):
    src, _ = llama
    for preset in ('int8', 'fp8'):
        out = tmp_path / preset
        r = quantize(src, out, '--preset', preset)
        assert r.returncode == 1
        assert 'calibration' in r.stderr and 'layer model.layers.0.' in r.stderr
        assert not out.exists()


def test_usage_and_failures(llama, tmp_path):
    src, _ = llama
    assert quantize(src, tmp_path / 'x').returncode == 2                     # no preset or config
    assert quantize(src, tmp_path / 'x', '--preset', 'mxfp4', '--config', 'c.json').returncode == 2
    r = quantize(src, tmp_path / 'x', '--preset', 'nope')
    assert r.returncode == 1 and 'no backend has a preset "nope"' in r.stderr
    out = tmp_path / 'exists'
    out.mkdir()
    r = quantize(src, out, '--preset', 'int4_wo_128')
    assert r.returncode == 1 and 'already exists' in r.stderr
    assert quantize(src, out, '--preset', 'int4_wo_128', '--force').returncode == 0
    # an existing output is refused before any work: here before the
    # calibration text (which is missing) is read, for a directory and for a
    # GGUF file (whose writer used to refuse only when renaming the finished
    # file into place, after the whole quantization)
    existing_file = tmp_path / 'exists.gguf'
    existing_file.write_bytes(b'keep')
    for target, extra in ((out, ['--preset', 'int4_wo_128', '--algorithm', 'gptq']),
                          (existing_file, ['--export-format', 'gguf', '--type', 'Q4_K_M'])):
        r = quantize(src, target, *extra, '--calibration-text', str(tmp_path / 'missing.txt'))
        assert r.returncode == 1 and r.stderr.strip() == \
            'quark quantize: %s: already exists; --force replaces it' % target, r.stderr
    assert existing_file.read_bytes() == b'keep'
    # a malformed shard: truncated
    bad = tmp_path / 'bad'
    bad.mkdir()
    for f in os.listdir(src):
        (bad / f).write_bytes((src / f).read_bytes())
    shard = bad / 'model-00002-of-00002.safetensors'
    shard.write_bytes(shard.read_bytes()[:-3])
    before = {f: (bad / f).read_bytes() for f in os.listdir(bad)}
    r = quantize(bad, tmp_path / 'bad-out', '--preset', 'int4_wo_128')
    assert r.returncode == 1
    assert 'model-00002-of-00002.safetensors' in r.stderr
    assert not (tmp_path / 'bad-out').exists()
    assert {f: (bad / f).read_bytes() for f in os.listdir(bad)} == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith('.quark-tmp')]


def test_inspect_and_presets(llama, tmp_path):
    src, _ = llama
    out = tmp_path / 'q'
    assert quantize(src, out, '--preset', 'int4_wo_64').returncode == 0
    r = subprocess.run([QUARK, 'inspect', str(out), '--json'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data['quantization_config']['global_quant_config']['weight']['group_size'] == 64
    names = {t['name']: t for t in data['tensors']}
    assert names['model.layers.0.mlp.up_proj.weight']['dtype'] == 'I32'
    r = subprocess.run([QUARK, 'presets', '--json'], capture_output=True, text=True)
    presets = {p['name'] for p in json.loads(r.stdout)}
    assert {'int8', 'fp8', 'ptpc_fp8', 'int4_wo_128', 'uint4_wo_32', 'mxfp4', 'mxfp6_e2m3', 'mxfp6_e3m2',
            'mxfp4_fp8', 'int4_fp8'} <= presets
    r = subprocess.run([QUARK, 'inspect', str(tmp_path / 'missing')], capture_output=True, text=True)
    assert r.returncode == 1 and 'missing' in r.stderr


@pytest.mark.parametrize('preset', ['int4_wo_32', 'int4_wo_64', 'int4_wo_128', 'uint4_wo_128', 'mxfp4',
                                    'mxfp6_e2m3', 'mxfp6_e3m2', 'mxfp8', 'ptpc_fp8', 'int8_per_channel_wo'])
def test_every_weight_preset_verifies(llama, tmp_path, preset):
    src, originals = llama
    out = tmp_path / preset
    r = quantize(src, out, '--preset', preset)
    assert r.returncode == 0, r.stderr
    t, _ = check_common(src, out, originals)
    name = 'model.layers.0.mlp.down_proj'
    o, n_in = originals[name + '.weight'].shape
    expected = {
        'int4_wo_32': ('I32', (n_in, o // 8)), 'int4_wo_64': ('I32', (n_in, o // 8)),
        'int4_wo_128': ('I32', (n_in, o // 8)), 'uint4_wo_128': ('I32', (n_in, o // 8)),
        'mxfp4': ('U8', (o, n_in // 2)), 'mxfp6_e2m3': ('U8', (o, n_in * 3 // 4)),
        'mxfp6_e3m2': ('U8', (o, n_in * 3 // 4)), 'mxfp8': ('F8_E4M3', (o, n_in)),
        'ptpc_fp8': ('F8_E4M3', (o, n_in)), 'int8_per_channel_wo': ('I8', (o, n_in)),
    }[preset]
    assert (t[name + '.weight'][0], t[name + '.weight'][1].shape) == expected
    # read back through libquark and compared with the original
    r = subprocess.run([QUARK, 'verify', str(src), str(out), '--json'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout
    report = json.loads(r.stdout)
    assert len(report['tensors']) == L * len(LINEAR)
    floor_db = {'int4_wo_32': 18, 'int4_wo_64': 17, 'int4_wo_128': 17, 'uint4_wo_128': 17, 'mxfp4': 13,
                'mxfp6_e2m3': 20, 'mxfp6_e3m2': 17, 'mxfp8': 25, 'ptpc_fp8': 25, 'int8_per_channel_wo': 38}[preset]
    for row in report['tensors']:
        assert row['sqnr_db'] > floor_db, row
    # a threshold above every layer fails the command
    r = subprocess.run([QUARK, 'verify', str(src), str(out), '--threshold', '200'], capture_output=True, text=True)
    assert r.returncode == 1


def test_fp4_with_e5m3_group_scales(llama, tmp_path):
    """FP4 per group of 16 with unsigned E5M3 scales: U8 codes in the
    checkpoint, decoded here from the formula, within half an FP4 step of
    the original; the config carries scale_format e5m3; verify reads it."""
    src, originals = llama
    cfg = tmp_path / 'fp4e5m3.json'
    cfg.write_text(json.dumps({'backend': 'quark', 'global_quant_config': {'weight': {
        'dtype': 'fp4', 'qscheme': 'per_group', 'ch_axis': -1, 'group_size': 16, 'scale_format': 'e5m3'}},
        'exclude': ['lm_head']}))
    out = tmp_path / 'fp4e5m3'
    r = quantize(src, out, '--config', str(cfg))
    assert r.returncode == 0, r.stderr
    t, qc = check_common(src, out, originals)
    assert qc['global_quant_config']['weight']['scale_format'] == 'e5m3'
    name = 'model.layers.1.mlp.down_proj'
    x = originals[name + '.weight']
    o, n_in = x.shape
    assert t[name + '.weight_scale'][0] == 'U8' and t[name + '.weight_scale'][1].shape == (o, n_in // 16)
    c = t[name + '.weight_scale'][1].astype(np.int32)
    e, m = c >> 3, (c & 7).astype(np.float64)
    scale = np.where(e == 0, np.ldexp(m / 8, -14), np.ldexp(1 + m / 8, e - 15)).astype(np.float32)
    assert np.all(c != 0xFF)
    fp4 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)
    b = t[name + '.weight'][1]
    codes = np.stack([b & 0xF, b >> 4], axis=-1).reshape(o, n_in)
    s = np.repeat(scale, 16, axis=1)
    x_hat = fp4[codes] * s
    # E5M3 rounds the scale by at most 1/16 relative; the top element may clamp at 6
    # and the grid step is at most 2 scale units
    assert np.all(np.abs(x_hat - x) <= np.maximum(s * 1.0, np.abs(x) / 15) * (1 + 1e-5))
    r = subprocess.run([QUARK, 'verify', str(src), str(out), '--json'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout
    for row in json.loads(r.stdout)['tensors']:
        assert row['sqnr_db'] > 13, row


def test_output_inside_or_around_the_input_is_refused(llama, tmp_path):
    """OUT inside MODEL would modify the input; OUT around MODEL with --force
    would delete it; an OUT that cannot be created fails. Each exits 1 naming
    the path, and nothing is touched."""
    import shutil
    src, _ = llama
    model = tmp_path / 'model'
    shutil.copytree(src, model)
    before = sorted((p.name, p.stat().st_size) for p in model.iterdir())

    r = quantize(model, model / 'out', '--preset', 'ptpc_fp8')
    assert r.returncode == 1
    assert str(model / 'out') in r.stderr and 'inside the input' in r.stderr
    r = quantize(model, tmp_path, '--preset', 'ptpc_fp8', '--force')
    assert r.returncode == 1
    assert 'would contain the input' in r.stderr
    r = quantize(model, model, '--preset', 'ptpc_fp8', '--force')
    assert r.returncode == 1

    # an output that cannot be created (its parent is a file: this holds
    # even for root, unlike permission bits)
    (tmp_path / 'plain').write_text('x')
    r = quantize(model, tmp_path / 'plain' / 'out', '--preset', 'ptpc_fp8')
    assert r.returncode == 1
    assert str(tmp_path / 'plain') in r.stderr and 'Not a directory' in r.stderr

    assert sorted((p.name, p.stat().st_size) for p in model.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model', 'plain']


def test_threads_give_identical_checkpoints(llama, tmp_path):
    src, _ = llama
    one, two = tmp_path / 'one', tmp_path / 'two'
    assert quantize(src, one, '--preset', 'int4_wo_128', '--threads', '1').returncode == 0
    r = quantize(src, two, '--preset', 'int4_wo_128', '--threads', '2', '--max-shard-size', '300KB')
    assert r.returncode == 0, r.stderr
    a, b = read_checkpoint(one), read_checkpoint(two)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k][0] == b[k][0] and np.array_equal(a[k][1], b[k][1]), k
    assert (two / 'model.safetensors.index.json').exists()      # sharded at 300 KB
    # unsharded, the files themselves: the window of tensors in flight
    # (counted in elements, the embedding counting nothing) never changes
    # the order they are written in
    three = tmp_path / 'three'
    r = quantize(src, three, '--preset', 'int4_wo_128', '--threads', '3')
    assert r.returncode == 0, r.stderr
    assert (three / 'model.safetensors').read_bytes() == (one / 'model.safetensors').read_bytes()
    # the tensors that go out as they are come first in the file, a head
    # that is last in the input's with the embeddings: copied while the
    # threads quantize the layers, not after the last of them
    weights = read_checkpoint(src)
    names = [k for k in weights if k != 'lm_head.weight'] + ['lm_head.weight']
    last = tmp_path / 'head-last'
    last.mkdir()
    write_safetensors(last / 'model.safetensors', {k: weights[k] for k in names}, PT)
    (last / 'config.json').write_bytes((src / 'config.json').read_bytes())
    for j in ('1', '2'):
        r = quantize(last, tmp_path / ('head-last-j' + j), '--preset', 'int4_wo_128', '--threads', j)
        assert r.returncode == 0, r.stderr
    raw = (tmp_path / 'head-last-j2' / 'model.safetensors').read_bytes()
    assert raw == (tmp_path / 'head-last-j1' / 'model.safetensors').read_bytes()
    header = json.loads(raw[8:8 + struct.unpack('<Q', raw[:8])[0]])
    by_offset = sorted((v['data_offsets'][0], k) for k, v in header.items() if k != '__metadata__')
    assert [k for _, k in by_offset[:2]] == ['model.embed_tokens.weight', 'lm_head.weight']
    # without --threads: one per processor (at most 8), the same file
    default = tmp_path / 'default'
    assert quantize(src, default, '--preset', 'int4_wo_128').returncode == 0
    assert (default / 'model.safetensors').read_bytes() == (one / 'model.safetensors').read_bytes()
    # an option the backend does not have (the brevitas backend has no
    # --allow-nonfinite): an error naming it, before any work
    r = quantize(src, tmp_path / 'bv', '--backend', 'brevitas', '--preset', 'int8_weight_per_channel',
                 '--allow-nonfinite')
    assert r.returncode == 1 and 'backend brevitas does not support --allow-nonfinite' in r.stderr
    assert not (tmp_path / 'bv').exists()
    assert quantize(src, tmp_path / 'x', '--preset', 'int4_wo_128', '--threads', '0').returncode == 2


CUSTOM_WEIGHTS = {'int4_per_channel': {'dtype': 'int4', 'qscheme': 'per_channel', 'ch_axis': 0, 'symmetric': True},
                  'uint8_g64': {'dtype': 'uint8', 'qscheme': 'per_group', 'ch_axis': -1, 'group_size': 64,
                                'symmetric': False},
                  'int8_per_tensor': {'dtype': 'int8', 'qscheme': 'per_tensor', 'symmetric': True}}


@pytest.mark.parametrize('preset', ['int4_wo_128', 'uint4_wo_32', 'int4_per_channel', 'int8_per_channel_wo',
                                    'uint8_g64', 'int8_per_tensor'])
def test_compressed_tensors_packed_as_quantized(llama, tmp_path, preset):
    """compressed-tensors' pack-quantized int4 takes the words packed along
    rows as the quark backend quantizes them, int4's top bits flipped
    (QUARK_CODE_LAYOUT_UINT4_ROWS), and its 8-bit words as the bytes the row
    path writes, int8's top bits flipped (QUARK_CODE_LAYOUT_UINT8_ROWS; per
    tensor the backend gives one
    code per element instead); --allow-nonfinite sends the same finite
    weights through the general path, one code per byte packed by the
    format: the same files. Also for float32 weights (codes packed after
    each row) and float16 ones (float16 scales, rounded a row of groups at
    a time on the row path)."""
    src, originals = llama
    args = ['--export-format', 'compressed-tensors', '--threads', '2']
    if preset in CUSTOM_WEIGHTS:
        cfg = tmp_path / 'cfg.json'
        cfg.write_text(json.dumps({'backend': 'quark', 'global_quant_config': {'weight': CUSTOM_WEIGHTS[preset]}}))
        args += ['--config', str(cfg)]
    else:
        args += ['--preset', preset]
    models = [(src, 'bf16')]
    for dtype, tag in (('F32', 'f32'), ('F16', 'f16')):
        d = tmp_path / tag
        d.mkdir()
        write_safetensors(d / 'model.safetensors',
                          {k: (dtype, v.astype(np.float32 if dtype == 'F32' else np.float16))
                           for k, v in originals.items()}, PT)
        for name in ('config.json', 'tokenizer.json', 'generation_config.json'):
            (d / name).write_bytes((src / name).read_bytes())
        models.append((d, tag))
    for model, tag in models:
        rows, general = tmp_path / (tag + '-rows'), tmp_path / (tag + '-general')
        r = quantize(model, rows, *args)
        assert r.returncode == 0, r.stderr
        r = quantize(model, general, *args, '--allow-nonfinite')
        assert r.returncode == 0, r.stderr
        a, b = read_checkpoint(rows), read_checkpoint(general)
        assert a.keys() == b.keys()
        packed = [k for k in a if k.endswith('.weight_packed')]
        assert len(packed) >= len(LINEAR) * L   # (lm_head too without an exclude)
        for k in a:
            assert a[k][0] == b[k][0] and np.array_equal(a[k][1], b[k][1]), (tag, k)


def test_killed_run_leaves_no_complete_output(tmp_path):
    import shutil
    from early_stop import run_caught_early
    src = tmp_path / 'big'
    src.mkdir()
    block = to_bf16(np.random.default_rng(9).standard_normal((2048, 2048)) * 0.02)
    write_safetensors(src / 'model.safetensors',
                      {'model.layers.%d.mlp.up_proj.weight' % i: ('BF16', block) for i in range(12)}, PT)
    out = tmp_path / 'out'
    # killed with less than a quarter of its int4 codes written
    run_caught_early([QUARK, 'quantize', str(src), '-o', str(out), '--preset', 'int4_wo_128'], tmp_path,
                     12 * 2048 * 2048 // 8, lambda p: p.kill(), lambda: shutil.rmtree(out),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert not out.exists()                       # nothing that looks like an output
    leftovers = [n for n in os.listdir(tmp_path) if n not in ('big',)]
    assert all(n.startswith('.quark-tmp') for n in leftovers)


@pytest.mark.parametrize('case', ['truncated', 'header-beyond', 'overlap', 'unknown-dtype', 'not-json', 'missing-shard'])
def test_malformed_inputs_exit_1_naming_the_file(tmp_path, case):
    d = tmp_path / 'm'
    d.mkdir()
    path = d / 'model.safetensors'
    w = np.zeros((4, 8), np.uint16)
    write_safetensors(path, {'a.weight': ('BF16', w), 'b.weight': ('BF16', w)}, PT)
    raw = path.read_bytes()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    if case == 'truncated':
        path.write_bytes(raw[:-1])
    elif case == 'header-beyond':
        path.write_bytes(struct.pack('<Q', len(raw)) + raw[8:])
    elif case in ('overlap', 'unknown-dtype', 'not-json'):
        if case == 'overlap':
            header['b.weight']['data_offsets'] = [32, 96]
        elif case == 'unknown-dtype':
            header['a.weight']['dtype'] = 'B16'
        text = json.dumps(header, separators=(',', ':')).encode() if case != 'not-json' else b'{"a.weight": [1, 2'
        text += b' ' * (n - len(text))
        path.write_bytes(raw[:8] + text[:n] + raw[8 + n:])
    else:
        path.unlink()
        (d / 'model.safetensors.index.json').write_text(json.dumps(
            {'weight_map': {'a.weight': 'model-00001-of-00001.safetensors'}}))
    before = {f: (d / f).read_bytes() for f in os.listdir(d)}
    r = quantize(d, tmp_path / 'out', '--preset', 'int4_wo_128')
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith('quark quantize: ')
    assert str(d) in r.stderr
    assert not (tmp_path / 'out').exists()
    assert {f: (d / f).read_bytes() for f in os.listdir(d)} == before


def test_fp8_and_int8_per_tensor_layouts_and_input_untouched(llama, tmp_path):
    src, originals = llama
    import hashlib
    digest = {f: hashlib.sha256((src / f).read_bytes()).hexdigest() for f in os.listdir(src)}
    name = 'model.layers.1.self_attn.o_proj'
    for dtype, file_dtype in (('fp8_e4m3', 'F8_E4M3'), ('int8', 'I8')):
        cfg = tmp_path / (dtype + '.json')
        cfg.write_text(json.dumps({'backend': 'quark', 'global_quant_config': {
            'weight': {'dtype': dtype, 'qscheme': 'per_tensor'}}, 'exclude': ['lm_head']}))
        out = tmp_path / dtype
        r = quantize(src, out, '--config', str(cfg))
        assert r.returncode == 0, r.stderr
        t, _ = check_common(src, out, originals)
        assert t[name + '.weight'][0] == file_dtype
        assert t[name + '.weight_scale'][1].shape == ()
        assert (name + '.weight_zero_point' in t) == (dtype == 'int8')
    assert {f: hashlib.sha256((src / f).read_bytes()).hexdigest() for f in os.listdir(src)} == digest


def test_guidance(llama, tmp_path):
    """Messages that say what to do: the missing argument by name, the
    closest preset names, the backend a preset belongs to, AMD Quark's
    scheme names as aliases, --force named, files that are not safetensors
    and pickled checkpoints recognised."""
    src, _ = llama
    r = subprocess.run([QUARK, 'quantize', str(src), '--preset', 'int8'], capture_output=True, text=True)
    assert r.returncode == 2 and '-o OUT is missing' in r.stderr
    r = subprocess.run([QUARK, 'quantize', '-o', str(tmp_path / 'x'), '--preset', 'int8'], capture_output=True,
                       text=True)
    assert r.returncode == 2 and 'MODEL is missing' in r.stderr
    r = quantize(src, tmp_path / 'x')
    assert r.returncode == 2 and '--preset NAME' in r.stderr and '--config FILE' in r.stderr
    r = quantize(src, tmp_path / 'x', '--preset', 'int4_wo128')
    assert r.returncode == 1 and 'did you mean "int4_wo_128"?' in r.stderr
    r = quantize(src, tmp_path / 'x', '--preset', 'w8a8', '--backend', 'quark')
    assert r.returncode == 1 and 'is a preset of the brevitas backend' in r.stderr and '--backend brevitas' in r.stderr
    # AMD Quark's former scheme names name the same configs
    for alias, preset in [('w_int4_per_group_sym', 'int4_wo_128'), ('w_mxfp4_a_mxfp4', 'mxfp4')]:
        a, b = tmp_path / alias, tmp_path / (alias + '-preset')
        assert quantize(src, a, '--preset', alias).returncode == 0
        assert quantize(src, b, '--preset', preset).returncode == 0
        assert (a / 'model.safetensors').read_bytes() == (b / 'model.safetensors').read_bytes()
    out = tmp_path / 'exists'
    out.mkdir()
    r = quantize(src, out, '--preset', 'int4_wo_128', '--json')
    assert r.returncode == 1 and '--force replaces it' in r.stderr
    assert json.loads(r.stdout)['error'] == {'domain': 'quark-error', 'code': 'exists',
                                             'message': '%s: already exists; --force replaces it' % out}
    # not safetensors
    bad = tmp_path / 'zip'
    bad.mkdir()
    (bad / 'model.safetensors').write_bytes(b'PK\x03\x04' + bytes(60))
    r = quantize(bad, tmp_path / 'y', '--preset', 'int8_per_channel_wo')
    assert r.returncode == 1 and 'not a safetensors file: it looks like a zip archive' in r.stderr
    pickled = tmp_path / 'pickled'
    pickled.mkdir()
    (pickled / 'pytorch_model.bin').write_bytes(b'PK\x03\x04')
    (pickled / 'config.json').write_text('{}')
    r = quantize(pickled, tmp_path / 'y', '--preset', 'int8_per_channel_wo')
    assert r.returncode == 1 and 'pytorch_model.bin, a pickled PyTorch checkpoint' in r.stderr
    assert 'safe_serialization=True' in r.stderr


def test_model_id_from_the_hugging_face_cache(llama, tmp_path):
    """`org/name` that is not a path here is the snapshot refs/main names in
    the local cache ($HF_HOME/hub); nothing is downloaded."""
    src, _ = llama
    repo = tmp_path / 'hf' / 'hub' / 'models--acme--tiny-llama'
    snap = repo / 'snapshots' / '0123abcd'
    snap.mkdir(parents=True)
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text('0123abcd\n')
    blobs = repo / 'blobs'
    blobs.mkdir()
    for f in os.listdir(src):
        (blobs / f).write_bytes((src / f).read_bytes())
        (snap / f).symlink_to(os.path.relpath(blobs / f, snap))
    env = dict(os.environ, HF_HOME=str(tmp_path / 'hf'))
    r = subprocess.run([QUARK, 'quantize', 'acme/tiny-llama', '-o', str(tmp_path / 'out'), '--preset',
                        'int8_per_channel_wo'], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert str(snap) in r.stderr
    assert (tmp_path / 'out' / 'model-00001-of-00002.safetensors').exists() or \
        (tmp_path / 'out' / 'model.safetensors').exists()
    r = subprocess.run([QUARK, 'quantize', 'acme/absent', '-o', str(tmp_path / 'out2'), '--preset',
                        'int8_per_channel_wo', '--json'], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 1 and json.loads(r.stdout)['error']['code'] == 'not-found'


def test_presets_listing_and_show(tmp_path):
    """The listing fits 80 columns, the default backend first, aliases
    shown; --show prints a config that --config takes back."""
    r = subprocess.run([QUARK, 'presets'], capture_output=True, text=True)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert all(len(line) <= 80 and line == line.rstrip() for line in lines)
    assert lines[0] == 'quark (the default backend)'
    assert 'brevitas (--backend brevitas)' in lines
    assert lines.index('brevitas (--backend brevitas)') > max(i for i, l in enumerate(lines) if 'int4_wo_128' in l)
    assert any('(also: w_fp8_a_fp8)' in line for line in lines)
    listed = json.loads(subprocess.run([QUARK, 'presets', '--json'], capture_output=True, text=True).stdout)
    assert [p['aliases'] for p in listed if p['name'] == 'int4_wo_128'] == [['w_int4_per_group_sym']]
    r = subprocess.run([QUARK, 'presets', '--show', 'int4_wo_128'], capture_output=True, text=True)
    assert r.returncode == 0
    config = json.loads(r.stdout)
    assert config['backend'] == 'quark'
    assert config['global_quant_config']['weight']['group_size'] == 128
    r = subprocess.run([QUARK, 'presets', '--show', 'int4_wo128', '--json'], capture_output=True, text=True)
    assert r.returncode == 1 and 'did you mean "int4_wo_128"' in json.loads(r.stdout)['error']['message']


@pytest.mark.parametrize('rows,cols', [(24, 64), (40, 96), (8, 32)])
def test_int4_per_group_ragged_tiles(tmp_path, rows, cols):
    """Shapes whose transposed layout is not whole tiles of 16 (the export
    transposes the codes in 16 x 16 tiles, then the edges): decoded
    independently, the words give codes within half a step of the input."""
    rng = np.random.default_rng(rows * cols)
    w = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
    src = tmp_path / 'm'
    src.mkdir()
    write_safetensors(src / 'model.safetensors', {'model.layers.0.mlp.up_proj.weight': ('F32', w)}, PT)
    (tmp_path / 'c.json').write_text(json.dumps({
        'backend': 'quark', 'global_quant_config': {'weight': {
            'dtype': 'int4', 'qscheme': 'per_group', 'group_size': 32, 'symmetric': True}}}))
    out = tmp_path / 'o'
    r = quantize(src, out, '--config', str(tmp_path / 'c.json'))
    assert r.returncode == 0, r.stderr
    t = read_checkpoint(out)
    q = unpack_int4(t['model.layers.0.mlp.up_proj.weight'][1]).T            # [O, I]
    s = t['model.layers.0.mlp.up_proj.weight_scale'][1].T                   # [O, G]
    step = np.repeat(s, 32, axis=1)
    assert q.shape == (rows, cols)
    assert np.all(np.abs(q * step - w) <= step * 0.5 * (1 + 1e-5))
