# Calibration from Python: the numpy/torch override, libquark's activation
# fake quantization against torch, statistics files through the CLI, and
# the digits example end to end (W8A8 int8 within 1 point of float, 4-bit
# weights within 3).
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import struct
import subprocess
import sys

import pytest

np = pytest.importorskip('numpy')
torch = pytest.importorskip('torch')

torch.set_num_threads(1)     # no thread contention with the tests meson runs alongside

import gi  # noqa: E402
gi.require_version('Quark', '1.0')
from gi.repository import GLib, Quark  # noqa: E402

QUARK = os.environ['QUARK_TOOL']
REGISTRY = Quark.Registry.get_default()
EXAMPLES = os.path.join(os.path.dirname(os.environ['G_TEST_SRCDIR']), 'examples')


def test_observe_takes_numpy_and_torch():
    c = Quark.Calibration.new()
    c.observe('fc', Quark.Role.INPUT, np.array([[1, -2], [3, 4]], np.float32))
    c.observe('fc', Quark.Role.INPUT, np.array([5.5, 0], np.float16))
    bits = (np.array([-7.0], np.float32).view(np.uint32) >> 16).astype(np.uint16)     # bfloat16 bit patterns
    c.observe('fc', Quark.Role.INPUT, bits)
    c.observe('fc', Quark.Role.INPUT, torch.tensor([[9.0]], dtype=torch.bfloat16))
    ok, lo, hi = c.get_min_max('fc', Quark.Role.INPUT)
    assert ok and (lo, hi) == (-7.0, 9.0)
    assert c.get_n_batches('fc', Quark.Role.INPUT) == 4
    assert c.list_layers(Quark.Role.INPUT) == ['fc']
    with pytest.raises(TypeError):
        c.observe('fc', Quark.Role.INPUT, np.array(['a']))
    with pytest.raises(GLib.Error) as info:
        c.observe('fc', Quark.Role.INPUT, np.array([np.nan], np.float32))
    assert info.value.matches(Quark.Error.quark(), Quark.Error.INVALID_TENSOR)
    t = Quark.tensor_from_array('w', np.arange(6, dtype=np.float32).reshape(2, 3))
    assert t.get_shape() == [2, 3] and np.array_equal(t.to_numpy(), np.arange(6).reshape(2, 3))


def fake(spec, x, scale, zero_point=None):
    s = Quark.tensor_from_array('s', np.asarray(scale, np.float32))
    z = Quark.tensor_from_array('z', np.asarray(zero_point, np.int32)) if zero_point is not None else None
    return spec.fake_quantize(Quark.tensor_from_array('x', x), s, z).to_numpy()


