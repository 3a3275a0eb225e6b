# The brevitas backend from the command line and from Python: selected by
# --backend and by a config's "backend", listed with its presets, weights
# checked against an independent numpy implementation of Brevitas's rules,
# both exports (Quark layout, integer dump), activation scales from a
# saved calibration session.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import subprocess

import pytest

np = pytest.importorskip('numpy')

from test_quantize_cli import (llama, read_checkpoint, quantize, unpack_int4, LINEAR, L, llama_shapes,  # noqa: E402,F401
                               to_bf16, from_bf16, PT)
from safetensors_writer import write_safetensors  # noqa: E402

QUARK = os.environ['QUARK_TOOL']


def quark_module():
    """gi.repository.Quark, or a skip: the command-line tests also run in
    the sanitizer build, which has no typelib."""
    try:
        import gi
        gi.require_version('Quark', '1.0')
        from gi.repository import Quark
        return Quark
    except (ImportError, ValueError):
        pytest.skip('no Quark typelib (a build without introspection)')


def brevitas_int8_per_channel(w):
    """Int8WeightPerChannelFloat in numpy float32: s = max|w| / 127 per row,
    q = clip(rint(w / s), -127, 127) (true division, half to even)."""
    w = w.astype(np.float32)
    s = (np.maximum(np.abs(w).max(axis=1), np.float32(1e-10)) / np.float32(127)).astype(np.float32)
    q = np.clip(np.rint(w / s[:, None]), -127, 127).astype(np.int8)
    return q, s


