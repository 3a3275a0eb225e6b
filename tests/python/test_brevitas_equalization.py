# The brevitas backend's activation equalization (pre_quant_opt_config
# "activation_equalization", Quark.equalization_*) against real Brevitas,
# and over a model.
#
# Checked: the scale and the folded tensors equal Brevitas's own
# (activation_equalization_mode in graph mode, committed in
# tests/data/brevitas/equalization.json by
# tests/brevitas/generate-equalization.py) bit for bit, from a calibration
# session fed the same batches; over a tiny Llama (and Qwen2, whose v has
# a bias and a row per column of o) the prepared model computes the float
# model's logits and every fold is the one its group's statistics give;
# the API and the CLI refuse what cannot work.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import base64
import json
import os
import subprocess

import pytest

np = pytest.importorskip('numpy')
import gi  # noqa: E402

gi.require_version('Quark', '1.0')
from gi.repository import GLib, Quark  # noqa: E402
from brevitas_generator import assert_same_results, generate  # noqa: E402

TESTS = os.environ.get('G_TEST_SRCDIR', os.path.join(os.path.dirname(__file__), '..'))
QUARK = os.environ.get('QUARK_TOOL', 'quark')
REGISTRY = Quark.Registry.get_default()
with open(os.path.join(TESTS, 'data', 'brevitas', 'equalization.json')) as f:
    DATA = json.load(f)
CASES = {c['name']: c for c in DATA['cases']}


def floats(b64, shape=None):
    a = np.frombuffer(base64.b64decode(b64), dtype='<f4')
    return a.reshape(shape) if shape is not None else a


def array(t):
    return np.frombuffer(t.get_data().get_data(), dtype=np.float32).reshape(list(t.get_shape()))


def tensor(name, a):
    return Quark.tensor_from_array(name, np.ascontiguousarray(a, dtype=np.float32))


def session_for(layer, batches):
    session = Quark.Calibration.new()
    session.set_second_moments_enabled(True)
    session.set_gram_matrix_enabled(False)
    for b in batches:
        session.observe(layer, Quark.Role.INPUT, np.ascontiguousarray(b))
    return session


@pytest.mark.parametrize('name', sorted(CASES))
def test_matches_brevitas(name):
    c = CASES[name]
    shapes = c['shapes']
    before = {n: floats(v, shapes[n]) for n, v in c['before'].items()}
    after = {n: floats(v, shapes[n]) for n, v in c['after'].items()}
    x = floats(c['sink_inputs']).reshape(-1, *c['batch_shape'])
    abs_max = session_for(c['sinks'][0], x).get_input_abs_max(c['sinks'][0])
    assert array(abs_max).tobytes() == np.abs(x).reshape(-1, x.shape[-1]).max(0).astype('<f4').tobytes()
    sinks = [tensor(s + '.weight', before[s + '.weight']) for s in c['sinks']]
    scale = Quark.equalization_scale(sinks, abs_max, c['alpha'])
    want = floats(c['scale'])
    got = array(scale)
    # a feature that is never non-zero and a column that is zero in every
    # sink are left alone
    assert got[5] == 1 and got[9] == 1
    if c['alpha'] == 0.5:
        assert got.view('<u4').tolist() == want.view('<u4').tolist()
    else:
        # libquark's powers in double precision, rounded once, against
        # torch's vectorized powf (SLEEF's, within an ulp): a few ulps
        assert np.abs(got.view('<i4').astype(np.int64) - want.view('<i4')).max() <= 4
    # the folds from Brevitas's own scale: bit for bit
    brevitas_scale = tensor('s', want)
    for s, w in zip(c['sinks'], sinks):
        folded = Quark.equalization_fold_sink(w, brevitas_scale)
        assert folded.get_name() == s + '.weight'
        assert array(folded).tobytes() == after[s + '.weight'].tobytes(), s
    for n in ('weight', 'bias'):
        key = '%s.%s' % (c['source'], n)
        folded = Quark.equalization_fold_source(tensor(key, before[key]), brevitas_scale)
        assert array(folded).tobytes() == after[key].tobytes(), key
    # the other tensors are Brevitas's unchanged (the sinks' biases)
    for n in before:
        if n.split('.')[0] in c['sinks'] and n.endswith('.bias'):
            assert before[n].tobytes() == after[n].tobytes()


