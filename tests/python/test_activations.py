# Activation quantization as an API, from Python, on both backends:
# get_activation_params() from a calibration session (the numbers
# quantize_model stores), quantize_activation() with static or dynamic
# scales, and the fake-quantization orders, with PyTorch's fake_quantize as
# the oracle of the torch order.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json

import pytest

np = pytest.importorskip('numpy')

import gi  # noqa: E402
gi.require_version('Quark', '1.0')
from gi.repository import GLib, Quark  # noqa: E402

REGISTRY = Quark.Registry.get_default()


def quantizer_for(config):
    c = REGISTRY.config_from_string(json.dumps(config))
    return c, REGISTRY.new_quantizer(c)


def act(rng, shape, scale=2.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def calibrated(config, batches):
    session = Quark.Calibration.new_for_config(config, None)
    for b in batches:
        session.observe('fc', Quark.Role.INPUT, b)
    return session


def test_quark_static_params_are_what_quantize_model_stores():
    rng = np.random.default_rng(3)
    config, quantizer = quantizer_for({'backend': 'quark', 'global_quant_config': {
        'weight': {'dtype': 'int8', 'qscheme': 'per_channel', 'ch_axis': 0},
        'input_tensors': {'dtype': 'uint8', 'qscheme': 'per_tensor', 'symmetric': False}}})
    batches = [act(rng, (4, 16)) for _ in range(3)]
    session = calibrated(config, batches)
    spec = config.get_tensor_spec('fc', 'Linear', Quark.Role.INPUT)
    ok, scale, zp = quantizer.get_activation_params(spec, session, 'fc', Quark.Role.INPUT)
    assert ok
    model = Quark.Model.new()
    model.add_tensor(Quark.tensor_from_array('fc.weight', act(rng, (8, 16))))
    out = quantizer.quantize_model(model, session, None)
    assert scale.to_numpy().tobytes() == out.get_tensor('fc.input_scale').to_numpy().tobytes()
    assert zp.to_numpy().tolist() == out.get_tensor('fc.input_zero_point').to_numpy().tolist()

    # the codes read back through the spec are the spec's fake quantization
    x = Quark.tensor_from_array('x', act(rng, (2, 3, 16)))
    q = quantizer.quantize_activation(x, spec, scale, zp)
    codes = q.get_tensor('x')
    assert codes.get_dtype() == Quark.DType.UINT8 and list(codes.get_shape()) == [2, 3, 16]
    back = spec.dequantize(codes, q.get_tensor('x_scale'), q.get_tensor('x_zero_point'))
    assert back.to_numpy().tobytes() == spec.fake_quantize(x, scale, zp).to_numpy().tobytes()


def test_quark_without_calibration_is_an_error():
    config, quantizer = quantizer_for({'backend': 'quark', 'global_quant_config': {
        'input_tensors': {'dtype': 'int8', 'qscheme': 'per_tensor'}}})
    spec = config.get_tensor_spec('fc', 'Linear', Quark.Role.INPUT)
    with pytest.raises(GLib.Error) as info:
        quantizer.get_activation_params(spec, None, None, Quark.Role.INPUT)
    assert info.value.matches(Quark.Error.quark(), Quark.Error.NEEDS_CALIBRATION)
    with pytest.raises(GLib.Error) as info:
        quantizer.quantize_activation(Quark.tensor_from_array('x', np.ones((2, 4), np.float32)), spec, None, None)
    assert info.value.matches(Quark.Error.quark(), Quark.Error.NEEDS_CALIBRATION)


@pytest.mark.parametrize('qscheme,extra', [('per_tensor', {}), ('per_channel', {'ch_axis': 0}),
                                           ('per_group', {'group_size': 8})])
def test_quark_dynamic_is_the_weight_arithmetic_per_token(qscheme, extra):
    """A dynamic activation [batch, tokens, features] is quantized as a
    weight [tokens, features] would be: per_channel means per token."""
    rng = np.random.default_rng(5)
    spec_json = dict({'dtype': 'int8', 'qscheme': qscheme, 'is_dynamic': True}, **extra)
    config, quantizer = quantizer_for({'backend': 'quark', 'global_quant_config': {
        'input_tensors': spec_json, 'weight': dict(spec_json, is_dynamic=False)}})
    x = act(rng, (2, 3, 16))
    out = quantizer.quantize_activation(Quark.tensor_from_array('x', x),
                                        config.get_tensor_spec('fc', 'Linear', Quark.Role.INPUT), None, None)
    as_weight = quantizer.quantize_tensor(Quark.tensor_from_array('x', x.reshape(6, 16)),
                                          config.get_tensor_spec('fc', 'Linear', Quark.Role.WEIGHT))
    assert list(out.get_tensor('x').get_shape()) == [2, 3, 16]
    assert out.get_tensor('x').to_numpy().reshape(6, 16).tolist() == as_weight.get_tensor('x').to_numpy().tolist()
    assert out.get_tensor('x_scale').to_numpy().tobytes() == as_weight.get_tensor('x_scale').to_numpy().tobytes()
    n_scales = {'per_tensor': 1, 'per_channel': 6, 'per_group': 12}[qscheme]
    assert out.get_tensor('x_scale').get_n_elements() == n_scales
    with pytest.raises(GLib.Error) as info:
        quantizer.quantize_activation(Quark.tensor_from_array('x', x),
                                      config.get_tensor_spec('fc', 'Linear', Quark.Role.INPUT),
                                      out.get_tensor('x_scale'), None)
    assert info.value.matches(Quark.Error.quark(), Quark.Error.INVALID_ARGUMENT)


def test_quark_dynamic_mx_blocks():
    rng = np.random.default_rng(6)
    config, quantizer = quantizer_for({'backend': 'quark', 'global_quant_config': {
        'input_tensors': {'dtype': 'fp4', 'qscheme': 'per_group', 'group_size': 32, 'is_dynamic': True,
                          'scale_format': 'e8m0', 'ch_axis': -1}}})
    out = quantizer.quantize_activation(Quark.tensor_from_array('x', act(rng, (4, 64))),
                                        config.get_tensor_spec('fc', 'Linear', Quark.Role.INPUT), None, None)
    assert out.get_tensor('x_scale').get_dtype() == Quark.DType.E8M0
    assert list(out.get_tensor('x_scale').get_shape()) == [4, 2]


def test_torch_order_is_pytorch_fake_quantize():
    """QuarkTensorSpec:quant-order = torch reproduces
    torch.fake_quantize_per_tensor_affine bit for bit, where the default
    (AMD Quark's real quantization) adds the zero point before rounding."""
    torch = pytest.importorskip('torch')
    rng = np.random.default_rng(8)
    # values near ties: multiples of s/2 nudged by an ulp either way
    s, z = np.float32(0.0123), 77
    base = (np.arange(-400, 400, dtype=np.float32) * np.float32(0.5) * s).astype(np.float32)
    x = np.concatenate([base, np.nextafter(base, np.float32(np.inf)), np.nextafter(base, np.float32(-np.inf)),
                        act(rng, 2000, 1.0)]).astype(np.float32)
    want = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), float(s), z, 0, 255).numpy()
    t = Quark.tensor_from_array('x', x)
    st = Quark.Tensor.new_from_floats('s', [], [float(s)])
    zt = Quark.Tensor.new_from_floats('z', [], [float(z)])
    orders = {}
    for order in (Quark.QuantOrder.TORCH, Quark.QuantOrder.QUARK, Quark.QuantOrder.BREVITAS):
        spec = Quark.TensorSpec(dtype=Quark.DType.UINT8, symmetric=False, quant_order=order)
        assert spec.get_quant_order() == order
        orders[order] = spec.fake_quantize(t, st, zt).to_numpy()
    assert orders[Quark.QuantOrder.TORCH].tobytes() == want.tobytes()
    # the other orders differ from torch at some of these ties
    assert (orders[Quark.QuantOrder.QUARK] != want).any()
    assert (orders[Quark.QuantOrder.BREVITAS] != want).any()
    # and the codes of the torch order dequantize to the same values
    spec = Quark.TensorSpec(dtype=Quark.DType.UINT8, symmetric=False, quant_order=Quark.QuantOrder.TORCH)
    codes = spec.quantize(t, st, zt)
    assert spec.dequantize(codes, st, zt).to_numpy().tobytes() == want.tobytes()


