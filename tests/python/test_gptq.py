# Quark.gptq_quantize: GPTQ on the codes, scales and zero points that the
# quark backend's round-to-nearest gives a weight.
#
# Checked: with H = I and no damping the codes are round-to-nearest's
# exactly; against a plain numpy implementation of the algorithm (written
# here from the paper's description, column by column in float64, no
# blocking) the codes agree; the layer's output error on the calibration
# inputs is lower than round-to-nearest's; errors are named.
import gi
import numpy as np
import pytest

gi.require_version('Quark', '1.0')
from gi.repository import GLib, Quark  # noqa: E402

REGISTRY = Quark.Registry.get_default()
QUANTIZER = REGISTRY.new_quantizer(REGISTRY.config_from_string(
    '{"backend": "quark", "global_quant_config": {"weight": {"dtype": "int8"}}}', -1))


def spec(dtype, qscheme, **props):
    s = Quark.TensorSpec.new(dtype, qscheme)
    for k, v in props.items():
        s.set_property(k.replace('_', '-'), v)
    return s


SPECS = {
    'int4_g32': lambda: spec(Quark.DType.INT4, Quark.QScheme.PER_GROUP, group_size=32, ch_axis=-1),
    'uint4_g32_asym': lambda: spec(Quark.DType.UINT4, Quark.QScheme.PER_GROUP, group_size=32, ch_axis=-1,
                                   symmetric=False),
    'int8_channel': lambda: spec(Quark.DType.INT8, Quark.QScheme.PER_CHANNEL, ch_axis=0),
    'int3_g16': lambda: spec(Quark.DType.INT3, Quark.QScheme.PER_GROUP, group_size=16, ch_axis=-1),
    'int4_tensor': lambda: spec(Quark.DType.INT4, Quark.QScheme.PER_TENSOR),
}


def tensor(name, a, dtype=Quark.DType.FLOAT32):
    return Quark.Tensor.new(name, dtype, list(a.shape), GLib.Bytes.new(np.ascontiguousarray(a).tobytes()))


def array(t, dtype):
    return np.frombuffer(t.get_data().get_data(), dtype=dtype).reshape(list(t.get_shape()))


def rtn(w, sp):
    out = QUANTIZER.quantize_tensor(tensor('w', w), sp)
    return out.get_tensor('w'), out.get_tensor('w_scale'), out.get_tensor('w_zero_point')


def code_dtype(sp):
    return np.int8 if sp.get_dtype() in (Quark.DType.INT4, Quark.DType.INT3, Quark.DType.INT8) else np.uint8


def gptq(w, sp, gram, damp=0.01, block=128, desc_act=True):
    codes, scale, zp = rtn(w, sp)
    g = tensor('gram', gram.astype(np.float64), Quark.DType.FLOAT64)
    new = Quark.gptq_quantize(tensor('w', w), sp, codes, scale, zp, g, damp, block, desc_act)
    return codes, scale, zp, new


def dequant(sp, codes, scale, zp):
    return array(sp.dequantize(codes, scale, zp), np.float32)


def problem(seed=0, m=48, n=96, tokens=400):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((m, n)) * 0.5).astype(np.float32)
    # correlated inputs with a few strong channels, as activations are
    x = rng.standard_normal((tokens, n)) @ (np.eye(n) + 0.3 * rng.standard_normal((n, n)))
    x[:, rng.choice(n, 4, replace=False)] *= 8
    return w, x.astype(np.float32)


@pytest.mark.parametrize('name', sorted(SPECS))
@pytest.mark.parametrize('desc_act', [False, True])
def test_identity_hessian_is_round_to_nearest(name, desc_act):
    sp = SPECS[name]()
    w, _ = problem(1)
    codes, _, _, new = gptq(w, sp, np.eye(w.shape[1]), damp=0.0, block=32, desc_act=desc_act)
    assert array(new, code_dtype(sp)).tobytes() == array(codes, code_dtype(sp)).tobytes()


def reference_gptq(w, gram, qcol, damp, desc_act):
    """GPTQ from the definition: columns in order (by descending H_ii with
    desc_act), each quantized, its error divided by U_jj and subtracted from
    every later column through row j of U, the upper Cholesky factor of H^-1."""
    m, n = w.shape
    h = gram.astype(np.float64).copy()
    w = w.astype(np.float64).copy()
    perm = np.argsort(-np.diag(h), kind='stable') if desc_act else np.arange(n)
    h = h[np.ix_(perm, perm)]
    w = w[:, perm]
    h[np.diag_indices(n)] += damp * np.mean(np.diag(h))
    u = np.linalg.cholesky(np.linalg.inv(h)).T
    codes = np.zeros((m, n), dtype=np.int64)
    for j in range(n):
        q, dq = qcol(w[:, j].astype(np.float32), perm[j])
        codes[:, perm[j]] = q
        e = (w[:, j] - dq) / u[j, j]
        w[:, j + 1:] -= np.outer(e, u[j, j + 1:])
    return codes


@pytest.mark.parametrize('name', ['int4_g32', 'uint4_g32_asym', 'int8_channel', 'int3_g16'])
def test_matches_reference_and_lowers_output_error(name):
    sp = SPECS[name]()
    w, x = problem(2)
    gram = x.astype(np.float64).T @ x.astype(np.float64)
    codes, scale, zp, new = gptq(w, sp, gram, damp=0.01, block=32, desc_act=True)
    s = array(scale, np.float32).reshape(w.shape[0], -1)
    z = array(zp, code_dtype(sp) if zp.get_dtype() != Quark.DType.FLOAT32 else np.float32).reshape(w.shape[0], -1) \
        if zp is not None else np.zeros_like(s)
    group = w.shape[1] // s.shape[1]
    lo, hi = {Quark.DType.INT4: (-8, 7), Quark.DType.UINT4: (0, 15), Quark.DType.INT8: (-128, 127),
              Quark.DType.INT3: (-4, 3)}[sp.get_dtype()]

    def qcol(col, orig):
        sc = s[:, orig // group]
        zz = z[:, orig // group].astype(np.float32)
        q = np.clip(np.rint(col * (np.float32(1) / sc) + zz), lo, hi)
        return q, ((q.astype(np.float32) - zz) * sc).astype(np.float64)
    want = reference_gptq(w, gram, qcol, 0.01, True)
    got = array(new, code_dtype(sp)).astype(np.int64)
    # blocked and column-wise float64 sums differ in the last bits: a code
    # at an exact rounding boundary may differ, nothing more
    assert np.mean(got == want) > 0.999 and np.abs(got - want).max() <= 1
    err_rtn = np.linalg.norm(x @ (w - dequant(sp, codes, scale, zp)).T)
    err_gptq = np.linalg.norm(x @ (w - dequant(sp, new, scale, zp)).T)
    assert err_gptq < 0.8 * err_rtn


def test_dead_inputs_and_errors():
    sp = SPECS['int4_g32']()
    w, x = problem(3, n=64)
    x[:, 5] = 0                      # an input never seen non-zero
    gram = x.astype(np.float64).T @ x
    codes, scale, zp, new = gptq(w, sp, gram)
    assert array(new, np.int8)[:, 5].tolist() == [0] * w.shape[0]
    with pytest.raises(GLib.Error) as e:
        gptq(w, sp, np.eye(63))
    assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_ARGUMENT) and 'Gram' in e.value.message
    with pytest.raises(GLib.Error) as e:
        gptq(w, sp, -np.eye(64), damp=0.0)
    assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_TENSOR) and 'damp_percent' in e.value.message
    f16 = spec(Quark.DType.FLOAT16, Quark.QScheme.PER_TENSOR)          # a cast: nothing to compensate
    with pytest.raises(GLib.Error) as e:
        Quark.gptq_quantize(tensor('w', w), f16, tensor('w', w.astype(np.float16), Quark.DType.FLOAT16),
                            tensor('s', np.ones(1, np.float32)), None,
                            tensor('gram', np.eye(64), Quark.DType.FLOAT64), 0.01, 32, False)
    assert e.value.matches(Quark.error_quark(), Quark.Error.UNSUPPORTED_SCHEME)
    # 64-bit integer codes: refused (the column loop keeps codes of at most
    # 4 bytes; before it refused them it wrote garbage)
    i64 = spec(Quark.DType.INT64, Quark.QScheme.PER_TENSOR)
    with pytest.raises(GLib.Error) as e:
        Quark.gptq_quantize(tensor('w', w), i64, tensor('c', np.ones(w.shape, np.int64), Quark.DType.INT64),
                            tensor('s', np.ones(1, np.float32)), None,
                            tensor('gram', np.eye(64), Quark.DType.FLOAT64), 0.01, 32, False)
    assert e.value.matches(Quark.error_quark(), Quark.Error.UNSUPPORTED_SCHEME) and '32 bits' in e.value.message


