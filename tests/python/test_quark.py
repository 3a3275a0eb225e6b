# Python binding tests: gi.repository.Quark against the build tree.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import struct

import gi
gi.require_version('Quark', '1.0')
gi.require_version('Json', '1.0')
from gi.repository import GLib, GObject, Json, Quark  # noqa: E402

import pytest  # noqa: E402

Q1_X = [1.27, -1.27, 0.5, 0.3, 0.004, 0.125, -0.05, 0.635]
Q1_CODES = [127, -128, 50, 30, 0, 13, -5, 64]
Q1_SCALE_BITS = 0x3C23328F

REGISTRY = Quark.Registry.get_default()


def int8s(tensor):
    data = tensor.get_data().get_data()
    return list(struct.unpack('%db' % len(data), data))


def f32_bits(tensor, index=0):
    data = tensor.get_data().get_data()
    return struct.unpack_from('<I', data, 4 * index)[0]


def quantize(config_text, tensors, calibration=None):
    config = REGISTRY.config_from_string(config_text, -1)
    model = Quark.Model.new()
    for t in tensors:
        model.add_tensor(t)
    quantizer = REGISTRY.new_quantizer(config)
    return quantizer.quantize_model(model, calibration, None)


def test_quark_backend_listed_with_metadata():
    names = [b.get_name() for b in REGISTRY.list_backends()]
    assert 'quark' in names
    quark = REGISTRY.lookup_backend('quark')
    assert quark.props.version == Quark.VERSION_S
    assert 'AMD Quark' in quark.props.description
    assert quark.props.module_path.endswith('libquark-backend-quark.so')
    assert Quark.DType.INT8 in quark.get_supported_dtypes()
    assert quark.supports_qscheme(Quark.QScheme.PER_CHANNEL)
    assert quark.check_available()
    described = Json.to_string(quark.describe(), False)
    assert '"name":"quark"' in described


def test_q1_exact_integers_and_scale():
    t = Quark.Tensor.new_from_floats('fc.weight', [2, 4], Q1_X)
    out = quantize('{"backend": "quark", "global_quant_config": '
                   '{"weight": {"dtype": "int8", "qscheme": "per_tensor"}}}', [t])
    w = out.get_tensor('fc.weight')
    assert w.get_dtype() == Quark.DType.INT8
    assert list(w.get_shape()) == [2, 4]
    assert int8s(w) == Q1_CODES
    assert f32_bits(out.get_tensor('fc.weight_scale')) == Q1_SCALE_BITS
    assert int8s(out.get_tensor('fc.weight_zero_point')) == [0]


def test_tensor_from_glib_bytes_zero_copy_roundtrip():
    raw = struct.pack('<4e', 1.0, -2.0, 0.5, 65504.0)   # float16
    t = Quark.Tensor.new('h', Quark.DType.FLOAT16, [4], GLib.Bytes.new(raw))
    assert t.get_data().get_data() == raw
    assert t.to_floats() == [1.0, -2.0, 0.5, 65504.0]
    assert t.props.n_elements == 4


def test_tensor_size_mismatch_raises():
    with pytest.raises(GLib.Error) as info:
        Quark.Tensor.new('bad', Quark.DType.FLOAT32, [3], GLib.Bytes.new(b'\0' * 8))
    assert info.value.matches(Quark.Error.quark(), Quark.Error.INVALID_ARGUMENT)
    assert 'tensor bad' in info.value.message


def test_unknown_key_names_the_key():
    with pytest.raises(GLib.Error) as info:
        REGISTRY.config_from_string('{"backend": "quark", "global_quant_config": '
                                    '{"weight": {"dtype": "int8", "bits": 8}}}', -1)
    e = info.value
    assert e.matches(Quark.ConfigError.quark(), Quark.ConfigError.UNKNOWN_KEY)
    assert e.domain == 'quark-config-error-quark'
    assert e.message.startswith('global_quant_config.weight.bits: unknown key')


def test_unknown_backend():
    with pytest.raises(GLib.Error) as info:
        REGISTRY.config_from_string('{"backend": "nope"}', -1)
    assert info.value.matches(Quark.BackendError.quark(), Quark.BackendError.NOT_FOUND)


