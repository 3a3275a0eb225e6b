# The quark backend's row path (quark-quark-rows.c: the common schemes
# quantized straight from the input, rows split between threads) against
# its general path, byte for byte. The general path is the one the
# reference vectors and the PyTorch oracles check element by element; the
# allow-nonfinite option sends a tensor there (its replacement of NaN and
# infinities changes nothing in finite data), so every spec below is
# quantized both ways, on 1 and 3 threads, from float32, float16 and
# bfloat16 input.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import gi
gi.require_version('Quark', '1.0')
from gi.repository import GLib, Quark  # noqa: E402

import pytest  # noqa: E402

np = pytest.importorskip('numpy')

REGISTRY = Quark.Registry.get_default()
D, Q, R = Quark.DType, Quark.QScheme, Quark.RoundMode


def quantizer(threads, general):
    config = REGISTRY.config_from_string('{"backend": "quark", "global_quant_config": '
                                         '{"weight": {"dtype": "int8"}}}', -1)
    q = REGISTRY.new_quantizer(config)
    q.props.threads = threads
    q.props.allow_nonfinite = general
    return q


def spec(dtype, qscheme, **props):
    s = Quark.TensorSpec.new(dtype, qscheme)
    for k, v in props.items():
        s.set_property(k.replace('_', '-'), v)
    return s


SPECS = [
    spec(D.INT8, Q.PER_TENSOR),
    spec(D.UINT8, Q.PER_TENSOR, symmetric=False),
    spec(D.INT8, Q.PER_CHANNEL, ch_axis=0),
    spec(D.INT8, Q.PER_CHANNEL, ch_axis=0, narrow_range=True),
    spec(D.UINT8, Q.PER_CHANNEL, ch_axis=0, symmetric=False),
    spec(D.INT8, Q.PER_CHANNEL, ch_axis=0, round_method=R.STOCHASTIC),
    spec(D.INT8, Q.PER_CHANNEL, ch_axis=0, round_method=R.HALF_AWAY),
    spec(D.INT4, Q.PER_GROUP, ch_axis=-1, group_size=128),
    spec(D.INT4, Q.PER_GROUP, ch_axis=-1, group_size=32, round_method=R.FLOOR),
    spec(D.UINT4, Q.PER_GROUP, ch_axis=-1, group_size=128, symmetric=False),
    spec(D.UINT4, Q.PER_GROUP, ch_axis=-1, group_size=64, symmetric=False, round_method=R.STOCHASTIC),
    spec(D.INT4, Q.PER_GROUP, ch_axis=-1, group_size=100),   # a ragged last group
    spec(D.INT3, Q.PER_CHANNEL, ch_axis=0, symmetric=False),
    spec(D.INT16, Q.PER_CHANNEL, ch_axis=0),
    spec(D.FP8_E4M3, Q.PER_TENSOR),
    spec(D.FP8_E4M3, Q.PER_CHANNEL, ch_axis=0),
    spec(D.FP8_E5M2, Q.PER_CHANNEL, ch_axis=0),
    spec(D.FP8_E4M3FNUZ, Q.PER_GROUP, ch_axis=-1, group_size=128),
    spec(D.FP4, Q.PER_GROUP, ch_axis=-1, group_size=16),
    spec(D.FP6_E3M2, Q.PER_GROUP, ch_axis=-1, group_size=32),
    spec(D.FP4, Q.PER_GROUP, ch_axis=-1, group_size=32, scale_format=Quark.ScaleFormat.E8M0),
    spec(D.FP8_E4M3, Q.PER_GROUP, ch_axis=-1, group_size=32, scale_format=Quark.ScaleFormat.E8M0),
    spec(D.INT8, Q.PER_GROUP, ch_axis=-1, group_size=32, scale_format=Quark.ScaleFormat.E8M0),
]