def test_brevitas_uncalibrated_calibrated_and_dynamic():
    rng = np.random.default_rng(9)
    config, quantizer = quantizer_for({'backend': 'brevitas', 'global_quant_config': {
        'input_tensors': {'preset': 'Int8ActPerTensorFloat'}}})
    spec = config.get_tensor_spec('fc', 'Linear', Quark.Role.INPUT)
    assert spec.get_quant_order() == Quark.QuantOrder.BREVITAS
    # Brevitas's uncalibrated quantizer: statistic 1, s = 1/128
    ok, scale, zp = quantizer.get_activation_params(spec, None, None, Quark.Role.INPUT)
    assert scale.to_numpy().item() == 1 / 128 and zp.to_numpy().item() == 0
    x = act(rng, (3, 16))
    out = quantizer.quantize_activation(Quark.tensor_from_array('x', x), spec, None, None)
    assert out.get_tensor('x').to_numpy().tolist() == np.clip(np.rint(x * 128), -128, 127).astype(int).tolist()
    # calibrated: the running mean of per-batch maxima (99.999th percentile of 48 values) / 128
    batches = [act(rng, (3, 16)) for _ in range(2)]
    session = calibrated(config, batches)
    ok, scale, zp = quantizer.get_activation_params(spec, session, 'fc', Quark.Role.INPUT)
    stat = np.float32(np.abs(batches[0]).max()) * np.float32(0.5) + np.float32(np.abs(batches[1]).max() / 2)
    assert abs(scale.to_numpy().item() - stat / 128) < 1e-7

    config, quantizer = quantizer_for({'backend': 'brevitas', 'global_quant_config': {
        'input_tensors': {'preset': 'MXFloat8e4m3Act'}}})
    spec = config.get_tensor_spec('fc', 'Linear', Quark.Role.INPUT)
    out = quantizer.quantize_activation(Quark.tensor_from_array('x', act(rng, (2, 4, 64))), spec, None, None)
    assert list(out.get_tensor('x_scale').get_shape()) == [2, 4, 2]
    assert list(out.get_tensor('x').get_shape()) == [2, 4, 64]
    with pytest.raises(GLib.Error) as info:
        quantizer.get_activation_params(spec, None, None, Quark.Role.INPUT)
    assert info.value.matches(Quark.Error.quark(), Quark.Error.INVALID_ARGUMENT)


