# Checkpoint formats (`--export-format`): what each engine's loader expects,
# written here as data beside the loader file it comes from, checked on a
# generated Llama-shaped checkpoint (float32 and bfloat16) and on the small
# real Llama in ../shared/models/docs-llama when it is there. Packed tensors
# are decoded here with numpy, independently of libquark's reader; the read
# back through libquark (`quark verify`) must give the same floats, and for
# float32 models the same floats as the default (quark) export.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import subprocess

import pytest

np = pytest.importorskip('numpy')

from safetensors_writer import write_safetensors  # noqa: E402
from test_quantize_cli import read_checkpoint, to_bf16, from_bf16, llama_shapes, LINEAR  # noqa: E402

QUARK = os.environ['QUARK_TOOL']
H, F, V, L = 256, 512, 320, 2
DOCS_LLAMA = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared', 'models', 'docs-llama')

# ---- what the loaders expect ------------------------------------------------
#
# compressed-tensors, src/compressed_tensors/quantization/quant_args.py: the
# QuantizationArgs keys, and strategy inferred from group_size when absent.
ARGS_KEYS = {'num_bits', 'type', 'symmetric', 'group_size', 'strategy', 'block_structure', 'dynamic',
             'actorder', 'observer', 'observer_kwargs'}
# compressed-tensors, src/compressed_tensors/quantization/quant_scheme.py: the
# MXFP4 preset's args add scale_dtype torch.uint8 (zp_dtype, serialized as
# null for symmetric args by quant_args.py's field_serializer).
MX_ARGS_KEYS = ARGS_KEYS | {'scale_dtype', 'zp_dtype'}
# compressed-tensors, src/compressed_tensors/quantization/quant_config.py:
# the top-level keys; quantization_status "compressed" for packed weights.
CONFIG_KEYS = {'quant_method', 'format', 'quantization_status', 'config_groups', 'ignore', 'kv_cache_scheme',
               'global_compression_ratio'}
# vLLM, vllm/model_executor/layers/quantization/compressed_tensors/schemes/
# (per scheme: the parameter names create_weights registers, their dtypes
# and shapes; O = output features, I = input features, G = groups):
#   compressed_tensors_wNa16.py: weight_packed int32 [O, I/pack], weight_scale
#     params_dtype [O, I/group] (channel: [O, 1]), weight_shape int64 [2];
#     pack factor 32 // num_bits; num_bits 4 or 8.
#   compressed_tensors_w8a8_int8.py: weight int8 [O, I], weight_scale float32
#     [O, 1] (channel) or one per tensor, input_scale float32 [1] when static,
#     input_zero_point int8 [1] for asymmetric inputs.
#   compressed_tensors_w8a8_fp8.py: weight float8_e4m3fn [O, I], weight_scale
#     float32 [O, 1] or one per tensor (block: [ceil(O/bo), ceil(I/bi)]),
#     input_scale float32 when static.
#   compressed_tensors_w4a16_nvfp4.py (CompressedTensorsW4A16Fp4): weight_packed
#     uint8 [O, I/2], weight_scale float8_e4m3fn [O, I/16], weight_global_scale
#     float32 [one per fused part], of which process_weights_after_loading
#     keeps the max and inverts it: the parts of a fused layer (q/k/v,
#     gate/up) must share it. An element is its E2M1 value times
#     weight_scale / weight_global_scale (compressed-tensors'
#     quantization/utils/helpers.py: global = 448 * 6 / amax, group scale
#     E4M3(global * amax_group / 6), 0 replaced by 0.125).
#   compressed_tensors_w4a8_fp8.py (CompressedTensorsW4A8Fp8): weight_packed
#     int32 [O, I/8], weight_scale params_dtype [O, I/128], weight_shape
#     int64 [2] (pack-quantized's tensors); group size 128 or a ValueError.
#   compressed_tensors_w4a4_nvfp4.py (CompressedTensorsW4A4Fp4): the
#     NVFP4A16 tensors and input_global_scale float32 [one per fused part],
#     which process_weights_after_loading also keeps the max of and inverts.
#   compressed_tensors_w4a16_mxfp4.py: weight_packed uint8 [O, I/2],
#     weight_scale uint8 [O, I/32] (E8M0 exponents), no global scale;
#     compressors/quantized_compressors/fp4_quantized.py: pack_fp4_to_uint8
#     puts element 2k in the low nibble, codes E2M1 (sign bit 3, magnitude
#     index 0-7 of 0 0.5 1 1.5 2 3 4 6).
# compressed-tensors, src/compressed_tensors/compressors/quantized_compressors/
# pack_quantized.py: values stored as q + 2^(b-1), element i of a word at bits
# b*i along the input dimension; asymmetric group/channel zero points packed
# the same way along the output dimension, [ceil(O/pack), G].
CASES = {
    # name: (how to quantize, format, scheme vLLM picks, weight args, input args or None)
    'w4a16_g128': (['--preset', 'int4_wo_128'], 'pack-quantized', 'CompressedTensorsWNA16',
                   dict(num_bits=4, type='int', symmetric=True, strategy='group', group_size=128), None),
    'w4a16_g64': (['--preset', 'int4_wo_64'], 'pack-quantized', 'CompressedTensorsWNA16',
                  dict(num_bits=4, type='int', symmetric=True, strategy='group', group_size=64), None),
    'w4a16_g32': (['--preset', 'int4_wo_32'], 'pack-quantized', 'CompressedTensorsWNA16',
                  dict(num_bits=4, type='int', symmetric=True, strategy='group', group_size=32), None),
    'w4a16_g128_asym': (['--preset', 'uint4_wo_128'], 'pack-quantized', 'CompressedTensorsWNA16',
                        dict(num_bits=4, type='int', symmetric=False, strategy='group', group_size=128), None),
    'w8a16_channel': (['--preset', 'int8_per_channel_wo'], 'pack-quantized', 'CompressedTensorsWNA16',
                      dict(num_bits=8, type='int', symmetric=True, strategy='channel', group_size=None), None),
    'w8a16_g64_asym': ({'weight': {'dtype': 'uint8', 'qscheme': 'per_group', 'ch_axis': -1, 'group_size': 64,
                                   'symmetric': False}},
                       'pack-quantized', 'CompressedTensorsWNA16',
                       dict(num_bits=8, type='int', symmetric=False, strategy='group', group_size=64), None),
    'w4a16_channel_asym': ({'weight': {'dtype': 'uint4', 'qscheme': 'per_channel', 'ch_axis': 0,
                                       'symmetric': False}},
                           'pack-quantized', 'CompressedTensorsWNA16',
                           dict(num_bits=4, type='int', symmetric=False, strategy='channel', group_size=None), None),
    'w8a8_int8_static': (['--preset', 'int8'], 'int-quantized', 'CompressedTensorsW8A8Int8',
                         dict(num_bits=8, type='int', symmetric=True, strategy='tensor'),
                         dict(num_bits=8, type='int', symmetric=True, strategy='tensor', dynamic=False)),
    'w8a8_int8_dynamic_token': ({'weight': {'dtype': 'int8', 'qscheme': 'per_channel', 'ch_axis': 0},
                                 'input_tensors': {'dtype': 'int8', 'qscheme': 'per_channel', 'ch_axis': 1,
                                                   'is_dynamic': True}},
                                'int-quantized', 'CompressedTensorsW8A8Int8',
                                dict(num_bits=8, type='int', symmetric=True, strategy='channel'),
                                dict(num_bits=8, type='int', symmetric=True, strategy='token', dynamic=True)),
    'w8a8_fp8_tensor': (['--preset', 'fp8'], 'float-quantized', 'CompressedTensorsW8A8Fp8',
                        dict(num_bits=8, type='float', symmetric=True, strategy='tensor'),
                        dict(num_bits=8, type='float', symmetric=True, strategy='tensor', dynamic=False)),
    'w8a8_fp8_channel_token': (['--preset', 'ptpc_fp8'], 'float-quantized', 'CompressedTensorsW8A8Fp8',
                               dict(num_bits=8, type='float', symmetric=True, strategy='channel'),
                               dict(num_bits=8, type='float', symmetric=True, strategy='token', dynamic=True)),
    'mxfp4': (['--preset', 'mxfp4'], 'mxfp4-pack-quantized', 'CompressedTensorsW4A16Mxfp4',
              dict(num_bits=4, type='float', symmetric=True, strategy='group', group_size=32, scale_dtype='torch.uint8'),
              dict(num_bits=4, type='float', symmetric=True, strategy='group', group_size=32, dynamic=True,
                   scale_dtype='torch.uint8')),
    'nvfp4_a16': ({'weight': {'dtype': 'fp4', 'qscheme': 'per_group', 'ch_axis': -1, 'group_size': 16,
                              'symmetric': True, 'scale_format': 'e4m3'}},
                  'nvfp4-pack-quantized', 'CompressedTensorsW4A16Fp4',
                  dict(num_bits=4, type='float', symmetric=True, strategy='tensor_group', group_size=16,
                       dynamic=False, scale_dtype='torch.float8_e4m3fn'), None),
    # W4A8: int4 groups of 128 with dynamic per-token FP8 inputs (compressed-
    # tensors' W4AFP8 preset), the weights packed as pack-quantized's
    'w4a8_fp8': ({'weight': {'dtype': 'int4', 'qscheme': 'per_group', 'ch_axis': -1, 'group_size': 128},
                  'input_tensors': {'dtype': 'fp8_e4m3', 'qscheme': 'per_channel', 'ch_axis': 1,
                                    'is_dynamic': True}},
                 'pack-quantized', 'CompressedTensorsW4A8Fp8',
                 dict(num_bits=4, type='int', symmetric=True, strategy='group', group_size=128),
                 dict(num_bits=8, type='float', symmetric=True, strategy='token', dynamic=True)),
    # compressed-tensors' NVFP4 preset (W4A4): input group scales at run time
    # under a static calibrated global scale (dynamic "local", observer
    # static_minmax)
    'nvfp4': ({'weight': {'dtype': 'fp4', 'qscheme': 'per_group', 'ch_axis': -1, 'group_size': 16,
                          'symmetric': True, 'scale_format': 'e4m3'},
               'input_tensors': {'dtype': 'fp4', 'qscheme': 'per_group', 'ch_axis': -1, 'group_size': 16,
                                 'symmetric': True, 'scale_format': 'e4m3', 'is_dynamic': True}},
              'nvfp4-pack-quantized', 'CompressedTensorsW4A4Fp4',
              dict(num_bits=4, type='float', symmetric=True, strategy='tensor_group', group_size=16,
                   dynamic=False, scale_dtype='torch.float8_e4m3fn'),
              dict(num_bits=4, type='float', symmetric=True, strategy='tensor_group', group_size=16,
                   dynamic='local', observer='static_minmax', scale_dtype='torch.float8_e4m3fn')),
    'fp8_block_128': ({'weight': {'dtype': 'fp8_e4m3', 'qscheme': 'per_block', 'block_size': [128, 128]},
                       'input_tensors': {'dtype': 'fp8_e4m3', 'qscheme': 'per_channel', 'ch_axis': 1,
                                         'is_dynamic': True}},
                      'float-quantized', 'CompressedTensorsW8A8Fp8 (block)',
                      dict(num_bits=8, type='float', symmetric=True, strategy='block', block_structure=[128, 128]),
                      dict(num_bits=8, type='float', symmetric=True, strategy='token', dynamic=True)),
}


