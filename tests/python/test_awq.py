# AWQ (Quark.awq_*) and the quark backend's algo_config "awq".
#
# Checked: the output error from the Gram matrix equals the error measured
# on the activations; the scale search against a plain numpy
# implementation of AMD Quark's grid (same α, same scale); α = 0 alone
# (n_grid 1, no clipping) gives round-to-nearest's checkpoint exactly; the
# clipping search against a numpy brute force; folding any positive scales
# along the model's topology leaves the float model's logits unchanged;
# an AWQ checkpoint's layers have lower output error than RTN's on the
# calibration inputs and it runs; errors are named.
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
QUANTIZER = REGISTRY.new_quantizer(REGISTRY.config_from_string(
    '{"backend": "quark", "global_quant_config": {"weight": {"dtype": "int8"}}}', -1))


def tensor(name, a, dtype=Quark.DType.FLOAT32):
    return Quark.Tensor.new(name, dtype, list(a.shape), GLib.Bytes.new(np.ascontiguousarray(a).tobytes()))


def array(t, dtype=np.float32):
    return np.frombuffer(t.get_data().get_data(), dtype=dtype).reshape(list(t.get_shape()))


def int4_g16():
    s = Quark.TensorSpec.new(Quark.DType.INT4, Quark.QScheme.PER_GROUP)
    s.props.group_size = 16
    s.props.ch_axis = -1
    return s


SPEC = int4_g16()


def libquark_round(t, _data=None):
    # the backend's round-to-nearest, quantized and dequantized
    out = QUANTIZER.quantize_tensor(t, SPEC)
    return SPEC.dequantize(out.get_tensor(t.get_name()), out.get_tensor(t.get_name() + '_scale'), None)


def numpy_round(w):
    # AMD Quark's symmetric int4 per group of 16: scale = max|w| / 7.5
    # ((qmax - qmin) / 2), q = round-half-even (w · fl(1/scale))
    g = w.reshape(w.shape[0], -1, 16)
    scale = (np.abs(g).max(axis=2, keepdims=True) / np.float32(7.5)).astype(np.float32)
    safe = np.where(scale == 0, np.float32(1), scale)
    q = np.clip(np.round(g * (np.float32(1) / safe)), -8, 7)
    return (q * scale).reshape(w.shape).astype(np.float32)


def problem(seed=0, m=40, n=64, tokens=500):
    rng = np.random.default_rng(seed)
    ws = [(rng.standard_normal((m, n)) * 0.4).astype(np.float32) for _ in range(2)]
    x = rng.standard_normal((tokens, n)) * np.exp(rng.standard_normal(n))      # channels of different strength
    x[:, rng.choice(n, 3, replace=False)] *= 10
    return ws, x.astype(np.float32)


def gram_of(x):
    return tensor('gram', x.astype(np.float64).T @ x.astype(np.float64), Quark.DType.FLOAT64)


def test_numpy_round_is_the_backends():
    ws, _ = problem(5)
    assert np.array_equal(array(libquark_round(tensor('w', ws[0]))), numpy_round(ws[0]))


def test_output_error_is_the_activation_error():
    ws, x = problem(1)
    approx = numpy_round(ws[0])
    want = float(((x.astype(np.float64) @ (ws[0] - approx).T.astype(np.float64)) ** 2).sum())
    got = Quark.awq_output_error(tensor('w', ws[0]), tensor('a', approx), gram_of(x))
    assert abs(got - want) <= 1e-5 * want