def test_property_setter_does_not_validate_but_validate_does():
    spec = Quark.TensorSpec.new(Quark.DType.FP8_E4M3, Quark.QScheme.PER_TENSOR)
    spec.props.narrow_range = True
    with pytest.raises(GLib.Error) as info:
        spec.validate('weight')
    assert info.value.matches(Quark.ConfigError.quark(), Quark.ConfigError.INVALID_COMBINATION)


def test_progress_signal_and_async():
    tensors = [Quark.Tensor.new_from_floats('l%d.weight' % i, [2, 4], Q1_X) for i in range(3)]
    config = REGISTRY.config_from_string('{"backend": "quark", "global_quant_config": '
                                         '{"weight": {"dtype": "int8"}}}', -1)
    model = Quark.Model.new()
    for t in tensors:
        model.add_tensor(t)
    quantizer = REGISTRY.new_quantizer(config)
    seen = []
    quantizer.connect('progress', lambda q, done, total, item: seen.append((done, total, item)))

    loop = GLib.MainLoop()
    result = {}

    def done(q, res):
        result['model'] = q.quantize_model_finish(res)
        loop.quit()

    quantizer.quantize_model_async(model, None, None, done)
    loop.run()
    assert [s[0] for s in seen] == [8, 16, 24]
    assert all(s[1] == 24 for s in seen)
    assert seen[-1][2] == 'l2.weight'
    assert int8s(result['model'].get_tensor('l1.weight')) == Q1_CODES


def test_cancel():
    t = Quark.Tensor.new_from_floats('fc.weight', [2, 4], Q1_X)
    config = REGISTRY.config_from_string('{"backend": "quark", "global_quant_config": '
                                         '{"weight": {"dtype": "int8"}}}', -1)
    model = Quark.Model.new()
    model.add_tensor(t)
    cancellable = Gio_cancellable()
    cancellable.cancel()
    with pytest.raises(GLib.Error) as info:
        REGISTRY.new_quantizer(config).quantize_model(model, None, cancellable)
    from gi.repository import Gio
    assert info.value.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)


def Gio_cancellable():
    gi.require_version('Gio', '2.0')
    from gi.repository import Gio
    return Gio.Cancellable()


# A backend written in Python, registered at run time -----------------------

class PyRoundConfig(GObject.Object, Quark.QuantizationConfig):
    """Rounds weights to multiples of 2^-frac_bits, kept as float32."""
    __gtype_name__ = 'PyRoundConfig'
    frac_bits = GObject.Property(type=int, default=2, minimum=0, maximum=20)


class PyRoundQuantizer(GObject.Object, Quark.ModelQuantizer):
    __gtype_name__ = 'PyRoundQuantizer'
    config = GObject.Property(type=Quark.QuantizationConfig,
                              flags=GObject.ParamFlags.READWRITE | GObject.ParamFlags.CONSTRUCT_ONLY)

    def do_quantize_model(self, model, calibration, cancellable):
        step = 2.0 ** -self.props.config.props.frac_bits
        out = Quark.Model.new()
        n = model.get_n_tensors()
        for i in range(n):
            t = model.get_tensor_at(i)
            values = [round(v / step) * step for v in t.to_floats()]
            out.add_tensor(Quark.Tensor.new_from_floats(t.get_name(), list(t.get_shape()), values))
            self.report_progress(i + 1, n, t.get_name())
        return out