def test_fake_quantize_matches_torch():
    """torch's fake quantization is an independent oracle: bit for bit with
    a zero point of 0 (the order of adding z differs otherwise, numerics.md
    2.5, so with z != 0 ties may land one step apart)."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((64, 48)) * 3).astype(np.float32)
    spec = Quark.TensorSpec.new(Quark.DType.INT8, Quark.QScheme.PER_TENSOR)
    ours = fake(spec, x, 0.0234)
    ref = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), 0.0234, 0, -128, 127).numpy()
    assert np.array_equal(ours.view(np.uint32), ref.view(np.uint32))

    spec = Quark.TensorSpec.new(Quark.DType.UINT8, Quark.QScheme.PER_TENSOR)
    spec.props.symmetric = False
    ours = fake(spec, x, 0.05, 37)
    ref = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), 0.05, 37, 0, 255).numpy()
    differ = ours != ref
    assert differ.mean() < 0.001
    assert np.allclose(np.abs(ours - ref)[differ], np.float32(0.05))

    # per channel along the features (axis 1), as a per-channel static input
    spec = Quark.TensorSpec.new(Quark.DType.INT8, Quark.QScheme.PER_CHANNEL)
    spec.props.ch_axis = 1
    scales = rng.uniform(0.01, 0.05, 48).astype(np.float32)
    ours = fake(spec, x, scales)
    ref = torch.fake_quantize_per_channel_affine(torch.from_numpy(x), torch.from_numpy(scales),
                                                  torch.zeros(48, dtype=torch.int32), 1, -128, 127).numpy()
    assert np.array_equal(ours.view(np.uint32), ref.view(np.uint32))

    # fp8: x / s, saturated at 448, rounded to E4M3 (checked on exact points)
    spec = Quark.TensorSpec.new(Quark.DType.FP8_E4M3, Quark.QScheme.PER_TENSOR)
    got = fake(spec, np.array([1.0, 1.0625, 1.125, 1000.0, -3.3], np.float32), 0.5)
    assert got.tolist() == [1.0, 1.0, 1.125, 224.0, -3.25]


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, np.float32)
        header[name] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    text = json.dumps(header).encode()
    text += b' ' * (-len(text) % 8)
    path.write_bytes(struct.pack('<Q', len(text)) + text + b''.join(blobs))


def read_f32(path, name):
    raw = path.read_bytes()
    n = struct.unpack('<Q', raw[:8])[0]
    h = json.loads(raw[8:8 + n])[name]
    b, e = h['data_offsets']
    return np.frombuffer(raw[8 + n + b:8 + n + e], np.float32).reshape(h['shape'])


def test_statistics_file_through_the_cli(tmp_path):
    """A session saved in one process quantizes in another: `quark quantize
    --calibration` gives the input scales the library gives in-process."""
    rng = np.random.default_rng(0)
    src = tmp_path / 'model'
    src.mkdir()
    names = ['model.layers.0.mlp.up_proj', 'model.layers.0.mlp.down_proj']
    write_safetensors(src / 'model.safetensors', {
        names[0] + '.weight': rng.standard_normal((32, 16)) * 0.1,
        names[1] + '.weight': rng.standard_normal((16, 32)) * 0.1})
    model = Quark.Model.load(str(src), None)
    config = REGISTRY.get_backend('quark').new_config_for_preset('int8')
    session = Quark.Calibration.new_for_config(config, model)
    for b in range(3):
        session.observe(names[0], Quark.Role.INPUT, rng.standard_normal((8, 16)).astype(np.float32) * (b + 1))
        session.observe(names[1], Quark.Role.INPUT, np.maximum(rng.standard_normal((8, 32)), 0).astype(np.float32))
    stats = tmp_path / 'stats.json'
    session.save(str(stats))
    quantized = REGISTRY.new_quantizer(config).quantize_model(model, session, None)

    out = tmp_path / 'out'
    r = subprocess.run([QUARK, 'quantize', str(src), '-o', str(out), '--preset', 'int8', '--calibration', str(stats)],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    for name in names:
        expected = quantized.get_tensor(name + '.input_scale').to_numpy()
        assert read_f32(out / 'model.safetensors', name + '.input_scale').tobytes() == expected.tobytes()
        ok, lo, hi = session.get_min_max(name, Quark.Role.INPUT)
        assert expected.item() == np.float32(max(-lo, hi)) / np.float32(127.5)   # Quark's symmetric int8

    # without statistics, or with a broken file: exit 1 naming what is missing
    r = subprocess.run([QUARK, 'quantize', str(src), '-o', str(tmp_path / 'x'), '--preset', 'int8', '--json'],
                       capture_output=True, text=True)
    assert r.returncode == 1 and '--calibration' in r.stderr
    assert json.loads(r.stdout)['error']['code'] == 'needs-calibration'
    stats.write_text(stats.read_text().replace('"batches"', '"batchez"', 1))
    r = subprocess.run([QUARK, 'quantize', str(src), '-o', str(tmp_path / 'x'), '--preset', 'int8',
                        '--calibration', str(stats), '--json'], capture_output=True, text=True)
    assert r.returncode == 1 and str(stats) in r.stderr and 'batchez' in r.stderr
    assert json.loads(r.stdout)['error']['code'] == 'invalid-file'
    assert not (tmp_path / 'x').exists()


@pytest.fixture(scope='module')
def digits():
    sys.path.insert(0, EXAMPLES)
    try:
        import digits as example
    finally:
        sys.path.remove(EXAMPLES)
    return example


def test_digits_end_to_end(digits, tmp_path):

    results = digits.run(str(tmp_path), log=lambda *a: None)
    by = {(r['model'], r['scheme']): r for r in results}
    for kind in ('digits-mlp', 'digits-cnn'):
        assert by[(kind, 'float')]['accuracy'] > 90
        assert abs(by[(kind, 'w8a8-int8')]['delta']) <= 1.0, by[(kind, 'w8a8-int8')]
        assert abs(by[(kind, 'brevitas-w8a8')]['delta']) <= 1.0, by[(kind, 'brevitas-w8a8')]
        assert abs(by[(kind, 'w4-int4-g32')]['delta']) <= 3.0, by[(kind, 'w4-int4-g32')]
        for scheme in ('w8-int8', 'w8a8-fp8', 'w4-mxfp4'):
            assert abs(by[(kind, scheme)]['delta']) <= 3.0, by[(kind, scheme)]

    # the statistics the example saved quantize the same through the CLI
    r8 = by[('digits-cnn', 'w8a8-int8')]
    cfg = tmp_path / 'w8a8.json'
    cfg.write_text(r8['config'])
    out = tmp_path / 'cli-out'
    p = subprocess.run([QUARK, 'quantize', r8['checkpoint'], '-o', str(out), '--config', str(cfg),
                        '--calibration', r8['stats']], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    config = REGISTRY.config_from_string(r8['config'], -1)
    model = Quark.Model.load(r8['checkpoint'], None)
    quantized = REGISTRY.new_quantizer(config).quantize_model(
        model, Quark.Calibration.load(r8['stats']), None)
    for layer in ('conv1', 'conv2', 'fc'):
        assert read_f32(out / 'model.safetensors', layer + '.input_scale').tobytes() == \
            quantized.get_tensor(layer + '.input_scale').to_numpy().tobytes()


def test_digits_quantization_is_applied(digits, tmp_path):
    """The evaluation really runs quantized: libquark's weights differ from
    the float ones and the activation hooks change the logits."""
    torch.manual_seed(0)
    xtr, ytr, xte, yte = digits.digits(0)
    net = digits.train(digits.MLP(), xtr, ytr, epochs=5)
    digits.save_checkpoint(net, str(tmp_path / 'mlp'))
    model = Quark.Model.load(str(tmp_path / 'mlp'), None)
    name, cfg_dict, _ = digits.SCHEMES[0]                       # w8a8-int8
    cfg = REGISTRY.config_from_string(json.dumps(cfg_dict), -1)
    session = digits.calibrate(net, model, cfg, xtr[:256].split(64))
    quantized = REGISTRY.new_quantizer(cfg).quantize_model(model, session, None)
    copy = digits.quantized_copy(net, model, cfg, quantized)
    w, wq = net.fc1.weight.detach().numpy(), copy.fc1.weight.detach().numpy()
    assert not np.array_equal(w, wq) and np.abs(w - wq).max() <= np.abs(w).max() / 127 + 1e-6
    assert len(copy.fc2._forward_pre_hooks) == 1
    with torch.no_grad():
        # the same weights with and without the activation fake quantization
        plain = digits.MLP()
        plain.load_state_dict(copy.state_dict())
        a, b = copy(xte), plain(xte)
        assert not torch.equal(a, b)
        assert (a - b).abs().max() < 0.05 * b.abs().max()
        assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.97