def vllm_scheme(fmt, w, a):
    """The scheme vLLM's CompressedTensorsConfig._get_scheme_from_parts picks
    (vllm/model_executor/layers/quantization/compressed_tensors/
    compressed_tensors.py), restated as data-driven predicates."""
    activation_formats = {'naive-quantized', 'int-quantized', 'float-quantized'}
    # _is_fp4a4_nvfp4 (weights and inputs: tensor_group, symmetric, group of
    # 16, float, 4 bits), checked first
    if a is not None and all(x['strategy'] == 'tensor_group' and x['symmetric'] and x['group_size'] == 16
                             and x['type'] == 'float' and x['num_bits'] == 4 for x in (w, a)):
        return 'CompressedTensorsW4A4Fp4'
    # _is_fp4a16_nvfp4 (weights only: float, 4 bits, tensor_group, group of 16, symmetric)
    if a is None and w['type'] == 'float' and w['num_bits'] == 4 and w['strategy'] == 'tensor_group' \
            and w['group_size'] == 16 and w['symmetric']:
        return 'CompressedTensorsW4A16Fp4'
    # _is_fp8_w4a8 (4-bit group weights, static and symmetric; 8-bit dynamic
    # symmetric per-token inputs) and CompressedTensorsW4A8Fp8's group of 128
    if a is not None and w['num_bits'] == 4 and w['strategy'] == 'group' and not w['dynamic'] \
            and w['symmetric'] and a['num_bits'] == 8 and a['strategy'] == 'token' and a['dynamic'] is True \
            and a['symmetric'] and w['group_size'] == 128:
        return 'CompressedTensorsW4A8Fp8'
    # _is_mxfp4 (float, 4 bits, group of 32, symmetric), before the others
    if w['type'] == 'float' and w['num_bits'] == 4 and w['strategy'] == 'group' and w['group_size'] == 32 \
            and w['symmetric']:
        return 'CompressedTensorsW4A16Mxfp4'
    if a is None and w['strategy'] in ('channel', 'group') and not w['dynamic'] and fmt == 'pack-quantized' \
            and w['num_bits'] in (4, 8):
        return 'CompressedTensorsWNA16'     # (asymmetric: the zero-point variant of later vLLM)
    if fmt in activation_formats and a is not None:
        if w['type'] == a['type'] == 'float' and w['symmetric'] and not w['dynamic']:
            if w['strategy'] in ('tensor', 'channel') and (a['dynamic'] or
                                                        (a['symmetric'] and a['strategy'] == 'tensor')):
                return 'CompressedTensorsW8A8Fp8'
            if w['strategy'] == 'block' and a['dynamic']:
                return 'CompressedTensorsW8A8Fp8 (block)'
        if w['num_bits'] == a['num_bits'] == 8 and w['strategy'] in ('tensor', 'channel') and w['symmetric']:
            if a['strategy'] == 'tensor' and not a['dynamic']:
                return 'CompressedTensorsW8A8Int8'
            if a['strategy'] == 'token' and a['dynamic']:
                return 'CompressedTensorsW8A8Int8'
    return None


# ---- the model and how to quantize it --------------------------------------

def quark_gi():
    """The Quark module through introspection, or a skip (the sanitizer
    run builds without introspection: the CLI parts of a test run there)."""
    try:
        import gi
        gi.require_version('Quark', '1.0')
        from gi.repository import Quark
    except (ImportError, ValueError) as e:
        pytest.skip('no Quark typelib: %s' % e)
    return Quark


def make_llama(d, dtype, rng):
    shapes = llama_shapes(H, F, V, L)
    floats = {k: (rng.standard_normal(s) * 0.02 * rng.uniform(0.5, 2, (s[0],) + (1,) * (len(s) - 1)))
              .astype(np.float32) for k, s in shapes.items()}
    if dtype == 'BF16':
        stored = {k: ('BF16', to_bf16(a)) for k, a in floats.items()}
        floats = {k: from_bf16(a[1]) for k, a in stored.items()}
    else:
        stored = {k: ('F32', a) for k, a in floats.items()}
    d.mkdir()
    write_safetensors(d / 'model.safetensors', stored, {'format': 'pt'})
    (d / 'config.json').write_text(json.dumps({
        'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'hidden_size': H, 'intermediate_size': F,
        'vocab_size': V, 'num_hidden_layers': L, 'torch_dtype': 'bfloat16' if dtype == 'BF16' else 'float32'}))
    return floats


@pytest.fixture(scope='module', params=['F32', 'BF16'])
def model(request, tmp_path_factory):
    d = tmp_path_factory.mktemp('llama') / request.param
    floats = make_llama(d, request.param, np.random.default_rng(7))
    return d, floats, request.param


def calibration_file(src, config_path, tmp_path):
    """Static input scales: a calibration session of the config, fed random
    activations per layer (as torch hooks would)."""
    Quark = quark_gi()
    registry = Quark.Registry.get_default()
    config = registry.config_from_file(str(config_path))
    m = Quark.Model.load(str(src), None)
    session = Quark.Calibration.new_for_config(config, m)
    # the algorithms (algo_config) read second moments
    session.props.second_moments = 'algo_config' in json.loads(config_path.read_text())
    observe_inputs(session, np.random.default_rng(1))
    path = tmp_path / 'stats.json'
    session.save(str(path))
    return path


def observe_inputs(session, rng):
    """Random inputs for every Linear layer of the generated model."""
    from gi.repository import Quark
    for i in range(L):
        for layer in LINEAR:
            width = F if layer == 'mlp.down_proj' else H
            session.observe('model.layers.%d.%s' % (i, layer), Quark.Role.INPUT,
                            (rng.standard_normal((4, width)) * 0.5).astype(np.float32))


def config_args(how, tmp_path, src):
    """CLI arguments for a case: a preset, or a config for every Linear layer
    but lm_head (written to a file)."""
    if isinstance(how, list):
        preset = how[1]
        text = subprocess.run([QUARK, 'presets', '--show', preset], capture_output=True, text=True, check=True).stdout
        path = tmp_path / 'config.json'
        path.write_text(text)
        return how, path
    config = {'backend': 'quark', 'quant_method': 'quark', 'exclude': ['lm_head'],
              'global_quant_config': {'weight': how['weight'], 'input_tensors': how.get('input_tensors')}}
    path = tmp_path / 'config.json'
    path.write_text(json.dumps(config))
    return ['--config', str(path)], path