def test_scale_search_matches_numpy():
    ws, x = problem(2)
    mean_abs = np.abs(x.astype(np.float64)).mean(axis=0)
    h = x.astype(np.float64).T @ x.astype(np.float64)
    # AMD Quark's grid, written here from its definition
    best, best_ratio, errors = None, None, []
    for i in range(20):
        ratio = np.float32(i / 20)
        s = np.maximum(np.power(mean_abs.astype(np.float32), ratio), np.float32(1e-4)).astype(np.float32)
        s = (s / np.sqrt(s.max() * s.min())).astype(np.float32)
        err = 0.0
        for w in ws:
            d = (numpy_round(w * s) / s - w).astype(np.float64)
            err += float(np.einsum('ij,jk,ik->', d, h, d))
        errors.append(err)
        if best is None or err < min(errors[:-1]):
            best, best_ratio = s, float(ratio)
    scale, ratio = Quark.awq_search_scale([tensor('a', ws[0]), tensor('b', ws[1])],
                                          tensor('g', h, Quark.DType.FLOAT64),
                                          tensor('m', mean_abs, Quark.DType.FLOAT64), 20, libquark_round, None)
    assert ratio == pytest.approx(best_ratio) and ratio > 0
    assert np.allclose(array(scale), best, rtol=1e-6)
    assert min(errors) < errors[0]              # scaling beats round-to-nearest here
    # one point: α = 0, s = 1
    scale, ratio = Quark.awq_search_scale([tensor('a', ws[0])], tensor('g', h, Quark.DType.FLOAT64),
                                          tensor('m', mean_abs, Quark.DType.FLOAT64), 1, libquark_round, None)
    assert ratio == 0 and np.all(array(scale) == 1)


def test_clip_search_matches_brute_force():
    ws, x = problem(3)
    w = ws[0]
    h = x.astype(np.float64).T @ x.astype(np.float64)
    clip = array(Quark.awq_search_clip(tensor('w', w), 16, tensor('g', h, Quark.DType.FLOAT64), 20, 0.5,
                                       libquark_round, None))
    assert clip.shape == (40, 4)
    org = np.abs(w.reshape(40, 4, 16)).max(axis=2)
    want = org.copy()
    best = np.full((40, 4), np.inf)
    for i in range(10):
        c = (org * np.float32(1 - np.float32(i) / np.float32(20))).astype(np.float32)
        q = numpy_round(np.clip(w, -np.repeat(c, 16, axis=1), np.repeat(c, 16, axis=1)))
        d = (q - w).astype(np.float64)
        for k in range(4):
            sl = slice(16 * k, 16 * k + 16)
            err = np.einsum('ij,jk,ik->i', d[:, sl], h[sl, sl], d[:, sl])
            better = err < best[:, k]
            best[better, k] = err[better]
            want[better, k] = c[better, k]
    assert np.array_equal(clip, want)
    assert (clip < org).any()
    # folding the clips in: each row and group clamped
    folded = array(Quark.awq_fold(tensor('w', w), None, None, Quark.awq_search_clip(
        tensor('w', w), 16, tensor('g', h, Quark.DType.FLOAT64), 20, 0.5, libquark_round, None)))
    assert np.array_equal(folded, np.clip(w, -np.repeat(clip, 16, axis=1), np.repeat(clip, 16, axis=1)))


def test_topology():
    groups = json.loads(Json_to_string(Quark.topology_get_scaling_layers(
        json_node('{"model_type": "qwen2"}'))[0]))
    assert [g['prev_op'] for g in groups] == ['input_layernorm', 'self_attn.v_proj', 'post_attention_layernorm',
                                              'mlp.up_proj']
    assert groups[0]['layers'] == ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj']
    assert Quark.topology_get_scaling_layers(json_node('{"model_type": "llama"}'))[1] == 'model.layers'
    with pytest.raises(GLib.Error) as e:
        Quark.topology_get_scaling_layers(json_node('{"model_type": "gpt2"}'))
    assert e.value.matches(Quark.error_quark(), Quark.Error.UNSUPPORTED_SCHEME) and 'gpt2' in e.value.message


def json_node(text):
    gi.require_version('Json', '1.0')
    from gi.repository import Json
    return Json.from_string(text)


def Json_to_string(node):
    from gi.repository import Json
    return Json.to_string(node, False)


