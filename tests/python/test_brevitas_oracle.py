# The committed Brevitas vectors are still what Brevitas computes: a sample
# of cases is regenerated with real Brevitas (../shared/oracles/brevitas
# next to the project, or QUARK_ORACLES_DIR) and compared with
# tests/data/brevitas/vectors.json. Skips cleanly without the oracle.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import subprocess

import pytest

TESTS = os.environ.get('G_TEST_SRCDIR', os.path.join(os.path.dirname(__file__), '..'))
ORACLES = os.environ.get('QUARK_ORACLES_DIR', os.path.join(TESTS, '..', '..', 'shared', 'oracles'))
SAMPLE = ['Int8WeightPerChannelFloat', 'ShiftedUint8WeightPerTensorFloatMSE', 'Int8WeightPerTensorFloat-ave',
          'MXInt8WeightMSE', 'Fp8e4m3Weight-codes', 'Int8ActPerTensorFloat-uncalibrated', 'ShiftedUint8ActPerTensorFloat',
          'MXFloat8e4m3Act', 'Int8DynamicActPerRowFloat']


def test_committed_vectors_are_brevitas():
    brevitas = os.path.join(ORACLES, 'brevitas', 'src')
    if not os.path.isdir(brevitas):
        pytest.skip('no Brevitas oracle at %s' % ORACLES)
    pytest.importorskip('torch')
    env = dict(os.environ, BREVITAS_JIT='0',
               PYTHONPATH=os.pathsep.join([brevitas, os.path.join(ORACLES, 'dependencies', 'src')]))
    r = subprocess.run(['/usr/bin/python3', os.path.join(TESTS, 'brevitas', 'generate-vectors.py')] + SAMPLE,
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    fresh = json.loads(r.stdout)
    with open(os.path.join(TESTS, 'data', 'brevitas', 'vectors.json')) as f:
        committed = json.load(f)
    assert fresh['brevitas_commit'] == committed['brevitas_commit']
    by_name = {c['name']: c for c in committed['cases']}
    assert len(fresh['cases']) >= len(SAMPLE)
    for case in fresh['cases']:
        assert case == by_name[case['name']], case['name']
        inputs = [case['input']] + case.get('calibration', [])
        for key in inputs:
            assert fresh['inputs'][key] == committed['inputs'][key], key