def quantize(src, out, *args):
    return subprocess.run([QUARK, 'quantize', str(src), '-o', str(out), *args],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def export(src, tmp_path, case, fmt='compressed-tensors', name='out'):
    how = CASES[case][0]
    args, config_path = config_args(how, tmp_path, src)
    cfg = json.loads(config_path.read_text())
    inputs = cfg['global_quant_config'].get('input_tensors')
    # static inputs, and NVFP4's static global scale, need calibration
    if inputs and (not inputs.get('is_dynamic') or inputs.get('scale_format') == 'e4m3'):
        args = args + ['--calibration', str(calibration_file(src, config_path, tmp_path))]
    out = tmp_path / name
    r = quantize(src, out, *args, '--export-format', fmt)
    assert r.returncode == 0, r.stderr
    return out


# ---- an independent decoder --------------------------------------------------

def unpack_rows(words, bits, n):
    """int32 words [R, W] -> signed codes [R, n] (pack_quantized.py's layout)."""
    per = 32 // bits
    w = words.view(np.uint32)
    out = np.empty((w.shape[0], w.shape[1] * per), np.int32)
    for j in range(per):
        out[:, j::per] = (w >> (bits * j)) & ((1 << bits) - 1)
    return out[:, :n] - (1 << (bits - 1))


def as_float(t):
    kind, a = t
    if kind == 'BF16':
        return from_bf16(a)
    if kind == 'F8_E4M3':
        return decode_e4m3(a)
    return a.astype(np.float32)


def decode_e4m3(b):
    b = b.astype(np.int32)
    s = np.where(b & 0x80, -1.0, 1.0)
    e = (b >> 3) & 0xF
    m = b & 7
    v = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * 2.0 ** (e - 7))
    v = np.where((e == 15) & (m == 7), np.nan, v)
    return (s * v).astype(np.float32)


def decode_layer(t, layer, fmt, w, shape):
    """The float32 weights of one layer, from the stored tensors only."""
    O, I = shape
    scale = as_float(t[layer + '.weight_scale'])
    if fmt == 'nvfp4-pack-quantized':
        b = t[layer + '.weight_packed'][1].astype(np.int32)
        codes = np.stack([b & 15, b >> 4], axis=-1).reshape(O, I)
        e2m1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)
        g = t[layer + '.weight_global_scale'][1].astype(np.float32)
        eff = (scale / g).astype(np.float32)          # weight_scale / weight_global_scale, in float32
        return (e2m1[codes] * np.repeat(eff, 16, axis=1)).astype(np.float32)
    if fmt == 'mxfp4-pack-quantized':
        b = t[layer + '.weight_packed'][1].astype(np.int32)
        codes = np.stack([b & 15, b >> 4], axis=-1).reshape(O, I)
        e2m1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)
        e = t[layer + '.weight_scale'][1].astype(np.int32)
        return (e2m1[codes] * np.repeat(np.ldexp(np.float32(1), e - 127).astype(np.float32), 32, axis=1)) \
            .astype(np.float32)
    if fmt == 'pack-quantized':
        assert t[layer + '.weight_shape'][1].tolist() == [O, I]
        q = unpack_rows(t[layer + '.weight_packed'][1], w['num_bits'], I).astype(np.float32)
    else:
        q = as_float(t[layer + '.weight'])
    z = np.zeros_like(scale)
    if not w['symmetric']:
        zt = t[layer + '.weight_zero_point'][1]
        if fmt == 'pack-quantized' and w['strategy'] != 'tensor':
            z = unpack_rows(np.ascontiguousarray(zt.T), w['num_bits'], O).T.astype(np.float32)
        else:
            z = zt.astype(np.float32).reshape(scale.shape)
    if w['strategy'] == 'group':
        g = w['group_size']
        s = np.repeat(scale, g, axis=1)
        zz = np.repeat(z, g, axis=1)
    elif w['strategy'] == 'block':
        bo, bi = w['block_structure']
        s = np.repeat(np.repeat(scale, bo, axis=0), bi, axis=1)[:O, :I]
        zz = 0
    elif w['strategy'] == 'channel':
        s, zz = scale.reshape(O, 1), z.reshape(O, 1)
    else:
        s, zz = scale.reshape(()), z.reshape(())
    return ((q - zz) * s).astype(np.float32)


