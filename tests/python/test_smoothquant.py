# SmoothQuant (Quark.smoothquant_scale) and the quark backend's
# algo_config "smooth".
#
# Checked: the scale against AMD Quark's formula written in numpy; a W8A8
# checkpoint with SmoothQuant folds its scales into the norms (the float
# model unchanged: the fold test in test_awq.py) and its static input
# scales are those of the scaled inputs, max_j (max |x_j|) / s_j / 127.5,
# from the second moments; it evaluates; unsupported combinations are
# refused by name.
import json
import os
import subprocess

import gi
import numpy as np
import pytest

gi.require_version('Quark', '1.0')
from gi.repository import GLib, Quark  # noqa: E402

QUARK = os.environ.get('QUARK_TOOL', 'quark')


def tensor(name, a, dtype=Quark.DType.FLOAT32):
    return Quark.Tensor.new(name, dtype, list(a.shape), GLib.Bytes.new(np.ascontiguousarray(a).tobytes()))


def array(t, dtype=np.float32):
    return np.frombuffer(t.get_data().get_data(), dtype=dtype).reshape(list(t.get_shape()))


@pytest.mark.parametrize('alpha', [0.0, 0.5, 0.85, 1.0])
def test_scale_is_amd_quarks_formula(alpha):
    rng = np.random.default_rng(0)
    ws = [(rng.standard_normal((24, 32)) * 0.1).astype(np.float32) for _ in range(3)]
    ws[1][:, 5] = 0                                   # a column zero in one weight
    for w in ws:
        w[:, 7] = 0                                   # and in all: the 1e-5 floor
    a = np.abs(rng.standard_normal(32) * 4).astype(np.float32)
    a[3] = 0                                          # a dead channel: the clamp
    got = array(Quark.smoothquant_scale([tensor('w%d' % i, w) for i, w in enumerate(ws)], tensor('a', a),
                                        alpha, 1e-3))
    wmax = np.maximum(np.abs(np.stack(ws)).max(axis=(0, 1)), np.float32(1e-5))
    want = np.maximum(np.power(a, np.float32(alpha)) / np.power(wmax, np.float32(1 - alpha)), np.float32(1e-3))
    assert np.allclose(got, want, rtol=1e-6) and got[3] == np.float32(1e-3) or alpha == 0
    with pytest.raises(GLib.Error) as e:
        Quark.smoothquant_scale([tensor('w', ws[0])], tensor('a', a), 1.5, 1e-3)
    assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_ARGUMENT)
    with pytest.raises(GLib.Error):
        Quark.smoothquant_scale([tensor('w', ws[0])], tensor('a', a[:10]), 0.5, 1e-3)


def quantize(tmp_path, d, name, cfg, text):
    from test_executor import quantize_config
    extra = ['--calibration-text', text, '--calibration-tokens', 200] if text else []
    return quantize_config(tmp_path, d, name, cfg, *extra)


def w8a8(algos, input_spec=None):
    spec = {'dtype': 'int8', 'qscheme': 'per_tensor', 'symmetric': True, 'is_dynamic': False}
    return {'backend': 'quark', 'global_quant_config': {'weight': dict(spec), 'input_tensors': input_spec or dict(spec)},
            'exclude': ['lm_head'], 'algo_config': algos}


def test_w8a8_smoothquant(tmp_path):
    pytest.importorskip('torch')
    from test_executor import calibration_model
    d, text = calibration_model(tmp_path)
    p = quantize(tmp_path, d, 'sq', w8a8([{'name': 'smooth', 'alpha': 0.5}]), text)
    assert p.returncode == 0, p.stderr
    with open(tmp_path / 'sq' / 'config.json') as f:
        assert json.load(f)['quantization_config']['algo_config'] == [
            {'name': 'smooth', 'alpha': 0.5, 'scale_clamp_min': 0.001}]
    out = Quark.Model.load(str(tmp_path / 'sq'), None)
    orig = Quark.Model.load(d, None)
    norm = 'model.layers.0.input_layernorm.weight'
    s = array(orig.get_tensor(norm)) / array(out.get_tensor(norm))         # the folded scale
    assert not np.allclose(s, 1)
    # layer 0's inputs are the float model's in sequential calibration too
    tok = Quark.Tokenizer.new_from_file(d)
    ids = ([0] + list(tok.encode(text.read_text(), -1, False)))[:200]
    session = Quark.Calibration.new()
    session.props.second_moments = True
    assert Quark.Executor.new_from_path(d).calibrate(session, ids, 64, None)
    abs_max = array(session.get_second_moments('model.layers.0.self_attn.q_proj')[4])
    want = np.max(abs_max / s) / np.float32(127.5)
    got = array(out.get_tensor('model.layers.0.self_attn.q_proj.input_scale')).item()
    assert got == pytest.approx(float(want), rel=1e-6)
    p = subprocess.run([QUARK, 'eval', '--compare', d, str(tmp_path / 'sq'), '--text', str(text), '--ctx', '32',
                        '--json'], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr

    # refused: a static asymmetric input on a scaled layer, two scaling
    # algorithms, a bad alpha
    asym = {'dtype': 'uint8', 'qscheme': 'per_tensor', 'symmetric': False, 'is_dynamic': False}
    p = quantize(tmp_path, d, 'asym', w8a8([{'name': 'smooth'}], asym), text)
    assert p.returncode == 1 and 'scaled by the config' in p.stderr and 'model.layers.0.' in p.stderr
    p = quantize(tmp_path, d, 'two', w8a8([{'name': 'smooth'}, {'name': 'awq'}]), text)
    assert p.returncode == 1 and 'algo_config[1].name: awq after smooth' in p.stderr
    p = quantize(tmp_path, d, 'alpha', w8a8([{'name': 'smooth', 'alpha': 2}]), text)
    assert p.returncode == 1 and 'algo_config[0].alpha' in p.stderr
    for name in ('asym', 'two', 'alpha'):
        assert not os.path.exists(tmp_path / name)
