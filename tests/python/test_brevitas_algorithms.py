# The brevitas backend's algo_config against real Brevitas: GPTQ
# (gptq_mode), GPFQ (gpfq_mode) and bias correction (bias_correction_mode) on one linear
# layer, set up as AMD Quark's Brevitas extension sets it up. The expected
# codes, scales, zero points and biases are Brevitas's own, committed in
# tests/data/brevitas/algorithms.json by tests/brevitas/generate-algorithms.py;
# libquark learns the same calibration batches in a session with second
# moments and quantizes through `quark quantize`.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import base64
import json
import os
import subprocess

import pytest

np = pytest.importorskip('numpy')

from brevitas_generator import assert_same_results, generate  # noqa: E402
from test_brevitas import quark_module  # noqa: E402
from test_quantize_cli import read_checkpoint  # noqa: E402

QUARK = os.environ['QUARK_TOOL']
TESTS = os.environ.get('G_TEST_SRCDIR', os.path.join(os.path.dirname(__file__), '..'))
with open(os.path.join(TESTS, 'data', 'brevitas', 'algorithms.json')) as f:
    DATA = json.load(f)
CASES = {c['name']: c for c in DATA['cases']}


def floats(b64):
    return np.frombuffer(base64.b64decode(b64), dtype='<f4')


def codes(b64):
    return np.frombuffer(base64.b64decode(b64), dtype='<i1').astype(np.int32)


def e4m3_values():
    """OCP FP8 E4M3 by its definition: 1 sign, 4 exponent (bias 7), 3
    mantissa bits; exponent 0 is subnormal; S.1111.111 is NaN"""
    v = np.empty(256)
    for c in range(256):
        e, m = (c >> 3) & 15, c & 7
        v[c] = (m / 8) * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7)
        if e == 15 and m == 7:
            v[c] = np.nan
        if c & 0x80:
            v[c] = -v[c]
    return v


def ordinals(q, case, levels=None):
    """Integer codes as they are; FP8 codes (or values of the format) as
    their place on the number line, so that neighbours differ by one"""
    if not case['weight_spec'].get('preset', '').startswith('Fp8'):
        return q.astype(np.int64)
    if levels is not None:
        # value / scale is the format's value up to the division's rounding
        table = e4m3_values()[:127]
        q = np.array([int(np.argmin(np.abs(table - abs(float(v))))) | (0x80 if v < 0 else 0) for v in levels],
                     dtype=np.int64)
    q = q.astype(np.int64)
    return np.where(q & 0x80, -(q & 0x7f), q & 0x7f)


def problem():
    o, i = DATA['out_features'], DATA['in_features']
    w = floats(DATA['weight']).reshape(o, i)
    x = floats(DATA['batches']).reshape(-1, *DATA['batch_shape'])
    return w, floats(DATA['bias']), x


