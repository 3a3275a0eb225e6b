# The committed Brevitas vectors are still what Brevitas computes: a sample
# of cases is regenerated with real Brevitas (../shared/oracles/brevitas
# next to the project, or QUARK_ORACLES_DIR) and compared with
# tests/data/brevitas/vectors.json. Skips cleanly without the oracle.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os

from brevitas_generator import TESTS, generate
SAMPLE = ['Int8WeightPerChannelFloat', 'ShiftedUint8WeightPerTensorFloatMSE', 'Int8WeightPerTensorFloat-ave',
          'MXInt8WeightMSE', 'Fp8e4m3Weight-codes', 'Int8ActPerTensorFloat-uncalibrated', 'ShiftedUint8ActPerTensorFloat',
          'MXFloat8e4m3Act', 'Int8DynamicActPerRowFloat']


def test_committed_vectors_are_brevitas():
    fresh = generate('generate-vectors.py', *SAMPLE)
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
