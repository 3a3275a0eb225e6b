# Runs one of tests/brevitas/generate-*.py with real Brevitas
# (../shared/oracles/brevitas next to the project, or QUARK_ORACLES_DIR)
# and gives its JSON; the calling test skips cleanly without the oracle.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import base64
import json
import os
import subprocess

import numpy as np

import pytest

TESTS = os.environ.get('G_TEST_SRCDIR', os.path.join(os.path.dirname(__file__), '..'))
ORACLES = os.environ.get('QUARK_ORACLES_DIR', os.path.join(TESTS, '..', '..', 'shared', 'oracles'))


def generate(script, *args):
    brevitas = os.path.join(ORACLES, 'brevitas', 'src')
    if not os.path.isdir(brevitas):
        pytest.skip('no Brevitas oracle at %s' % ORACLES)
    pytest.importorskip('torch')
    env = dict(os.environ, BREVITAS_JIT='0',
               PYTHONPATH=os.pathsep.join([brevitas, os.path.join(ORACLES, 'dependencies', 'src')]))
    r = subprocess.run(['/usr/bin/python3', os.path.join(TESTS, 'brevitas', script), *args],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def _float32s(text):
    return np.frombuffer(base64.b64decode(text), '<f4')


def assert_same_results(fresh, committed, path=''):
    """@fresh (just made by real Brevitas) against @committed: the same
    structure, names and numbers; the float32 arrays (base64) equal, or,
    where the generator ran torch's float32 matrix products (the batches it
    makes, the inputs it records, what Brevitas computes from them), within
    1e-5 of the array's largest magnitude: those products round
    differently on different processors (with AVX-512 or without), so a
    generator run elsewhere than where the vectors were made differs in the
    last places. libquark is checked bit for bit against the committed
    vectors, which are one real Brevitas run."""
    if isinstance(committed, dict):
        assert isinstance(fresh, dict) and fresh.keys() == committed.keys(), path
        for k in committed:
            assert_same_results(fresh[k], committed[k], path + '.' + k)
    elif isinstance(committed, list):
        assert isinstance(fresh, list) and len(fresh) == len(committed), path
        for i, (a, b) in enumerate(zip(fresh, committed)):
            assert_same_results(a, b, '%s[%d]' % (path, i))
    elif fresh != committed:
        assert isinstance(fresh, str) and isinstance(committed, str) and len(fresh) == len(committed), path
        a, b = _float32s(fresh), _float32s(committed)
        assert np.all(np.isfinite(a) == np.isfinite(b)), path
        assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(b)), path