def weights(shape, seed):
    """Gaussian rows of very different magnitudes, with a zero row, a row of
    exact halves of the int8 step, tiny and huge values, a row of negative
    values only and one of zeros of both signs (the extremes that integer
    keys of the bits and a float comparison may report differently)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape) * np.exp(rng.uniform(-12, 6, (shape[0], 1)))
    w[1] = 0.0
    w[2] = np.arange(shape[1]) % 17 - 8.0
    w[3, ::7] = 1e-30
    w[4, 5] = 3e4
    w[5] = -np.abs(w[5])
    w[6] = np.where(np.arange(shape[1]) % 3 == 1, -0.0, 0.0)
    return w.astype(np.float32)


def tensor(w, dtype, name='w'):
    if dtype == D.FLOAT32:
        data = w.tobytes()
    elif dtype == D.FLOAT16:
        data = w.astype(np.float16).tobytes()
    else:
        data = (w.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    return Quark.Tensor.new(name, dtype, list(w.shape), GLib.Bytes.new(data))


def outputs(model):
    return {model.get_tensor_at(i).get_name(): bytes(model.get_tensor_at(i).get_data().get_data())
            for i in range(model.get_n_tensors())}


@pytest.mark.parametrize('shape', [(300, 512), (9, 96), (24, 2144)])
@pytest.mark.parametrize('in_dtype', [D.FLOAT32, D.FLOAT16, D.BFLOAT16])
def test_row_path_equals_general_path(shape, in_dtype):
    w = weights(shape, sum(shape))
    t = tensor(w, in_dtype)
    for i, s in enumerate(SPECS):
        if s.props.scale_format == Quark.ScaleFormat.E8M0 and shape[1] % s.props.group_size:
            continue
        expected = outputs(quantizer(1, True).quantize_tensor(t, s))
        for threads in (1, 3):
            got = outputs(quantizer(threads, False).quantize_tensor(t, s))
            assert got.keys() == expected.keys(), i
            for name in expected:
                assert got[name] == expected[name], (i, name, threads)


@pytest.mark.parametrize('in_dtype', [D.FLOAT32, D.FLOAT16, D.BFLOAT16])
def test_row_path_refuses_nonfinite_on_every_thread(in_dtype):
    w = weights((300, 512), 5)
    for row, value in ((0, np.nan), (150, np.inf), (299, -np.inf), (77, np.nan)):
        bad = w.copy()
        bad[row, 7 + row] = value
        for s in (SPECS[0], SPECS[1], SPECS[2], SPECS[7], SPECS[9], SPECS[14], SPECS[20], SPECS[21], SPECS[22]):
            with pytest.raises(GLib.Error, match='tensor w: holds NaN or infinity'):
                quantizer(3, False).quantize_tensor(tensor(bad, in_dtype), s)


@pytest.mark.parametrize('in_dtype', [D.FLOAT32, D.FLOAT16, D.BFLOAT16])
def test_int4_packed_in_rows_equals_packed_by_format(in_dtype):
    """int4 and uint4 per group in AMD Quark's layout (words along the output
    channels) and AutoAWQ's (the same words of unsigned codes): the row
    path writes the words itself, a block of rows at a time, in the layout
    the format asks for (get_code_layout); the general path gives the
    format one code per byte and the format packs them. The same checkpoint
    tensors, on 1 and 3 threads, in both nibble orders, with partial blocks
    of 128 rows and columns that are not a multiple of 16."""
    weights_ = {(304, 512): 11, (8, 256): 12, (264, 200): 13}
    for shape, seed in weights_.items():
        model = Quark.Model.new()
        model.add_tensor(tensor(weights(shape, seed), in_dtype, 'model.layers.0.mlp.up_proj.weight'))
        for fmt, pack_method in (('quark', 'reorder'), ('quark', 'order'), ('awq', 'reorder')):
            groups = [g for g in (128, 64, 40, 8) if shape[1] % g == 0]   # whole groups only in a checkpoint
            for dtype, group, symmetric in (('int4', groups[0], True), ('uint4', groups[1], False)):
                config = REGISTRY.config_from_string(
                    '{"backend": "quark", "export": {"pack_method": "%s"}, "global_quant_config": {"weight": '
                    '{"dtype": "%s", "qscheme": "per_group", "ch_axis": -1, "group_size": %d, "symmetric": %s}}}'
                    % (pack_method, dtype, group, 'true' if symmetric else 'false'), -1)

                def run(threads, general):
                    q = REGISTRY.new_quantizer(config)
                    q.props.threads = threads
                    q.props.allow_nonfinite = general
                    q.props.export_format = fmt
                    return outputs(q.quantize_model(model, None, None))

                expected = run(1, True)
                name = 'model.layers.0.mlp.up_proj.' + ('weight' if fmt == 'quark' else 'qweight')
                assert len(expected[name]) == shape[0] * shape[1] // 2
                for threads in (1, 3):
                    got = run(threads, False)
                    assert got.keys() == expected.keys()
                    for k in expected:
                        assert got[k] == expected[k], (shape, fmt, pack_method, dtype, group, threads, k)


def test_code_layouts_of_formats():
    """What the formats ask the backends for: AMD Quark's layout stores int4
    and uint4 per group packed along columns (in its pack method's nibble
    order), AutoAWQ's in the interleaved order; other weights, and other
    formats, take one code per element."""
    L = Quark.CodeLayout
    int4_g128 = spec(D.INT4, Q.PER_GROUP, ch_axis=-1, group_size=128)
    quark = REGISTRY.new_format('quark')
    assert quark.get_code_layout('w', int4_g128, [256, 512]) == L.INT4_COLUMNS_REORDERED
    assert quark.get_code_layout('w', spec(D.UINT4, Q.PER_GROUP, ch_axis=-1, group_size=64, symmetric=False),
                                 [8, 64]) == L.INT4_COLUMNS_REORDERED
    assert quark.get_code_layout('w', int4_g128, [12, 512]) == L.BYTES          # rows not a multiple of 8
    assert quark.get_code_layout('w', int4_g128, [256, 2, 256]) == L.BYTES      # not 2-D
    assert quark.get_code_layout('w', spec(D.INT4, Q.PER_CHANNEL, ch_axis=0), [256, 512]) == L.BYTES
    assert quark.get_code_layout('w', spec(D.INT8, Q.PER_GROUP, ch_axis=-1, group_size=128), [256, 512]) == L.BYTES
    ordered = REGISTRY.new_format('quark')
    ordered.set_backend_config(_node('{"export": {"pack_method": "order"}}'))
    assert ordered.get_code_layout('w', int4_g128, [256, 512]) == L.INT4_COLUMNS
    assert REGISTRY.new_format('awq').get_code_layout('w', int4_g128, [256, 512]) == L.INT4_COLUMNS_REORDERED
    for name in ('compressed-tensors', 'gptq', 'fp8'):
        if name in REGISTRY.list_formats():
            assert REGISTRY.new_format(name).get_code_layout('w', int4_g128, [256, 512]) == L.BYTES, name


def _node(text):
    gi.require_version('Json', '1.0')
    from gi.repository import Json
    return Json.from_string(text)


def test_packed_codes_that_do_not_fit_are_refused():
    """int32 codes handed to the quark format's export_weight must be the
    layout it asked for: [in, out / 8] with the scales' rows."""
    quark = REGISTRY.new_format('quark')
    s = spec(D.INT4, Q.PER_GROUP, ch_axis=-1, group_size=64)
    logical = Quark.Model.new()
    # words for 64 columns of 32 rows, scales for 16 rows
    logical.add_tensor(Quark.Tensor.new('w', D.INT32, [64, 4], GLib.Bytes.new(bytes(64 * 4 * 4))))
    logical.add_tensor(Quark.Tensor.new_from_floats('w_scale', [16, 1], [1.0] * 16))
    logical.add_tensor(Quark.Tensor.new('w_zero_point', D.INT4, [16, 1], GLib.Bytes.new(bytes(16))))
    with pytest.raises(GLib.Error, match='tensor w: int32 codes of shape \\[64, 4\\] are neither'):
        quark.export_weight('layer', 'Linear', 'w', s, logical, Quark.Model.new())
