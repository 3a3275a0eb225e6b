# Rotation of the residual stream (Quark.rotation_*), the quantizer's
# prepare_model() and the quark backend's algo_config "rotation".
#
# Checked: the matrices are orthogonal, Hadamard ones are ±1/√n, the same
# seed gives the same matrix; a rotated model computes the float model's
# logits (1e-5 relative) with unit norms; tied embeddings are refused;
# quark quantize --algorithm rotation writes a checkpoint that evaluates,
# the API refuses to quantize an unrotated model with a rotating config,
# and statistics from a file are refused with rotation.
import json
import os
import subprocess

import gi
import numpy as np
import pytest

gi.require_version('Quark', '1.0')
from gi.repository import GLib, Quark  # noqa: E402

REGISTRY = Quark.Registry.get_default()
QUARK = os.environ.get('QUARK_TOOL', 'quark')


def array(t, dtype=np.float32):
    return np.frombuffer(t.get_data().get_data(), dtype=dtype).reshape(list(t.get_shape()))


@pytest.mark.parametrize('n,random', [(8, False), (64, True), (12, False), (48, True)])
def test_matrices_are_orthogonal(n, random):
    q = array(Quark.rotation_matrix(n, random, 7)).astype(np.float64)
    assert q.shape == (n, n)
    assert np.abs(q @ q.T - np.eye(n)).max() < 1e-6
    if n & (n - 1) == 0:
        assert np.allclose(np.abs(q), 1 / np.sqrt(n), rtol=1e-7)
        if not random:                                  # Sylvester's construction
            i, j = np.indices((n, n))
            signs = np.vectorize(lambda a: bin(a).count('1') % 2)(i & j)
            assert np.array_equal(q > 0, signs == 0)
    assert np.array_equal(array(Quark.rotation_matrix(n, random, 7)), q.astype(np.float32))
    if random or n & (n - 1):
        assert not np.array_equal(array(Quark.rotation_matrix(n, random, 8)), q.astype(np.float32))
    with pytest.raises(GLib.Error):
        Quark.rotation_matrix(0, False, 0)


@pytest.mark.parametrize('variant', ['llama', 'qwen2', 'mistral'])
def test_rotation_leaves_the_float_model_unchanged(tmp_path, variant):
    pytest.importorskip('torch')
    from test_executor import ids_for, logits_of, make_model
    d = make_model(str(tmp_path / 'm'), variant, 'BF16')
    model = Quark.Model.load(d, None)
    for q in (Quark.rotation_matrix(32, True, 1), Quark.rotation_matrix(32, False, 0)):
        rotated = Quark.rotation_rotate_model(model, None, q)
        for name in ('model.norm.weight', 'model.layers.1.input_layernorm.weight'):
            t = rotated.get_tensor(name)
            assert t.get_dtype() == Quark.DType.FLOAT32 and np.all(array(t) == 1)
        assert rotated.get_tensor('model.embed_tokens.weight').get_dtype() == Quark.DType.FLOAT32
        ids = ids_for(20)
        want = logits_of(Quark.Executor.new_from_path(d), ids)
        got = logits_of(Quark.Executor.new(rotated), ids)
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_tied_embeddings_are_refused(tmp_path):
    pytest.importorskip('torch')
    from test_executor import make_model
    d = make_model(str(tmp_path / 'm'), 'llama3-tied', 'F32')
    with pytest.raises(GLib.Error) as e:
        Quark.rotation_rotate_model(Quark.Model.load(d, None), None, Quark.rotation_matrix(32, False, 0))
    assert e.value.matches(Quark.error_quark(), Quark.Error.UNSUPPORTED_SCHEME) and 'lm_head.weight' in e.value.message


def config(algos):
    return {'backend': 'quark', 'global_quant_config': {'weight': {
        'dtype': 'int4', 'qscheme': 'per_group', 'group_size': 16, 'ch_axis': -1, 'symmetric': True}},
        'exclude': ['lm_head'], 'algo_config': algos}


def test_cli_and_api(tmp_path):
    pytest.importorskip('torch')
    from test_executor import calibration_model, quantize_config
    d, text = calibration_model(tmp_path)

    def quantize(name, algos, *extra):
        return quantize_config(tmp_path, d, name, config(algos), *extra)

    # rotation alone needs no calibration
    p = quantize('rot', [{'name': 'rotation', 'random': True}])
    assert p.returncode == 0, p.stderr
    with open(tmp_path / 'rot' / 'config.json') as f:
        written = json.load(f)
    assert written['quantization_config']['algo_config'] == [{'name': 'rotation', 'random': True, 'seed': 0}]
    assert 'libquark_prepared' not in written
    out = Quark.Model.load(str(tmp_path / 'rot'), None)
    assert np.all(array(out.get_tensor('model.layers.0.input_layernorm.weight')) == 1)
    p = subprocess.run([QUARK, 'eval', '--compare', d, str(tmp_path / 'rot'), '--text', str(text), '--ctx', '32',
                        '--json'], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr

    # with GPTQ, calibrated on the rotated model
    p = quantize('rot-gptq', [{'name': 'rotation'}, {'name': 'gptq'}], '--calibration-text', text,
                 '--calibration-tokens', 200)
    assert p.returncode == 0, p.stderr

    # statistics from a file describe the model before rotation
    session = Quark.Calibration.new()
    session.props.second_moments = True
    stats = str(tmp_path / 'stats.json')
    session.save(stats)
    p = quantize('rot-file', [{'name': 'rotation'}, {'name': 'gptq'}], '--calibration', stats)
    assert p.returncode == 1 and 'use --calibration-text' in p.stderr and not os.path.exists(tmp_path / 'rot-file')

    # the API: quantizing the model itself with a rotating config is refused
    quantizer = REGISTRY.new_quantizer(REGISTRY.config_from_string(json.dumps(config([{'name': 'rotation'}])), -1))
    model = Quark.Model.load(d, None)
    with pytest.raises(GLib.Error) as e:
        quantizer.quantize_model(model, None, None)
    assert 'prepare_model' in e.value.message
    prepared = quantizer.prepare_model(model, None)
    assert prepared is not model and quantizer.quantize_model(prepared, None, None) is not None
    with pytest.raises(GLib.Error) as e:
        quantizer.prepare_model(prepared, None)
    assert 'already rotated' in e.value.message
    plain = REGISTRY.new_quantizer(REGISTRY.config_from_string(json.dumps(config([])), -1))
    assert plain.prepare_model(model, None) == model