def test_cli_algorithm_gptq(tmp_path):
    import json
    import os
    import subprocess
    from test_executor import calibration_model
    quark = os.environ.get('QUARK_TOOL', 'quark')
    d, text = calibration_model(tmp_path, 20)
    cfg = tmp_path / 'int4_g16.json'      # the tiny model's widths are multiples of 16
    cfg.write_text(json.dumps({'global_quant_config': {'weight': {
        'dtype': 'int4', 'qscheme': 'per_group', 'group_size': 16, 'ch_axis': -1, 'symmetric': True}},
        'exclude': ['lm_head']}))

    def run(*args):
        return subprocess.run([quark] + [str(a) for a in args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
    # GPTQ needs second moments: without calibration, an error and no output
    p = run('quantize', d, '-o', tmp_path / 'none', '--config', cfg, '--algorithm', 'gptq')
    assert p.returncode == 1 and 'second moments' in p.stderr and not os.path.exists(tmp_path / 'none')
    p = run('quantize', d, '-o', tmp_path / 'qr', '--config', cfg, '--algorithm', 'quarot')
    assert p.returncode == 1 and 'not implemented' in p.stderr
    p = run('quantize', d, '-o', tmp_path / 'g', '--config', cfg, '--algorithm', 'gptq',
            '--calibration-text', text)
    assert p.returncode == 0, p.stderr
    p = run('quantize', d, '-o', tmp_path / 'r', '--config', cfg)
    assert p.returncode == 0, p.stderr
    with open(tmp_path / 'g' / 'config.json') as f:
        algos = json.load(f)['quantization_config']['algo_config']
    assert algos == [{'name': 'gptq', 'damp_percent': 0.01, 'block_size': 128, 'desc_act': True,
                      'static_groups': True}]
    g, r = Quark.Model.load(str(tmp_path / 'g'), None), Quark.Model.load(str(tmp_path / 'r'), None)
    changed = 0
    for name in r.get_tensor_names():
        a, b = g.get_tensor(name), r.get_tensor(name)
        assert a.get_dtype() == b.get_dtype() and list(a.get_shape()) == list(b.get_shape())
        if name.endswith('_scale'):
            assert a.get_data().get_data() == b.get_data().get_data()      # static groups: RTN's scales
        elif a.get_data().get_data() != b.get_data().get_data():
            changed += 1
    assert changed >= 10                                                      # the codes of the linear layers
    # the result reads back and runs
    p = run('eval', '--compare', d, tmp_path / 'g', '--text', text, '--ctx', 32, '--json')
    assert p.returncode == 0, p.stderr


def test_cli_act_order_groups_to_compressed_tensors(tmp_path):
    # desc_act with static_groups false: compressed-tensors stores each
    # column's group as LAYER.weight_g_idx int32 [in_features] with the
    # weights' actorder "group" (compressed-tensors' QuantizationArgs;
    # vLLM's compressed_tensors/schemes/compressed_tensors_wNa16.py makes
    # weight_g_idx int32 [input_size] for actorder "group"); AMD Quark's
    # layout has no place for it: refused, nothing written
    import json
    import os
    import subprocess
    from test_executor import calibration_model
    from test_quantize_cli import read_checkpoint
    from test_export_formats import unpack_rows
    quark = os.environ.get('QUARK_TOOL', 'quark')
    d, text = calibration_model(tmp_path, 20)
    cfg = tmp_path / 'act.json'
    cfg.write_text(json.dumps({'global_quant_config': {'weight': {
        'dtype': 'uint4', 'qscheme': 'per_group', 'group_size': 16, 'ch_axis': -1, 'symmetric': False}},
        'exclude': ['lm_head'], 'algo_config': [{'name': 'gptq', 'desc_act': True, 'static_groups': False}]}))

    def run(*args):
        return subprocess.run([quark] + [str(a) for a in args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
    p = run('quantize', d, '-o', tmp_path / 'q', '--config', cfg, '--calibration-text', text)
    assert p.returncode == 1 and 'g_idx' in p.stderr and 'compressed-tensors' in p.stderr
    assert not os.path.exists(tmp_path / 'q')
    out = tmp_path / 'ct'
    p = run('quantize', d, '-o', out, '--config', cfg, '--calibration-text', text,
            '--export-format', 'compressed-tensors')
    assert p.returncode == 0, p.stderr
    qc = json.loads((out / 'config.json').read_text())['quantization_config']
    weights = qc['config_groups']['group_0']['weights']
    assert weights['actorder'] == 'group' and weights['strategy'] == 'group' and weights['group_size'] == 16
    t = read_checkpoint(out)
    back = Quark.Registry.get_default().dequantize_checkpoint(Quark.Model.load(str(out), None))
    n_ordered = 0
    for i in range(2):
        for m in ('self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj',
                  'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'):
            layer = 'model.layers.%d.%s' % (i, m)
            kind, gi = t[layer + '.weight_g_idx']
            O, I = t[layer + '.weight_shape'][1].tolist()
            assert kind == 'I32' and gi.shape == (I,)
            # every group holds 16 columns, not all consecutive
            assert np.array_equal(np.bincount(gi), np.full(I // 16, 16))
            n_ordered += not np.array_equal(gi, np.arange(I) // 16)
            # an independent decode: (q - z) * s with column c in group g_idx[c]
            q = unpack_rows(t[layer + '.weight_packed'][1], 4, I)
            zp = t[layer + '.weight_zero_point'][1]
            z = unpack_rows(np.ascontiguousarray(zp.T), 4, O).T
            s = t[layer + '.weight_scale'][1]
            s = (s.astype(np.uint32) << 16).view(np.float32) if s.dtype == np.uint16 else s.astype(np.float32)
            want = ((q - z[:, gi]).astype(np.float32) * s[:, gi]).astype(np.float32)
            got = array(back.get_tensor(layer + '.weight'), np.float32)
            assert np.array_equal(got, want), layer
    assert n_ordered >= 10
    # it runs
    p = run('eval', '--compare', d, out, '--text', text, '--ctx', 32, '--json')
    assert p.returncode == 0, p.stderr


def test_sequential_calibration_matches_the_checkpoint(tmp_path):
    # quark quantize --algorithm gptq --calibration-text calibrates layer by
    # layer (each layer's inputs from the quantized layers before it); an
    # executor that ran calibrate_sequential() on the same tokens runs the
    # same quantized weights as the checkpoint written
    import json
    import os
    import subprocess
    from test_executor import calibration_model, ids_for, logits_of
    quark = os.environ.get('QUARK_TOOL', 'quark')
    d, text = calibration_model(tmp_path)
    cfg = {'backend': 'quark', 'global_quant_config': {'weight': {
        'dtype': 'int4', 'qscheme': 'per_group', 'group_size': 16, 'ch_axis': -1, 'symmetric': True}},
        'exclude': ['lm_head'], 'algo_config': [{'name': 'gptq'}]}
    (tmp_path / 'cfg.json').write_text(json.dumps(cfg))
    out = tmp_path / 'q'
    p = subprocess.run([quark, 'quantize', d, '-o', str(out), '--config', str(tmp_path / 'cfg.json'),
                        '--calibration-text', str(text), '--calibration-tokens', '200'],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr

    tok = Quark.Tokenizer.new_from_file(d)
    ids = ([0] + list(tok.encode(text.read_text(), -1, False)))[:200]
    quantizer = REGISTRY.new_quantizer(REGISTRY.config_from_string(json.dumps(cfg), -1))
    session = Quark.Calibration.new()
    session.props.second_moments = True
    executor = Quark.Executor.new_from_path(d)
    layers_done = []
    executor.connect('progress', lambda e, done, total: layers_done.append((done, total)))
    assert executor.calibrate_sequential(session, quantizer, ids, 64, None)
    assert layers_done == [(1, 2), (2, 2)]
    probe = ids_for(30)
    written = Quark.Executor.new_from_path(str(out))
    assert np.abs(logits_of(executor, probe) - logits_of(written, probe)).max() < 1e-5
    # layer 0's inputs come from the float embedding either way; layer 1's
    # from a quantized layer 0
    plain = Quark.Calibration.new()
    plain.props.second_moments = True
    assert Quark.Executor.new_from_path(d).calibrate(plain, ids, 64, None)
    first = 'model.layers.0.self_attn.q_proj'
    later = 'model.layers.1.mlp.down_proj'
    a, b = session.get_second_moments(first)[0], plain.get_second_moments(first)[0]
    assert np.allclose(array(a, np.float64), array(b, np.float64), rtol=1e-9)
    a, b = session.get_second_moments(later)[0], plain.get_second_moments(later)[0]
    assert not np.allclose(array(a, np.float64), array(b, np.float64), rtol=1e-6)


def test_layout_checked_before_calibration(tmp_path):
    """A config that cannot be written for the model (groups of 32 do not
    divide down_proj's 48 inputs) fails before any calibration:
    quark_model_quantizer_check_model() says so without work, the
    sequential calibration fails before its first layer (the session learns
    nothing), and quark quantize fails before it reads the calibration text
    (here a file that does not exist), writing nothing. The error names the
    tensor and a group size that divides it."""
    import json
    import os
    import subprocess
    from test_executor import calibration_model
    quark = os.environ.get('QUARK_TOOL', 'quark')
    d, text = calibration_model(tmp_path)
    cfg = {'backend': 'quark', 'global_quant_config': {'weight': {
        'dtype': 'int4', 'qscheme': 'per_group', 'group_size': 32, 'ch_axis': -1, 'symmetric': True}},
        'exclude': ['lm_head'], 'algo_config': [{'name': 'gptq'}]}
    model = Quark.Model.load(d, None)
    quantizer = REGISTRY.new_quantizer(REGISTRY.config_from_string(json.dumps(cfg), -1))
    with pytest.raises(GLib.Error) as e:
        quantizer.check_model(model)
    assert e.value.matches(Quark.error_quark(), Quark.Error.UNSUPPORTED_SCHEME)
    assert 'model.layers.0.mlp.down_proj.weight' in e.value.message and '(48)' in e.value.message
    assert 'groups of 16 divide it' in e.value.message
    session = Quark.Calibration.new()
    session.props.second_moments = True
    with pytest.raises(GLib.Error, match='down_proj.weight: the grouped dimension'):
        Quark.Executor.new_from_path(d).calibrate_sequential(session, quantizer, [0] * 100, 64, None)
    assert list(session.list_layers(Quark.Role.INPUT)) == []
    (tmp_path / 'cfg.json').write_text(json.dumps(cfg))
    p = subprocess.run([quark, 'quantize', d, '-o', str(tmp_path / 'q'), '--config', str(tmp_path / 'cfg.json'),
                        '--calibration-text', str(tmp_path / 'missing.txt')],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 1 and 'down_proj.weight: the grouped dimension (48)' in p.stderr, p.stderr
    assert 'missing.txt' not in p.stderr and not (tmp_path / 'q').exists()
    # groups of 16 fit every layer
    cfg['global_quant_config']['weight']['group_size'] = 16
    assert REGISTRY.new_quantizer(REGISTRY.config_from_string(json.dumps(cfg), -1)).check_model(model)


def group_params(sp):
    """The code range, symmetry and group size of a per-group spec, and AMD
    Quark's min-max parameters (the quark backend's, float32) of a group's
    values, as a function and as GPTQ's callback."""
    lo, hi = {Quark.DType.INT4: (-8, 7), Quark.DType.UINT4: (0, 15), Quark.DType.INT3: (-4, 3)}[sp.get_dtype()]
    symmetric = sp.get_symmetric()

    def params(values):
        mn, mx = np.float32(min(values.min(), 0)), np.float32(max(values.max(), 0))
        if symmetric:
            return max(np.float32(max(-mn, mx) / np.float32((hi - lo) / 2)), np.float32(1.1920929e-07)), \
                np.float32(0)
        s = max(np.float32((mx - mn) / np.float32(hi - lo)), np.float32(1.1920929e-07))
        return s, np.float32(np.clip(lo - np.rint(mn / s), lo, hi))

    def params_cb(values, n_values, _data):
        return params(np.array(values[:n_values], dtype=np.float32))
    return lo, hi, symmetric, sp.get_group_size(), params, params_cb


def reference_dynamic(w, gram, perm, group, lo, hi, params):
    """GPTQ with dynamic groups from the definition, columns in the order
    @perm (float64 updates, float32 parameters): group k is the columns at
    places kG .. kG + G - 1 of the order, its parameters from them as the
    updates left them when the first comes. Codes in the columns' own order,
    and the scales and zero points [rows, groups]."""
    m, n = w.shape
    h = gram[np.ix_(perm, perm)].copy()
    h[np.diag_indices(n)] += 0.01 * np.mean(np.diag(h))
    u = np.linalg.cholesky(np.linalg.inv(h)).T
    ww = w.astype(np.float64)[:, perm].copy()
    codes = np.zeros((m, n), dtype=np.int64)
    scales = np.zeros((m, n // group), dtype=np.float32)
    zeros = np.zeros((m, n // group), dtype=np.float32)
    for j in range(n):
        if j % group == 0:
            for r in range(m):
                scales[r, j // group], zeros[r, j // group] = params(ww[r, j:j + group].astype(np.float32))
        sc, zc = scales[:, j // group], zeros[:, j // group]
        q = np.clip(np.rint(ww[:, j].astype(np.float32) * (np.float32(1) / sc) + zc), lo, hi)
        codes[:, perm[j]] = q
        e = (ww[:, j] - (q.astype(np.float32) - zc) * sc) / u[j, j]
        ww[:, j + 1:] -= np.outer(e, u[j, j + 1:])
    return codes, scales, zeros


@pytest.mark.parametrize('name', ['int4_g32', 'uint4_g32_asym', 'int3_g16'])
def test_dynamic_groups_match_reference(name):
    # static_groups false: each group's parameters from its columns as GPTQ
    # left them when the group's first column comes (columns in order)
    sp = SPECS[name]()
    w, x = problem(4)
    gram = x.astype(np.float64).T @ x.astype(np.float64)
    codes, scale, zp = rtn(w, sp)
    lo, hi, symmetric, group, params, params_cb = group_params(sp)

    new_codes, new_scale, new_zp = Quark.gptq_quantize_dynamic(
        tensor('w', w), sp, codes, scale, zp if not symmetric else None,
        tensor('gram', gram, Quark.DType.FLOAT64), 0.01, 32, params_cb, None)

    # the reference, column by column in float64 with float32 parameters
    m, n = w.shape
    want, s_want, _ = reference_dynamic(w, gram, np.arange(n), group, lo, hi, params)
    got = array(new_codes, code_dtype(sp)).astype(np.int64)
    got_s = array(new_scale, np.float32).reshape(m, -1)
    # float32 blocked updates against float64 column updates: parameters to
    # a few ulps, codes equal but at exact rounding boundaries (a code that
    # flipped there moves the rest of its row's groups: int3's coarse grid
    # has a few)
    assert np.mean(np.isclose(got_s, s_want, rtol=1e-5)) > 0.98
    assert np.mean(got == want) > 0.995 and np.abs(got - want).max() <= 1
    assert not np.array_equal(got_s, array(scale, np.float32).reshape(m, -1))     # the scales moved
    if not symmetric:
        assert new_zp is not None
    # and the output error is lower than with the static groups
    static = Quark.gptq_quantize(tensor('w', w), sp, codes, scale, zp if not symmetric else None,
                                 tensor('gram', gram, Quark.DType.FLOAT64), 0.01, 32, False)
    err_static = np.linalg.norm(x @ (w - dequant(sp, static, scale, zp)).T)
    err_dynamic = np.linalg.norm(x @ (w - dequant(sp, new_codes, new_scale, new_zp if not symmetric else zp)).T)
    assert err_dynamic < 1.05 * err_static



@pytest.mark.parametrize('name', ['int4_g32', 'uint4_g32_asym'])
def test_act_order_groups_match_reference(name):
    # static_groups false with desc_act: columns by descending H_ii, group k
    # the columns at places kG .. kG + G - 1 of that order, its parameters
    # from them as GPTQ left them when the first comes; g_idx[c] = place / G
    sp = SPECS[name]()
    w, x = problem(5)
    gram = x.astype(np.float64).T @ x.astype(np.float64)
    codes, scale, zp = rtn(w, sp)
    lo, hi, symmetric, group, params, params_cb = group_params(sp)

    new_codes, new_scale, new_zp, g_idx = Quark.gptq_quantize_act_order(
        tensor('w', w), sp, codes, scale, zp if not symmetric else None,
        tensor('gram', gram, Quark.DType.FLOAT64), 0.01, 32, params_cb, None)

    m, n = w.shape
    perm = np.argsort(-np.diag(gram), kind='stable')
    want, s_want, _ = reference_dynamic(w, gram, perm, group, lo, hi, params)
    gi = array(g_idx, np.int32)
    want_gi = np.zeros(n, dtype=np.int32)
    want_gi[perm] = np.arange(n) // group
    assert np.array_equal(gi, want_gi)
    got = array(new_codes, code_dtype(sp)).astype(np.int64)
    got_s = array(new_scale, np.float32).reshape(m, -1)
    assert np.mean(np.isclose(got_s, s_want, rtol=1e-5)) > 0.98
    assert np.mean(got == want) > 0.995 and np.abs(got - want).max() <= 1

    # column c dequantized with group g_idx[c]; a lower output error than
    # the static groups in the same order
    z = array(new_zp, np.uint8).astype(np.float32).reshape(m, -1) if not symmetric else np.zeros_like(got_s)
    deq = (got.astype(np.float32) - z[:, gi]) * got_s[:, gi]
    static = Quark.gptq_quantize(tensor('w', w), sp, codes, scale, zp if not symmetric else None,
                                 tensor('gram', gram, Quark.DType.FLOAT64), 0.01, 32, True)
    err_static = np.linalg.norm(x @ (w - dequant(sp, static, scale, zp)).T)
    err_act = np.linalg.norm(x @ (w - deq).T)
    assert err_act < err_static
    # per-channel specs have no groups to order
    with pytest.raises(GLib.Error) as e:
        Quark.gptq_quantize_act_order(tensor('w', w), SPECS['int8_channel'](), *rtn(w, SPECS['int8_channel']())[:2],
                                      None, tensor('gram', gram, Quark.DType.FLOAT64), 0.01, 32, params_cb, None)
    assert 'per-group' in str(e.value)


def mx_fp4():
    s = spec(Quark.DType.FP4, Quark.QScheme.PER_GROUP, group_size=32, ch_axis=-1)
    s.props.scale_format = Quark.ScaleFormat.E8M0
    return s


FP_SPECS = {
    'mxfp4': mx_fp4,
    'fp8_channel': lambda: spec(Quark.DType.FP8_E4M3, Quark.QScheme.PER_CHANNEL, ch_axis=0),
    'fp6_e2m3_g32': lambda: spec(Quark.DType.FP6_E2M3, Quark.QScheme.PER_GROUP, group_size=32, ch_axis=-1),
}


@pytest.mark.parametrize('name', sorted(FP_SPECS))
def test_minifloat_and_mx(name):
    # FP8, FP6 and MXFP4 weights: the codes are the backend's minifloat
    # rounding of x / s (static scales); with H = I and no damping they are
    # round-to-nearest's, and with a real Hessian the output error drops
    sp = FP_SPECS[name]()
    w, x = problem(5, n=64)
    codes, scale, zp = rtn(w, sp)
    new = Quark.gptq_quantize(tensor('w', w), sp, codes, scale, None, tensor('gram', np.eye(64), Quark.DType.FLOAT64),
                              0.0, 32, False)
    assert new.get_data().get_data() == codes.get_data().get_data()
    gram = x.astype(np.float64).T @ x.astype(np.float64)
    new = Quark.gptq_quantize(tensor('w', w), sp, codes, scale, None, tensor('gram', gram, Quark.DType.FLOAT64),
                              0.01, 32, True)
    assert new.get_data().get_data() != codes.get_data().get_data()
    err_rtn = np.linalg.norm(x @ (w - dequant(sp, codes, scale, None)).T)
    err_gptq = np.linalg.norm(x @ (w - dequant(sp, new, scale, None)).T)
    assert err_gptq < 0.9 * err_rtn


def test_cli_gptq_mxfp4(tmp_path):
    # the quark backend runs GPTQ on MXFP4 weights (static E8M0 scales): the
    # checkpoint has round-to-nearest's scales and other codes, and runs
    import os
    import subprocess
    from test_executor import calibration_model, quantize_config
    quark = os.environ.get('QUARK_TOOL', 'quark')
    d, text = calibration_model(tmp_path)
    weight = {'dtype': 'fp4', 'qscheme': 'per_group', 'group_size': 32, 'ch_axis': -1, 'scale_format': 'e8m0',
              'scale_calculation_mode': 'even'}
    outs = {}
    for name, algos in (('rtn', None), ('gptq', [{'name': 'gptq'}])):
        cfg = {'backend': 'quark', 'global_quant_config': {'weight': weight},
               'exclude': ['lm_head', '*down_proj']}          # down_proj's 48 inputs are not whole blocks of 32
        args = []
        if algos:
            cfg['algo_config'] = algos
            args = ['--calibration-text', text, '--calibration-tokens', 200]
        p = quantize_config(tmp_path, d, name, cfg, *args)
        assert p.returncode == 0, p.stderr
        outs[name] = Quark.Model.load(str(tmp_path / name), None)
    changed = 0
    for name in outs['rtn'].get_tensor_names():
        a, b = outs['rtn'].get_tensor(name), outs['gptq'].get_tensor(name)
        if name.endswith('_scale'):
            assert a.get_data().get_data() == b.get_data().get_data()
        elif name.endswith('proj.weight') and a.get_data().get_data() != b.get_data().get_data():
            changed += 1
    assert changed >= 8
    p = subprocess.run([quark, 'eval', '--compare', d, str(tmp_path / 'gptq'), '--text', str(text), '--ctx', '32',
                        '--float-inputs', '--json'], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr


# ---- refine_scales: the scales refit to fixed codes ---------------------------
#
# The reference solves, per output row, the G x G system A s = b of
# quark_gptq_refine_scales()'s definition in float64 with numpy's solver,
# rounds s to the scales' dtype (float32 here) and keeps it where that
# lowers the row's output error sum over tokens of ((w - w_hat(s)) x)^2.

def reference_refine(w, gram, codes, scale, zp, group):
    m, n = w.shape
    g = scale.shape[1] if scale.ndim == 2 else 1
    scale = scale.reshape(m, g).astype(np.float64)
    zp = np.zeros_like(scale) if zp is None else zp.reshape(m, g).astype(np.float64)
    out = scale.copy()
    for r in range(m):
        d = codes[r].astype(np.float64) - np.repeat(zp[r], group)[:n]
        v = np.zeros((n, g))
        for i in range(g):
            v[i * group:(i + 1) * group, i] = d[i * group:(i + 1) * group]
        a, b = v.T @ gram @ v, v.T @ gram @ w[r].astype(np.float64)
        keep = np.diag(a) <= 0
        a[keep, :] = 0
        a[:, keep] = 0
        a[keep, keep] = 1
        b[keep] = scale[r, keep]
        s = np.linalg.solve(a, b).astype(np.float32).astype(np.float64)

        def objective(x):
            err = w[r] - v @ x
            return err @ gram @ err
        if np.all(s > 0) and objective(s) < objective(scale[r]):
            out[r] = s
    return out


@pytest.mark.parametrize('name', ['int4_g32', 'uint4_g32_asym', 'int8_channel', 'int3_g16'])
def test_refine_scales_matches_reference_and_lowers_output_error(name):
    sp = SPECS[name]()
    w, x = problem(5)
    gram = (x.astype(np.float64).T @ x.astype(np.float64))
    codes, scale, zp, new = gptq(w, sp, gram)
    g = tensor('gram', gram, Quark.DType.FLOAT64)
    refined = Quark.gptq_refine_scales(tensor('w', w), sp, new, scale, zp if not sp.get_symmetric() else None, g)
    assert refined.get_dtype() == scale.get_dtype() and list(refined.get_shape()) == list(scale.get_shape())
    group = sp.get_group_size() if sp.get_qscheme() == Quark.QScheme.PER_GROUP else w.shape[1]
    zps = array(zp, code_dtype(sp) if zp.get_dtype() != Quark.DType.FLOAT32 else np.float32) \
        if not sp.get_symmetric() else None
    expected = reference_refine(w, gram, array(new, code_dtype(sp)), array(scale, np.float32), zps, group)
    got = array(refined, np.float32).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=2e-7)
    assert (got != array(scale, np.float32).reshape(expected.shape)).mean() > 0.5   # most rows move

    def output_error(s):
        wq = dequant(sp, new, s, zp if not sp.get_symmetric() else None)
        return float(np.sum(((w - wq).astype(np.float64) @ x.T.astype(np.float64)) ** 2))
    # never worse; clearly better at 3 and 4 bits, where the codes are coarse
    assert output_error(refined) < (0.99 if name == 'int8_channel' else 0.97) * output_error(scale)


def test_refine_scales_identity_hessian_and_refusals():
    """With H = I the refit is the least-squares scale of each group,
    d.w / d.d; per-tensor specs, MX scales and 64-bit codes are refused."""
    sp = SPECS['int4_g32']()
    w, _ = problem(6)
    codes, scale, zp = rtn(w, sp)
    g = tensor('gram', np.eye(w.shape[1]), Quark.DType.FLOAT64)
    refined = array(Quark.gptq_refine_scales(tensor('w', w), sp, codes, scale, None, g), np.float32)
    d = array(codes, np.int8).astype(np.float64).reshape(w.shape[0], -1, 32)
    ls = np.sum(d * w.astype(np.float64).reshape(d.shape), axis=2) / np.sum(d * d, axis=2)
    np.testing.assert_allclose(refined.reshape(ls.shape), ls.astype(np.float32), rtol=2e-7)
    sp_t = SPECS['int4_tensor']()
    codes, scale, zp = rtn(w, sp_t)
    with pytest.raises(GLib.Error, match='scale refinement takes integer specs'):
        Quark.gptq_refine_scales(tensor('w', w), sp_t, codes, scale, None, g)
    sp_mx = mx_fp4()
    codes, scale, zp = rtn(w, sp_mx)
    with pytest.raises(GLib.Error, match='scale refinement takes integer specs'):
        Quark.gptq_refine_scales(tensor('w', w), sp_mx, codes, scale, None, g)
    # 64-bit codes: refused (read as 32-bit ones before)
    sp64 = spec(Quark.DType.INT64, Quark.QScheme.PER_GROUP, group_size=32, ch_axis=-1)
    with pytest.raises(GLib.Error, match='at most 32 bits'):
        Quark.gptq_refine_scales(tensor('w', w), sp64, tensor('c', np.ones(w.shape, np.int64), Quark.DType.INT64),
                                 tensor('s', np.ones((w.shape[0], w.shape[1] // 32), np.float32)), None, g)


# ---- correct_input_error: the float model's outputs as GPTQ's target ----------

def test_correct_weight_matches_reference():
    """W' = W + W (C - H)(H + lambda I)^-1, lambda = damp * mean diag H,
    against numpy; C = H gives W back bit for bit; with undamped exact
    moments W' is the least-squares weight for the float outputs."""
    rng = np.random.default_rng(7)
    w, x = problem(7)
    r = x + 0.2 * rng.standard_normal(x.shape).astype(np.float32)      # the float model's inputs
    h = x.astype(np.float64).T @ x.astype(np.float64)
    c = r.astype(np.float64).T @ x.astype(np.float64)
    t = lambda a: tensor('m', a, Quark.DType.FLOAT64)
    got = array(Quark.gptq_correct_weight(tensor('w', w), t(h), t(c), 0.01), np.float32)
    lam = 0.01 * np.mean(np.diag(h))
    expected = w.astype(np.float64) + w.astype(np.float64) @ (c - h) @ np.linalg.inv(h + lam * np.eye(len(h)))
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-5, atol=1e-6)
    same = array(Quark.gptq_correct_weight(tensor('w', w), t(h), t(h), 0.01), np.float32)
    assert np.array_equal(same, w)
    exact = array(Quark.gptq_correct_weight(tensor("w", w), t(h), t(c), 0.0), np.float32).astype(np.float64)
    lstsq = np.linalg.lstsq(x.astype(np.float64), r.astype(np.float64) @ w.T.astype(np.float64), rcond=None)[0].T
    np.testing.assert_allclose(exact, lstsq, rtol=1e-4, atol=1e-5)
    with pytest.raises(GLib.Error, match='Gram matrix must be float64'):
        Quark.gptq_correct_weight(tensor('w', w), t(h[:10, :10]), t(c), 0.01)


def test_observe_cross_moments():
    """C = sum r x^T per layer input, for every layer sharing the input;
    it needs the input's second moments first; shapes are checked; a
    merge keeps cross moments only when both sessions have them."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((50, 12)).astype(np.float32)
    r = rng.standard_normal((50, 12)).astype(np.float32)
    s = Quark.Calibration.new()
    s.props.second_moments = True
    assert not s.props.cross_moments
    names = ['a.q_proj', 'a.k_proj']
    with pytest.raises(GLib.Error, match='no second moments'):
        s.observe_cross(names, tensor('r', r), tensor('x', x))
    for n in names:
        s.observe_floats(n, Quark.Role.INPUT, x.ravel().tolist(), [50, 12])
    assert s.observe_cross(names, tensor('r', r[:20]), tensor('x', x[:20]))
    assert s.observe_cross(names, tensor('r', r[20:]), tensor('x', x[20:]))
    expected = r.astype(np.float64).T @ x.astype(np.float64)
    for n in names:
        c, tokens = s.get_cross_moments(n)
        assert tokens == 50
        np.testing.assert_allclose(array(c, np.float64), expected, rtol=1e-12)
    with pytest.raises(GLib.Error, match='same shape'):
        s.observe_cross(names, tensor('r', r[:5]), tensor('x', x[:6]))
    with pytest.raises(GLib.Error, match='no cross moments'):
        s.get_cross_moments('a.v_proj')
    # merging: into an empty session they come along; with a session that
    # has none for the layer they are dropped
    empty = Quark.Calibration.new()
    assert empty.merge_second_moments(s)
    np.testing.assert_allclose(array(empty.get_cross_moments('a.q_proj')[0], np.float64), expected, rtol=1e-12)
    other = Quark.Calibration.new()
    other.props.second_moments = True
    other.observe_floats('a.q_proj', Quark.Role.INPUT, x.ravel().tolist(), [50, 12])
    assert s.merge_second_moments(other)
    with pytest.raises(GLib.Error, match='no cross moments'):
        s.get_cross_moments('a.q_proj')
    np.testing.assert_allclose(array(s.get_cross_moments('a.k_proj')[0], np.float64), expected, rtol=1e-12)


def test_sequential_calibration_learns_cross_moments(tmp_path):
    """With cross-moments set, sequential calibration runs the float model
    beside: layer 0 sees the same inputs in both (C = H), later layers do
    not; C's rows are the float model's inputs (Cauchy-Schwarz against a
    plain float calibration's H bounds its diagonal); and the CLI's
    correct_input_error runs, with GPTQ and after AWQ."""
    import json
    import os
    import subprocess
    from test_executor import calibration_model
    quark = os.environ.get('QUARK_TOOL', 'quark')
    d, text = calibration_model(tmp_path)
    weight = {'dtype': 'int4', 'qscheme': 'per_group', 'group_size': 16, 'ch_axis': -1, 'symmetric': True}
    cfg = {'backend': 'quark', 'global_quant_config': {'weight': weight}, 'exclude': ['lm_head'],
           'algo_config': [{'name': 'gptq'}]}
    tok = Quark.Tokenizer.new_from_file(d)
    ids = ([0] + list(tok.encode(text.read_text(), -1, False)))[:200]
    quantizer = REGISTRY.new_quantizer(REGISTRY.config_from_string(json.dumps(cfg), -1))
    session = Quark.Calibration.new()
    session.props.second_moments = True
    session.props.cross_moments = True
    assert Quark.Executor.new_from_path(d).calibrate_sequential(session, quantizer, ids, 64, None)
    first, later = 'model.layers.0.self_attn.q_proj', 'model.layers.1.mlp.down_proj'
    h0, c0 = array(session.get_second_moments(first)[0], np.float64), array(session.get_cross_moments(first)[0],
                                                                              np.float64)
    np.testing.assert_allclose(c0, h0, rtol=1e-9, atol=1e-9 * np.abs(h0).max())
    h1, c1 = array(session.get_second_moments(later)[0], np.float64), array(session.get_cross_moments(later)[0],
                                                                             np.float64)
    assert not np.allclose(c1, h1, rtol=1e-6)
    # C's rows come from the float model: its reference against itself is
    # a plain calibration's Gram matrix, so C differs from it by what the
    # quantized inputs change, and C^T's trace-like product stays close
    plain = Quark.Calibration.new()
    plain.props.second_moments = True
    assert Quark.Executor.new_from_path(d).calibrate(plain, ids, 64, None)
    hf = array(plain.get_second_moments(later)[0], np.float64)
    # Cauchy-Schwarz on the diagonal: C_ii^2 <= Hf_ii * H_ii, equality only
    # for identical streams
    assert np.all(np.diag(c1) ** 2 <= np.diag(hf) * np.diag(h1) * (1 + 1e-9))

    # lm_head's input is learned last, against the float model's final
    # norm output; with correct_input_error the head, which the config
    # leaves in float, is refit to it (float32): W' = W + W (C - H)(H + lam I)^-1,
    # lam = damp_percent * mean diag H; without the option it is left as it is
    hh, ch = (array(session.get_second_moments('lm_head')[0], np.float64),
              array(session.get_cross_moments('lm_head')[0], np.float64))
    assert not np.allclose(ch, hh, rtol=1e-6)
    model = Quark.Model.load(d, None)
    head = model.get_tensor('lm_head.weight')
    w = head.to_numpy().astype(np.float64)
    lam = 0.01 * np.mean(np.diag(hh))
    want = w + w @ np.linalg.solve(hh + lam * np.eye(len(hh)), (ch - hh).T).T
    for extra, refit in (({}, False), ({'correct_input_error': True}, True)):
        c = dict(cfg, algo_config=[dict({'name': 'gptq'}, **extra)])
        out = REGISTRY.new_quantizer(REGISTRY.config_from_string(json.dumps(c), -1)).quantize_model(model, session,
                                                                                                     None)
        got = out.get_tensor('lm_head.weight')
        if refit:
            assert got.get_dtype() == Quark.DType.FLOAT32
            np.testing.assert_allclose(got.to_numpy(), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
            assert not np.allclose(got.to_numpy(), w, rtol=1e-3)
        else:
            assert got.get_dtype() == head.get_dtype() and got.to_numpy().tobytes() == head.to_numpy().tobytes()

    def run(*args):
        return subprocess.run([quark] + [str(a) for a in args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
    outs = {}
    for key, awq, extra in (('plain', [], {}), ('ec', [], {'correct_input_error': True}),
                            ('awq', [{'name': 'awq'}], {}), ('awq-ec', [{'name': 'awq'}], {'correct_input_error': True})):
        c = dict(cfg, algo_config=awq + [dict({'name': 'gptq'}, **extra)])
        (tmp_path / (key + '.json')).write_text(json.dumps(c))
        outs[key] = tmp_path / key
        p = run('quantize', d, '-o', outs[key], '--config', tmp_path / (key + '.json'), '--calibration-text', text,
                '--calibration-tokens', 200)
        assert p.returncode == 0, p.stderr
    with open(outs['ec'] / 'config.json') as f:
        assert json.load(f)['quantization_config']['algo_config'][0]['correct_input_error'] is True
    with open(outs['awq-ec'] / 'config.json') as f:
        assert json.load(f)['quantization_config']['algo_config'][1]['correct_input_error'] is True
    kl = {}
    for key, out in outs.items():
        p = run('eval', '--compare', d, out, '--text', text, '--ctx', 32, '--json')
        assert p.returncode == 0, p.stderr
        kl[key] = json.loads(p.stdout)['kl_divergence']
    # (a 2-layer random model calibrated on 200 tokens says little about
    # quality: here the correction moves GPTQ's KL by under 1 %, and AWQ
    # overfits with or without it; bench/quality-docs-llama.py measures
    # the effect on a real model. What is checked: the runs work, and the
    # correction changes the weights written without breaking them.)
    assert all(np.isfinite(v) and v < 1.0 for v in kl.values()), kl
    assert kl['ec'] != kl['plain'] and kl['awq-ec'] != kl['awq']
    # a statistics file has no cross moments: refused, nothing written
    p = run('quantize', d, '-o', tmp_path / 'stats-ec', '--config', tmp_path / 'ec.json', '--calibration',
            tmp_path / 'missing.json')
    assert p.returncode != 0 and not os.path.exists(tmp_path / 'stats-ec')


def test_float_head_refit_keeps_its_dtype(tmp_path):
    """A BF16 model's lm_head, left in float and refit with
    correct_input_error, stays BF16: the float32 refit rounded to nearest
    even, so within half a BF16 step of it."""
    import json
    from test_executor import byte_tokenizer, make_model
    d = make_model(str(tmp_path / 'm'), 'llama', 'BF16', scale=2.0)
    byte_tokenizer(d)
    weight = {'dtype': 'int4', 'qscheme': 'per_group', 'group_size': 16, 'ch_axis': -1, 'symmetric': True}
    cfg = {'backend': 'quark', 'global_quant_config': {'weight': weight}, 'exclude': ['lm_head'],
           'algo_config': [{'name': 'gptq', 'correct_input_error': True, 'damp_percent': 0.1}]}
    quantizer = REGISTRY.new_quantizer(REGISTRY.config_from_string(json.dumps(cfg), -1))
    tok = Quark.Tokenizer.new_from_file(d)
    ids = ([0] + list(tok.encode('a bad cafe faced a big dog. ' * 8, -1, False)))[:160]
    session = Quark.Calibration.new()
    session.props.second_moments = True
    session.props.cross_moments = True
    assert Quark.Executor.new_from_path(d).calibrate_sequential(session, quantizer, ids, 64, None)
    hh, ch = (array(session.get_second_moments('lm_head')[0], np.float64),
              array(session.get_cross_moments('lm_head')[0], np.float64))
    def widen(t):    # BF16 tensors come to numpy as their bits
        return (t.to_numpy().astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    model = Quark.Model.load(d, None)
    w = widen(model.get_tensor('lm_head.weight'))
    want = w + w @ np.linalg.solve(hh + 0.1 * np.mean(np.diag(hh)) * np.eye(len(hh)), (ch - hh).T).T
    got = quantizer.quantize_model(model, session, None).get_tensor('lm_head.weight')
    assert got.get_dtype() == Quark.DType.BFLOAT16
    g = widen(got)
    # half a BF16 step (8 significant bits) of the value, plus float32 slack
    np.testing.assert_array_less(np.abs(g - want), np.abs(want) * 2.0 ** -8 * 1.01 + 1e-6)
    assert np.mean(g != w) > 0.5


def test_float_head_refit_that_overflows_its_dtype_fails():
    """A refit head whose values F16 cannot hold is refused, naming the
    tensor, rather than written as infinities: cross moments of a reference
    10^4 times the input make W' about 10^4 W."""
    import json
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 16)).astype(np.float32)
    session = Quark.Calibration.new()
    session.props.second_moments = True
    session.observe_floats('lm_head', Quark.Role.INPUT, x.ravel().tolist(), [64, 16])
    assert session.observe_cross(['lm_head'], tensor('r', x * 1e4), tensor('x', x))
    w = (rng.standard_normal((8, 16)) * 20).astype(np.float16)
    model = Quark.Model.new()
    model.add_tensor(tensor('lm_head.weight', w, Quark.DType.FLOAT16))
    weight = {'dtype': 'int4', 'qscheme': 'per_group', 'group_size': 16, 'ch_axis': -1, 'symmetric': True}
    cfg = {'backend': 'quark', 'global_quant_config': {'weight': weight}, 'exclude': ['lm_head'],
           'algo_config': [{'name': 'gptq', 'correct_input_error': True}]}
    quantizer = REGISTRY.new_quantizer(REGISTRY.config_from_string(json.dumps(cfg), -1))
    with pytest.raises(GLib.Error, match='lm_head.weight.*float16 cannot hold') as e:
        quantizer.quantize_model(model, session, None)
    assert e.value.matches(Quark.error_quark(), Quark.Error.FAILED)
    # scaled down 10^3 times, the same refit fits and is written in F16
    small = Quark.Calibration.new()
    small.props.second_moments = True
    small.observe_floats('lm_head', Quark.Role.INPUT, x.ravel().tolist(), [64, 16])
    assert small.observe_cross(['lm_head'], tensor('r', x * 10), tensor('x', x))
    out = quantizer.quantize_model(model, small, None).get_tensor('lm_head.weight')
    assert out.get_dtype() == Quark.DType.FLOAT16
    assert np.all(np.isfinite(out.to_numpy())) and np.abs(out.to_numpy()).max() > 5 * np.abs(w).max()


def test_sequential_steps(tmp_path):
    """Executor:sequential-steps (GPTQ's true_sequential from the CLI):
    a decoder layer quantized in one, two (attention, MLP) or four (q/k/v,
    o, gate/up, down) steps, each step's inputs observed through the steps
    quantized before it. With cross moments C = H exactly where a layer's
    input does not yet depend on any quantized weight; the executor
    afterwards runs what the CLI writes; the CLI takes four steps, or two
    when AWQ folds a scale from one linear layer into another."""
    import json
    import os
    import subprocess
    from test_executor import calibration_model, ids_for, logits_of
    quark = os.environ.get('QUARK_TOOL', 'quark')
    d, text = calibration_model(tmp_path)
    weight = {'dtype': 'int4', 'qscheme': 'per_group', 'group_size': 16, 'ch_axis': -1, 'symmetric': True}
    gptq = {'name': 'gptq', 'correct_input_error': True, 'true_sequential': True}
    awq = {'name': 'awq'}
    norm_awq = {'name': 'awq', 'model_decoder_layers': 'model.layers', 'scaling_layers': [
        {'prev_op': 'input_layernorm', 'layers': ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'],
         'inp': 'self_attn.q_proj'},
        {'prev_op': 'post_attention_layernorm', 'layers': ['mlp.gate_proj', 'mlp.up_proj'], 'inp': 'mlp.gate_proj'}]}

    def config(*algos):
        return {'backend': 'quark', 'global_quant_config': {'weight': weight}, 'exclude': ['lm_head'],
                'algo_config': list(algos)}
    tok = Quark.Tokenizer.new_from_file(d)
    ids = ([0] + list(tok.encode(text.read_text(), -1, False)))[:200]
    steps = Quark.SequentialSteps

    def calibrate(cfg, how):
        quantizer = REGISTRY.new_quantizer(REGISTRY.config_from_string(json.dumps(cfg), -1))
        session = Quark.Calibration.new()
        session.props.second_moments = True
        session.props.cross_moments = True
        executor = Quark.Executor.new_from_path(d)
        assert executor.props.sequential_steps == steps.LAYER
        executor.props.sequential_steps = how
        done = []
        executor.connect('progress', lambda e, n, total: done.append((n, total)))
        assert executor.calibrate_sequential(session, quantizer, ids, 64, None)
        assert done == [(1, 2), (2, 2)]
        return session, executor
    runs = {how: calibrate(config(gptq), how) for how in (steps.LAYER, steps.BLOCKS, steps.LINEARS)}
    assert json.loads(REGISTRY.config_from_string(json.dumps(config(gptq)), -1).to_string())[
        'algo_config'][0]['true_sequential'] is True

    def moments(how, name):
        session = runs[how][0]
        layer = 'model.layers.0.' + name
        return (array(session.get_second_moments(layer)[0], np.float64),
                array(session.get_cross_moments(layer)[0], np.float64))

    def same(a, b):
        return np.allclose(a, b, rtol=1e-9, atol=1e-9 * np.abs(a).max())
    # where layer 0's inputs do not yet depend on its quantized weights
    # (C = H), and where they do
    expect_float = {steps.LAYER: ['self_attn.q_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.down_proj'],
                    steps.BLOCKS: ['self_attn.q_proj', 'self_attn.o_proj'],
                    steps.LINEARS: ['self_attn.q_proj']}
    for how, floats in expect_float.items():
        for name in ('self_attn.q_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.down_proj'):
            h, c = moments(how, name)
            assert same(c, h) == (name in floats), (how, name)
            if name not in floats:
                # C's rows are the float model's inputs: Cauchy-Schwarz
                # against the float model's own H
                hf = moments(steps.LAYER, name)[0]
                assert np.all(np.diag(c) ** 2 <= np.diag(hf) * np.diag(h) * (1 + 1e-9))
                assert not same(h, hf)
        assert same(moments(how, 'self_attn.q_proj')[0], moments(steps.LAYER, 'self_attn.q_proj')[0])

    # the CLI: true_sequential alone (four steps), after AWQ (two), after
    # AWQ with groups fed by norms only (four)
    def cli(key, cfg):
        (tmp_path / (key + '.json')).write_text(json.dumps(cfg))
        out = tmp_path / key
        p = subprocess.run([quark, 'quantize', d, '-o', str(out), '--config', str(tmp_path / (key + '.json')),
                            '--calibration-text', str(text), '--calibration-tokens', '200'],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stderr
        return Quark.Executor.new_from_path(str(out))
    probe = ids_for(30)
    written = cli('linears', config(gptq))
    assert np.abs(logits_of(runs[steps.LINEARS][1], probe) - logits_of(written, probe)).max() < 1e-5
    assert np.abs(logits_of(runs[steps.LINEARS][1], probe) - logits_of(runs[steps.LAYER][1], probe)).max() > 1e-4
    assert np.abs(logits_of(runs[steps.BLOCKS][1], probe) - logits_of(runs[steps.LAYER][1], probe)).max() > 1e-4
    for key, cfg, how in (('awq', config(awq, gptq), steps.BLOCKS), ('norm-awq', config(norm_awq, gptq), steps.LINEARS)):
        written = cli(key, cfg)
        executor = calibrate(cfg, how)[1]
        assert np.abs(logits_of(executor, probe) - logits_of(written, probe)).max() < 1e-5, key
    with open(tmp_path / 'awq' / 'config.json') as f:
        assert json.load(f)['quantization_config']['algo_config'][1]['true_sequential'] is True
    # four steps with AWQ's own groups: v -> o would fold into a layer
    # quantized a step before
    quantizer = REGISTRY.new_quantizer(REGISTRY.config_from_string(json.dumps(config(awq, gptq)), -1))
    executor = Quark.Executor.new_from_path(d)
    executor.props.sequential_steps = steps.LINEARS
    session = Quark.Calibration.new()
    session.props.second_moments = True
    session.props.cross_moments = True
    with pytest.raises(GLib.Error, match='v_proj.weight, which is not in the model'):
        executor.calibrate_sequential(session, quantizer, ids, 64, None)


def test_gptq_options_in_the_config():
    """refine_scales and correct_input_error are booleans, named in the
    error by JSON path; written back only when set."""
    import json
    base = {'backend': 'quark', 'global_quant_config': {'weight': {'dtype': 'int4', 'qscheme': 'per_group',
                                                                  'group_size': 16, 'ch_axis': -1}}}
    for key in ('refine_scales', 'correct_input_error', 'true_sequential'):
        bad = dict(base, algo_config=[{'name': 'gptq', key: 1}])
        with pytest.raises(GLib.Error, match=r'algo_config\[0\]\.%s: expected true or false' % key):
            REGISTRY.config_from_string(json.dumps(bad), -1)
        good = REGISTRY.config_from_string(json.dumps(dict(base, algo_config=[{'name': 'gptq', key: True}])), -1)
        assert json.loads(good.to_string())['algo_config'][0][key] is True
    plain = REGISTRY.config_from_string(json.dumps(dict(base, algo_config=[{'name': 'gptq'}])), -1)
    entry = json.loads(plain.to_string())['algo_config'][0]
    assert 'refine_scales' not in entry and 'correct_input_error' not in entry and 'true_sequential' not in entry
