# The backend skeletons of docs/writing-backends.md: the docs show the files
# of examples/ as they are, and those files work: the C module through the
# command line (quantize, then verify), the Python class through the
# library. Neither sets metadata, so both checkpoints get the input's
# config.json with a quantization_config naming the backend.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import subprocess
import sys

import pytest

np = pytest.importorskip('numpy')

from safetensors_writer import write_safetensors  # noqa: E402

SRCDIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUARK = os.environ['QUARK_TOOL']
EXAMPLES_BUILD = os.environ.get('QUARK_EXAMPLES_DIR')


def make_model(d):
    rng = np.random.default_rng(4)
    w = (rng.standard_normal((16, 64)) * 0.02).astype(np.float32)
    write_safetensors(d / 'model.safetensors', {
        'model.layers.0.mlp.up_proj.weight': ('F32', w),
        'lm_head.weight': ('F32', w),
        'model.norm.weight': ('F32', np.ones(64, np.float32))}, {'format': 'pt'})
    (d / 'config.json').write_text('{"model_type": "llama", "hidden_size": 64}')
    return w


def check_config(out, backend):
    config = json.loads((out / 'config.json').read_text())
    assert config['model_type'] == 'llama' and config['hidden_size'] == 64
    assert config['quantization_config']['backend'] == backend
    assert config['quantization_config']['exclude'] == ['lm_head']


@pytest.mark.skipif(not EXAMPLES_BUILD, reason='the examples were not built')
def test_c_skeleton_through_the_cli(tmp_path):
    model = tmp_path / 'model'
    model.mkdir()
    make_model(model)
    (tmp_path / 'skeleton.json').write_text('{"backend": "skeleton", "exclude": ["lm_head"]}')
    env = dict(os.environ, QUARK_BACKEND_PATH=os.environ['QUARK_BACKEND_PATH'] + ':' + EXAMPLES_BUILD)
    r = subprocess.run([QUARK, 'quantize', str(model), '-o', str(tmp_path / 'out'),
                        '--config', str(tmp_path / 'skeleton.json')], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    check_config(tmp_path / 'out', 'skeleton')
    r = subprocess.run([QUARK, 'verify', str(model), str(tmp_path / 'out'), '--json'], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert [t['name'] for t in report['tensors']] == ['model.layers.0.mlp.up_proj.weight']
    assert report['tensors'][0]['sqnr_db'] > 35


def test_python_skeleton_through_the_library(tmp_path):
    gi = pytest.importorskip('gi')
    gi.require_version('Quark', '1.0')
    from gi.repository import Quark
    sys.path.insert(0, os.path.join(SRCDIR, 'examples'))
    try:
        import backend_skeleton
    finally:
        sys.path.pop(0)
    registry = Quark.Registry.get_default()
    if registry.lookup_backend('py-skeleton') is None:
        backend_skeleton.register(registry)
    model_dir = tmp_path / 'model'
    model_dir.mkdir()
    w = make_model(model_dir)
    config = registry.config_from_string('{"backend": "py-skeleton", "exclude": ["lm_head"]}', -1)
    quantizer = registry.new_quantizer(config)
    writer = Quark.CheckpointWriter.new(str(tmp_path / 'out'), 0, False)
    quantizer.quantize_model_to_writer(Quark.Model.load(str(model_dir), None), None, writer, None)
    writer.finish(None)
    check_config(tmp_path / 'out', 'py-skeleton')
    # read back as quark verify does, through the config the checkpoint names
    quantized = Quark.Model.load(str(tmp_path / 'out'), None)
    qc = json.loads((tmp_path / 'out' / 'config.json').read_text())['quantization_config']
    restored = registry.new_quantizer(registry.config_from_string(json.dumps(qc), -1)).dequantize_model(quantized)
    x = restored.get_tensor('model.layers.0.mlp.up_proj.weight').to_float_array()
    assert quantized.get_tensor('model.layers.0.mlp.up_proj.weight').get_dtype() == Quark.DType.INT8
    assert np.abs(x - w).max() <= np.abs(w).max(axis=1).max() / 127 / 2 * 1.0001
    assert quantized.get_tensor('lm_head.weight').get_dtype() == Quark.DType.FLOAT32
