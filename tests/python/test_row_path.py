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
    exact halves of the int8 step, tiny and huge values."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape) * np.exp(rng.uniform(-12, 6, (shape[0], 1)))
    w[1] = 0.0
    w[2] = np.arange(shape[1]) % 17 - 8.0
    w[3, ::7] = 1e-30
    w[4, 5] = 3e4
    return w.astype(np.float32)


def tensor(w, dtype):
    if dtype == D.FLOAT32:
        data = w.tobytes()
    elif dtype == D.FLOAT16:
        data = w.astype(np.float16).tobytes()
    else:
        data = (w.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    return Quark.Tensor.new('w', dtype, list(w.shape), GLib.Bytes.new(data))


def outputs(model):
    return {model.get_tensor_at(i).get_name(): bytes(model.get_tensor_at(i).get_data().get_data())
            for i in range(model.get_n_tensors())}


@pytest.mark.parametrize('shape', [(300, 512), (9, 96)])
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