def test_scale_arguments():
    w = tensor('w', np.ones((4, 8)))
    with pytest.raises(GLib.Error) as e:
        Quark.equalization_scale([w], tensor('a', np.ones(8)), 1.5)
    assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_ARGUMENT)
    with pytest.raises(GLib.Error) as e:
        Quark.equalization_scale([w], tensor('a', np.ones(7)), 0.5)
    assert '7 maxima for 8' in e.value.message
    with pytest.raises(GLib.Error) as e:
        Quark.equalization_scale([w, tensor('v', np.ones((4, 6)))], tensor('a', np.ones(8)), 0.5)
    assert 'same columns' in e.value.message
    with pytest.raises(GLib.Error) as e:
        Quark.equalization_fold_sink(w, tensor('s', np.ones(4)))
    assert '4 scales for 8 channels' in e.value.message
    # alpha 0 leaves the weights' range alone: s = w_max; alpha 1: s = 1 / a_max
    a = tensor('a', np.full(8, 4.0))
    assert np.all(array(Quark.equalization_scale([tensor('w', np.full((2, 8), 9.0))], a, 0.0)) == 9)
    assert np.all(array(Quark.equalization_scale([tensor('w', np.full((2, 8), 9.0))], a, 1.0)) == 0.25)


def bf16(a):
    """float32 values rounded to bfloat16 (to nearest, ties to even), as float32"""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7fff + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32)


def test_fold_keeps_the_dtype():
    # bfloat16, as torch computes it: the scale, its reciprocal and each
    # product rounded to bfloat16
    rng = np.random.default_rng(3)
    w = bf16(rng.standard_normal((6, 5)).astype(np.float32))
    bits = (w.view(np.uint32) >> 16).astype('<u2')
    t = Quark.Tensor.new('w', Quark.DType.BFLOAT16, [6, 5], GLib.Bytes.new(bits.tobytes()))
    s = rng.uniform(0.1, 3.0, 5).astype(np.float32)
    out = Quark.equalization_fold_sink(t, tensor('s', s))
    assert out.get_dtype() == Quark.DType.BFLOAT16
    got = (np.frombuffer(out.get_data().get_data(), dtype='<u2').astype(np.uint32) << 16).view(np.float32)
    want = bf16(w * bf16(np.float32(1) / bf16(s)))
    assert got.reshape(6, 5).tobytes() == want.tobytes()
    v = bits[0].copy()
    norm = Quark.Tensor.new('n', Quark.DType.BFLOAT16, [5], GLib.Bytes.new(v.tobytes()))
    got = (np.frombuffer(Quark.equalization_fold_source(norm, tensor('s', s)).get_data().get_data(),
                         dtype='<u2').astype(np.uint32) << 16).view(np.float32)
    assert got.tobytes() == bf16(w[0] * bf16(s)).tobytes()


def config(algos=None, pre=None, inputs=False):
    c = {'backend': 'brevitas', 'global_quant_config': {'weight': {'preset': 'Int8WeightPerChannelFloat'}},
         'exclude': ['lm_head']}
    if inputs:
        c['global_quant_config']['input_tensors'] = {'preset': 'Int8ActPerTensorFloat'}
    if algos:
        c['algo_config'] = algos
    if pre is not None:
        c['pre_quant_opt_config'] = pre
    return c


def new_quantizer(c):
    return REGISTRY.new_quantizer(REGISTRY.config_from_string(json.dumps(c), -1))