def test_python_backend_through_the_registry():
    backend = Quark.Backend.new('py-round', PyRoundConfig.__gtype__, PyRoundQuantizer.__gtype__)
    backend.set_description('Rounding backend written in Python')
    backend.set_version('1.0')
    REGISTRY.add_backend(backend)
    assert REGISTRY.lookup_backend('py-round').get_description() == 'Rounding backend written in Python'
    assert 'py-round' in [b.get_name() for b in REGISTRY.list_backends()]

    # the default strict loader applies to Python properties too
    with pytest.raises(GLib.Error) as info:
        REGISTRY.config_from_string('{"backend": "py-round", "frac_bits": 99}', -1)
    assert info.value.matches(Quark.ConfigError.quark(), Quark.ConfigError.OUT_OF_RANGE)
    assert info.value.message == 'frac_bits: expected an integer from 0 to 20, got 99'

    config = REGISTRY.config_from_string('{"backend": "py-round", "frac_bits": 1}', -1)
    assert config.get_backend_name() == 'py-round'
    assert '"frac_bits" : 1' in config.to_string()

    model = Quark.Model.new()
    model.add_tensor(Quark.Tensor.new_from_floats('w', [3], [0.3, 0.8, -1.2]))
    quantizer = REGISTRY.new_quantizer(config)
    progress = []
    quantizer.connect('progress', lambda q, d, t, item: progress.append(item))
    out = quantizer.quantize_model(model, None, None)
    assert out.get_tensor('w').to_floats() == [0.5, 1.0, -1.0]
    assert progress == ['w']

    # registering the same name again is refused
    with pytest.raises(GLib.Error) as info:
        REGISTRY.add_backend(Quark.Backend.new('py-round', PyRoundConfig.__gtype__,
                                               PyRoundQuantizer.__gtype__))
    assert info.value.matches(Quark.BackendError.quark(), Quark.BackendError.DUPLICATE)


def test_numpy_and_torch_oracle():
    np = pytest.importorskip('numpy')
    torch = pytest.importorskip('torch')
    rng = np.random.default_rng(1234)
    w = (rng.standard_normal((16, 37)) * rng.uniform(0.01, 3, (16, 1))).astype(np.float32)
    t = Quark.Tensor.new('fc.weight', Quark.DType.FLOAT32, list(w.shape), GLib.Bytes.new(w.tobytes()))
    out = quantize('{"backend": "quark", "global_quant_config": '
                   '{"weight": {"dtype": "int8", "qscheme": "per_channel", "ch_axis": 0}}}', [t])
    codes = np.frombuffer(out.get_tensor('fc.weight').get_data().get_data(), dtype=np.int8).reshape(w.shape)
    scales = np.frombuffer(out.get_tensor('fc.weight_scale').get_data().get_data(), dtype=np.float32)
    # independent oracle: PyTorch's quantize_per_channel with libquark's scales
    ref = torch.quantize_per_channel(torch.from_numpy(w), torch.from_numpy(scales.astype(np.float64)),
                                     torch.zeros(16, dtype=torch.int64), 0, torch.qint8)
    assert np.array_equal(ref.int_repr().numpy(), codes)
    # and the scale rule: amax / 127.5 in float32
    amax = np.abs(w).max(axis=1)
    assert np.array_equal(scales, (amax / np.float32(127.5)).astype(np.float32))


# Single tensors with the quark backend against PyTorch's fake quantization ---

def quark_quantizer():
    config = REGISTRY.config_from_string('{"backend": "quark", "global_quant_config": '
                                         '{"weight": {"dtype": "int8"}}}', -1)
    return REGISTRY.new_quantizer(config)


def spec(**props):
    s = Quark.TensorSpec.new(props.pop('dtype'), props.pop('qscheme'))
    for k, v in props.items():
        s.set_property(k.replace('_', '-'), v)
    return s


def quantize_and_dequantize(np, w, sp):
    t = Quark.Tensor.new('w', Quark.DType.FLOAT32, list(w.shape), GLib.Bytes.new(w.tobytes()))
    out = quark_quantizer().quantize_tensor(t, sp)
    deq = sp.dequantize(out.get_tensor('w'), out.get_tensor('w_scale'), out.get_tensor('w_zero_point'))
    x_hat = np.frombuffer(deq.get_data().get_data(), dtype=np.float32).reshape(w.shape)
    scale = np.frombuffer(out.get_tensor('w_scale').get_data().get_data(), dtype=np.float32)
    return out, x_hat, scale


