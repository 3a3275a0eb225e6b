# GGUF from an already quantized checkpoint (`quark quantize CKPT -o x.gguf
# --export-format gguf --type Q4_1`): the checkpoint's codes become the
# blocks' codes, and every dequantized value stays the same float, when the
# scales and minima are exact in FP16; what is not exact is reported, and
# rounded (as AMD Quark's own GGUF export does) or dequantized only when
# asked. The checkpoint is decoded here from its stored int32 words (AMD
# Quark's packing), the GGUF with the test's own reader and decoder
# (test_gguf.py); the oracle is llama.cpp's own dequantization
# (llama-quantize --allow-requantize to F32) when a build is at hand.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import shutil
import subprocess

import pytest

np = pytest.importorskip('numpy')

from gguf_fixture import write_kquant_model, NH, NKV, L  # noqa: E402
from safetensors_writer import write_safetensors  # noqa: E402
from test_gguf import quantize, read_gguf, decode, permute, llama_bin, llama_perplexity, DOCS_LLAMA  # noqa: E402
from test_quantize_cli import read_safetensors, unpack_int4, from_bf16  # noqa: E402

LINEAR = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj',
          'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']
GGUF_NAME = {'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v',
             'self_attn.o_proj': 'attn_output', 'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up',
             'mlp.down_proj': 'ffn_down'}


def checkpoint_codes(t, name, signed):
    """q, z and s of AMD Quark's per-group int4 layout ([I, O/8] int32
    words, eight codes each in the order 0 2 4 6 1 3 5 7; scales [I/32, O];
    zero points [I/32, O/8] packed the same way), as [O, I] and [O, I/32]."""
    q = unpack_int4(t[name + '.weight'][1], signed=signed).T.astype(np.int32)
    s = t[name + '.weight_scale']
    s = (from_bf16(s[1]) if s[0] == 'BF16' else s[1].astype(np.float32)).T
    z = unpack_int4(t[name + '.weight_zero_point'][1], signed=signed).T.astype(np.int32)
    return q, z, s


def exact_copy(src, dst):
    """The checkpoint with every scale made a power of two (exact in FP16,
    and so is s times any small integer): a checkpoint the bridge carries
    over whole. The codes stay valid codes; only their values move."""
    os.makedirs(dst)
    for f in os.listdir(src):
        if not f.endswith('.safetensors'):
            shutil.copy(os.path.join(src, f), os.path.join(dst, f))
    tensors = read_safetensors(os.path.join(src, 'model.safetensors'))
    for k, (dtype, a) in tensors.items():
        if k.endswith('.weight_scale'):
            x = from_bf16(a) if dtype == 'BF16' else a.astype(np.float32)
            p = np.exp2(np.round(np.log2(x))).astype(np.float32)
            tensors[k] = (dtype, (p.view(np.uint32) >> 16).astype(np.uint16) if dtype == 'BF16' else p)
    write_safetensors(os.path.join(dst, 'model.safetensors'), tensors, {'format': 'pt'})


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """A BF16 Llama (twelve layers, grouped-query attention) quantized with
    uint4_wo_32 and int4_wo_32, each also with exact scales."""
    d = tmp_path_factory.mktemp('bridge')
    model = d / 'model'
    write_kquant_model(str(model))
    out = {'model': model}
    for preset in ('uint4_wo_32', 'int4_wo_32'):
        r = quantize(model, d / preset, '--preset', preset)
        assert r.returncode == 0, r.stderr
        exact_copy(d / preset, d / (preset + '-exact'))
        out[preset] = d / preset
        out[preset + '-exact'] = d / (preset + '-exact')
    return out


def expected(ckpt, signed):
    """Per GGUF tensor name: (codes as the blocks hold them, the float32
    values) from the checkpoint's stored words, rows permuted for attn_q and
    attn_k as convert_hf_to_gguf.py does."""
    t = read_safetensors(os.path.join(ckpt, 'model.safetensors'))
    out = {}
    for i in range(L):
        for m in LINEAR:
            name = 'model.layers.%d.%s' % (i, m)
            q, z, s = checkpoint_codes(t, name, signed)
            x = ((q - np.repeat(z, 32, axis=1)).astype(np.float32) * np.repeat(s, 32, axis=1)).astype(np.float32)
            if m in ('self_attn.q_proj', 'self_attn.k_proj'):
                heads = NH if m == 'self_attn.q_proj' else NKV
                q, z, s, x = permute(q, heads), permute(z, heads), permute(s, heads), permute(x, heads)
            out['blk.%d.%s.weight' % (i, GGUF_NAME[m])] = (q, z, s, x)
    return t, out