def test_listed_with_presets():
    r = subprocess.run([QUARK, 'backends', '--json'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    names = [b['name'] for b in json.loads(r.stdout)['backends']]
    assert names == ['quark', 'brevitas']
    text = subprocess.run([QUARK, 'backends'], capture_output=True, text=True).stdout
    block = text[text.index('brevitas '):]
    assert 'presets: int8_weight_per_tensor, int8_weight_per_channel' in block and 'w8a8' in block
    r = subprocess.run([QUARK, 'presets', '--backend', 'brevitas', '--json'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    presets = [p['name'] for p in json.loads(r.stdout)]
    assert {p['backend'] for p in json.loads(r.stdout)} == {'brevitas'}
    assert {'w8a8', 'int8_weight_per_channel', 'int4_weight_g128', 'mxfp4'} <= set(presets)


def test_found_only_through_the_backend_path(tmp_path):
    env = dict(os.environ, QUARK_BACKEND_PATH=os.environ['QUARK_BACKEND_PATH'].split(':')[0])
    r = subprocess.run([QUARK, 'backends', '--json'], capture_output=True, text=True, env=env)
    assert [b['name'] for b in json.loads(r.stdout)['backends']] == ['quark']


def test_selected_both_ways_and_exact(llama, tmp_path):
    src, originals = llama
    by_flag, by_config = tmp_path / 'flag', tmp_path / 'config'
    r = quantize(src, by_flag, '--backend', 'brevitas', '--preset', 'int8_weight_per_channel')
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / 'b.json'
    cfg.write_text(json.dumps({'backend': 'brevitas', 'exclude': ['lm_head'], 'global_quant_config': {
        'weight': {'preset': 'Int8WeightPerChannelFloat'}}}))
    r = quantize(src, by_config, '--config', str(cfg))
    assert r.returncode == 0, r.stderr
    a, b = read_checkpoint(by_flag), read_checkpoint(by_config)
    assert a.keys() == b.keys()
    for i in range(L):
        for m in LINEAR:
            name = 'model.layers.%d.%s.weight' % (i, m)
            q, s = brevitas_int8_per_channel(originals[name])
            assert a[name][0] == 'I8' and np.array_equal(a[name][1], q), name
            assert a[name + '_scale'][0] == 'F32'
            assert np.array_equal(a[name + '_scale'][1].view(np.uint32), s.view(np.uint32)), name
            assert np.array_equal(b[name][1], q)
            assert name + '_zero_point' not in a              # symmetric: no zero point in Quark's layout
    qc = json.loads((by_flag / 'config.json').read_text())['quantization_config']
    assert qc['quant_method'] == 'quark'
    layer = qc['brevitas']['layers']['model.layers.0.mlp.up_proj']['weight']
    assert (layer['bit_width'], layer['narrow_range'], layer['qmin'], layer['qmax']) == (8, True, -127, 127)
    assert qc['layer_quant_config']['model.layers.0.mlp.up_proj']['weight']['dtype'] == 'int8'


def verify(src, out):
    """quark verify's per-tensor SQNR (it reads the export back through the
    config recorded in it)."""
    r = subprocess.run([QUARK, 'verify', str(src), str(out), '--json'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return {t['name']: t['sqnr_db'] for t in json.loads(r.stdout)['tensors']}


@pytest.mark.parametrize('preset,export,floor', [
    ('int8_weight_per_channel', 'quark', 38), ('int8_fixed_point', 'integers', 33), ('int4_weight_g128', 'integers', 17),
    ('mxfp4', 'quark', 17), ('mxfp8', 'integers', 28), ('mxint8', 'quark', 12)])
def test_exports_read_back(llama, tmp_path, preset, export, floor):
    src, _ = llama
    out = tmp_path / 'out'
    r = quantize(src, out, '--backend', 'brevitas', '--preset', preset, '--export-format', export)
    assert r.returncode == 0, r.stderr
    sqnr = verify(src, out)
    assert len(sqnr) == L * len(LINEAR)
    assert min(sqnr.values()) > floor, sqnr


def test_int4_groups_in_quarks_packed_layout(llama, tmp_path):
    """IntWeightSymmetricGroupQuant (T = 7, narrow) packed as AMD Quark packs
    int4 per group: codes [in, out/8] words in the AWQ order, scales [G, out]."""
    src, originals = llama
    out = tmp_path / 'int4'
    r = quantize(src, out, '--backend', 'brevitas', '--preset', 'int4_weight_g128')
    assert r.returncode == 0, r.stderr
    t = read_checkpoint(out)
    for name in ('model.layers.0.mlp.up_proj', 'model.layers.1.self_attn.k_proj'):
        w = originals[name + '.weight']
        o, i = w.shape
        g = w.reshape(o, i // 128, 128)
        s = (np.maximum(np.abs(g).max(axis=2), np.float32(1e-10)) / np.float32(7)).astype(np.float32)
        q = np.clip(np.rint(g / s[:, :, None]), -7, 7).astype(np.int8).reshape(o, i)
        assert t[name + '.weight'][0] == 'I32' and t[name + '.weight'][1].shape == (i, o // 8)
        assert np.array_equal(unpack_int4(t[name + '.weight'][1]).T, q), name
        assert np.array_equal(t[name + '.weight_scale'][1], s.T)
        assert not unpack_int4(t[name + '.weight_zero_point'][1]).any()
    qc = json.loads((out / 'config.json').read_text())['quantization_config']
    spec = qc['layer_quant_config']['model.layers.0.mlp.up_proj']['weight']
    assert (spec['dtype'], spec['qscheme'], spec['symmetric'], spec['ch_axis'], spec['group_size']) == \
        ('int4', 'per_group', True, -1, 128)
    assert qc['libquark_config']['backend'] == 'brevitas'
    assert min(verify(src, out).values()) > 17


def test_integer_dump_with_sidecar(llama, tmp_path):
    src, originals = llama
    out = tmp_path / 'ints'
    r = quantize(src, out, '--backend', 'brevitas', '--preset', 'int4_weight_g128', '--export-format', 'integers')
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / 'integers.json').read_text())
    assert doc['format'] == 'libquark-integers'
    assert doc == json.loads((out / 'config.json').read_text())['quantization_config']
    t = read_checkpoint(out)
    name = 'model.layers.1.mlp.down_proj'
    info = doc['layers'][name]['weight']
    assert (info['bit_width'], info['qmin'], info['qmax'], info['granularity'], info['group_size']) == \
        (4, -7, 7, 'per_group', 128)
    q = t[info['tensor']][1]
    s = t[info['scale']][1]
    z = t[info['zero_point']][1]
    assert q.dtype == np.int8 and q.min() >= -7 and q.max() <= 7
    assert (z == 0).all()
    # reproduce the weights from the dump as a C implementation would
    w = originals[name + '.weight']
    deq = (q.reshape(q.shape[0], -1, 128).astype(np.float32) * s[:, :, None]).reshape(q.shape)
    assert np.abs(deq - w).max() <= (np.abs(w).reshape(w.shape[0], -1, 128).max(axis=2) / 7 / 2 + 1e-6).max()
    r = quantize(src, tmp_path / 'bad', '--backend', 'brevitas', '--preset', 'int4_weight_g128',
                 '--export-format', 'bytes')
    assert r.returncode == 1 and 'export-format' in r.stderr
    # the integer dump is the brevitas backend's own; the registry's formats do not have it
    r = quantize(src, tmp_path / 'bad', '--preset', 'int4_wo_128', '--export-format', 'integers')
    assert r.returncode == 1 and 'unknown checkpoint format "integers"' in r.stderr


def test_calibrated_w8a8_with_int_bias(tmp_path):
    """Int8ActPerTensorFloat scales from a saved session (the running mean of
    the per-batch abs percentile), Int32Bias codes from input x weight
    scale."""
    Quark = quark_module()
    REGISTRY = Quark.Registry.get_default()
    rng = np.random.default_rng(3)
    src = tmp_path / 'model'
    w = (rng.standard_normal((16, 32)) * 0.1).astype(np.float32)
    bias = (rng.standard_normal(16) * 0.05).astype(np.float32)
    writer = Quark.CheckpointWriter.new(str(src), 0, False)
    writer.add(Quark.tensor_from_array('fc.weight', w))
    writer.add(Quark.tensor_from_array('fc.bias', bias))
    writer.finish(None)
    model = Quark.Model.load(str(src), None)
    config = REGISTRY.get_backend('brevitas').new_config_for_preset('w8a8')
    session = Quark.Calibration.new_for_config(config, model)
    stats = []
    for b in range(4):
        x = (rng.standard_normal((8, 32)) * (b + 1)).astype(np.float32)
        session.observe('fc', Quark.Role.INPUT, x)
        stats.append(np.abs(x).max())       # N = 256 <= 50000: the 99.999th percentile is the maximum
    session.save(str(tmp_path / 'stats.json'))
    out = tmp_path / 'out'
    r = subprocess.run([QUARK, 'quantize', str(src), '-o', str(out), '--backend', 'brevitas', '--preset', 'w8a8',
                        '--calibration', str(tmp_path / 'stats.json')], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    t = read_checkpoint(out)
    # Brevitas's running mean in float32: buffer * (c / (c + 1)) + stat / (c + 1)
    mean = np.float32(stats[0])
    for c, s in enumerate(stats[1:], start=1):
        mean = np.float32(mean * np.float32(c / (c + 1))) + np.float32(np.float32(s) / np.float32(c + 1))
    s_in = np.float32(mean / np.float32(128))
    assert t['fc.input_scale'][1].item() == s_in
    q_w, s_w = brevitas_int8_per_channel(w)
    s_b = (s_in * s_w).astype(np.float32)
    assert np.array_equal(t['fc.bias_scale'][1], s_b)
    assert t['fc.bias'][0] == 'I32'
    assert np.array_equal(t['fc.bias'][1], np.rint(bias / s_b).astype(np.int32))


@pytest.mark.parametrize('preset', ['int8_weight_per_channel', 'int4_weight_g128'])
def test_written_as_each_layer_is_made(llama, tmp_path, preset):
    """quantize_model_to_writer hands each layer's tensors to the writer as
    soon as they are made (before 2026-12-06 the brevitas backend built the
    whole output in memory and wrote it at the end: 3.2 GB resident for a
    2 GB model): when the last tensor's progress is reported, most of the
    output is already in the writer's temporary directory. The tensors are
    those quantize_model() gives, in the same order."""
    Quark = quark_module()
    src, _ = llama
    registry = Quark.Registry.get_default()
    model = Quark.Model.load(str(src), None)
    quantizer = registry.new_quantizer(registry.get_backend('brevitas').new_config_for_preset(preset))
    out = tmp_path / 'streamed'
    seen = []

    def written(q, done, total, item):
        if done == total:
            seen.append(sum(p.stat().st_size for p in tmp_path.glob('.quark-tmp-*/**/*') if p.is_file()))
    quantizer.connect('progress', written)
    writer = Quark.CheckpointWriter.new(str(out), 0, False)
    quantizer.quantize_model_to_writer(model, None, writer, None)
    writer.finish(None)
    final = (out / 'model.safetensors').stat().st_size
    assert len(seen) == 1 and seen[0] > final // 2, (seen, final)

    # the same tensors in the same order (the header's room differs: the
    # quantizer tells the writer how many tensors to expect)
    whole = tmp_path / 'whole'
    quantizer.quantize_model(model, None, None).save(str(whole), 0, False, None, None)
    a, b = read_checkpoint(out), read_checkpoint(whole)
    assert list(a) == list(b)
    for k in a:
        assert a[k][0] == b[k][0] and np.array_equal(a[k][1], b[k][1]), k


@pytest.fixture(scope='module')
def wide_llama(tmp_path_factory):
    """One Llama layer whose MLP weights hold more than the 512 Ki elements
    the row path reads at a time (F = 2304: gate and up in two blocks of
    rows, down_proj's 2304-element rows 227 to a block): in bfloat16
    ('BF16'), its float32 widening (exact, 'F32'), and other values in
    float16 ('F16') and in float32 with every mantissa bit ('F32full').
    Two weights hold rows of zeros and tiny values."""
    rng = np.random.default_rng(7)
    shapes = llama_shapes(256, 2304, 320, 1)
    full = {k: (rng.standard_normal(s) * 0.02 * rng.uniform(0.5, 2, (s[0],) + (1,) * (len(s) - 1))).astype(np.float32)
            for k, s in shapes.items()}
    for k in ('model.layers.0.self_attn.q_proj.weight', 'model.layers.0.mlp.down_proj.weight'):
        # blocks of 32 where an MX scale's floor at 1e-10 (2^-34 to 2^-33)
        # matters or not: all zeros, a zero row, maxima below 2^-34, in
        # [2^-34, 1e-10), just above 1e-10, 2^-33 and a little above, and
        # a normal maximum among values far below the smallest element
        w = full[k]
        w[3, 0:32] = 0
        w[4] = 0
        w[5, 32:64] = rng.standard_normal(32) * 1e-12
        w[6, 64:96] = rng.uniform(-6.5e-11, 6.5e-11, 32)
        w[6, 96:128] = rng.uniform(-1.05e-10, 1.05e-10, 32)
        w[6, 160:192] = rng.uniform(-1.3e-10, 1.3e-10, 32)
        w[6, 170] = 2.0 ** -33
        w[7, 128:160] = rng.standard_normal(32) * 1e-30
        w[7, 130] = 0.05
        # a last group of 96 (elements 192 to 255 of a 256-element row)
        # of positive values only and one of negative values only: its
        # zero padding is the minimum, then the maximum
        w[8, 192:] = np.abs(w[8, 192:]) + 0.01
        w[9, 192:] = -np.abs(w[9, 192:]) - 0.01
    bf = {k: to_bf16(a) for k, a in full.items()}
    contents = {'BF16': {k: ('BF16', a) for k, a in bf.items()},
                'F32': {k: ('F32', from_bf16(a)) for k, a in bf.items()},
                'F16': {k: ('F16', (a * 1.37).astype(np.float16)) for k, a in full.items()},
                'F32full': {k: ('F32', a * np.float32(1.37)) for k, a in full.items()}}
    dirs = {}
    for dtype, tensors in contents.items():
        d = tmp_path_factory.mktemp('wide_' + dtype.lower())
        write_safetensors(d / 'model.safetensors', tensors, PT)
        (d / 'config.json').write_text(json.dumps({
            'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'hidden_size': 256,
            'intermediate_size': 2304, 'vocab_size': 320, 'num_hidden_layers': 1}))
        dirs[dtype] = d
    return dirs


def weight_config(tmp_path, weight):
    cfg = tmp_path / 'config.json'
    cfg.write_text(json.dumps({'backend': 'brevitas', 'exclude': ['lm_head'],
                               'global_quant_config': {'weight': weight}}))
    return ['--config', str(cfg)]


# Weights the row path takes: integers of up to 8 bits with a range
# statistic per tensor, channel and group, symmetric and shifted,
# power-of-two scales, other roundings, a group that does not divide the
# rows, 4-bit codes in AMD Quark's packing, the integer dump; MX blocks
# (FP4, FP6 and FP8 elements, MXInt8, shifted MXUInt8); FP8 per channel and
# per tensor, OCP and FNUZ; MSE grids per channel and per group (integer,
# shifted, fixed point, a group that does not divide the rows, FP8, MXInt8).
ROW_CASES = [
    (['--preset', 'int8_weight_per_tensor'], None),
    (['--preset', 'int8_weight_per_channel'], None),
    (['--preset', 'int8_fixed_point'], None),
    (['--preset', 'int4_weight_g128'], None),
    (['--preset', 'int4_weight_g128', '--export-format', 'integers'], None),
    ([], {'preset': 'ShiftedUint8WeightPerTensorFloat'}),
    ([], {'preset': 'ShiftedUint8WeightPerChannelFloat'}),
    ([], {'preset': 'ShiftedUint8WeightGroupQuantFloat'}),
    ([], {'preset': 'ShiftedUint8WeightGroupQuantFloat', 'bit_width': 4}),
    ([], {'preset': 'ShiftedUint8WeightGroupQuantFloat', 'group_size': 96}),
    ([], {'preset': 'Int8WeightPerChannelFloat', 'rounding': 'floor'}),
    ([], {'preset': 'ShiftedUint8WeightPerChannelFloat', 'bit_width': 6, 'rounding': 'ceil'}),
    ([], {'preset': 'Int8WeightPerTensorFloat', 'bit_width': 5, 'rounding': 'round_to_zero'}),
    ([], {'preset': 'Int8WeightPerChannelFixedPoint', 'pof2_rounding': 'round'}),
    ([], {'preset': 'Int8WeightPerTensorFixedPoint', 'pof2_rounding': 'floor'}),
    (['--preset', 'mxfp4'], None),
    (['--preset', 'mxfp4', '--export-format', 'integers'], None),
    (['--preset', 'mxfp8'], None),
    (['--preset', 'mxint8'], None),
    ([], {'preset': 'ShiftedMXUInt8Weight'}),
    ([], {'preset': 'MXFloat4e2m1Weight', 'exponent_bit_width': 2, 'mantissa_bit_width': 3, 'bit_width': 6}),
    ([], {'preset': 'MXFloat4e2m1Weight', 'group_size': 96}),
    ([], {'preset': 'Fp8e4m3OCPWeightPerChannelFloat'}),
    ([], {'preset': 'Fp8e5m2OCPWeightPerTensorFloat'}),
    ([], {'preset': 'Fp8e4m3FNUZWeightPerChannelFloat'}),
    ([], {'preset': 'Int8WeightPerChannelFloatMSE'}),
    ([], {'preset': 'ShiftedUint8WeightPerChannelFloatMSE'}),
    ([], {'preset': 'Int8WeightPerChannelFixedPointMSE'}),
    ([], {'preset': 'IntWeightSymmetricGroupQuant', 'group_size': 96, 'param_type': 'mse'}),
    ([], {'preset': 'Fp8e4m3OCPWeightPerChannelFloatMSE'}),
    ([], {'preset': 'MXInt8WeightMSE'}),
]


@pytest.mark.parametrize('args,weight', ROW_CASES, ids=[' '.join(a) or json.dumps(w) for a, w in ROW_CASES])
def test_bfloat16_rows_equal_float32_rows(wide_llama, tmp_path, args, weight):
    """A bfloat16 weight and its float32 widening (exact) go through the
    row path with the bfloat16 and the float32 kernels: every quantized
    tensor and its parameters, packed as the export packs them, must come
    out the same, byte for byte."""
    if weight is not None:
        args = args + weight_config(tmp_path, weight)
    outs = {}
    for dtype in ('BF16', 'F32'):
        src = wide_llama[dtype]
        outs[dtype] = tmp_path / dtype
        r = quantize(src, outs[dtype], '--backend', 'brevitas', *args)
        assert r.returncode == 0, r.stderr
    a, b = read_checkpoint(outs['BF16']), read_checkpoint(outs['F32'])
    assert a.keys() == b.keys()
    quantized = [k for k in a if a[k][0] != 'BF16']
    assert len(quantized) >= 2 * len(LINEAR), quantized    # codes and scales at least
    for k in quantized:
        assert a[k][0] == b[k][0] and a[k][1].tobytes() == b[k][1].tobytes(), k
    ia, ib = outs['BF16'] / 'integers.json', outs['F32'] / 'integers.json'
    assert ia.exists() == ib.exists() and (not ia.exists() or ia.read_bytes() == ib.read_bytes())


@pytest.mark.parametrize('dtype', ['BF16', 'F16', 'F32full'])
@pytest.mark.parametrize('args,weight', ROW_CASES, ids=[' '.join(a) or json.dumps(w) for a, w in ROW_CASES])
def test_rows_equal_the_float32_path(wide_llama, tmp_path, dtype, args, weight):
    """The row path (bv_quantize_weight_rows(): blocks of rows read into a
    buffer, codes written one per byte) against the float32 path
    (bv_quantize_weight(), which quantize_tensor() runs on the tensor's
    float32 values): every weight's codes, scales and zero points of the
    integer dump, byte for byte, for bfloat16, float16 and float32 weights."""
    Quark = quark_module()
    registry = Quark.Registry.get_default()
    src = wide_llama[dtype]
    args = [a for a in args if a not in ('--export-format', 'integers')]
    if weight is not None:
        args = args + weight_config(tmp_path, weight)
        config = registry.config_from_string((tmp_path / 'config.json').read_text())
    else:
        config = registry.get_backend('brevitas').new_config_for_preset(args[1])
    out = tmp_path / 'out'
    r = quantize(src, out, '--backend', 'brevitas', '--export-format', 'integers', *args)
    assert r.returncode == 0, r.stderr
    got = read_checkpoint(out)
    quantizer = registry.new_quantizer(config)
    model = Quark.Model.load(str(src), None)
    checked = 0
    for name in [k for k in got if k.endswith('_proj.weight')]:
        layer = name[:-len('.weight')]
        ref = quantizer.quantize_tensor(model.get_tensor(name),
                                        config.get_tensor_spec(layer, 'Linear', Quark.Role.WEIGHT))
        for suffix in ('', '_scale', '_zero_point'):
            if name + suffix in got:
                want = ref.get_tensor(name + suffix)
                assert want is not None, name + suffix
                assert got[name + suffix][1].tobytes() == want.to_numpy().tobytes(), (name + suffix)
                checked += 1
    assert checked >= 2 * len(LINEAR), checked


@pytest.mark.parametrize('preset', ['int8_weight_per_tensor', 'int8_weight_per_channel', 'int4_weight_g128'])
def test_bfloat16_rows_refuse_nan(tmp_path, preset):
    """A NaN in the second block of a bfloat16 weight's rows: an error
    naming the tensor, and no output directory."""
    rng = np.random.default_rng(3)
    shapes = llama_shapes(256, 2304, 320, 1)
    bf = {k: to_bf16(rng.standard_normal(s) * 0.02) for k, s in shapes.items()}
    bad = 'model.layers.0.mlp.up_proj.weight'
    bf[bad][2200, 17] = 0x7fc0                                 # a bfloat16 NaN, row 2200 of 2304
    src = tmp_path / 'src'
    src.mkdir()
    write_safetensors(src / 'model.safetensors', {k: ('BF16', a) for k, a in bf.items()}, PT)
    (src / 'config.json').write_text(json.dumps({'architectures': ['LlamaForCausalLM'], 'model_type': 'llama'}))
    before = (src / 'model.safetensors').read_bytes()
    r = quantize(src, tmp_path / 'out', '--backend', 'brevitas', '--preset', preset)
    assert r.returncode != 0
    assert 'tensor %s: holds NaN or infinity' % bad in r.stderr, r.stderr
    assert not (tmp_path / 'out').exists()
    assert (src / 'model.safetensors').read_bytes() == before


# the row path and the float32 path in one model, both on workers: MSE
# weights (integer, shifted and FP8 grids), 12-bit weights (32-bit codes
# kept) and fixed-point MSE between the row path's
MIXED = {'backend': 'brevitas', 'exclude': ['lm_head'],
         'global_quant_config': {'weight': {'preset': 'Int8WeightPerChannelFloat'}},
         'layer_quant_config': {'*.mlp.up_proj': {'weight': {'preset': 'Int8WeightPerChannelFloatMSE'}},
                                '*.mlp.gate_proj': {'weight': {'preset': 'ShiftedUint8WeightPerChannelFloatMSE'}},
                                '*.self_attn.q_proj': {'weight': {'preset': 'Int8WeightPerChannelFloat',
                                                                  'bit_width': 12}},
                                '*.self_attn.v_proj': {'weight': {'preset': 'Fp8e4m3OCPWeightPerChannelFloatMSE'}},
                                '*.self_attn.o_proj': {'weight': {'preset': 'Int8WeightPerTensorFixedPointMSE'}},
                                '*.self_attn.k_proj': {'weight': {'preset': 'MXFloat4e2m1Weight'}}}}


@pytest.mark.parametrize('args', [['--preset', 'int8_weight_per_channel'], ['--preset', 'mxfp4'],
                                  ['--preset', 'int4_weight_g128', '--export-format', 'integers'], 'mixed'])
def test_threads_give_the_same_files(llama, tmp_path, args):
    """Weights are quantized on worker threads ahead of the layer being
    written; the files do not depend on the number of threads (the run
    takes the results back in model order)."""
    src, _ = llama
    if args == 'mixed':
        cfg = tmp_path / 'mixed.json'
        cfg.write_text(json.dumps(MIXED))
        args = ['--config', str(cfg)]
    outs = []
    for j in ('1', '2', '5'):
        outs.append(tmp_path / ('j' + j))
        r = quantize(src, outs[-1], '--backend', 'brevitas', '-j', j, *args)
        assert r.returncode == 0, r.stderr
    for out in outs[1:]:
        names = sorted(p.name for p in outs[0].iterdir())
        assert names == sorted(p.name for p in out.iterdir())
        for name in names:
            assert (out / name).read_bytes() == (outs[0] / name).read_bytes(), (out, name)


def test_threads_stop_at_an_error_or_a_cancel(llama, tmp_path):
    """A NaN in a weight that a worker quantizes: the run's error names the
    tensor and no output is left; a run cancelled from its progress
    signal while workers hold later weights stops with
    G_IO_ERROR_CANCELLED (the workers' results are dropped)."""
    src, originals = llama
    bad = tmp_path / 'bad'
    bad.mkdir()
    arrays = {k: to_bf16(v) for k, v in originals.items()}
    name = 'model.layers.1.mlp.gate_proj.weight'
    arrays[name][3, 5] = 0x7f80                                  # +infinity
    write_safetensors(bad / 'model.safetensors', {k: ('BF16', a) for k, a in arrays.items()}, PT)
    (bad / 'config.json').write_text(json.dumps({'architectures': ['LlamaForCausalLM'], 'model_type': 'llama'}))
    cfg = tmp_path / 'mixed.json'
    cfg.write_text(json.dumps(MIXED))
    # the row path's int8 per channel, then the MSE grid of the float32 path
    for args in (['--preset', 'int8_weight_per_channel'], ['--config', str(cfg)]):
        r = quantize(bad, tmp_path / 'out', '--backend', 'brevitas', '-j', '3', *args)
        assert r.returncode == 1
        assert 'tensor %s: holds NaN or infinity' % name in r.stderr, r.stderr
        assert not (tmp_path / 'out').exists()

    Quark = quark_module()
    from gi.repository import Gio, GLib
    registry = Quark.Registry.get_default()
    model = Quark.Model.load(str(src), None)
    quantizer = registry.new_quantizer(registry.get_backend('brevitas').new_config_for_preset('int8_weight_per_channel'))
    quantizer.set_property('threads', 3)
    cancellable = Gio.Cancellable()
    seen = []

    def progress(q, done, total, item):
        seen.append(done)
        if done == 5:
            cancellable.cancel()
    quantizer.connect('progress', progress)
    with pytest.raises(GLib.Error) as e:
        quantizer.quantize_model(model, None, cancellable)
    assert e.value.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)
    assert max(seen) == 5