def test_a_weight_spec_is_not_an_activation_spec():
    config, quantizer = quantizer_for({'backend': 'brevitas', 'global_quant_config': {
        'weight': {'preset': 'Int8WeightPerTensorFloat'}}})
    with pytest.raises(GLib.Error) as info:
        quantizer.quantize_activation(Quark.tensor_from_array('x', np.ones((2, 4), np.float32)),
                                      config.get_tensor_spec('fc', 'Linear', Quark.Role.WEIGHT), None, None)
    assert info.value.matches(Quark.Error.quark(), Quark.Error.UNSUPPORTED_SCHEME)


def test_brevitas_activation_mse_survives_a_statistics_file(tmp_path):
    """Int8ActPerTensorFloatMSE: each batch's MSE-optimal statistic, their
    running mean in the session, saved and loaded with it."""
    rng = np.random.default_rng(12)
    config, quantizer = quantizer_for({'backend': 'brevitas', 'global_quant_config': {
        'input_tensors': {'preset': 'ShiftedUint8ActPerTensorFloatMSE'}}})
    spec = config.get_tensor_spec('fc', 'Linear', Quark.Role.INPUT)
    session = calibrated(config, [act(rng, (4, 32)) + 0.5 for _ in range(3)])
    found, stat, zp_stat = session.get_batch_statistic('fc', Quark.Role.INPUT)
    assert found and stat > 0 and zp_stat <= 0
    path = str(tmp_path / 'stats.json')
    session.save(path)
    loaded = Quark.Calibration.load(path)
    assert loaded.get_batch_statistic('fc', Quark.Role.INPUT) == (True, stat, zp_stat)
    a = quantizer.get_activation_params(spec, session, 'fc', Quark.Role.INPUT)
    b = quantizer.get_activation_params(spec, loaded, 'fc', Quark.Role.INPUT)
    assert a[1].to_numpy().tobytes() == b[1].to_numpy().tobytes() and a[2].to_numpy() == b[2].to_numpy()
    # a session that did not run the search (made for another config) is refused by name
    other = calibrated(REGISTRY.config_from_string('{"backend": "brevitas", "global_quant_config": '
                                                   '{"input_tensors": {"preset": "Uint8ActPerTensorFloat"}}}'),
                       [act(rng, (4, 32))])
    with pytest.raises(GLib.Error) as info:
        quantizer.get_activation_params(spec, other, 'fc', Quark.Role.INPUT)
    assert info.value.matches(Quark.Error.quark(), Quark.Error.NEEDS_CALIBRATION)
    assert 'ShiftedUint8ActPerTensorFloatMSE' in info.value.message