def test_fake_quantize_matches_torch():
    np = pytest.importorskip('numpy')
    torch = pytest.importorskip('torch')
    rng = np.random.default_rng(7)
    for shape in [(1, 1), (3, 7), (16, 33), (64, 130)]:
        w = (rng.standard_normal(shape) * rng.uniform(1e-3, 5, (shape[0], 1))).astype(np.float32)
        # per channel, symmetric int8 (zero point 0: Quark's export order and
        # PyTorch's agree exactly)
        _, x_hat, scale = quantize_and_dequantize(
            np, w, spec(dtype=Quark.DType.INT8, qscheme=Quark.QScheme.PER_CHANNEL, ch_axis=0))
        ref = torch.fake_quantize_per_channel_affine(torch.from_numpy(w), torch.from_numpy(scale),
                                                     torch.zeros(shape[0], dtype=torch.int32), 0, -128, 127)
        assert np.array_equal(ref.numpy().view(np.uint32), x_hat.view(np.uint32)), shape
        # per tensor
        _, x_hat, scale = quantize_and_dequantize(
            np, w, spec(dtype=Quark.DType.INT8, qscheme=Quark.QScheme.PER_TENSOR))
        ref = torch.fake_quantize_per_tensor_affine(torch.from_numpy(w), float(scale[0]), 0, -128, 127)
        assert np.array_equal(ref.numpy(), x_hat), shape
        # uint8 asymmetric per tensor: equal except where x * inv lands within
        # one float32 rounding of a half (the zero point is added before
        # rounding here, after it in PyTorch: numerics reference 1.2)
        out, x_hat, scale = quantize_and_dequantize(
            np, w, spec(dtype=Quark.DType.UINT8, qscheme=Quark.QScheme.PER_TENSOR, symmetric=False))
        z = int(out.get_tensor('w_zero_point').get_data().get_data()[0])
        ref = torch.fake_quantize_per_tensor_affine(torch.from_numpy(w), float(scale[0]), z, 0, 255).numpy()
        differ = ref != x_hat
        t = w * np.float32(1.0 / scale[0])
        near_tie = np.abs(np.abs(t - np.floor(t)) - 0.5) < 1e-5
        assert not np.any(differ & ~near_tie), shape


def test_int4_per_group_and_mx_from_python():
    np = pytest.importorskip('numpy')
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 256)).astype(np.float32)
    out, x_hat, scale = quantize_and_dequantize(
        np, w, spec(dtype=Quark.DType.INT4, qscheme=Quark.QScheme.PER_GROUP, ch_axis=-1, group_size=128))
    assert list(out.get_tensor('w_scale').get_shape()) == [8, 2]
    codes = np.frombuffer(out.get_tensor('w').get_data().get_data(), dtype=np.int8)
    assert codes.min() >= -8 and codes.max() <= 7
    steps = np.repeat(scale.reshape(8, 2), 128, axis=1)
    assert np.all(np.abs(x_hat - w) <= steps * 0.5 * (1 + 2e-5))

    out, x_hat, _ = quantize_and_dequantize(
        np, w, spec(dtype=Quark.DType.FP4, qscheme=Quark.QScheme.PER_GROUP, ch_axis=-1, group_size=32,
                    scale_format=Quark.ScaleFormat.E8M0))
    e8m0 = out.get_tensor('w_scale')
    assert e8m0.get_dtype() == Quark.DType.E8M0
    assert list(e8m0.get_shape()) == [8, 8]
    # every dequantized value is an FP4 value times the block's power of two
    fp4 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], dtype=np.float32)
    x = np.frombuffer(e8m0.get_data().get_data(), dtype=np.uint8).astype(np.int32) - 127
    mags = np.abs(x_hat) / np.repeat(np.ldexp(np.float32(1), x).reshape(8, 8), 32, axis=1)
    assert np.all(np.isin(mags, fp4))