@pytest.mark.parametrize('variant', ['llama', 'qwen2'])
def test_prepared_model(tmp_path, variant):
    pytest.importorskip('torch')
    from test_executor import ids_for, logits_of, make_model
    d = make_model(str(tmp_path / 'm'), variant, 'F32', scale=2.0)
    model = Quark.Model.load(d, None)
    quantizer = new_quantizer(config(pre=[{'name': 'activation_equalization', 'alpha': 0.6}]))
    assert quantizer.prepare_needs_calibration()
    assert not new_quantizer(config()).prepare_needs_calibration()
    session = Quark.Calibration.new()
    session.set_second_moments_enabled(True)
    session.set_gram_matrix_enabled(False)
    ids = ids_for(40)
    assert Quark.Executor.new(model).calibrate(session, ids, 16, None)
    prepared = quantizer.prepare_model_with_calibration(model, session, None)
    assert prepared is not model
    # the float model computes what it did
    want = logits_of(Quark.Executor.new(model), ids)
    got = logits_of(Quark.Executor.new(prepared), ids)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()

    # each fold is the one its group's statistics give, in the topology's
    # order (up is a sink of the norm's group before it is down's source)
    def t(m, n):
        return array(m.get_tensor(n))

    p = 'model.layers.1.'
    groups = [('input_layernorm', ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj']),
              ('post_attention_layernorm', ['mlp.gate_proj', 'mlp.up_proj'])]
    for src, sinks in groups:
        s = array(Quark.equalization_scale([model.get_tensor(p + k + '.weight') for k in sinks],
                                           session.get_input_abs_max(p + sinks[0]), 0.6))
        assert np.array_equal(t(prepared, p + src + '.weight'), t(model, p + src + '.weight') * s)
        for k in sinks[:-1]:
            assert np.array_equal(t(prepared, p + k + '.weight'),
                                  t(model, p + k + '.weight') * (np.float32(1) / s))
    up = t(model, p + 'mlp.up_proj.weight') * (np.float32(1) / array(Quark.equalization_scale(
        [model.get_tensor(p + 'mlp.gate_proj.weight'), model.get_tensor(p + 'mlp.up_proj.weight')],
        session.get_input_abs_max(p + 'mlp.gate_proj'), 0.6)))
    s = array(Quark.equalization_scale([model.get_tensor(p + 'mlp.down_proj.weight')],
                                       session.get_input_abs_max(p + 'mlp.down_proj'), 0.6))
    assert np.array_equal(t(prepared, p + 'mlp.up_proj.weight'), up * s[:, None])
    o_changed = not np.array_equal(t(prepared, p + 'self_attn.o_proj.weight'), t(model, p + 'self_attn.o_proj.weight'))
    # v → o folds only without grouped-query attention (qwen2 here); its bias too
    assert o_changed == (variant == 'qwen2')
    if variant == 'qwen2':
        assert not np.array_equal(t(prepared, p + 'self_attn.v_proj.bias'), t(model, p + 'self_attn.v_proj.bias'))

    # quantizing: the prepared model, not the model itself
    with pytest.raises(GLib.Error) as e:
        quantizer.quantize_model(model, None, None)
    assert 'prepare_model_with_calibration' in e.value.message
    out = quantizer.quantize_model(prepared, None, None)
    assert 'libquark_prepared' not in out.get_metadata().get_object().get_members()
    with pytest.raises(GLib.Error) as e:
        quantizer.prepare_model(model, None)
    assert e.value.matches(Quark.error_quark(), Quark.Error.NEEDS_CALIBRATION)
    with pytest.raises(GLib.Error) as e:
        quantizer.prepare_model_with_calibration(model, None, None)
    assert e.value.matches(Quark.error_quark(), Quark.Error.NEEDS_CALIBRATION)
    with pytest.raises(GLib.Error) as e:
        quantizer.prepare_model_with_calibration(prepared, session, None)
    assert 'already equalized' in e.value.message
    # statistics without a layer
    with pytest.raises(GLib.Error) as e:
        quantizer.prepare_model_with_calibration(model, Quark.Calibration.new(), None)
    assert e.value.matches(Quark.error_quark(), Quark.Error.NEEDS_CALIBRATION) and 'model.layers.0.' in e.value.message


@pytest.mark.parametrize('pre,code,words', [
    ([{'name': 'activation_equalization', 'is_layerwise': True}], 'UNSUPPORTED_SCHEME', 'is_layerwise'),
    ([{'name': 'activation_equalization', 'alpha': 1.5}], 'INVALID_VALUE', 'pre_quant_opt_config[0].alpha'),
    ([{'name': 'Activation Equalization'}, {'name': 'activation_equalization'}], 'INVALID_VALUE', 'twice'),
    ([{'name': 'Pre-Processing'}], 'UNSUPPORTED_SCHEME', 'not implemented'),
    ([{'name': 'smooth'}], 'INVALID_VALUE', 'unknown pre-quantization step'),
    ([{'alpha': 0.5}], 'MISSING_KEY', 'pre_quant_opt_config[0]'),
    ([{'name': 'activation_equalization', 'beta': 1}], 'UNKNOWN_KEY', 'beta'),
])
def test_config_errors(pre, code, words):
    with pytest.raises(GLib.Error) as e:
        REGISTRY.config_from_string(json.dumps(config(pre=pre)), -1)
    domain = Quark.error_quark() if code == 'UNSUPPORTED_SCHEME' else Quark.config_error_quark()
    enum = Quark.Error if code == 'UNSUPPORTED_SCHEME' else Quark.ConfigError
    assert e.value.matches(domain, getattr(enum, code)), e.value.message
    assert words in e.value.message


def test_config_round_trip():
    c = REGISTRY.config_from_string(json.dumps(config(pre=[{'name': 'ActivationEqualization', 'alpha': 0.25}])), -1)
    written = json.loads(c.to_string())
    assert written['pre_quant_opt_config'] == [{'name': 'activation_equalization', 'alpha': 0.25,
                                                'is_layerwise': False}]
    again = REGISTRY.config_from_string(json.dumps(written), -1)
    assert REGISTRY.new_quantizer(again).prepare_needs_calibration()
    assert new_quantizer(config(pre=[])).prepare_needs_calibration() is False
    # listed among the algorithms that run after quantization: pointed to the right list
    with pytest.raises(GLib.Error) as e:
        REGISTRY.config_from_string(json.dumps(config(algos=[{'name': 'activation_equalization'}])), -1)
    assert 'pre_quant_opt_config' in e.value.message


def test_cli(tmp_path):
    pytest.importorskip('torch')
    from test_executor import calibration_model, quantize_config
    d, text = calibration_model(tmp_path)
    c = config(algos=[{'name': 'gptq'}], pre=[{'name': 'activation_equalization'}], inputs=True)
    # two passes over the calibration text: equalize, then calibrate the equalized model
    p = quantize_config(tmp_path, d, 'eq', c, '--calibration-text', text, '--calibration-tokens', 200)
    assert p.returncode == 0, p.stderr
    with open(tmp_path / 'eq' / 'config.json') as f:
        written = json.load(f)
    assert 'libquark_prepared' not in written
    assert written['quantization_config']['brevitas']['pre_quant_opt_config'][0]['name'] == \
        'activation_equalization'
    p = subprocess.run([QUARK, 'eval', '--compare', d, str(tmp_path / 'eq'), '--text', str(text), '--ctx', '32',
                        '--json'], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    # --algorithm puts activation_equalization where it belongs
    p = quantize_config(tmp_path, d, 'eq-cli', config(inputs=True), '--algorithm', 'activation_equalization,gptq',
                        '--calibration-text', text, '--calibration-tokens', 200)
    assert p.returncode == 0, p.stderr
    with open(tmp_path / 'eq-cli' / 'config.json') as f:
        brevitas = json.load(f)['quantization_config']['brevitas']
    assert brevitas['pre_quant_opt_config'] == [{'name': 'activation_equalization', 'alpha': 0.5,
                                                 'is_layerwise': False}]
    assert [a['name'] for a in brevitas['algo_config']] == ['gptq']
    # the same checkpoint as the config file's
    for name in ('model.layers.0.self_attn.q_proj.weight', 'model.layers.1.mlp.down_proj.input_scale'):
        a = Quark.Model.load(str(tmp_path / 'eq'), None).get_tensor(name)
        b = Quark.Model.load(str(tmp_path / 'eq-cli'), None).get_tensor(name)
        assert a.get_data().get_data() == b.get_data().get_data(), name
    # the preset: w8a8 with equalization
    preset = REGISTRY.get_backend('brevitas').new_config_for_preset('w8a8_equalized')
    assert REGISTRY.new_quantizer(preset).prepare_needs_calibration()
    p = subprocess.run([QUARK, 'quantize', d, '-o', str(tmp_path / 'eq-preset'), '--backend', 'brevitas', '--preset',
                        'w8a8_equalized', '--calibration-text', str(text), '--calibration-tokens', '200', '-j', '1'],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    # without a text: refused before anything is written
    session = Quark.Calibration.new()
    session.props.second_moments = True
    stats = str(tmp_path / 'stats.json')
    session.save(stats)
    for name, extra in (('none', ()), ('file', ('--calibration', stats))):
        p = quantize_config(tmp_path, d, name, c, *extra)
        assert p.returncode == 1 and '--calibration-text' in p.stderr, p.stderr
        assert not os.path.exists(tmp_path / name)


def test_committed_results_are_brevitas():
    """The committed results, made again by real Brevitas (float32 to the
    last places where torch's products round by processor)"""
    assert_same_results(generate('generate-equalization.py'), DATA)


def test_explicit_regions(tmp_path):
    """A model whose topology the core does not know: refused, with a hint;
    with the regions given (AMD Quark's scaling_layers schema, and the
    decoder layers' prefix) the same folds as the known topology's."""
    pytest.importorskip('torch')
    from test_executor import ids_for, make_model
    d = make_model(str(tmp_path / 'm'), 'llama', 'F32', scale=2.0)
    other = make_model(str(tmp_path / 'o'), 'llama', 'F32', scale=2.0, model_type='llama-like')
    model, unknown = Quark.Model.load(d, None), Quark.Model.load(other, None)
    session = Quark.Calibration.new()
    session.set_second_moments_enabled(True)
    session.set_gram_matrix_enabled(False)
    assert Quark.Executor.new(model).calibrate(session, ids_for(40), 16, None)
    entry = {'name': 'activation_equalization'}
    with pytest.raises(GLib.Error) as e:
        new_quantizer(config(pre=[entry])).prepare_model_with_calibration(unknown, session, None)
    assert e.value.matches(Quark.error_quark(), Quark.Error.UNSUPPORTED_SCHEME) and 'scaling_layers' in e.value.message
    from test_awq import Json_to_string, json_node
    groups = json.loads(Json_to_string(Quark.topology_get_scaling_layers(json_node('{"model_type": "llama"}'))[0]))
    explicit = dict(entry, scaling_layers=groups, model_decoder_layers='model.layers')
    got = new_quantizer(config(pre=[explicit])).prepare_model_with_calibration(unknown, session, None)
    want = new_quantizer(config(pre=[entry])).prepare_model_with_calibration(model, session, None)
    changed = 0
    for name in want.get_tensor_names():
        assert got.get_tensor(name).get_data().get_data() == want.get_tensor(name).get_data().get_data(), name
        changed += model.get_tensor(name).get_data().get_data() != want.get_tensor(name).get_data().get_data()
    assert changed == 2 * 8          # per decoder layer: the two norms, q, k, v, gate, up, down (not o: GQA)
    # the config says what it was given
    c = REGISTRY.config_from_string(json.dumps(config(pre=[explicit])), -1)
    assert json.loads(c.to_string())['pre_quant_opt_config'][0]['scaling_layers'] == groups
    for bad, words in (([{'prev_op': 'x'}], 'scaling_layers[0]'), ('norm', 'expected a list'),
                       ([{'prev_op': 'n', 'layers': ['a'], 'inp': 'b'}], 'scaling_layers[0].inp')):
        with pytest.raises(GLib.Error) as e:
            REGISTRY.config_from_string(json.dumps(config(pre=[dict(entry, scaling_layers=bad)])), -1)
        assert words in e.value.message, e.value.message
    with pytest.raises(GLib.Error) as e:
        REGISTRY.config_from_string(json.dumps(config(pre=[dict(entry, model_decoder_layers='')])), -1)
    assert 'model_decoder_layers' in e.value.message
