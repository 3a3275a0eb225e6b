# The Python page of the manual runs as written: every ```python block of
# docs/python.md, in order, as one program.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import os
import re

import pytest

SRCDIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_python_page_runs():
    pytest.importorskip('numpy')
    pytest.importorskip('torch')
    text = open(os.path.join(SRCDIR, 'docs', 'python.md')).read()
    blocks = re.findall(r'```python\n(.*?)```\n', text, re.S)
    assert len(blocks) >= 6
    namespace = {}
    exec(compile('\n'.join(blocks), 'docs/python.md', 'exec'), namespace)
    assert namespace['result'] and namespace['quantized'].get_tensor('fc1.input_scale') is not None