def dec(entry):
    tname, shape, raw = entry
    return decode(tname, raw, shape)


def nibbles(raw, shape, size):
    """The stored 4-bit codes of Q4_0/Q4_1 blocks, [O, I]."""
    b = np.frombuffer(raw, np.uint8).reshape(-1, size)
    qs = b[:, size - 16:]
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32).reshape(shape)


def test_codes_and_values_carry_over(checkpoints, tmp_path):
    """uint4 per group 32, scales exact: Q4_1 blocks whose codes are the
    checkpoint's and whose values are (q - z) * s bit for bit; the float
    tensors as stored."""
    ckpt = checkpoints['uint4_wo_32-exact']
    out = tmp_path / 'a.gguf'
    r = quantize(ckpt, out, '--export-format', 'gguf', '--type', 'Q4_1', '--json')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)['inexact_tensors'] == []
    kv, g = read_gguf(out)
    assert kv['general.file_type'] == 3
    t, want = expected(ckpt, signed=False)
    for name, (q, z, s, x) in want.items():
        tname, shape, raw = g[name]
        assert tname == 'Q4_1' and shape == q.shape, name
        assert np.array_equal(nibbles(raw, shape, 20), q), name
        y = decode(tname, raw, shape)
        assert np.array_equal(y.view(np.uint32), x.view(np.uint32)), name
    # left in float by the checkpoint: as stored (BF16 stays BF16), norms F32
    emb = t['model.embed_tokens.weight']
    assert g['token_embd.weight'][0] == 'BF16'
    assert g['token_embd.weight'][2] == emb[1].tobytes()
    assert g['output.weight'][0] == 'BF16'
    assert g['output_norm.weight'][0] == 'F32'
    assert np.array_equal(dec(g['output_norm.weight']), from_bf16(t['model.norm.weight'][1]))


def test_symmetric_int4_to_q4_0_and_q4_1(checkpoints, tmp_path):
    """int4 symmetric (z = 0): Q4_0 with code q + 8, and Q4_1 with
    m = -8 s; the same values either way."""
    ckpt = checkpoints['int4_wo_32-exact']
    _, want = expected(ckpt, signed=True)
    for gtype, size in (('Q4_0', 18), ('Q4_1', 20)):
        out = tmp_path / (gtype + '.gguf')
        r = quantize(ckpt, out, '--export-format', 'gguf', '--type', gtype)
        assert r.returncode == 0, r.stderr
        _, g = read_gguf(out)
        for name, (q, z, s, x) in want.items():
            tname, shape, raw = g[name]
            assert tname == gtype
            assert np.array_equal(nibbles(raw, shape, size), q + 8), name
            assert np.array_equal(decode(tname, raw, shape).view(np.uint32), x.view(np.uint32)), name


@pytest.mark.parametrize('dtype,symmetric,gtype', [('int8', True, 'Q8_0'), ('uint5', False, 'Q5_1'),
                                                  ('int5', True, 'Q5_0'), ('uint5', False, 'Q8_0')])
def test_byte_codes_to_q5_and_q8_0(checkpoints, tmp_path, dtype, symmetric, gtype):
    """Integers stored one per byte ([O, I] codes, [O, I/32] scales and zero
    points): 5-bit codes into Q5_1 / Q5_0, 8-bit (and any q - z that fits a
    byte) into Q8_0, the values (q - z) * s bit for bit."""
    cfg = tmp_path / 'c.json'
    cfg.write_text(json.dumps({'backend': 'quark', 'exclude': ['lm_head'], 'global_quant_config': {'weight': {
        'dtype': dtype, 'qscheme': 'per_group', 'ch_axis': -1, 'group_size': 32, 'symmetric': symmetric}}}))
    assert quantize(checkpoints['model'], tmp_path / 'c', '--config', str(cfg)).returncode == 0
    exact_copy(tmp_path / 'c', tmp_path / 'e')
    out = tmp_path / 'x.gguf'
    r = quantize(tmp_path / 'e', out, '--export-format', 'gguf', '--type', gtype)
    assert r.returncode == 0, r.stderr
    t = read_safetensors(str(tmp_path / 'e' / 'model.safetensors'))
    _, g = read_gguf(out)
    for i in (0, L - 1):
        for m in LINEAR:
            name = 'model.layers.%d.%s' % (i, m)
            q = t[name + '.weight'][1].astype(np.int32)
            z = t[name + '.weight_zero_point'][1].astype(np.int32)
            s = from_bf16(t[name + '.weight_scale'][1]) if t[name + '.weight_scale'][0] == 'BF16' \
                else t[name + '.weight_scale'][1]
            x = ((q - np.repeat(z, 32, axis=1)).astype(np.float32) * np.repeat(s, 32, axis=1)).astype(np.float32)
            if m in ('self_attn.q_proj', 'self_attn.k_proj'):
                x = permute(x, NH if m == 'self_attn.q_proj' else NKV)
            entry = g['blk.%d.%s.weight' % (i, GGUF_NAME[m])]
            assert entry[0] == gtype
            assert np.array_equal(dec(entry).view(np.uint32), x.view(np.uint32)), name