def test_quark_dynamic_nvfp4_under_a_static_global_scale():
    """NVFP4 inputs (compressed-tensors' dynamic "local"): the global scale
    448 * 6 / amax is static, from calibration; the E4M3 group scales and
    E2M1 codes come from each tensor, as for a weight under that global
    scale, bit for bit against the numpy reference of compressed-tensors'
    arithmetic."""
    from test_export_formats import nvfp4_codes
    rng = np.random.default_rng(9)
    nv = {'dtype': 'fp4', 'qscheme': 'per_group', 'group_size': 16, 'ch_axis': -1, 'symmetric': True,
          'scale_format': 'e4m3'}
    config, quantizer = quantizer_for({'backend': 'quark', 'global_quant_config': {
        'weight': nv, 'input_tensors': dict(nv, is_dynamic=True)}})
    spec = config.get_tensor_spec('fc', 'Linear', Quark.Role.INPUT)
    assert spec.get_is_dynamic() and spec.has_static_scale()
    assert not Quark.TensorSpec(dtype=Quark.DType.INT8, is_dynamic=True).has_static_scale()
    batches = [act(rng, (4, 64)) for _ in range(3)]
    session = calibrated(config, batches)
    ok, g, zp = quantizer.get_activation_params(spec, session, 'fc', Quark.Role.INPUT)
    assert ok and zp is None and list(g.get_shape()) == [1]
    amax = max(np.abs(b).max() for b in batches)
    assert g.to_numpy().view(np.uint32)[0] == np.float32(np.float32(2688) / amax).view(np.uint32)

    # (what `quark quantize` writes as input_global_scale: test_export_formats.py)

    # a tensor [batch, tokens, features], larger than the calibrated range
    x = act(rng, (2, 3, 64), 3.0)
    gv = g.to_numpy()[0]
    q, codes, eff = nvfp4_codes(x.reshape(6, 64), gv)
    out = quantizer.quantize_activation(Quark.tensor_from_array('x', x), spec, g, None)
    assert list(out.get_tensor('x').get_shape()) == [2, 3, 64]
    assert out.get_tensor('x').to_numpy().reshape(6, 64).tolist() == q.tolist()
    assert out.get_tensor('x_scale').get_dtype() == Quark.DType.FP8_E4M3
    assert out.get_tensor('x_scale').to_numpy().view(np.uint8).reshape(6, 4).tolist() == codes.tolist()
    assert out.get_tensor('x_global_scale').to_numpy().tobytes() == g.to_numpy().tobytes()
    e2m1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)
    want = (e2m1[q] * np.repeat(eff, 16, axis=1)).astype(np.float32).reshape(2, 3, 64)
    fake = quantizer.fake_quantize_activation(Quark.tensor_from_array('x', x), spec, g, None).to_numpy()
    assert fake.tobytes() == want.tobytes()

    # without its global scale, or with one that is not a positive float32
    with pytest.raises(GLib.Error) as info:
        quantizer.quantize_activation(Quark.tensor_from_array('x', x), spec, None, None)
    assert info.value.matches(Quark.Error.quark(), Quark.Error.NEEDS_CALIBRATION)
    with pytest.raises(GLib.Error) as info:
        quantizer.fake_quantize_activation(Quark.tensor_from_array('x', x), spec,
                                           Quark.Tensor.new_from_floats('g', [1], [0.0]), None)
    assert info.value.matches(Quark.Error.quark(), Quark.Error.INVALID_ARGUMENT)
    with pytest.raises(GLib.Error) as info:
        quantizer.get_activation_params(spec, None, None, Quark.Role.INPUT)
    assert info.value.matches(Quark.Error.quark(), Quark.Error.NEEDS_CALIBRATION)
