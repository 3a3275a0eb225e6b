# The quark command-line tool: exit statuses, --help, --json, and the golden
# dump of the registry.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import subprocess

import pytest

QUARK = os.environ['QUARK_TOOL']
SRCDIR = os.environ['G_TEST_SRCDIR']


def run(*args, env=None):
    return subprocess.run([QUARK, *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)


def test_help_everywhere():
    top = run('--help')
    assert top.returncode == 0
    assert 'backends' in top.stdout and 'demo' in top.stdout
    for command in ('backends', 'demo'):
        r = run(command, '--help')
        assert r.returncode == 0, r.stderr
        assert 'Usage:' in r.stdout and command in r.stdout


def test_bad_usage_exits_2():
    assert run().returncode == 2
    r = run('frobnicate')
    assert r.returncode == 2 and 'unknown command "frobnicate"' in r.stderr
    r = run('backends', '--no-such-option')
    assert r.returncode == 2 and 'Unknown option' in r.stderr
    assert run('demo', 'extra').returncode == 2


def test_backends_golden():
    r = run('backends', '--json')
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    for b in data['backends']:
        assert b.pop('module').endswith('.so')
    with open(os.path.join(SRCDIR, 'data', 'golden', 'backends.json')) as f:
        golden = json.load(f)
    # the public surface of every backend, as a reviewable diff
    assert data == golden


def test_backends_without_any_backend_fails():
    env = dict(os.environ, QUARK_BACKEND_PATH='/nonexistent', QUARK_BACKEND_SYSTEM_PATH='')
    r = run('backends', env=env)
    assert r.returncode == 1
    assert 'No backends found' in r.stdout and '/nonexistent' in r.stdout


def test_demo_summary():
    r = run('demo')
    assert r.returncode == 0, r.stderr
    assert 'model.layers.0.mlp.down_proj.weight' in r.stdout
    assert '(kept in float)' in r.stdout
    data = json.loads(run('demo', '--json').stdout)
    rows = {t['name']: t for t in data['tensors']}
    assert len(rows) == 11
    assert not rows['lm_head.weight']['quantized']
    assert rows['lm_head.weight']['dtype_out'] == 'bfloat16'
    q = rows['model.layers.0.self_attn.q_proj.weight']
    assert q['quantized'] and q['dtype_out'] == 'int8'
    # int8 per-channel on near-normal weights: about 6 dB per bit, minus the
    # peak-to-RMS ratio; anything much below 40 dB would be a bug
    for t in data['tensors']:
        if t['quantized']:
            assert t['sqnr_db'] > 40, t
            # the error never exceeds half a step, except that +amax lands on
            # fl(amax / 127.5) * 127.5, within 255 * 2^-24 relative of the
            # clipped code's half step
            assert t['max_abs_error'] <= t['scale_max'] / 2 * (1 + 255 * 2.0 ** -24 + 1e-7), t


def test_demo_bad_config(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"backend": "quark", "global_quant_config": {"weight": {"dtype": "int8", "bits": 4}}}')
    before = bad.read_bytes()
    r = run('demo', '--config', str(bad))
    assert r.returncode == 1
    assert str(bad) in r.stderr
    assert 'global_quant_config.weight.bits: unknown key' in r.stderr
    assert bad.read_bytes() == before


def test_demo_custom_config(tmp_path):
    cfg = tmp_path / 'uint8.json'
    cfg.write_text('{"backend": "quark", "global_quant_config": '
                   '{"weight": {"dtype": "uint8", "qscheme": "per_tensor", "symmetric": false}}}')
    data = json.loads(run('demo', '--config', str(cfg), '--json').stdout)
    rows = {t['name']: t for t in data['tensors']}
    assert rows['lm_head.weight']['dtype_out'] == 'uint8'
    assert not rows['model.embed_tokens.weight']['quantized']   # embeddings stay in float
    assert rows['model.norm.weight']['dtype_out'] == 'bfloat16'   # 1-D: not a layer weight