def test_folds_leave_the_float_model_unchanged(tmp_path):
    # random positive scales folded along the topology: norm ÷ s with the
    # linear layers reading it × s, and up_proj's rows ÷ s with down_proj × s
    pytest.importorskip('torch')
    from test_executor import ids_for, logits_of, make_model
    for variant in ('llama', 'qwen2'):
        d = make_model(str(tmp_path / variant), variant, 'F32')
        model = Quark.Model.load(d, None)
        rng = np.random.default_rng(4)
        folded = {}
        groups = json.loads(Json_to_string(Quark.topology_get_scaling_layers(json_node(
            json.dumps({'model_type': 'qwen2' if variant == 'qwen2' else 'llama'})))[0]))
        for layer in range(2):
            base = 'model.layers.%d.' % layer
            for g in groups:
                prev = model.get_tensor(base + g['prev_op'] + '.weight')
                n = model.get_tensor(base + g['layers'][0] + '.weight').get_shape()[1]
                if prev.get_shape()[0] != n:
                    continue        # v → o with grouped-query attention
                s = tensor('s', np.exp(rng.standard_normal(n)).astype(np.float32))
                for name in g['layers']:
                    folded[base + name + '.weight'] = Quark.awq_fold(
                        folded.get(base + name + '.weight', model.get_tensor(base + name + '.weight')), s, None, None)
                folded[base + g['prev_op'] + '.weight'] = Quark.awq_fold(
                    folded.get(base + g['prev_op'] + '.weight', prev), None, s, None)
                bias = model.get_tensor(base + g['prev_op'] + '.bias')
                if bias is not None and prev.get_n_dims() == 2:
                    folded[base + g['prev_op'] + '.bias'] = Quark.awq_fold(bias, None, s, None)
        assert len(folded) >= 10
        out = Quark.Model.new()
        for name in model.get_tensor_names():
            out.add_tensor(folded.get(name, model.get_tensor(name)))
        out.set_metadata(model.get_metadata())
        ids = ids_for(20)
        want = logits_of(Quark.Executor.new_from_path(d), ids)
        got = logits_of(Quark.Executor.new(out), ids)
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def quantize(tmp_path, d, name, algos, text, tokens=200):
    from test_executor import quantize_config
    cfg = {'backend': 'quark', 'global_quant_config': {'weight': {
        'dtype': 'int4', 'qscheme': 'per_group', 'group_size': 16, 'ch_axis': -1, 'symmetric': True}},
        'exclude': ['lm_head']}
    if algos is not None:
        cfg['algo_config'] = algos
    extra = ['--calibration-text', text, '--calibration-tokens', tokens] if text else []
    return quantize_config(tmp_path, d, name, cfg, *extra)