def verify_floats(original, quantized, tmp_path):
    """libquark's read-back of QUANTIZED, via `quark verify --json`."""
    r = subprocess.run([QUARK, 'verify', str(original), str(quantized), '--json', '--threshold', '0'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def dequantized(path):
    """libquark's read-back as arrays (Python API)."""
    Quark = quark_gi()
    m = Quark.Model.load(str(path), None)
    qc = json.loads((path / 'config.json').read_text())['quantization_config']
    registry = Quark.Registry.get_default()
    fmt = registry.format_for_checkpoint(_json_node(qc))
    if fmt is not None and fmt.can_dequantize():
        out = fmt.dequantize_model(m)
    else:
        config = registry.config_from_string(json.dumps(dict(qc, backend='quark')))
        out = registry.new_quantizer(config).dequantize_model(m)
    return {out.get_tensor_at(i).get_name(): np.asarray(out.get_tensor_at(i).to_numpy())
            for i in range(out.get_n_tensors())}


def _json_node(obj):
    quark_gi()
    from gi.repository import Json
    return Json.from_string(json.dumps(obj))


# ---- the tests ---------------------------------------------------------------

@pytest.mark.parametrize('case', sorted(CASES))
def test_compressed_tensors_layout(model, tmp_path, case):
    src, floats, dtype = model
    how, fmt, scheme, w_expected, a_expected = CASES[case]
    out = export(src, tmp_path, case)
    qc = json.loads((out / 'config.json').read_text())['quantization_config']

    # the config, as compressed-tensors validates it and vLLM reads it
    assert set(qc) == CONFIG_KEYS
    assert (qc['quant_method'], qc['format'], qc['quantization_status']) == ('compressed-tensors', fmt, 'compressed')
    assert qc['ignore'] == ['lm_head']
    (group,) = qc['config_groups'].values()
    assert group['targets'] == ['Linear'] and group['output_activations'] is None
    w = group['weights']
    keys = MX_ARGS_KEYS if fmt in ('mxfp4-pack-quantized', 'nvfp4-pack-quantized') else ARGS_KEYS
    assert set(w) == keys
    assert {k: w[k] for k in w_expected} == w_expected
    a = group['input_activations']
    if a_expected is None:
        assert a is None
    else:
        assert set(a) == keys and {k: a[k] for k in a_expected} == a_expected
    assert vllm_scheme(qc['format'], w, a) == scheme

    # the tensors, as the scheme's create_weights allocates them
    t = read_checkpoint(out)
    scale_dtype = ('BF16' if dtype == 'BF16' else 'F32') if fmt == 'pack-quantized' else \
        'U8' if fmt == 'mxfp4-pack-quantized' else 'F8_E4M3' if fmt == 'nvfp4-pack-quantized' else 'F32'
    for i in range(L):
        for name in LINEAR:
            layer = 'model.layers.%d.%s' % (i, name)
            O, I = floats[layer + '.weight'].shape
            if fmt in ('mxfp4-pack-quantized', 'nvfp4-pack-quantized'):
                assert t[layer + '.weight_packed'][0] == 'U8' and t[layer + '.weight_packed'][1].shape == (O, I // 2)
                assert layer + '.weight' not in t and layer + '.weight_shape' not in t
                if fmt == 'nvfp4-pack-quantized':
                    g = t[layer + '.weight_global_scale']
                    assert g[0] == 'F32' and g[1].shape == (1,)
            elif fmt == 'pack-quantized':
                pack = 32 // w['num_bits']
                assert t[layer + '.weight_packed'][0] == 'I32'
                assert t[layer + '.weight_packed'][1].shape == (O, -(-I // pack))
                assert t[layer + '.weight_shape'][0] == 'I64'
                assert layer + '.weight' not in t
            else:
                assert t[layer + '.weight'][0] == ('F8_E4M3' if w['type'] == 'float' else 'I8')
                assert t[layer + '.weight'][1].shape == (O, I)
            assert t[layer + '.weight_scale'][0] == scale_dtype
            expected_scale = {'group': (O, I // (w['group_size'] or 1)), 'channel': (O, 1), 'tensor': (1,),
                              'tensor_group': (O, I // 16),
                              'block': (-(-O // 128), -(-I // 128))}[w['strategy']]
            assert t[layer + '.weight_scale'][1].shape == expected_scale
            if w['symmetric']:
                assert layer + '.weight_zero_point' not in t
            else:
                zp = t[layer + '.weight_zero_point']
                assert zp[0] == 'I32' and zp[1].shape == (-(-O // (32 // w['num_bits'])), expected_scale[1])
            if a_expected and a_expected['dynamic'] is False:
                assert t[layer + '.input_scale'][0] == 'F32' and t[layer + '.input_scale'][1].shape == (1,)
            else:
                assert layer + '.input_scale' not in t
            # compressed_tensors_w4a4_nvfp4.py: input_global_scale float32
            # [one per fused part]
            if a_expected and a_expected['dynamic'] == 'local':
                g = t[layer + '.input_global_scale']
                assert g[0] == 'F32' and g[1].shape == (1,) and g[1][0] > 0
            else:
                assert layer + '.input_global_scale' not in t
            # decoded independently: within half a step of the original
            x = floats[layer + '.weight']
            y = decode_layer(t, layer, fmt, w, (O, I))
            assert np.isfinite(y).all()
            assert np.sqrt(np.mean((x - y) ** 2)) < np.sqrt(np.mean(x ** 2)) * (0.2 if w['num_bits'] == 4 else 0.05)
    assert t['lm_head.weight'][0] == dtype and t['model.embed_tokens.weight'][0] == dtype

    # libquark reads it back to the same floats as the independent decoder
    back = dequantized(out)
    for i in range(L):
        for name in LINEAR:
            layer = 'model.layers.%d.%s' % (i, name)
            O, I = floats[layer + '.weight'].shape
            assert np.array_equal(back[layer + '.weight'], decode_layer(t, layer, fmt, w, (O, I))), layer
    report = verify_floats(src, out, tmp_path)
    assert len(report['tensors']) == L * len(LINEAR)


@pytest.mark.parametrize('case', ['w4a16_g128', 'w4a16_g128_asym', 'w8a16_channel', 'w8a8_int8_static',
                                  'w8a8_fp8_channel_token', 'fp8_block_128', 'mxfp4'])
def test_round_trip_equals_the_quark_export(tmp_path, case):
    """float32 models (scales stored as float32 in both formats): every
    export reads back to the default export's floats, bit for bit."""
    src = tmp_path / 'model'
    make_llama(src, 'F32', np.random.default_rng(11))
    ct = export(src, tmp_path, case, 'compressed-tensors', 'ct')
    qk = export(src, tmp_path, case, 'quark', 'qk')
    a, b = dequantized(ct), dequantized(qk)
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_bf16_scales_are_the_ones_the_codes_were_made_with(tmp_path):
    """WNA16 keeps scales in the model dtype (vLLM allocates them so): the
    backend rounds each scale to bfloat16 before it computes the codes, so
    the stored scale dequantizes exactly what was quantized."""
    src = tmp_path / 'model'
    floats = make_llama(src, 'BF16', np.random.default_rng(5))
    out = export(src, tmp_path, 'w4a16_g128')
    t = read_checkpoint(out)
    layer = 'model.layers.0.mlp.up_proj'
    q = unpack_rows(t[layer + '.weight_packed'][1], 4, H).astype(np.float32)
    s = from_bf16(t[layer + '.weight_scale'][1])
    x = floats[layer + '.weight']
    # AMD Quark's symmetric int4 rule with the bfloat16-rounded scale
    expected = np.clip(np.rint(x.reshape(F, -1, 128) * (np.float32(1) / s[:, :, None])), -8, 7).reshape(F, H)
    assert np.array_equal(q, expected)


def test_refusals_name_the_layer(model, tmp_path):
    src, floats, dtype = model
    # MX types other than MXFP4 and KV-cache outputs have no compressed-tensors form here
    r = quantize(src, tmp_path / 'mx', '--preset', 'mxfp6_e2m3', '--export-format', 'compressed-tensors')
    assert r.returncode == 1 and 'compressed-tensors' in r.stderr and 'model.layers.0.' in r.stderr
    assert not (tmp_path / 'mx').exists()
    r = quantize(src, tmp_path / 'x', '--preset', 'int4_wo_128', '--export-format', 'gguf-like')
    assert r.returncode == 1 and 'unknown checkpoint format "gguf-like"' in r.stderr
    assert 'compressed-tensors' in r.stderr and not (tmp_path / 'x').exists()
    # two formats in one model: named, both layers
    config = {'backend': 'quark', 'quant_method': 'quark', 'exclude': ['lm_head'],
              'global_quant_config': {'weight': {'dtype': 'int4', 'qscheme': 'per_group', 'ch_axis': -1,
                                                 'group_size': 128}},
              'layer_quant_config': {'*down_proj': {'weight': {'dtype': 'fp8_e4m3', 'qscheme': 'per_tensor'}}}}
    (tmp_path / 'mixed.json').write_text(json.dumps(config))
    r = quantize(src, tmp_path / 'm', '--config', str(tmp_path / 'mixed.json'), '--export-format',
                 'compressed-tensors')
    assert r.returncode == 1 and 'one format per model' in r.stderr and 'down_proj' in r.stderr


def test_formats_listing_and_inspect(model, tmp_path):
    src, floats, dtype = model
    r = subprocess.run([QUARK, 'formats', '--json'], capture_output=True, text=True)
    assert r.returncode == 0
    listed = {f['name']: f for f in json.loads(r.stdout)}
    assert set(listed) >= {'quark', 'compressed-tensors'}
    assert listed['compressed-tensors']['reads_back_without_backend']
    out = export(src, tmp_path, 'w4a16_g64')
    r = subprocess.run([QUARK, 'inspect', str(out), '--json'], capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)['format'] == 'compressed-tensors'
    qk = export(src, tmp_path, 'w4a16_g64', 'quark', 'qk')
    r = subprocess.run([QUARK, 'inspect', str(qk), '--json'], capture_output=True, text=True)
    assert json.loads(r.stdout)['format'] == 'quark'



# ---- NVFP4, bit for bit -------------------------------------------------------

def round_to_table(v, table):
    """Indices of the nearest entries of an ascending table, ties to the
    even index (E2M1 and E4M3 codes are ordered like their values)."""
    hi = np.clip(np.searchsorted(table, v), 0, len(table) - 1)
    lo = np.clip(hi - 1, 0, len(table) - 1)
    d_lo, d_hi = np.abs(v - table[lo]), np.abs(table[hi] - v)
    return np.where(d_lo < d_hi, lo, np.where(d_hi < d_lo, hi, np.where(lo % 2 == 0, lo, hi)))


def nvfp4_reference(w, amax):
    """compressed-tensors' NVFP4 in numpy float32 (quantization/utils/
    helpers.py, lifecycle/forward.py): global g = 448 * 6 / amax; per group
    of 16, the E4M3 code of g * (amax_group / 6) clamped to 448, 0 replaced
    by 0.125; elements x / (E4M3 value / g) clamped to 6, to the nearest
    E2M1 value, ties to even. Returns (packed bytes, scale codes, g)."""
    g = np.float32(np.float32(2688) / np.float32(amax))
    q, code, _ = nvfp4_codes(w, g)
    return (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8), code, g


def nvfp4_codes(w, g):
    """The same under a given global scale g: (E2M1 codes [O, I], one per
    byte, sign in bit 3; E4M3 scale codes [O, I/16]; the effective scales
    E4M3 value / g in float32)."""
    O, I = w.shape
    e4m3 = decode_e4m3(np.arange(127)).astype(np.float32)          # the non-negative codes 0x00-0x7e
    e2m1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], np.float32)
    groups = w.reshape(O, I // 16, 16).astype(np.float32)
    ga = np.abs(groups).max(axis=-1)
    v = np.minimum((g * (ga / np.float32(6))).astype(np.float32), np.float32(448))
    code = round_to_table(v, e4m3)
    code = np.where(e4m3[code] == 0, int(np.nonzero(e4m3 == 0.125)[0][0]), code)
    eff = (e4m3[code] / g).astype(np.float32)
    t = np.clip((groups / eff[..., None]).astype(np.float32), -6, 6)
    q = round_to_table(np.abs(t), e2m1) | np.where(np.signbit(t), 8, 0)
    return q.reshape(O, I).astype(np.uint8), code.astype(np.uint8), eff


def test_nvfp4_bit_for_bit(model, tmp_path):
    """Every byte of an NVFP4 export equals the numpy reference's, with one
    global scale for the layers vLLM fuses (q/k/v and gate/up share the
    largest magnitude among them)."""
    src, floats, dtype = model
    out = export(src, tmp_path, 'nvfp4_a16')
    t = read_checkpoint(out)
    fused = {'self_attn.q_proj': 'qkv', 'self_attn.k_proj': 'qkv', 'self_attn.v_proj': 'qkv',
             'mlp.gate_proj': 'gate_up', 'mlp.up_proj': 'gate_up'}
    for i in range(L):
        prefix = 'model.layers.%d.' % i
        amax = {}
        for name in LINEAR:
            key = fused.get(name, name)
            amax[key] = max(amax.get(key, 0), float(np.abs(floats[prefix + name + '.weight']).max()))
        for name in LINEAR:
            layer = prefix + name
            packed, codes, g = nvfp4_reference(floats[layer + '.weight'], np.float32(amax[fused.get(name, name)]))
            assert np.array_equal(t[layer + '.weight_packed'][1], packed), layer
            assert np.array_equal(t[layer + '.weight_scale'][1].view(np.uint8), codes), layer
            assert t[layer + '.weight_global_scale'][1].view(np.uint32)[0] == np.float32(g).view(np.uint32), layer
        for a, b in (('self_attn.q_proj', 'self_attn.v_proj'), ('mlp.gate_proj', 'mlp.up_proj')):
            assert np.array_equal(t[prefix + a + '.weight_global_scale'][1], t[prefix + b + '.weight_global_scale'][1])


def test_nvfp4_inputs_bit_for_bit(model, tmp_path):
    """W4A4 NVFP4: the weights as for NVFP4A16, and each layer's
    input_global_scale 448 * 6 / amax of its calibrated input (the largest
    magnitude over every batch observed, compressed-tensors' static_minmax),
    in float32, bit for bit."""
    src, floats, dtype = model
    out = export(src, tmp_path, 'nvfp4')
    w4a16 = read_checkpoint(export(src, tmp_path, 'nvfp4_a16', name='a16'))
    t = read_checkpoint(out)
    rng = np.random.default_rng(1)            # observe_inputs()'s batches, replayed
    for i in range(L):
        for name in LINEAR:
            layer = 'model.layers.%d.%s' % (i, name)
            width = F if name == 'mlp.down_proj' else H
            amax = np.abs((rng.standard_normal((4, width)) * 0.5).astype(np.float32)).max()
            g = np.float32(np.float32(2688) / np.float32(amax))
            assert t[layer + '.input_global_scale'][1].view(np.uint32)[0] == g.view(np.uint32), layer
            for suffix in ('.weight_packed', '.weight_scale', '.weight_global_scale'):
                assert np.array_equal(t[layer + suffix][1], w4a16[layer + suffix][1]), layer + suffix


def test_nvfp4_refusals(model, tmp_path):
    src, floats, dtype = model
    spec = CASES['nvfp4_a16'][0]['weight']

    def attempt(name, config, *extra):
        path = tmp_path / (name + '.json')
        path.write_text(json.dumps(dict({'backend': 'quark', 'exclude': ['lm_head']}, **config)))
        r = quantize(src, tmp_path / name, '--config', str(path), *extra)
        assert r.returncode == 1 and not (tmp_path / name).exists(), r.stderr
        return r.stderr
    # AMD Quark's layout: vLLM's QuarkNVFP4 wants NVFP4 inputs too
    assert 'compressed-tensors' in attempt('quark', {'global_quant_config': {'weight': spec}})
    # NVFP4 weights with other inputs, and NVFP4 inputs with other weights,
    # have no scheme in vLLM
    err = attempt('w4a8', {'global_quant_config': {'weight': spec, 'input_tensors': {
        'dtype': 'fp8_e4m3', 'qscheme': 'per_tensor', 'is_dynamic': True}}}, '--export-format', 'compressed-tensors')
    assert 'NVFP4 weights or inputs with another scheme' in err
    nv_input = CASES['nvfp4'][0]['input_tensors']
    config = {'global_quant_config': {'weight': {'dtype': 'int8', 'qscheme': 'per_channel', 'ch_axis': 0},
                                      'input_tensors': nv_input}}
    (tmp_path / 'w8a4.json').write_text(json.dumps(dict(config, backend='quark')))
    stats = calibration_file(src, tmp_path / 'w8a4.json', tmp_path)
    err = attempt('w8a4', config, '--export-format', 'compressed-tensors', '--calibration', str(stats))
    assert 'NVFP4 weights or inputs with another scheme' in err
    # the static global scale needs calibration
    err = attempt('nocal', {'global_quant_config': {'weight': spec, 'input_tensors': nv_input}},
                  '--export-format', 'compressed-tensors')
    assert 'calibration' in err
    # NVFP4 outputs (the KV cache) are not written by the quark backend
    err = attempt('kv', {'global_quant_config': {'weight': spec, 'output_tensors': nv_input}},
                  '--export-format', 'compressed-tensors')
    assert 'not outputs' in err
    # only compressed-tensors describes NVFP4 inputs
    config = {'global_quant_config': {'weight': {'dtype': 'int8', 'qscheme': 'per_channel', 'ch_axis': 0},
                                      'input_tensors': nv_input}}
    err = attempt('w8a4q', config, '--calibration', str(stats))
    assert 'NVFP4 inputs' in err and 'compressed-tensors' in err
    # e4m3 scales go with fp4 elements in groups
    err = attempt('int4', {'global_quant_config': {'weight': dict(spec, dtype='int4')}},
                  '--export-format', 'compressed-tensors')
    assert 'scale_format' in err
    # GPTQ with NVFP4 is not implemented
    config = {'backend': 'quark', 'exclude': ['lm_head'], 'global_quant_config': {'weight': spec},
              'algo_config': [{'name': 'gptq'}]}
    (tmp_path / 'gptq.json').write_text(json.dumps(config))
    stats = calibration_file(src, tmp_path / 'gptq.json', tmp_path)
    err = attempt('gptq', config, '--export-format', 'compressed-tensors', '--calibration', str(stats))
    assert 'NVFP4 weights (e4m3 scales) with GPTQ' in err


@pytest.mark.skipif(not os.path.isdir(DOCS_LLAMA), reason='../shared/models/docs-llama is not here')
@pytest.mark.parametrize('case', ['w4a16_g128', 'w8a16_channel', 'w8a8_fp8_channel_token', 'nvfp4_a16'])
def test_docs_llama(tmp_path, case):
    """The small real Llama (bfloat16, tied-free lm_head left in float)."""
    out = export(DOCS_LLAMA, tmp_path, case)
    qc = json.loads((out / 'config.json').read_text())['quantization_config']
    assert qc['format'] == CASES[case][1] and qc['ignore'] == ['lm_head']
    report = verify_floats(DOCS_LLAMA, out, tmp_path)
    assert len(report['tensors']) == 6 * 7
    assert min(x['sqnr_db'] for x in report['tensors']) > (15 if 'w4' in case or 'fp4' in case else 25)


@pytest.mark.skipif(not os.path.isdir(DOCS_LLAMA), reason='../shared/models/docs-llama is not here')
def test_docs_llama_nvfp4_inputs(tmp_path):
    """W4A4 NVFP4 calibrated by the native runtime on real text: the layers
    that share an input (q/k/v, gate/up) store one input_global_scale, as
    vLLM's CompressedTensorsW4A4Fp4 wants for a fused layer."""
    args, _ = config_args(CASES['nvfp4'][0], tmp_path, DOCS_LLAMA)
    out = tmp_path / 'out'
    r = quantize(DOCS_LLAMA, out, *args, '--export-format', 'compressed-tensors', '--calibration-text',
                 os.path.join(DOCS_LLAMA, 'data', 'calib.txt'), '--calibration-tokens', '1024')
    assert r.returncode == 0, r.stderr
    t = read_checkpoint(out)
    for i in range(6):
        p = 'model.layers.%d.' % i
        g = {name: t[p + name + '.input_global_scale'][1].tobytes() for name in LINEAR}
        assert g['self_attn.q_proj'] == g['self_attn.k_proj'] == g['self_attn.v_proj']
        assert g['mlp.gate_proj'] == g['mlp.up_proj']
        assert len(set(g.values())) >= 3         # o_proj and down_proj see other inputs


# ---- AutoAWQ's GEMM layout ----------------------------------------------------
#
# vLLM, vllm/model_executor/layers/quantization/awq.py: AWQConfig.from_config
# reads "w_bit"/"bits", "q_group_size"/"group_size", "zero_point"; 4 bits
# only; create_weights: qweight int32 [I, O/8], qzeros int32 [I/group, O/8],
# scales params_dtype [I/group, O] (the awq path runs in float16).
# AutoAWQ, awq/modules/linear/gemm.py (WQLinear_GEMM.from_linear): unsigned
# codes round(w / s + z), transposed, element order_map[i] of each eight in
# nibble i, order_map = [0, 2, 4, 6, 1, 3, 5, 7]; scales float16.
AWQ_KEYS = {'quant_method', 'version', 'bits', 'group_size', 'zero_point', 'modules_to_not_convert'}
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def awq_unpack(words):
    """int32 [R, C] -> unsigned nibbles [R, 8C], AutoAWQ's order undone."""
    w = words.view(np.uint32)
    out = np.empty((w.shape[0], w.shape[1] * 8), np.int32)
    for i in range(8):
        out[:, AWQ_ORDER[i]::8] = (w >> (4 * i)) & 0xF
    return out


@pytest.mark.parametrize('preset,group', [('uint4_wo_128', 128), ('int4_wo_64', 64), ('int4_wo_32', 32)])
def test_awq_layout(model, tmp_path, preset, group):
    src, floats, dtype = model
    out = tmp_path / 'awq'
    r = quantize(src, out, '--preset', preset, '--export-format', 'awq')
    assert r.returncode == 0, r.stderr
    qc = json.loads((out / 'config.json').read_text())['quantization_config']
    assert set(qc) == AWQ_KEYS
    assert (qc['quant_method'], qc['version'], qc['bits'], qc['group_size'], qc['zero_point']) == \
        ('awq', 'gemm', 4, group, True)
    assert qc['modules_to_not_convert'] == ['lm_head']
    t = read_checkpoint(out)
    back = dequantized(out)
    for i in range(L):
        for name in LINEAR:
            layer = 'model.layers.%d.%s' % (i, name)
            O, I = floats[layer + '.weight'].shape
            assert (t[layer + '.qweight'][0], t[layer + '.qweight'][1].shape) == ('I32', (I, O // 8))
            assert (t[layer + '.qzeros'][0], t[layer + '.qzeros'][1].shape) == ('I32', (I // group, O // 8))
            assert (t[layer + '.scales'][0], t[layer + '.scales'][1].shape) == ('F16', (I // group, O))
            assert layer + '.weight' not in t
            q = awq_unpack(t[layer + '.qweight'][1]).T.astype(np.float32)            # [O, I]
            z = awq_unpack(t[layer + '.qzeros'][1]).T.astype(np.float32)             # [O, G]
            s = t[layer + '.scales'][1].astype(np.float32).T                         # [O, G]
            assert q.min() >= 0 and q.max() <= 15
            if preset.startswith('int4'):
                assert (z == 8).all()        # symmetric: the zero point of unsigned codes
            y = ((q - np.repeat(z, group, axis=1)) * np.repeat(s, group, axis=1)).astype(np.float32)
            x = floats[layer + '.weight']
            assert np.sqrt(np.mean((x - y) ** 2)) < np.sqrt(np.mean(x ** 2)) * 0.2
            assert np.array_equal(back[layer + '.weight'], y), layer


# ---- FP8 checkpoints with quant_method "fp8" ---------------------------------
#
# vLLM, vllm/model_executor/layers/quantization/fp8.py: Fp8Config reads
# "activation_scheme", "ignored_layers", "weight_block_size"; with blocks the
# weight scale is registered as weight_scale_inv ("intentional for
# deepseekv3"), float32 [ceil(O/bo), ceil(I/bi)]; without, weight_scale and,
# for activation_scheme "static", input_scale. transformers'
# FineGrainedFP8Config: quant_method "fp8", activation_scheme "dynamic",
# weight_block_size, modules_to_not_convert.
FP8_KEYS = {'quant_method', 'fmt', 'activation_scheme', 'weight_block_size', 'ignored_layers',
            'modules_to_not_convert'}


@pytest.mark.parametrize('case,scheme,block', [('fp8_block_128', 'dynamic', [128, 128]),
                                               ('w8a8_fp8_tensor', 'static', None)])
def test_fp8_layout_and_round_trip(model, tmp_path, case, scheme, block):
    src, floats, dtype = model
    out = export(src, tmp_path, case, 'fp8', 'fp8')
    qc = json.loads((out / 'config.json').read_text())['quantization_config']
    assert set(qc) == FP8_KEYS
    assert (qc['quant_method'], qc['fmt'], qc['activation_scheme'], qc['weight_block_size']) == \
        ('fp8', 'e4m3', scheme, block)
    assert qc['ignored_layers'] == qc['modules_to_not_convert'] == ['lm_head']
    t = read_checkpoint(out)
    back = dequantized(out)
    for i in range(L):
        for name in LINEAR:
            layer = 'model.layers.%d.%s' % (i, name)
            O, I = floats[layer + '.weight'].shape
            assert (t[layer + '.weight'][0], t[layer + '.weight'][1].shape) == ('F8_E4M3', (O, I))
            if block:
                s = t[layer + '.weight_scale_inv']
                assert (s[0], s[1].shape) == ('F32', (-(-O // 128), -(-I // 128)))
                y = decode_e4m3(t[layer + '.weight'][1]) * np.repeat(np.repeat(s[1], 128, 0), 128, 1)[:O, :I]
                assert layer + '.input_scale' not in t
            else:
                s = t[layer + '.weight_scale']
                assert (s[0], s[1].shape) == ('F32', (1,))
                y = decode_e4m3(t[layer + '.weight'][1]) * s[1][0]
                assert (t[layer + '.input_scale'][0], t[layer + '.input_scale'][1].shape) == ('F32', (1,))
            assert np.array_equal(back[layer + '.weight'], y.astype(np.float32)), layer
    # the same floats as the default export (float32 scales in both)
    qk = export(src, tmp_path, case, 'quark', 'qk')
    ref = dequantized(qk)
    for k in back:
        assert np.array_equal(back[k], ref[k]), k


def test_awq_and_fp8_refusals(model, tmp_path):
    src, floats, dtype = model
    r = quantize(src, tmp_path / 'a', '--preset', 'int8_per_channel_wo', '--export-format', 'awq')
    assert r.returncode == 1 and 'awq format' in r.stderr and 'model.layers.0.' in r.stderr
    r = quantize(src, tmp_path / 'b', '--preset', 'int4_wo_128', '--export-format', 'fp8')
    assert r.returncode == 1 and 'fp8 format' in r.stderr
    assert not (tmp_path / 'a').exists() and not (tmp_path / 'b').exists()


# ---- AMD Quark's layout, as vLLM's Quark path reads it -----------------------
#
# vLLM, vllm/model_executor/layers/quantization/quark/quark.py
# (QuarkConfig._get_scheme_from_config): a layer config with output_tensors
# or bias quantized has no scheme; _is_fp8_w8a8: fp8_e4m3 weights and inputs,
# static weights per_tensor or per_channel, inputs dynamic or per_tensor;
# _is_static_tensor_w8a8: int8 weights (per_tensor/per_channel, symmetric)
# and static per_tensor int8 inputs; _is_ocp_mx: per_group 32, e8m0 scales,
# fp4/fp6 weights and inputs. Later vLLM adds:
#   schemes/quark_w4a16_int4.py (QuarkW4A16Int4): int4/uint4 per_group
#     weights, no input quantization, a positive group_size and a boolean
#     symmetric (utils.parse_w4a16_int4_weight_config); weight int32 [I, O/8],
#     weight_scale [I/group, O], weight_zero_point int32 [I/group, O/8];
#   schemes/quark_w8a8_mxfp8.py (QuarkW8A8Mxfp8): "Quark exports MXFP8 as
#     fp8_e4m3 / per_block with block_size=[R, 32] and an e8m0 scale"; weight
#     float8_e4m3fn [O, I], weight_scale e8m0 [O, I/32], dynamic MXFP8 inputs;
#   schemes/quark_w4a8_mxfp4_fp8.py: MXFP4 weights with FP8 per-tensor inputs.
def vllm_quark_scheme(layer):
    w, a = layer.get('weight'), layer.get('input_tensors')
    if layer.get('output_tensors') or layer.get('bias') or w is None:
        return None
    if a is None:
        if w['dtype'] in ('int4', 'uint4') and w['qscheme'] == 'per_group' and \
                isinstance(w['group_size'], int) and w['group_size'] > 0 and isinstance(w['symmetric'], bool):
            return 'QuarkW4A16Int4'
        return None
    if w['dtype'] == a['dtype'] == 'fp8_e4m3' and not w['is_dynamic'] and \
            w['qscheme'] in ('per_tensor', 'per_channel') and (a['is_dynamic'] or a['qscheme'] == 'per_tensor'):
        return 'QuarkW8A8Fp8'
    if w['dtype'] == a['dtype'] == 'int8' and w['qscheme'] in ('per_tensor', 'per_channel') and \
            a['qscheme'] == 'per_tensor' and not w['is_dynamic'] and not a['is_dynamic'] and w['symmetric'] is True:
        return 'QuarkW8A8Int8'
    if w['qscheme'] == a['qscheme'] == 'per_group' and w['group_size'] == a['group_size'] == 32 and \
            w['scale_format'] == a['scale_format'] == 'e8m0' and \
            w['dtype'] in ('fp4', 'fp6_e3m2', 'fp6_e2m3') and a['dtype'] in ('fp4', 'fp6_e3m2', 'fp6_e2m3'):
        return 'QuarkOCP_MX'
    if w['dtype'] == 'fp8_e4m3' and w['qscheme'] == 'per_block' and w['block_size'][1] == 32 and \
            w['scale_format'] == 'e8m0' and a['dtype'] == 'fp8_e4m3' and a['is_dynamic'] and \
            a['scale_format'] == 'e8m0':
        return 'QuarkW8A8Mxfp8'
    if w['dtype'] == 'fp4' and w['scale_format'] == 'e8m0' and a['dtype'] == 'fp8_e4m3' and \
            a['qscheme'] == 'per_tensor':
        return 'QuarkW4A8MXFp4Fp8'
    return None


# preset -> the vLLM scheme that loads its default export (None: none at
# present; docs/formats.md names the export format to use instead)
QUARK_PRESET_SCHEMES = {
    'int8': 'QuarkW8A8Int8', 'fp8': 'QuarkW8A8Fp8', 'ptpc_fp8': 'QuarkW8A8Fp8',
    'int4_wo_32': 'QuarkW4A16Int4', 'int4_wo_64': 'QuarkW4A16Int4', 'int4_wo_128': 'QuarkW4A16Int4',
    'uint4_wo_32': 'QuarkW4A16Int4', 'uint4_wo_64': 'QuarkW4A16Int4', 'uint4_wo_128': 'QuarkW4A16Int4',
    'mxfp4': 'QuarkOCP_MX', 'mxfp6_e2m3': 'QuarkOCP_MX', 'mxfp6_e3m2': 'QuarkOCP_MX',
    'mxfp4_fp8': 'QuarkW4A8MXFp4Fp8', 'mxfp8': 'QuarkW8A8Mxfp8',
    'int8_per_channel_wo': None, 'int4_fp8': None,
    # the recipes with an algorithm write the scheme of the preset they add it to
    'int4_wo_128_awq': 'QuarkW4A16Int4', 'uint4_wo_128_awq': 'QuarkW4A16Int4', 'int4_wo_128_gptq': 'QuarkW4A16Int4',
    'int4_wo_128_awq_gptq': 'QuarkW4A16Int4', 'int8_smoothquant': 'QuarkW8A8Int8',
}


def test_every_quark_preset_names_its_vllm_scheme(tmp_path):
    from tiny_llama import byte_tokenizer, make_model      # no typelib needed: the sanitizer runs have none
    src = tmp_path / 'model'
    floats = make_llama(src, 'BF16', np.random.default_rng(3))
    # correct_input_error's cross moments come only from sequential
    # calibration on text: a model the executor runs, with a tokenizer
    runnable = make_model(str(tmp_path / 'runnable'), 'llama', 'BF16', scale=2.0, hidden_size=128,
                          intermediate_size=256, num_attention_heads=16, num_key_value_heads=8)
    byte_tokenizer(runnable)
    text = tmp_path / 'calib.txt'
    text.write_text('a bad cafe faced a big dog. ' * 8)
    listed = subprocess.run([QUARK, 'presets', '--backend', 'quark', '--json'], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert {p['name'] for p in json.loads(listed.stdout)} == set(QUARK_PRESET_SCHEMES)
    for preset, scheme in sorted(QUARK_PRESET_SCHEMES.items()):
        model, shapes = src, {k: a.shape for k, a in floats.items()}
        args, config_path = config_args(['--preset', preset], tmp_path, model)
        cfg = json.loads(config_path.read_text())
        inputs = cfg['global_quant_config'].get('input_tensors')
        if any(a.get('correct_input_error') for a in cfg.get('algo_config') or []):
            model = runnable
            shapes = {k: a.shape for k, (_, a) in read_checkpoint(runnable).items()}
            args = args + ['--calibration-text', str(text), '--calibration-tokens', '128']
        elif (inputs and not inputs.get('is_dynamic')) or cfg.get('algo_config'):
            args = args + ['--calibration', str(calibration_file(src, config_path, tmp_path))]
        out = tmp_path / ('q-' + preset)
        r = quantize(model, out, *args)
        assert r.returncode == 0, (preset, r.stderr)
        qc = json.loads((out / 'config.json').read_text())['quantization_config']
        assert qc['quant_method'] == 'quark' and qc['export']['pack_method'] in ('reorder', 'order')
        assert qc['layer_quant_config'] == {} and qc['exclude'] == ['lm_head']
        assert vllm_quark_scheme(qc['global_quant_config']) == scheme, preset
        t = read_checkpoint(out)
        layer = 'model.layers.0.mlp.down_proj'
        O, I = shapes[layer + '.weight']
        if scheme == 'QuarkW4A16Int4':
            g = qc['global_quant_config']['weight']['group_size']
            assert (t[layer + '.weight'][0], t[layer + '.weight'][1].shape) == ('I32', (I, O // 8))
            assert t[layer + '.weight_scale'][1].shape == (I // g, O)
            assert (t[layer + '.weight_zero_point'][0], t[layer + '.weight_zero_point'][1].shape) == \
                ('I32', (I // g, O // 8))
        elif scheme == 'QuarkW8A8Mxfp8':
            assert (t[layer + '.weight'][0], t[layer + '.weight'][1].shape) == ('F8_E4M3', (O, I))
            assert (t[layer + '.weight_scale'][0], t[layer + '.weight_scale'][1].shape) == ('U8', (O, I // 32))
    # the MXFP8 spelling reads back as the same quantization
    r = subprocess.run([QUARK, 'verify', str(src), str(tmp_path / 'q-mxfp8'), '--json'], capture_output=True,
                       text=True)
    assert r.returncode == 0 and min(x['sqnr_db'] for x in json.loads(r.stdout)['tensors']) > 25


def test_the_formats_page_lists_the_registry():
    """docs/formats.md's table has one row per registered format (the
    registry is the source of truth)."""
    r = subprocess.run([QUARK, 'formats', '--json'], capture_output=True, text=True)
    registered = {f['name'] for f in json.loads(r.stdout)}
    page = open(os.path.join(os.path.dirname(__file__), '..', '..', 'docs', 'formats.md')).read()
    rows = {line.split('`')[1] for line in page.splitlines()
            if line.startswith('| `') and '`quant_method`' not in line and line.count('|') == 5}
    assert rows == registered


@pytest.mark.parametrize('preset,fmt', [('int4_weight_g128', 'pack-quantized'),
                                        ('int8_weight_per_channel', 'pack-quantized'),
                                        ('int8_weight_per_tensor', 'pack-quantized')])
def test_brevitas_reaches_the_formats(tmp_path, preset, fmt):
    """The brevitas backend's codes and scales through the same formats:
    read back, the compressed-tensors export gives the floats of its own
    (quark-layout) export, bit for bit (float32 model: float32 scales)."""
    src = tmp_path / 'model'
    make_llama(src, 'F32', np.random.default_rng(9))
    ct, qk = tmp_path / 'ct', tmp_path / 'qk'
    r = quantize(src, ct, '--backend', 'brevitas', '--preset', preset, '--export-format', 'compressed-tensors')
    assert r.returncode == 0, r.stderr
    r = quantize(src, qk, '--backend', 'brevitas', '--preset', preset)
    assert r.returncode == 0, r.stderr
    qc = json.loads((ct / 'config.json').read_text())['quantization_config']
    assert qc['quant_method'] == 'compressed-tensors' and qc['format'] == fmt
    a, b = dequantized(ct), dequantized_brevitas(qk)
    for i in range(L):
        for name in LINEAR:
            k = 'model.layers.%d.%s.weight' % (i, name)
            assert np.array_equal(a[k], b[k]), k


def dequantized_brevitas(path):
    Quark = quark_gi()
    m = Quark.Model.load(str(path), None)
    qc = json.loads((path / 'config.json').read_text())['quantization_config']
    registry = Quark.Registry.get_default()
    config = registry.config_from_string(json.dumps(qc['libquark_config']))
    out = registry.new_quantizer(config).dequantize_model(m)
    return {out.get_tensor_at(i).get_name(): np.asarray(out.get_tensor_at(i).to_numpy())
            for i in range(out.get_n_tensors())}


def test_brevitas_refuses_what_a_format_cannot_hold(model, tmp_path):
    src, floats, dtype = model
    # bfloat16 scales for WNA16 (BF16 model), float16 for awq: Brevitas keeps float32
    r = quantize(src, tmp_path / 'a', '--backend', 'brevitas', '--preset', 'int4_weight_g128', '--export-format', 'awq')
    assert r.returncode == 1 and 'float32 scales' in r.stderr and 'model.layers.0.' in r.stderr
    r = quantize(src, tmp_path / 'b', '--backend', 'brevitas', '--preset', 'mxfp4', '--export-format',
                 'compressed-tensors')
    assert r.returncode == 1 and 'compressed-tensors' in r.stderr
    assert not (tmp_path / 'a').exists() and not (tmp_path / 'b').exists()


def test_kv_cache_scales(tmp_path):
    """A static FP8 per-tensor KV cache (the outputs of k_proj and v_proj):
    AMD Quark's layout names them LAYER.output_scale with kv_cache_group;
    compressed-tensors writes the same names and a kv_cache_scheme (vLLM's
    get_cache_scale maps `.k_proj.output_scale` to `.attn.k_scale` in both
    paths: quark/quark.py, compressed_tensors/compressed_tensors.py;
    CompressedTensorsKVCacheMethod accepts type float, 8 bits, strategy
    tensor, symmetric)."""
    Quark = quark_gi()
    src = tmp_path / 'model'
    make_llama(src, 'BF16', np.random.default_rng(4))
    fp8 = {'dtype': 'fp8_e4m3', 'qscheme': 'per_tensor', 'is_dynamic': False}
    layer = {'weight': fp8, 'input_tensors': fp8}
    kv = dict(layer, output_tensors=fp8)
    # (compressed-tensors' engines apply k_scale to the keys after RoPE: the
    # config says the statistics are taken there)
    config = {'backend': 'quark', 'quant_method': 'quark', 'exclude': ['lm_head'], 'global_quant_config': layer,
              'layer_quant_config': {'*k_proj': kv, '*v_proj': kv}, 'kv_cache_post_rope': True,
              'export': {'kv_cache_group': ['*k_proj', '*v_proj']}}
    path = tmp_path / 'kv.json'
    path.write_text(json.dumps(config))
    registry = Quark.Registry.get_default()
    session = Quark.Calibration.new_for_config(registry.config_from_file(str(path)), Quark.Model.load(str(src), None))
    rng = np.random.default_rng(2)
    observe_inputs(session, rng)
    for i in range(L):
        for name in ('self_attn.k_proj', 'self_attn.v_proj'):
            session.observe('model.layers.%d.%s' % (i, name), Quark.Role.OUTPUT,
                            (rng.standard_normal((4, H // 2)) * 3).astype(np.float32))
    session.save(str(tmp_path / 'stats.json'))
    outs = {}
    for fmt in ('quark', 'compressed-tensors'):
        out = tmp_path / fmt
        r = quantize(src, out, '--config', str(path), '--calibration', str(tmp_path / 'stats.json'),
                     '--export-format', fmt)
        assert r.returncode == 0, r.stderr
        outs[fmt] = (json.loads((out / 'config.json').read_text())['quantization_config'], read_checkpoint(out))
    qc, t = outs['quark']
    assert qc['export']['kv_cache_group'] == ['*k_proj', '*v_proj']
    qc2, t2 = outs['compressed-tensors']
    assert {k: qc2['kv_cache_scheme'][k] for k in ('type', 'num_bits', 'strategy', 'symmetric', 'dynamic')} == \
        {'type': 'float', 'num_bits': 8, 'strategy': 'tensor', 'symmetric': True, 'dynamic': False}
    for i in range(L):
        for name in ('k_proj', 'v_proj'):
            key = 'model.layers.%d.self_attn.%s.output_scale' % (i, name)
            assert t2[key][0] == 'F32' and t2[key][1].shape == (1,)
            assert np.array_equal(t2[key][1].reshape(()), t[key][1].reshape(()))   # the same calibrated scale
        assert 'model.layers.%d.self_attn.q_proj.output_scale' % i not in t2
    # outputs of other layers have no compressed-tensors form
    bad = dict(config, layer_quant_config={'*o_proj': kv})
    path.write_text(json.dumps(bad))
    r = quantize(src, tmp_path / 'bad', '--config', str(path), '--calibration', str(tmp_path / 'stats.json'),
                 '--export-format', 'compressed-tensors')
    assert r.returncode == 1 and 'o_proj' in r.stderr and 'KV cache' in r.stderr


@pytest.mark.parametrize('fmt', ['compressed-tensors', 'awq'])
def test_fused_layers_share_a_scheme(model, tmp_path, fmt):
    """vLLM fuses q/k/v and gate/up and refuses shards of different schemes
    (quark/utils.py, compressed_tensors/utils.py: 'vLLM requires all to use
    the same scheme'): such a config is refused for the engine formats,
    naming both layers; AMD Quark's own layout still takes it."""
    src, floats, dtype = model
    config = {'backend': 'quark', 'quant_method': 'quark', 'exclude': ['lm_head'],
              'global_quant_config': {'weight': {'dtype': 'int4', 'qscheme': 'per_group', 'ch_axis': -1,
                                                 'group_size': 128}},
              'layer_quant_config': {'*k_proj': {'weight': {'dtype': 'uint4', 'qscheme': 'per_group', 'ch_axis': -1,
                                                            'group_size': 128, 'symmetric': False}}}}
    path = tmp_path / 'split.json'
    path.write_text(json.dumps(config))
    r = quantize(src, tmp_path / 'out', '--config', str(path), '--export-format', fmt)
    assert r.returncode == 1 and 'k_proj' in r.stderr and 'one scheme' in r.stderr
    assert not (tmp_path / 'out').exists()
    r = quantize(src, tmp_path / 'quark', '--config', str(path))
    assert r.returncode == 0, r.stderr


def ct_group32_format(Quark, dtype, symmetric, shape, layout, other_cols):
    """A prepared compressed-tensors format for one per-group-of-32 layer
    'l', which asks for @layout on @shape and for one code per element
    with @other_cols columns; returns the format and the spec."""
    spec = Quark.TensorSpec(dtype=dtype, qscheme=Quark.QScheme.PER_GROUP, ch_axis=-1, group_size=32,
                            symmetric=symmetric)
    fmt = Quark.Registry.get_default().new_format('compressed-tensors')
    fmt.note_layer('l', 'Linear', Quark.Role.WEIGHT, spec)
    assert fmt.prepare()
    assert fmt.get_code_layout('l.weight', spec, shape) == layout
    assert fmt.get_code_layout('l.weight', spec, [shape[0], other_cols]) == Quark.CodeLayout.BYTES
    return fmt, spec


def test_compressed_tensors_uint8_rows_layout():
    """compressed-tensors asks for 8-bit pack-quantized codes as its stored
    words (QUARK_CODE_LAYOUT_UINT8_ROWS: four unsigned bytes to an int32
    along each row, int8's as q + 128) when rows are a multiple of 4, keeps
    such words as they are (the same bytes as it packs from one code per
    element), and refuses words whose scales do not fit, naming the
    tensor."""
    Quark = quark_gi()
    from gi.repository import GLib
    rows, cols = 4, 64
    rng = np.random.default_rng(5)
    for dtype, lo, hi in ((Quark.DType.INT8, -128, 128), (Quark.DType.UINT8, 0, 256)):
        signed = dtype == Quark.DType.INT8
        fmt, spec = ct_group32_format(Quark, dtype, signed, [rows, cols], Quark.CodeLayout.UINT8_ROWS, cols + 2)
        codes = rng.integers(lo, hi, (rows, cols))
        stored = (codes + (128 if signed else 0)).astype(np.uint8)     # the bytes of the stored words
        words = stored.view(np.uint32)                                  # little-endian: byte k of word w

        def logical(codes_tensor, n_cols):
            m = Quark.Model.new()
            m.add_tensor(codes_tensor)
            m.add_tensor(Quark.Tensor.new('l.weight_scale', Quark.DType.FLOAT32, [rows, n_cols // 32],
                                          GLib.Bytes.new(np.full((rows, n_cols // 32), 0.5, np.float32).tobytes())))
            if not signed:
                m.add_tensor(Quark.Tensor.new('l.weight_zero_point', Quark.DType.UINT8, [rows, n_cols // 32],
                                              GLib.Bytes.new(np.full((rows, n_cols // 32), 128, np.uint8).tobytes())))
            return m

        as_words = Quark.Tensor.new('l.weight', Quark.DType.INT32, [rows, cols // 4], GLib.Bytes.new(words.tobytes()))
        one_each = Quark.Tensor.new('l.weight', dtype, [rows, cols],
                                    GLib.Bytes.new(codes.astype(np.int8 if signed else np.uint8).tobytes()))
        got = []
        for t in (as_words, one_each):
            out = Quark.Model.new()
            assert fmt.export_weight('l', 'Linear', 'l.weight', spec, logical(t, cols), out)
            packed = out.get_tensor('l.weight_packed')
            assert packed.get_dtype() == Quark.DType.INT32 and list(packed.get_shape()) == [rows, cols // 4]
            assert list(np.asarray(out.get_tensor('l.weight_shape').to_numpy())) == [rows, cols]
            got.append(np.asarray(packed.to_numpy()).view(np.uint32))
        assert np.array_equal(got[0], words) and np.array_equal(got[1], words)
        short = Quark.Tensor.new('l.weight', Quark.DType.INT32, [rows, cols // 4 - 8],
                                 GLib.Bytes.new(np.ascontiguousarray(words[:, :-8]).tobytes()))
        with pytest.raises(GLib.Error) as e:
            fmt.export_weight('l', 'Linear', 'l.weight', spec, logical(short, cols), Quark.Model.new())
        assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_ARGUMENT) and 'l.weight' in e.value.message


def test_compressed_tensors_uint4_rows_layout():
    """compressed-tensors asks for int4 and uint4 pack-quantized codes as its
    stored words (QUARK_CODE_LAYOUT_UINT4_ROWS: eight unsigned nibbles to an
    int32 along each row, int4's as q + 8, uint4's as they are), keeps such
    words as they are (the same words as it packs from one code per
    element), and refuses int32 codes of any other shape, naming the
    tensor."""
    Quark = quark_gi()
    from gi.repository import GLib
    rows, cols = 4, 64
    rng = np.random.default_rng(3)
    for dtype, lo, hi, flip in ((Quark.DType.INT4, -8, 8, 0x88888888), (Quark.DType.UINT4, 0, 16, 0)):
        fmt, spec = ct_group32_format(Quark, dtype, dtype == Quark.DType.INT4, [rows, cols],
                                      Quark.CodeLayout.UINT4_ROWS, cols + 4)
        codes = rng.integers(lo, hi, (rows, cols))
        # the stored nibbles: q + 8 for int4 (compressed-tensors' pack_quantized.py
        # adds 2^(bits-1) to signed codes), element k of a word at bits 4k
        nibbles = ((codes + (8 if flip else 0)) & 15).astype(np.uint32).reshape(rows, cols // 8, 8)
        words = np.bitwise_or.reduce(nibbles << (4 * np.arange(8, dtype=np.uint32)), axis=2).astype(np.uint32)
        assert np.array_equal(words ^ np.uint32(flip),
                              np.bitwise_or.reduce(((codes & 15).astype(np.uint32).reshape(rows, cols // 8, 8))
                                                   << (4 * np.arange(8, dtype=np.uint32)), axis=2))

        def logical(w, one_each=False):
            m = Quark.Model.new()
            if one_each:
                m.add_tensor(Quark.Tensor.new('l.weight', dtype, [rows, cols],
                                              GLib.Bytes.new(codes.astype(np.int8 if flip else np.uint8).tobytes())))
            else:
                m.add_tensor(Quark.Tensor.new('l.weight', Quark.DType.INT32, list(w.shape),
                                              GLib.Bytes.new(np.ascontiguousarray(w).tobytes())))
            m.add_tensor(Quark.Tensor.new('l.weight_scale', Quark.DType.FLOAT32, [rows, cols // 32],
                                          GLib.Bytes.new(np.full((rows, cols // 32), 0.5, np.float32).tobytes())))
            if dtype == Quark.DType.UINT4:
                m.add_tensor(Quark.Tensor.new('l.weight_zero_point', Quark.DType.UINT4, [rows, cols // 32],
                                              GLib.Bytes.new(np.full((rows, cols // 32), 8, np.uint8).tobytes())))
            return m

        for one_each in (False, True):
            out = Quark.Model.new()
            assert fmt.export_weight('l', 'Linear', 'l.weight', spec, logical(words, one_each), out)
            packed = out.get_tensor('l.weight_packed')
            assert packed.get_dtype() == Quark.DType.INT32 and list(packed.get_shape()) == [rows, cols // 8]
            assert list(np.asarray(out.get_tensor('l.weight_shape').to_numpy())) == [rows, cols]
            assert np.array_equal(np.asarray(packed.to_numpy()).view(np.uint32), words), (dtype, one_each)
        with pytest.raises(GLib.Error) as e:
            fmt.export_weight('l', 'Linear', 'l.weight', spec, logical(words[:, :-4]), Quark.Model.new())
        assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_ARGUMENT) and 'l.weight' in e.value.message