def test_inexact_weights_are_reported_never_silently_rounded(checkpoints, tmp_path):
    ckpt = checkpoints['uint4_wo_32']          # scales as quantization made them
    _, want = expected(ckpt, signed=False)

    # the default: fail, naming the tensors, and write nothing
    out = tmp_path / 'fail.gguf'
    r = quantize(ckpt, out, '--export-format', 'gguf', '--type', 'Q4_1')
    assert r.returncode == 1
    assert 'cannot be carried into GGUF without rounding again' in r.stderr
    assert 'model.layers.0.self_attn.q_proj.weight: ' in r.stderr and 'not exact in FP16' in r.stderr
    assert not out.exists() and os.listdir(tmp_path) == []

    # round: AMD Quark's export (d = fp16(s), m = fp16(-s z)); codes kept
    out = tmp_path / 'round.gguf'
    r = quantize(ckpt, out, '--export-format', 'gguf', '--type', 'Q4_1', '--inexact', 'round', '--json')
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)['inexact_tensors']
    assert len(report) == L * len(LINEAR) and all('rounded as AMD Quark' in x for x in report)
    bound = {x.split(':')[0]: float(x.split('by up to ')[1].split(')')[0]) for x in report}
    _, g = read_gguf(out)
    for i, (name, (q, z, s, x)) in enumerate(want.items()):
        tname, shape, raw = g[name]
        assert np.array_equal(nibbles(raw, shape, 20), q), name
        d = np.repeat(s.astype(np.float16).astype(np.float32), 32, axis=1)
        m = np.repeat((-s.astype(np.float64) * z).astype(np.float16).astype(np.float32), 32, axis=1)
        y = decode(tname, raw, shape)
        assert np.array_equal(y, (q.astype(np.float32) * d + m).astype(np.float32)), name
        hf = 'model.layers.%d.%s.weight' % (i // len(LINEAR), LINEAR[i % len(LINEAR)])
        assert np.abs(y - x).max() <= bound[hf] * (1 + 1e-3), name

    # dequantize: those weights in F32, exactly (q - z) s
    out = tmp_path / 'f32.gguf'
    r = quantize(ckpt, out, '--export-format', 'gguf', '--type', 'Q4_1', '--inexact', 'dequantize')
    assert r.returncode == 0, r.stderr
    assert r.stderr.count('written dequantized in F32') == L * len(LINEAR)
    _, g = read_gguf(out)
    for name, (q, z, s, x) in want.items():
        assert g[name][0] == 'F32'
        assert np.array_equal(dec(g[name]).view(np.uint32), x.view(np.uint32)), name


def test_refusals(checkpoints, tmp_path):
    # uint4 with zero points other than 8 has no Q4_0 form
    r = quantize(checkpoints['uint4_wo_32-exact'], tmp_path / 'x.gguf', '--export-format', 'gguf', '--type', 'Q4_0')
    assert r.returncode == 1 and 'zero point is not the one the type implies' in r.stderr
    # types with numerics of their own need the float model
    r = quantize(checkpoints['uint4_wo_32-exact'], tmp_path / 'x.gguf', '--export-format', 'gguf',
                 '--type', 'Q4_K_M')
    assert r.returncode == 1 and 'carry over to Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0' in r.stderr
    assert '--requantize' in r.stderr
    # a scheme no block holds: int4 in groups of 128
    ck = tmp_path / 'g128'
    assert quantize(checkpoints['model'], ck, '--preset', 'int4_wo_128').returncode == 0
    r = quantize(ck, tmp_path / 'x.gguf', '--export-format', 'gguf', '--type', 'Q4_1')
    assert r.returncode == 1 and 'per group (not of 32)' in r.stderr
    r = quantize(ck, tmp_path / 'x.gguf', '--export-format', 'gguf', '--type', 'Q4_1', '--inexact', 'round')
    assert r.returncode == 1 and 'per group (not of 32)' in r.stderr
    # --requantize still quantizes the dequantized model afresh
    r = quantize(ck, tmp_path / 'x.gguf', '--export-format', 'gguf', '--type', 'Q4_K_M', '--requantize')
    assert r.returncode == 0, r.stderr
    # (a new output: an existing one is refused before anything else)
    r = quantize(checkpoints['uint4_wo_32-exact'], tmp_path / 'z.gguf', '--export-format', 'gguf', '--type', 'Q4_1',
                 '--calibration-text', os.path.join(checkpoints['model'], 'config.json'))
    assert r.returncode == 1 and 'already quantized' in r.stderr and '--calibration-text' in r.stderr
    assert not (tmp_path / 'z.gguf').exists()
    r = quantize(checkpoints['model'], tmp_path / 'y.gguf', '--export-format', 'gguf', '--type', 'Q4_1',
                 '--inexact', 'sometimes')
    assert r.returncode == 2 and '--inexact takes fail, round or dequantize' in r.stderr
    assert not (tmp_path / 'y.gguf').exists()


def test_llama_cpp_reads_the_same_values(checkpoints, tmp_path):
    """The oracle: llama.cpp's own dequantization of the bridged file
    (llama-quantize --allow-requantize to F32) equals (q - z) * s of the
    checkpoint bit for bit."""
    quantizer = llama_bin('llama-quantize')
    ckpt = checkpoints['uint4_wo_32-exact']
    ours, f32 = tmp_path / 'ours.gguf', tmp_path / 'f32.gguf'
    assert quantize(ckpt, ours, '--export-format', 'gguf', '--type', 'Q4_1').returncode == 0
    r = subprocess.run([quantizer, '--allow-requantize', str(ours), str(f32), 'F32'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    _, g = read_gguf(f32)
    _, want = expected(ckpt, signed=False)
    for name, (q, z, s, x) in want.items():
        assert g[name][0] == 'F32'
        assert np.array_equal(dec(g[name]).view(np.uint32), x.view(np.uint32)), name


@pytest.mark.skipif(not os.path.isdir(DOCS_LLAMA), reason='../shared/models/docs-llama is not here')
def test_llama_cpp_runs_a_bridged_real_model(tmp_path):
    """docs-llama quantized by libquark (uint4 per group 32), carried into
    Q4_1 with its scales rounded as AMD Quark's export rounds them: llama.cpp
    runs it, and it scores as a 4-bit model of the float one does."""
    llama_bin('llama-perplexity')
    text = tmp_path / 'dev.txt'
    text.write_bytes(open(os.path.join(DOCS_LLAMA, 'data', 'dev.txt'), 'rb').read()[:40000])
    ckpt = tmp_path / 'u4'
    assert quantize(DOCS_LLAMA, ckpt, '--preset', 'uint4_wo_32').returncode == 0
    ppl = {}
    for name, args in (('F32', [DOCS_LLAMA, '--type', 'F32']),
                       ('bridge', [ckpt, '--type', 'Q4_1', '--inexact', 'round'])):
        out = tmp_path / (name + '.gguf')
        r = quantize(args[0], out, '--export-format', 'gguf', *args[1:])
        assert r.returncode == 0, r.stderr
        ppl[name] = float(llama_perplexity(out, text)[0])
    assert ppl['F32'] < ppl['bridge'] < 1.1 * ppl['F32']


def test_python_api(checkpoints, tmp_path):
    """The GGUF format's inexact and report properties, from Python."""
    from test_export_formats import quark_gi
    Quark = quark_gi()
    fmt = Quark.Registry.get_default().new_format('gguf')
    assert fmt.props.inexact == 'fail'
    model = Quark.Model.load(str(checkpoints['uint4_wo_32']), None)
    with pytest.raises(Exception) as e:
        fmt.write_model(model, 'Q4_1', str(tmp_path / 'x.gguf'), False, None)
    assert 'not exact in FP16' in str(e.value) and not (tmp_path / 'x.gguf').exists()
    fmt.props.inexact = 'dequantize'
    assert fmt.write_model(model, 'Q4_1', str(tmp_path / 'x.gguf'), False, None)
    report = list(fmt.props.report)
    assert len(report) == L * len(LINEAR)
    assert any(x.startswith('model.layers.0.self_attn.q_proj.weight: ') for x in report)
    exact = Quark.Model.load(str(checkpoints['uint4_wo_32-exact']), None)
    assert fmt.write_model(exact, 'Q4_1', str(tmp_path / 'y.gguf'), False, None)
    assert list(fmt.props.report) == []
