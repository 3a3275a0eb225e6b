# The examples of the manual: the docs show the files of examples/ as they
# are (every `<!-- file: PATH -->` block of docs/*.md), and the first-steps
# program prints the same in C, Python, JavaScript and Vala.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import glob
import os
import re
import shutil
import subprocess

import pytest

SRCDIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES_BUILD = os.environ.get('QUARK_EXAMPLES_DIR')
EXPECTED = ('row 0: scale 0.00996078458, codes 127 -128 50 30\n'
            'row 1: scale 0.00498039229, codes 1 25 -10 127\n')


def test_docs_show_the_example_files_as_they_are():
    shown = []
    for page in sorted(glob.glob(os.path.join(SRCDIR, 'docs', '*.md'))):
        for path, text in re.findall(r'<!-- file: (\S+) -->\n```\w*\n(.*?)```\n', open(page).read(), re.S):
            shown.append(path)
            assert text == open(os.path.join(SRCDIR, path)).read(), '%s shows %s not as it is' % (page, path)
    assert {'examples/quantize-tensor.c', 'examples/quantize-tensor.py', 'examples/quantize-tensor.js',
            'examples/quantize-tensor.vala', 'examples/backend-skeleton.c',
            'examples/backend_skeleton.py'} <= set(shown)
    assert EXPECTED in open(os.path.join(SRCDIR, 'docs', 'examples.md')).read()


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize('language', ['c', 'python', 'gjs', 'vala'])
def test_first_steps_in_every_language(language):
    examples = os.path.join(SRCDIR, 'examples')
    if language == 'python':
        cmd = ['/usr/bin/python3', os.path.join(examples, 'quantize-tensor.py')]
    elif language == 'gjs':
        if shutil.which('gjs') is None:
            pytest.skip('gjs is not installed')
        cmd = ['gjs', '-m', os.path.join(examples, 'quantize-tensor.js')]
    else:
        name = 'example-quantize-tensor' + ('-vala' if language == 'vala' else '')
        path = os.path.join(EXAMPLES_BUILD or '', name)
        if not EXAMPLES_BUILD or not os.path.exists(path):
            pytest.skip('%s was not built' % name)
        cmd = [path]
    assert run(cmd) == EXPECTED
