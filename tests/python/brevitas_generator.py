# Runs one of tests/brevitas/generate-*.py with real Brevitas
# (../shared/oracles/brevitas next to the project, or QUARK_ORACLES_DIR)
# and gives its JSON; the calling test skips cleanly without the oracle.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import subprocess

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