def quantize(tmp_path, case, algos):
    """quark quantize with the case's weight spec and @algos, calibrated
    with the case's batches; the integer dump, read back"""
    Quark = quark_module()
    w, bias, x = problem()
    src = tmp_path / 'model'
    if not src.exists():
        writer = Quark.CheckpointWriter.new(str(src), 0, False)
        writer.add(Quark.tensor_from_array('fc.weight', w))
        if case['with_bias']:
            writer.add(Quark.tensor_from_array('fc.bias', bias))
        writer.finish(None)
        session = Quark.Calibration.new()
        session.set_second_moments_enabled(True)
        for batch in x:
            session.observe('fc', Quark.Role.INPUT, np.ascontiguousarray(batch))
        session.save(str(tmp_path / 'stats.json'))
    config = {'backend': 'brevitas', 'global_quant_config': {'weight': case['weight_spec']}}
    if algos:
        config['algo_config'] = algos
    cfg = tmp_path / ('cfg-%d.json' % len(algos))
    cfg.write_text(json.dumps(config))
    out = tmp_path / ('out-%d' % len(algos))
    r = subprocess.run([QUARK, 'quantize', str(src), '-o', str(out), '--config', str(cfg), '--calibration',
                        str(tmp_path / 'stats.json'), '--export-format', 'integers'],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return read_checkpoint(out)


def dequantize(case, q, scale, zp):
    """Ordinals (as ordinals() gives them) back to the weight's values"""
    o, i = DATA['out_features'], DATA['in_features']
    spec = case['weight_spec']
    g = spec.get('group_size', i)
    n = o * (i // g)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64).reshape(-1), (n,)).reshape(o, -1, 1)
    zp = np.broadcast_to(np.asarray(zp, dtype=np.float64).reshape(-1), (n,)).reshape(o, -1, 1)
    if spec.get('preset', '').startswith('Fp8'):
        v = (e4m3_values()[np.abs(q)] * np.sign(q)).reshape(o, -1, g)
    else:
        v = q.astype(np.float64).reshape(o, -1, g) - zp
    return (v * scale).reshape(o, i)


def output_error(wq):
    w, _, x = problem()
    x = x.reshape(-1, x.shape[-1]).astype(np.float64)
    return float(((x @ (wq - w).T) ** 2).sum())


def expected(case, r):
    if 'levels' in r:
        return ordinals(None, case, floats(r['levels']))
    return codes(r['codes']).astype(np.int64)


@pytest.mark.parametrize('name', sorted(CASES))
def test_matches_brevitas(tmp_path, name):
    case = CASES[name]
    t = quantize(tmp_path, case, [])
    rtn, want = case['round_to_nearest'], case['result']
    # round-to-nearest first: the same quantizer, bit for bit
    assert np.array_equal(ordinals(t['fc.weight'][1].reshape(-1), case), expected(case, rtn)), name
    assert np.array_equal(t['fc.weight_scale'][1].reshape(-1).view('<u4'), floats(rtn['scale']).view('<u4'))
    t = quantize(tmp_path, case, case['algo_config'])
    got = ordinals(t['fc.weight'][1].reshape(-1), case)
    ref = expected(case, want)
    # the parameters are those of the weight before GPTQ, as Brevitas keeps them
    assert np.array_equal(t['fc.weight_scale'][1].reshape(-1).view('<u4'), floats(want['scale']).view('<u4'))
    if 'fc.weight_zero_point' in t:
        zp = t['fc.weight_zero_point'][1].reshape(-1)
        assert np.array_equal(zp, np.broadcast_to(np.array(want['zero_point']), zp.shape))
    # GPTQ's codes: Brevitas inverts H in float32 with torch, libquark in
    # float64 with LAPACK. Where a value lands within float noise of a
    # midpoint the two may round it apart, by one step, and the difference
    # then spreads along that row's later columns; so differences stay in
    # a few rows, and the layer's output error stays Brevitas's
    o = DATA['out_features']
    diff = (got - ref).reshape(o, -1)
    assert np.abs(diff).max() <= 1, name
    assert np.count_nonzero(diff.any(axis=1)) <= max(1, o // 8), (name, np.nonzero(diff))
    s, z = t['fc.weight_scale'][1], t.get('fc.weight_zero_point', (None, np.zeros(1)))[1]
    mine, theirs = output_error(dequantize(case, got, s, z)), output_error(dequantize(case, ref, s, z))
    assert abs(mine - theirs) <= 0.01 * theirs, (name, mine, theirs)
    if any(a['name'] in ('gptq', 'gpfq') for a in case['algo_config']):
        rtn_error = output_error(dequantize(case, expected(case, rtn), s, z))
        assert theirs < 0.8 * rtn_error, (name, theirs, rtn_error)      # GPTQ did something
    if 'bias' in want:
        b = t['fc.bias'][1].astype(np.float64)
        assert t['fc.bias'][0] == 'F32'
        np.testing.assert_allclose(b, floats(want['bias']), rtol=1e-4, atol=1e-5)


def run_quark(*args):
    return subprocess.run([QUARK] + [str(a) for a in args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def test_config_round_trip_and_refusals(tmp_path):
    case = CASES['gptq-then-bias-correction']
    quantize(tmp_path, case, [])            # the model and the statistics
    src, stats = tmp_path / 'model', tmp_path / 'stats.json'

    def attempt(algos, extra=None, calibration=True):
        config = {'backend': 'brevitas', 'global_quant_config': {'weight': case['weight_spec']},
                  'algo_config': algos}
        config['global_quant_config'].update(extra or {})
        cfg = tmp_path / 'cfg.json'
        cfg.write_text(json.dumps(config))
        out = tmp_path / 'refused'
        args = ['quantize', src, '-o', out, '--config', cfg]
        if calibration:
            args += ['--calibration', stats]
        r = run_quark(*args)
        return r, out

    # the exported config says what ran, in order, with Brevitas's defaults
    r, out = attempt([{'name': 'BiasCorrection'}, {'name': 'GPTQ', 'act_order': True}])
    assert r.returncode == 0, r.stderr
    with open(out / 'config.json') as f:
        qc = json.load(f)['quantization_config']
    algos = [{'name': 'bias_correction'}, {'name': 'gptq', 'act_order': True, 'num_blocks': 100, 'damp_percent': 0.01}]
    assert qc['brevitas']['algo_config'] == algos and qc['libquark_config']['algo_config'] == algos
    # it reads back
    r = run_quark('verify', src, out)
    assert r.returncode == 0, r.stderr
    import shutil
    shutil.rmtree(out)
    for algos, extra, calibration, message in [
            ([{'name': 'gptq'}], None, False, 'need the second moments of its input'),
            ([{'name': 'GPFA2Q'}], None, True, 'GPFA2Q is not implemented: the Brevitas the brevitas backend follows no longer has it'),
            ([{'name': 'activation_equalization'}], None, True, 'list it in pre_quant_opt_config'),
            ([{'name': 'gptq'}, {'name': 'gpfq'}], None, True, 'one of gptq and gpfq per config'),
            ([{'name': 'gpfq', 'percentage_of_processed_inputs': 0.5}], None, True, 'only 1.0'),
            ([{'name': 'optq'}], None, True, 'unknown algorithm "optq"'),
            ([{'name': 'gptq'}, {'name': 'gptq'}], None, True, 'gptq is listed twice'),
            ([{'name': 'gptq', 'num_blocks': 0}], None, True, 'algo_config[0].num_blocks'),
            ([{'name': 'gptq', 'act_order': 1}], None, True, 'algo_config[0].act_order: expected true or false'),
            ([{'name': 'gptq', 'blocksize': 4}], None, True, 'blocksize'),
            ([{'name': 'bias_correction'}], {'input_tensors': {'preset': 'Int8ActPerTensorFloat'}}, True,
             'bias_correction needs a layer whose input is not quantized')]:
        r, out = attempt(algos, extra, calibration)
        assert r.returncode == 1 and message in r.stderr, (algos, r.stderr)
        assert not out.exists()


def test_committed_results_are_brevitas():
    """A sample of the committed results, made again by real Brevitas"""
    sample = ['gptq-uint4-channel-shifted', 'gptq-then-bias-correction', 'gpfq-int4-channel']
    fresh = generate('generate-algorithms.py', *sample)
    assert fresh['brevitas_commit'] == DATA['brevitas_commit']
    for key in ('weight', 'bias', 'batches'):
        assert_same_results(fresh[key], DATA[key], key)
    assert [c['name'] for c in fresh['cases']] == sample
    for c in fresh['cases']:
        assert_same_results(c, CASES[c['name']], c['name'])


def test_bias_correction_needs_no_gram_matrix(tmp_path):
    """Bias correction alone reads the input mean only: a session that
    learned no Gram matrices (gram-matrix unset, memory linear in the
    features) gives the same bias, bit for bit; GPTQ with it is an error
    that says why."""
    Quark = quark_module()
    case = CASES['bias-correction-int4-channel']
    full = quantize(tmp_path, case, case['algo_config'])
    _, _, x = problem()
    session = Quark.Calibration.new()
    session.set_second_moments_enabled(True)
    session.set_gram_matrix_enabled(False)
    for batch in x:
        session.observe('fc', Quark.Role.INPUT, np.ascontiguousarray(batch))
    session.save(str(tmp_path / 'stats-lite.json'))

    def run(algos, out):
        cfg = tmp_path / (out + '.json')
        cfg.write_text(json.dumps({'backend': 'brevitas', 'algo_config': algos,
                                   'global_quant_config': {'weight': case['weight_spec']}}))
        return subprocess.run([QUARK, 'quantize', str(tmp_path / 'model'), '-o', str(tmp_path / out), '--config',
                               str(cfg), '--calibration', str(tmp_path / 'stats-lite.json'), '--export-format',
                               'integers'], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    r = run(case['algo_config'], 'lite')
    assert r.returncode == 0, r.stderr
    lite = read_checkpoint(tmp_path / 'lite')
    for name in ('fc.bias', 'fc.weight', 'fc.weight_scale'):
        assert lite[name][1].tobytes() == full[name][1].tobytes(), name
    r = run([{'name': 'gptq'}, {'name': 'bias_correction'}], 'gptq')
    assert r.returncode == 1 and 'Gram matrix' in r.stderr and not (tmp_path / 'gptq').exists()