def test_observers_from_python():
    np = pytest.importorskip('numpy')
    w = np.concatenate([np.linspace(-1, 1, 1001, dtype=np.float32), np.float32([50])]).reshape(1, -1)
    _, _, minmax_scale = quantize_and_dequantize(
        np, w, spec(dtype=Quark.DType.INT8, qscheme=Quark.QScheme.PER_TENSOR))
    assert minmax_scale[0] == np.float32(50) / np.float32(127.5)
    # k = floor(0.999 * 1002 + 0.5) = 1001: the largest |x| below the outlier
    _, x_hat, pct_scale = quantize_and_dequantize(
        np, w, spec(dtype=Quark.DType.INT8, qscheme=Quark.QScheme.PER_TENSOR,
                    observer=Quark.Observer.PERCENTILE, percentile=99.9))
    assert pct_scale[0] == np.float32(1) / np.float32(127.5)
    assert x_hat[0, -1] == np.float32(127) * pct_scale[0]   # the outlier clips
    # MSE: one of the 19 candidates i * (50 / 20), and no worse than min-max
    _, x_mse, mse_scale = quantize_and_dequantize(
        np, w, spec(dtype=Quark.DType.INT8, qscheme=Quark.QScheme.PER_TENSOR, observer=Quark.Observer.MSE))
    candidates = [np.float32(np.float32(2.5) * np.float32(i)) / np.float32(127.5) for i in range(2, 21)]
    assert mse_scale[0] in candidates
    _, x_mm, _ = quantize_and_dequantize(np, w, spec(dtype=Quark.DType.INT8, qscheme=Quark.QScheme.PER_TENSOR))
    assert ((x_mse - w).astype(np.float64) ** 2).sum() <= ((x_mm - w).astype(np.float64) ** 2).sum()
    # asymmetric specs refuse percentile observers
    with pytest.raises(GLib.Error) as info:
        quantize_and_dequantize(np, w, spec(dtype=Quark.DType.UINT8, qscheme=Quark.QScheme.PER_TENSOR,
                                            symmetric=False, observer=Quark.Observer.PERCENTILE))
    assert info.value.matches(Quark.Error.quark(), Quark.Error.UNSUPPORTED_SCHEME)


def test_python_habits():
    """What Python users expect: numpy interop on tensors, observe() usable
    as a hook body, config_from_string without a length, one copy."""
    np = pytest.importorskip('numpy')
    config = REGISTRY.config_from_string('{"backend": "quark", "global_quant_config": '
                                         '{"weight": {"dtype": "int4", "qscheme": "per_group", "group_size": 4}}}')
    w = np.linspace(-1, 1, 32, dtype=np.float32).reshape(4, 8)
    t = Quark.tensor_from_array('fc.weight', w)
    assert t.shape == (4, 8) and t.dtype == Quark.DType.FLOAT32
    assert repr(t) == '<Quark.Tensor fc.weight [4, 8] float32>'
    assert (np.asarray(t) == w).all()
    model = Quark.Model.new()
    model.add_tensor(t)
    session = Quark.Calibration.new_for_config(config, model)
    assert session.observe('fc', Quark.Role.INPUT, np.ones((2, 8), np.float32)) is None
    # int4 codes, one per byte, come out as int8 (signed) values
    spec = config.get_tensor_spec('fc', 'Linear', Quark.Role.WEIGHT)
    out = REGISTRY.new_quantizer(config).quantize_tensor(t, spec)
    codes = out.get_tensor('fc.weight').to_numpy()
    assert codes.dtype == np.int8 and codes.shape == (4, 8) and codes.min() >= -8 and codes.max() <= 7
    # tensor_from_array copies the data once: the tensor's bytes are not the array's
    a = np.arange(1 << 20, dtype=np.float32)
    t = Quark.tensor_from_array('big', a)
    a[0] = 42
    assert np.asarray(t)[0] == 0


def test_quantizing_twice_leaves_the_model_as_it_was():
    """Quantizers write a quantization_config into their output's metadata,
    never into the input's: the same model quantizes again."""
    np = pytest.importorskip('numpy')
    model = Quark.Model.new()
    model.add_tensor(Quark.tensor_from_array('fc.weight', np.ones((8, 64), np.float32)))
    model.props.metadata = Quark.json_parse('{"model_type": "llama"}', -1, None)
    for preset in ('int8_per_channel_wo', 'int4_wo_32', 'mxfp4'):
        out = REGISTRY.new_quantizer(REGISTRY.config_for_preset(None, preset)).quantize_model(model, None, None)
        assert 'quantization_config' in Quark.json_to_string(out.props.metadata, False)
        assert Quark.json_to_string(model.props.metadata, False) == '{"model_type":"llama"}'
        assert not model.is_quantized()[0]