def test_cli_awq(tmp_path):
    pytest.importorskip('torch')
    from test_executor import calibration_model
    d, text = calibration_model(tmp_path)

    # α = 0 alone and no clipping: round-to-nearest's checkpoint exactly
    p = quantize(tmp_path, d, 'a0', [{'name': 'awq', 'n_grid': 1, 'clip': False}], text)
    assert p.returncode == 0, p.stderr
    p = quantize(tmp_path, d, 'rtn', None, None)
    assert p.returncode == 0, p.stderr
    a0, rtn = Quark.Model.load(str(tmp_path / 'a0'), None), Quark.Model.load(str(tmp_path / 'rtn'), None)
    assert sorted(a0.get_tensor_names()) == sorted(rtn.get_tensor_names())
    for name in rtn.get_tensor_names():
        a, b = a0.get_tensor(name), rtn.get_tensor(name)
        if name.endswith('norm.weight'):
            assert np.array_equal(array(a), array(b)), name      # float32 now, the same values
        else:
            assert a.get_data().get_data() == b.get_data().get_data(), name

    # the real search: norms become float32 and divided, the linear layers
    # reading them scaled; the checkpoint records the algorithm and runs
    p = quantize(tmp_path, d, 'awq', [{'name': 'awq'}], text)
    assert p.returncode == 0, p.stderr
    awq = Quark.Model.load(str(tmp_path / 'awq'), None)
    norm = awq.get_tensor('model.layers.0.input_layernorm.weight')
    assert norm.get_dtype() == Quark.DType.FLOAT32
    assert not np.array_equal(array(norm), array(rtn.get_tensor('model.layers.0.input_layernorm.weight')))
    with open(tmp_path / 'awq' / 'config.json') as f:
        assert json.load(f)['quantization_config']['algo_config'] == [{'name': 'awq', 'n_grid': 20, 'clip': True}]
    p = subprocess.run([QUARK, 'eval', '--compare', d, str(tmp_path / 'awq'), '--text', str(text), '--ctx', '32',
                        '--json'], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr

    # combined with GPTQ, and the errors
    p = quantize(tmp_path, d, 'both', [{'name': 'awq'}, {'name': 'gptq'}], text)
    assert p.returncode == 0, p.stderr
    p = quantize(tmp_path, d, 'none', [{'name': 'awq'}], None)
    assert p.returncode == 1 and 'second moments' in p.stderr and not os.path.exists(tmp_path / 'none')
    p = quantize(tmp_path, d, 'twice', [{'name': 'awq'}, {'name': 'awq'}], text)
    assert p.returncode == 1 and 'algo_config[1].name: awq is listed twice' in p.stderr
    p = quantize(tmp_path, d, 'bad', [{'name': 'awq', 'scaling_layers': [
        {'prev_op': 'input_layernorm', 'layers': ['self_attn.q_proj'], 'inp': 'mlp.up_proj'}]}], text)
    assert p.returncode == 1 and 'algo_config[0].scaling_layers[0].inp' in p.stderr
    p = quantize(tmp_path, d, 'missing', [{'name': 'awq', 'scaling_layers': [
        {'prev_op': 'no_such_norm', 'layers': ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj']}]}],
        text)
    assert p.returncode == 1 and 'model.layers.0.no_such_norm.weight' in p.stderr
    for name in ('none', 'twice', 'bad', 'missing'):
        assert not os.path.exists(tmp_path / name)


def test_awq_lowers_the_output_error(tmp_path):
    # on the calibration inputs (float model, non-sequential session), each
    # AWQ group's summed output error is below round-to-nearest's
    pytest.importorskip('torch')
    from test_executor import ids_for, make_model
    d = make_model(str(tmp_path / 'm'), 'llama', 'F32', scale=2.0)
    session = Quark.Calibration.new()
    session.props.second_moments = True
    assert Quark.Executor.new_from_path(d).calibrate(session, ids_for(256), 64, None)
    model = Quark.Model.load(d, None)
    base = 'model.layers.1.'
    weights = [model.get_tensor(base + 'mlp.%s_proj.weight' % k) for k in ('gate', 'up')]
    gram = session.get_second_moments(base + 'mlp.gate_proj')[0]
    mean_abs = session.get_input_mean_abs(base + 'mlp.gate_proj')
    # mean |x| lies between 0 and the root mean square (Cauchy-Schwarz) and the maximum
    _, _, _, mean_square, abs_max = session.get_second_moments(base + 'mlp.gate_proj')
    m = array(mean_abs, np.float64)
    assert (m > 0).all() and (m <= np.sqrt(array(mean_square, np.float64)) * (1 + 1e-12)).all()
    assert (m <= array(abs_max)).all()
    scale, ratio = Quark.awq_search_scale(weights, gram, mean_abs, 20, libquark_round, None)
    s = array(scale)

    def total(scaled):
        err = 0.0
        for w in weights:
            if scaled:
                approx = array(libquark_round(Quark.awq_fold(w, scale, None, None))) / s
            else:
                approx = array(libquark_round(w))
            err += Quark.awq_output_error(w, tensor('a', approx.astype(np.float32)), gram)
        return err
    assert ratio > 0 and total(True) < total(False)
