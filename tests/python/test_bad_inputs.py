# The bad-input table: one row per way an input, an output or a run can go
# wrong. Each row runs `quark quantize --json` and asserts the exit status,
# the error's stable domain and code (printed on stdout with --json), a
# message naming the file, tensor or path at fault, the input unchanged
# byte for byte, and no output that looks complete. Rows that are valid
# inputs (all-zero, empty and scalar tensors, non-finite values with the
# opt-in) assert what the output holds instead. The same rows then run
# through the library (gi.repository.Quark) where the library is the unit.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import shutil
import signal
import struct
import subprocess

import pytest

np = pytest.importorskip('numpy')

from early_stop import run_caught_early  # noqa: E402
from safetensors_writer import write_safetensors  # noqa: E402

QUARK = os.environ['QUARK_TOOL']
PT = {'format': 'pt'}
W = 'model.layers.0.mlp.up_proj.weight'

# Error domains and codes as `--json` names them (quark-error.h; stable);
# cancellation is GIO's
QUARK_ERROR, GIO_ERROR = 'quark-error', 'g-io-error'
INVALID_ARGUMENT, INVALID_FILE, UNSUPPORTED_SCHEME, INVALID_TENSOR, NEEDS_CALIBRATION, IO, CANCELLED = (
    'invalid-argument', 'invalid-file', 'unsupported-scheme', 'invalid-tensor', 'needs-calibration', 'io', 'cancelled')
NOT_FOUND, EXISTS = 'not-found', 'exists'


def bf16(a):
    return (np.asarray(a, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def weights(rows=16, cols=128, seed=1):
    return bf16(np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32) * 0.02)


def raw_file(path, header_text, data):
    """A safetensors file from header text as given (so it can be invalid)."""
    h = header_text.encode()
    h += b' ' * (-len(h) % 8)
    path.write_bytes(struct.pack('<Q', len(h)) + h + data)


def two_tensor_header(a_offsets, b_offsets, a_shape=(4, 8), dtype='BF16', b_name='b.weight'):
    return ('{"a.weight":{"dtype":"%s","shape":%s,"data_offsets":%s},'
            '"%s":{"dtype":"BF16","shape":[4,8],"data_offsets":%s}}'
            % (dtype, json.dumps(list(a_shape)), json.dumps(a_offsets), b_name, json.dumps(b_offsets)))


# ---- the rows: each builds MODEL (a directory) and returns a dict of -----
# ---- extra CLI arguments / environment / where the output goes -----------

def valid(m, out):
    write_safetensors(m / 'model.safetensors', {W: ('BF16', weights())}, PT)


def truncated(m, out):
    valid(m, out)
    p = m / 'model.safetensors'
    p.write_bytes(p.read_bytes()[:-1])


def empty(m, out):
    (m / 'model.safetensors').write_bytes(b'')


def header_beyond(m, out):
    valid(m, out)
    p = m / 'model.safetensors'
    raw = p.read_bytes()
    p.write_bytes(struct.pack('<Q', len(raw)) + raw[8:])


def overlap(m, out):
    raw_file(m / 'model.safetensors', two_tensor_header([0, 64], [32, 96]), bytes(96))


def hole(m, out):
    raw_file(m / 'model.safetensors', two_tensor_header([0, 64], [96, 160]), bytes(160))


def shape_size(m, out):
    raw_file(m / 'model.safetensors', two_tensor_header([0, 60], [60, 124]), bytes(124))


def unknown_dtype(m, out):
    raw_file(m / 'model.safetensors', two_tensor_header([0, 64], [64, 128], dtype='B16'), bytes(128))


def duplicate_name(m, out):
    raw_file(m / 'model.safetensors', two_tensor_header([0, 64], [64, 128], b_name='a.weight'), bytes(128))


def with_values(*values):
    def build(m, out):
        w = weights()
        for i, v in enumerate(values):
            w[3, 5 + i] = bf16(np.float32(v))
        write_safetensors(m / 'model.safetensors', {W: ('BF16', w)}, PT)
    return build


def all_zero(m, out):
    write_safetensors(m / 'model.safetensors', {W: ('BF16', np.zeros((16, 128), np.uint16))}, PT)


def zero_element_and_scalar(m, out):
    write_safetensors(m / 'model.safetensors', {
        W: ('BF16', np.zeros((0, 128), np.uint16)),
        'model.layers.0.mlp.down_proj.weight': ('BF16', np.zeros((16, 0), np.uint16)),
        'model.layers.0.mlp.gate_proj.weight': ('BF16', bf16(np.float32(0.5)).reshape(())),
        'model.norm.weight': ('BF16', np.zeros((0,), np.uint16))}, PT)


def ragged_group(m, out):
    write_safetensors(m / 'model.safetensors', {W: ('BF16', weights(16, 200))}, PT)


def missing_shard(m, out):
    write_safetensors(m / 'model-00001-of-00002.safetensors', {W: ('BF16', weights())}, PT)
    (m / 'model.safetensors.index.json').write_text(json.dumps({'weight_map': {
        W: 'model-00001-of-00002.safetensors',
        'model.layers.1.mlp.up_proj.weight': 'model-00002-of-00002.safetensors'}}))


def unwritable_output(m, out):
    valid(m, out)
    out.parent.joinpath('plain').write_text('a file, not a directory')
    return {'out': out.parent / 'plain' / 'out'}


def output_inside_input(m, out):
    valid(m, out)
    return {'out': m / 'quantized'}


def disk_full(m, out):
    write_safetensors(m / 'model.safetensors', {W: ('BF16', weights(256, 1024))}, PT)
    return {'env': {'QUARK_DEBUG_WRITE_LIMIT': '100000'}}


# the int4 codes that large()'s 16 tensors of 2048 x 2048 become
LARGE_INT4_BYTES = 16 * 2048 * 2048 // 2


def large(m, out):
    block = bf16(np.random.default_rng(9).standard_normal((2048, 2048)).astype(np.float32) * 0.02)
    write_safetensors(m / 'model.safetensors',
                      {'model.layers.%d.mlp.up_proj.weight' % i: ('BF16', block) for i in range(16)}, PT)
    return {'interrupt': True}


# ---- checks for the rows that succeed ---------------------------------------

def read_out(out):
    raw = (out / 'model.safetensors').read_bytes()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    kinds = {'I8': np.int8, 'U8': np.uint8, 'F32': np.float32, 'BF16': np.uint16, 'I32': np.int32, 'I64': np.int64,
             'BOOL': np.bool_}
    t = {}
    for k, v in header.items():
        if k != '__metadata__':
            b, e = v['data_offsets']
            t[k] = np.frombuffer(raw[8 + n + b:8 + n + e], kinds[v['dtype']]).reshape(v['shape'])
    return t


def check_saturated(out, info):
    t = read_out(out)
    codes, scale = t[W], t[W + '_scale']
    assert np.isfinite(scale).all() and (scale > 0).all()
    assert codes[3, 5] == 0                                     # NaN -> 0
    # +-inf become +-amax: Quark's symmetric int8 scale is amax / 127.5, so
    # they land on the ends of the full range
    assert codes[3, 6] == 127 and codes[3, 7] == -128


def check_all_zero(out, info):
    t = read_out(out)
    assert (t[W] == 0).all()
    assert np.isfinite(t[W + '_scale']).all() and (t[W + '_scale'] > 0).all()


def check_all_zero_mx(out, info):
    t = read_out(out)
    assert (t[W] == 0).all()                                    # FP4 +0 codes, two per byte
    assert t[W + '_scale'].dtype == np.uint8 and t[W + '_scale'].shape == (16, 4)


def check_zero_element_and_scalar(out, info):
    t = read_out(out)
    assert t[W].shape == (0, 128) and t['model.layers.0.mlp.down_proj.weight'].shape == (16, 0)
    assert t['model.norm.weight'].shape == (0,)
    g = 'model.layers.0.mlp.gate_proj.weight'
    assert t[g].shape == () and int(t[g]) == int(bf16(np.float32(0.5)))   # a scalar is not a weight matrix


# ---- round two (issue: nothing lost): outputs that are links or files, names
# ---- that collide, inputs that are not regular files, too large, or shared

def precious_dir(tmp):
    (tmp / 'precious').mkdir()
    (tmp / 'precious' / 'thesis.txt').write_text('work')


def force_onto_symlink(m, out):
    valid(m, out)
    precious_dir(out.parent)
    out.symlink_to('precious')
    return {'force': True}


def force_onto_dangling_symlink(m, out):
    valid(m, out)
    out.symlink_to('nowhere')
    return {'force': True}


def force_onto_file(m, out):
    valid(m, out)
    out.write_text('an old file')
    return {'force': True}


def force_onto_directory(m, out):
    valid(m, out)
    out.mkdir()
    (out / 'model.safetensors').write_bytes(b'old')
    (out / 'stale-extra.json').write_text('{}')
    return {'force': True}


def check_replaced(out, info):
    tmp = out.parent
    assert out.is_dir() and not out.is_symlink()
    assert sorted(p.name for p in out.iterdir()) == ['config.json', 'model.safetensors']
    if (tmp / 'precious').exists():
        assert (tmp / 'precious' / 'thesis.txt').read_text() == 'work'
        assert sorted(p.name for p in (tmp / 'precious').iterdir()) == ['thesis.txt']
    assert not [n for n in os.listdir(tmp) if n.startswith('.quark-')], os.listdir(tmp)


def float_scale_collides(m, out):
    write_safetensors(m / 'model.safetensors', {W: ('BF16', weights()),
                                                W + '_scale': ('F32', np.ones((16, 1), np.float32))}, PT)


def float_input_scale_collides(m, out):
    write_safetensors(m / 'model.safetensors', {
        'model.layers.0.mlp.up_proj.input_scale': ('F32', np.ones((), np.float32)), W: ('BF16', weights())}, PT)


def integer_weights_with_scales(m, out):
    write_safetensors(m / 'model.safetensors', {W: ('I8', np.ones((16, 128), np.int8)),
                                                W + '_scale': ('F32', np.ones((16, 1), np.float32))}, PT)


def own_output(m, out):
    """libquark's own int8 checkpoint as the input."""
    src = out.parent / 'float-model'
    src.mkdir()
    valid(src, out)
    (src / 'config.json').write_text('{"model_type": "llama"}')
    subprocess.run([QUARK, 'quantize', str(src), '-o', str(out.parent / 'q1'), '--preset', 'int8_per_channel_wo'],
                   check=True, capture_output=True)
    for f in (out.parent / 'q1').iterdir():
        (m / f.name).write_bytes(f.read_bytes())


def check_requantized(out, info):
    t = read_out(out)
    assert t[W].dtype == np.int32 and t[W].shape == (128, 2)          # int4 g128, packed
    config = json.loads((out / 'config.json').read_text())
    assert config['model_type'] == 'llama'
    assert config['quantization_config']['global_quant_config']['weight']['dtype'] == 'int4'


def fifo_model(m, out):
    os.rmdir(m)
    os.mkfifo(m)


def fifo_model_file(m, out):
    os.mkfifo(m / 'model.safetensors')


def fifo_config_json(m, out):
    valid(m, out)
    os.mkfifo(m / 'config.json')


def fifo_shard(m, out):
    write_safetensors(m / 'model-00001-of-00002.safetensors', {W: ('BF16', weights())}, PT)
    os.mkfifo(m / 'model-00002-of-00002.safetensors')
    (m / 'model.safetensors.index.json').write_text(json.dumps({'weight_map': {
        W: 'model-00001-of-00002.safetensors',
        'model.layers.1.mlp.up_proj.weight': 'model-00002-of-00002.safetensors'}}))


def directory_shard(m, out):
    fifo_shard(m, out)
    os.unlink(m / 'model-00002-of-00002.safetensors')
    (m / 'model-00002-of-00002.safetensors').mkdir()


def fifo_option(option):
    def build(m, out):
        valid(m, out)
        os.mkfifo(out.parent / 'pipe')
        return {'args': [option, str(out.parent / 'pipe')]}
    return build


def device_calibration(m, out):
    valid(m, out)
    return {'args': ['--calibration', '/dev/zero']}


def sparse(path, size):
    with open(path, 'wb') as f:
        f.truncate(size)


def huge_config_json(m, out):
    valid(m, out)
    (m / 'config.json').write_text('{"pad": "' + 'x' * (17 << 20) + '"}')


def huge_index(m, out):
    valid(m, out)
    os.unlink(m / 'model.safetensors')
    sparse(m / 'model.safetensors.index.json', (64 << 20) + 1)


def huge_option(option, size):
    def build(m, out):
        valid(m, out)
        sparse(out.parent / 'big.json', size)
        return {'args': [option, str(out.parent / 'big.json')]}
    return build


def empty_weight_map(m, out):
    (m / 'model.safetensors.index.json').write_text('{"metadata": {}, "weight_map": {}}')


def config_json_is(text):
    def build(m, out):
        valid(m, out)
        (m / 'config.json').write_text(text)
    return build


def hf_cache_snapshot(m, out):
    """As in ~/.cache/huggingface/hub/models--*/snapshots/*: every file a
    link to a blob; plus a directory, a broken link and a FIFO."""
    blobs = out.parent / 'blobs'
    blobs.mkdir()
    valid(blobs, out)
    os.rename(blobs / 'model.safetensors', blobs / 'a1')
    (blobs / 'b2').write_text('{"model_type": "llama"}')
    (blobs / 'c3').write_text('{"version": "1.0", "model": {}}')
    (blobs / 'd4').write_text('{"bos_token_id": 1}')
    for name, blob in [('model.safetensors', 'a1'), ('config.json', 'b2'), ('tokenizer.json', 'c3'),
                       ('generation_config.json', 'd4')]:
        (m / name).symlink_to(os.path.relpath(blobs / blob, m))
    (m / 'original').mkdir()
    (m / 'broken.json').symlink_to('../blobs/missing')
    os.mkfifo(m / 'pipe')


def check_hf_snapshot(out, info):
    assert sorted(p.name for p in out.iterdir()) == ['config.json', 'generation_config.json', 'model.safetensors',
                                                     'tokenizer.json']
    for name, text in [('tokenizer.json', '{"version": "1.0", "model": {}}'),
                       ('generation_config.json', '{"bos_token_id": 1}')]:
        assert not (out / name).is_symlink() and (out / name).read_text() == text
    if info is not None:
        assert info['skipped_files'] == ['broken.json: a broken link', 'original: a directory', 'pipe: a FIFO']


def non_float_tensors(m, out):
    write_safetensors(m / 'model.safetensors', {
        W: ('BF16', weights()),
        'model.layers.0.mlp.down_proj.weight': ('I8', np.arange(16 * 128, dtype=np.int64).reshape(16, 128).astype(np.int8)),
        'model.layers.0.mlp.gate_proj.weight': ('U8', np.full((16, 128), 7, np.uint8)),
        'model.layers.0.attn.mask.weight': ('BOOL', np.eye(16, 128, dtype=bool)),
        'model.position_ids': ('I64', np.arange(64, dtype=np.int64).reshape(1, 64))}, PT)


def check_non_float(out, info):
    t = read_out(out)
    assert t[W].dtype == np.int8 and (W + '_scale') in t
    raw = (out / 'model.safetensors').read_bytes()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    for name, dtype in [('model.layers.0.mlp.down_proj.weight', 'I8'), ('model.layers.0.mlp.gate_proj.weight', 'U8'),
                        ('model.layers.0.attn.mask.weight', 'BOOL'), ('model.position_ids', 'I64')]:
        assert header[name]['dtype'] == dtype and name + '_scale' not in header
    assert (t['model.layers.0.mlp.gate_proj.weight'] == 7).all()
    if info is not None:
        assert sorted(x['name'] for x in info['non_float_tensors']) == sorted(
            ['model.layers.0.mlp.down_proj.weight', 'model.layers.0.mlp.gate_proj.weight',
             'model.layers.0.attn.mask.weight', 'model.position_ids'])


def unexportable_last(m, out):
    """Valid tensors first, the one whose layout cannot be exported last."""
    tensors = {'model.layers.%d.mlp.up_proj.weight' % i: ('BF16', weights(64, 1024, i)) for i in range(4)}
    tensors['model.layers.9.mlp.up_proj.weight'] = ('BF16', weights(1, 1024))
    write_safetensors(m / 'model.safetensors', tensors, PT)


def f64_beyond_float32(m, out):
    w = np.random.default_rng(3).standard_normal((16, 128)) * 0.02
    w[2, 3] = 1e300
    write_safetensors(m / 'model.safetensors', {W: ('F64', w)}, PT)


def trailing_slash(m, out):
    valid(m, out)
    return {'out_arg': str(out) + '/'}


def check_plain_output(out, info):
    assert sorted(p.name for p in out.iterdir()) == ['config.json', 'model.safetensors']
    assert not [n for n in os.listdir(out.parent) if n.startswith('.quark-')]


# id, build, preset, extra args, expected: (domain, code, text the message names) or a check
ROWS = [
    ('truncated', truncated, 'int8_per_channel_wo', [], (QUARK_ERROR, INVALID_FILE, '{file}')),
    ('empty-file', empty, 'int8_per_channel_wo', [], (QUARK_ERROR, INVALID_FILE, '{file}')),
    ('header-beyond-file', header_beyond, 'int8_per_channel_wo', [], (QUARK_ERROR, INVALID_FILE, '{file}')),
    ('overlapping-offsets', overlap, 'int8_per_channel_wo', [], (QUARK_ERROR, INVALID_FILE, 'b.weight')),
    ('hole-between-tensors', hole, 'int8_per_channel_wo', [], (QUARK_ERROR, INVALID_FILE, 'b.weight')),
    ('shape-size-disagree', shape_size, 'int8_per_channel_wo', [], (QUARK_ERROR, INVALID_FILE, 'a.weight')),
    ('unknown-dtype', unknown_dtype, 'int8_per_channel_wo', [], (QUARK_ERROR, INVALID_FILE, 'a.weight')),
    ('duplicate-name', duplicate_name, 'int8_per_channel_wo', [], (QUARK_ERROR, INVALID_FILE, 'a.weight')),
    ('nan-in-weights', with_values(float('nan')), 'int8_per_channel_wo', [],
     (QUARK_ERROR, INVALID_TENSOR, W)),
    ('inf-in-weights', with_values(0, float('inf')), 'int4_wo_128', [], (QUARK_ERROR, INVALID_TENSOR, W)),
    ('nan-inf-mx', with_values(float('-inf')), 'mxfp4', [], (QUARK_ERROR, INVALID_TENSOR, W)),
    ('nonfinite-opted-in', with_values(float('nan'), float('inf'), float('-inf')), 'int8_per_channel_wo',
     ['--allow-nonfinite'], check_saturated),
    ('all-zero', all_zero, 'int8_per_channel_wo', [], check_all_zero),
    ('all-zero-mx', all_zero, 'mxfp4', [], check_all_zero_mx),
    ('zero-element-and-scalar', zero_element_and_scalar, 'int8_per_channel_wo', [],
     check_zero_element_and_scalar),
    ('group-size-not-dividing', ragged_group, 'int4_wo_128', [], (QUARK_ERROR, UNSUPPORTED_SCHEME, W)),
    ('index-names-missing-shard', missing_shard, 'int8_per_channel_wo', [],
     (QUARK_ERROR, INVALID_FILE, 'model-00002-of-00002.safetensors')),
    ('unwritable-output', unwritable_output, 'int8_per_channel_wo', [], (QUARK_ERROR, IO, 'plain')),
    ('output-inside-input', output_inside_input, 'int8_per_channel_wo', [],
     (QUARK_ERROR, INVALID_ARGUMENT, 'quantized')),
    ('disk-full', disk_full, 'int8_per_channel_wo', [], (QUARK_ERROR, IO, 'No space left on device')),
    ('interrupted', large, 'int4_wo_128', [], (GIO_ERROR, CANCELLED, 'interrupted')),
    ('model-missing', lambda m, out: os.rmdir(m), 'int8_per_channel_wo', [], (QUARK_ERROR, NOT_FOUND, 'model')),
    ('output-exists', lambda m, out: valid(m, out) or out.mkdir(), 'int8_per_channel_wo', [],
     (QUARK_ERROR, EXISTS, 'already exists')),
    ('force-onto-symlink', force_onto_symlink, 'int8_per_channel_wo', [], check_replaced),
    ('force-onto-dangling-symlink', force_onto_dangling_symlink, 'int8_per_channel_wo', [], check_replaced),
    ('force-onto-file', force_onto_file, 'int8_per_channel_wo', [], check_replaced),
    ('force-onto-directory', force_onto_directory, 'int8_per_channel_wo', [], check_replaced),
    ('output-trailing-slash', trailing_slash, 'int8_per_channel_wo', [], check_plain_output),
    ('generated-scale-name-taken', float_scale_collides, 'int8_per_channel_wo', [],
     (QUARK_ERROR, INVALID_ARGUMENT, W + '_scale')),
    ('generated-input-scale-name-taken', float_input_scale_collides, 'int8', [],
     (QUARK_ERROR, INVALID_ARGUMENT, 'model.layers.0.mlp.up_proj.input_scale')),
    ('integer-weights-with-scales', integer_weights_with_scales, 'int8_per_channel_wo', [],
     (QUARK_ERROR, INVALID_ARGUMENT, 'already quantized')),
    ('own-output-again', own_output, 'int8_per_channel_wo', [], (QUARK_ERROR, INVALID_ARGUMENT, 'already quantized')),
    ('own-output-requantized', own_output, 'int4_wo_128', ['--requantize'], check_requantized),
    ('fifo-as-model', fifo_model, 'int8_per_channel_wo', [], (QUARK_ERROR, IO, 'FIFO')),
    ('fifo-as-model-file', fifo_model_file, 'int8_per_channel_wo', [], (QUARK_ERROR, IO, 'FIFO')),
    ('fifo-as-config-json', fifo_config_json, 'int8_per_channel_wo', [], (QUARK_ERROR, IO, 'FIFO')),
    ('fifo-as-shard', fifo_shard, 'int8_per_channel_wo', [],
     (QUARK_ERROR, INVALID_FILE, 'model-00002-of-00002.safetensors (for tensor model.layers.1.mlp.up_proj.weight) '
                                 'is a FIFO, not a regular file')),
    ('directory-as-shard', directory_shard, 'int8_per_channel_wo', [],
     (QUARK_ERROR, INVALID_FILE, 'is a directory, not a regular file')),
    ('fifo-as-config-option', fifo_option('--config'), 'int8_per_channel_wo', [], (QUARK_ERROR, IO, 'FIFO')),
    ('fifo-as-calibration', fifo_option('--calibration'), 'int8', [], (QUARK_ERROR, IO, 'FIFO')),
    ('device-as-calibration', device_calibration, 'int8', [],
     (QUARK_ERROR, IO, '/dev/zero: is a character device, not a regular file')),
    ('config-json-over-limit', huge_config_json, 'int8_per_channel_wo', [],
     (QUARK_ERROR, INVALID_FILE, 'limit of 16777216 bytes for a model config')),
    ('index-over-limit', huge_index, 'int8_per_channel_wo', [],
     (QUARK_ERROR, INVALID_FILE, 'limit of 67108864 bytes for a shard index')),
    ('config-option-over-limit', huge_option('--config', (16 << 20) + 1), 'int8_per_channel_wo', [],
     (QUARK_ERROR, INVALID_FILE, 'limit of 16777216 bytes')),
    ('calibration-over-limit', huge_option('--calibration', (256 << 20) + 1), 'int8', [],
     (QUARK_ERROR, INVALID_FILE, 'limit of 268435456 bytes for calibration statistics')),
    ('index-empty-weight-map', empty_weight_map, 'int8_per_channel_wo', [],
     (QUARK_ERROR, INVALID_FILE, 'weight_map is empty')),
    ('config-json-an-array', config_json_is('[1]'), 'int8_per_channel_wo', [],
     (QUARK_ERROR, INVALID_FILE, 'config.json: a model config must be a JSON object')),
    ('config-json-a-string', config_json_is('"llama"'), 'int8_per_channel_wo', [],
     (QUARK_ERROR, INVALID_FILE, 'config.json: a model config must be a JSON object')),
    ('hf-cache-snapshot', hf_cache_snapshot, 'int8_per_channel_wo', [], check_hf_snapshot),
    ('non-float-tensors-copied', non_float_tensors, 'int8_per_channel_wo', [], check_non_float),
    ('unexportable-layout', unexportable_last, 'int4_wo_128', [],
     (QUARK_ERROR, UNSUPPORTED_SCHEME, 'model.layers.9.mlp.up_proj.weight: the number of output channels (1)')),
    ('f64-beyond-float32', f64_beyond_float32, 'int8_per_channel_wo', [],
     (QUARK_ERROR, INVALID_TENSOR, 'element 259 (1e+300) is finite but beyond float32')),
]


def snapshot(d):
    """Every entry below d: file contents, link targets, other types."""
    if not os.path.lexists(d):
        return None
    if not d.is_dir() or d.is_symlink():
        return {'.': os.lstat(d).st_mode}
    result = {}
    for p in sorted(d.rglob('*')):
        key = p.relative_to(d).as_posix()
        if p.is_symlink():
            result[key] = ('link', os.readlink(p))
        elif p.is_file():
            result[key] = p.read_bytes()
        else:
            result[key] = ('type', os.lstat(p).st_mode)
    return result


def run_cli(model, out, preset, args, env, interrupt, out_arg=None):
    chosen = [] if '--config' in args else ['--preset', preset]
    cmd = [QUARK, 'quantize', str(model), '-o', out_arg or str(out), *chosen, '--json', *args]
    full_env = dict(os.environ, **env)
    if not interrupt:
        # nothing may block: a FIFO anywhere is refused, not waited on
        r = subprocess.run(cmd, capture_output=True, text=True, env=full_env, stdin=subprocess.DEVNULL, timeout=60)
        return r.returncode, r.stdout, r.stderr
    # interrupted with less than a quarter of the output written; the rows
    # that interrupt write no output before the run
    return run_caught_early(cmd, out.parent, LARGE_INT4_BYTES // 4, lambda p: p.send_signal(signal.SIGINT),
                            lambda: shutil.rmtree(out), env=full_env)


def prepare(tmp_path, build):
    """Builds a row's input in tmp_path/model; returns the model directory,
    the output path, the row's options and what tmp_path holds."""
    model = tmp_path / 'model'
    model.mkdir()
    out = tmp_path / 'out'
    options = build(model, out) or {}
    return model, options.get('out', out), options, sorted(os.listdir(tmp_path))


@pytest.mark.parametrize('row', ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_cli(tmp_path, row):
    name, build, preset, args, expected = row
    model, out, options, before_dir = prepare(tmp_path, build)
    before_model = snapshot(model)
    before_out = snapshot(out)
    args = args + options.get('args', []) + (['--force'] if options.get('force') else [])

    status, stdout, stderr = run_cli(model, out, preset, args, options.get('env', {}),
                                     options.get('interrupt', False), options.get('out_arg'))

    assert snapshot(model) == before_model, 'the input was modified'
    if callable(expected):
        assert status == 0, stderr
        expected(out, json.loads(stdout))
        return
    domain, code, needle = expected
    assert status == 1, stderr
    assert stderr.startswith('quark quantize: ')
    error = json.loads(stdout)['error']
    assert (error['domain'], error['code']) == (domain, code), error
    assert needle.format(file=model / 'model.safetensors') in error['message'], error['message']
    assert error['message'] in stderr
    # nothing that looks like an output (what was there is untouched); no
    # temporary left behind
    assert snapshot(out) == before_out
    assert sorted(os.listdir(tmp_path)) == before_dir


# ---- the same rows through the library ---------------------------------------

def library_error(Quark, domain, code):
    """The GLib domain and code of an error named as --json names it."""
    from gi.repository import Gio
    enum = {QUARK_ERROR: Quark.Error, GIO_ERROR: Gio.IOErrorEnum}[domain]
    return enum.quark() if hasattr(enum, 'quark') else Gio.io_error_quark(), int(getattr(enum, code.upper().replace('-', '_')))


def quark_module():
    try:
        import gi
        gi.require_version('Quark', '1.0')
        from gi.repository import Quark
        return Quark
    except (ImportError, ValueError):
        return None


# CLI policies and CLI options; the library has its own tests of these below
CLI_ONLY = ('output-inside-input', 'fifo-as-config-option', 'fifo-as-calibration', 'device-as-calibration',
            'config-option-over-limit', 'calibration-over-limit', 'own-output-requantized', 'output-trailing-slash')
LIBRARY_ROWS = [r for r in ROWS if r[0] not in CLI_ONLY]


@pytest.mark.parametrize('row', LIBRARY_ROWS, ids=[r[0] for r in LIBRARY_ROWS])
def test_bad_input_library(tmp_path, monkeypatch, row):
    Quark = quark_module()
    if Quark is None:
        pytest.skip('no Quark typelib (a build without introspection)')
    from gi.repository import Gio, GLib
    name, build, preset, args, expected = row
    model_dir, out, options, before_dir = prepare(tmp_path, build)
    for k, v in options.get('env', {}).items():
        monkeypatch.setenv(k, v)
    before = snapshot(model_dir)
    before_out = snapshot(out)

    registry = Quark.Registry.get_default()
    cancellable = Gio.Cancellable()
    progress = []
    try:
        model = Quark.Model.load(str(model_dir), None)
        config = registry.get_backend('quark').new_config_for_preset(preset)
        quantizer = registry.new_quantizer(config)
        if '--allow-nonfinite' in args:
            quantizer.props.allow_nonfinite = True
        quantizer.connect('progress', lambda q, done, total, item: progress.append(item))
        if options.get('interrupt'):
            quantizer.connect('progress', lambda q, done, total, item: cancellable.cancel())
        writer = Quark.CheckpointWriter.new(str(out), 0, options.get('force', False))
        try:
            quantizer.quantize_model_to_writer(model, None, writer, cancellable)
            writer.set_copy_from(str(model_dir))
            writer.finish(cancellable)
        except GLib.Error:
            writer.abort()
            raise
    except GLib.Error as e:
        assert not callable(expected), e.message
        domain, code, needle = expected
        assert e.matches(*library_error(Quark, domain, code)), (e.domain, e.code, e.message)
        if name != 'interrupted':
            assert needle.format(file=model_dir / 'model.safetensors') in e.message, e.message
        if domain == QUARK_ERROR and code in (INVALID_ARGUMENT, UNSUPPORTED_SCHEME, NEEDS_CALIBRATION):
            assert progress == [], 'checked only after work had been done'
    else:
        assert callable(expected), 'expected an error'
        expected(out, None)
    assert snapshot(model_dir) == before
    if not callable(expected):
        assert snapshot(out) == before_out
        assert sorted(os.listdir(tmp_path)) == before_dir


@pytest.mark.parametrize('rows', [16, 1024])
def test_disk_full_at_every_stage(tmp_path, monkeypatch, rows):
    """The disk fills up while writing tensor data, a shard header, the
    index, config.json or a copied file: every limit below the checkpoint's
    size fails with QUARK_ERROR_IO naming the output and leaves nothing;
    the exact size succeeds. With 1024 rows the codes are 1 MiB tensors,
    which the writer puts straight into the shard behind its header room,
    and the embeddings, which go out as they are, 2 MiB, which its copier
    thread copies there while the layers are quantized."""
    Quark = quark_module()
    if Quark is None:
        pytest.skip('no Quark typelib (a build without introspection)')
    from gi.repository import GLib
    model_dir = tmp_path / 'model'
    model_dir.mkdir()
    tensors = {'model.layers.%d.mlp.up_proj.weight' % i: ('BF16', weights(rows, 1024 if rows > 16 else 128, i))
               for i in range(3)}
    tensors['model.embed_tokens.weight'] = ('BF16', weights(rows, 1024 if rows > 16 else 128, 3))
    write_safetensors(model_dir / 'model.safetensors', tensors, PT)
    (model_dir / 'config.json').write_text('{"model_type": "llama"}')
    (model_dir / 'tokenizer.json').write_text('{"version": "1.0"}')
    registry = Quark.Registry.get_default()
    config = registry.get_backend('quark').new_config_for_preset('int8_per_channel_wo')

    def attempt(out, limit):
        monkeypatch.setenv('QUARK_DEBUG_WRITE_LIMIT', str(limit) if limit is not None else '')
        model = Quark.Model.load(str(model_dir), None)
        quantizer = registry.new_quantizer(config)
        writer = Quark.CheckpointWriter.new(str(out), 4096, False)     # several shards and an index
        try:
            quantizer.quantize_model_to_writer(model, None, writer, None)
            writer.set_copy_from(str(model_dir))
            writer.finish(None)
        except GLib.Error:
            writer.abort()
            raise

    attempt(tmp_path / 'reference', None)
    # the embeddings went out as they are
    embed = Quark.Model.load(str(tmp_path / 'reference'), None).get_tensor('model.embed_tokens.weight')
    assert embed.get_dtype() == Quark.DType.BFLOAT16
    assert embed.to_numpy().tobytes() == tensors['model.embed_tokens.weight'][1].tobytes()
    total = sum(p.stat().st_size for p in (tmp_path / 'reference').iterdir())
    assert len(list((tmp_path / 'reference').glob('model-*.safetensors'))) > 1
    limits = sorted(set(list(range(0, total, max(1, total // 97))) + [total - 1, total - 30, 8, 9]))
    for limit in limits:
        out = tmp_path / ('out-%d' % limit)
        with pytest.raises(GLib.Error) as info:
            attempt(out, limit)
        assert info.value.matches(*library_error(Quark, QUARK_ERROR, IO)), info.value.message
        assert 'No space left on device' in info.value.message and str(out) in info.value.message
        assert not out.exists()
    attempt(tmp_path / 'room', 2 * total)
    assert sorted(os.listdir(tmp_path)) == ['model', 'reference', 'room']


# ---- inputs that change, runs that are killed, writers that race ------------

def library_quantize(Quark, model_dir, out, preset='int8_per_channel_wo', before_quantize=None, force=False):
    registry = Quark.Registry.get_default()
    model = Quark.Model.load(str(model_dir), None)
    if before_quantize:
        before_quantize()
    quantizer = registry.new_quantizer(registry.get_backend('quark').new_config_for_preset(preset))
    writer = Quark.CheckpointWriter.new(str(out), 0, force)
    try:
        quantizer.quantize_model_to_writer(model, None, writer, None)
        writer.finish(None)
    except Exception:
        writer.abort()
        raise


def change_input(path, change, replacement=None):
    """Changes the input file @path while a run reads it: 'shrink' truncates
    it to 1 MiB, 'touch' moves its modification time on, 'replace' renames
    another file with the same bytes over it (@replacement when one was
    made beforehand, else a copy made now)."""
    if change == 'shrink':
        os.truncate(path, 1 << 20)
    elif change == 'touch':
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    else:
        if replacement is None:
            replacement = str(path) + '.new'
            with open(path, 'rb') as f, open(replacement, 'wb') as g:
                g.write(f.read())
        os.rename(replacement, path)


@pytest.mark.parametrize('change', ['shrink', 'touch', 'replace'])
def test_input_changed_under_library(tmp_path, change):
    """The input is mapped, then shrinks (reads past its new end would be
    SIGBUS), is modified in place or replaced: the quantization fails with
    QUARK_ERROR_IO naming the file and writes nothing."""
    Quark = quark_module()
    if Quark is None:
        pytest.skip('no Quark typelib (a build without introspection)')
    from gi.repository import GLib
    model = tmp_path / 'model'
    model.mkdir()
    large(model, None)
    path = model / 'model.safetensors'

    with pytest.raises(GLib.Error) as info:
        library_quantize(Quark, model, tmp_path / 'out', 'int4_wo_128',
                         before_quantize=lambda: change_input(path, change))
    assert info.value.matches(*library_error(Quark, QUARK_ERROR, IO)), info.value.message
    assert str(path) in info.value.message
    assert {'shrink': 'shrank', 'touch': 'modified', 'replace': 'replaced'}[change] in info.value.message
    assert sorted(os.listdir(tmp_path)) == ['model']


def test_input_shrinks_during_cli_run(tmp_path):
    """`truncate -s` on the input while quark quantize reads it: exit 1 with
    QUARK_ERROR_IO naming the file, no crash, nothing left. The truncation
    lands while less than a quarter of the output is written, so most
    tensors are still unread and the final check of the inputs is ahead."""
    model = tmp_path / 'model'
    model.mkdir()
    large(model, None)
    source = model / 'model.safetensors'
    out = tmp_path / 'out'
    status, stdout, stderr = run_caught_early(
        [QUARK, 'quantize', str(model), '-o', str(out), '--preset', 'int4_wo_128', '--json'], tmp_path,
        LARGE_INT4_BYTES // 4, lambda p: os.truncate(source, 100 << 10), lambda: shutil.rmtree(out))
    assert status == 1, stderr
    error = json.loads(stdout)['error']
    assert (error['domain'], error['code']) == (QUARK_ERROR, IO)
    assert str(source) in error['message']
    assert sorted(os.listdir(tmp_path)) == ['model']


def test_killed_runs_leave_nothing_the_next_run_keeps(tmp_path):
    """SIGKILLed runs leave their temporary directories; the next run to
    the same output removes them, and only them: temporaries of another
    output, of a live writer, or not marked as libquark's stay."""
    model = tmp_path / 'model'
    model.mkdir()
    large(model, None)
    out = tmp_path / 'out'

    def temporaries():
        return {n for n in os.listdir(tmp_path) if n.startswith('.quark-tmp')}

    for _ in range(3):
        before = temporaries()
        # killed with less than a quarter of its output written (the
        # temporary the run before left is a directory of a lock file only)
        run_caught_early([QUARK, 'quantize', str(model), '-o', str(out), '--preset', 'int4_wo_128'], tmp_path,
                         LARGE_INT4_BYTES // 4, lambda p: p.kill(), lambda: shutil.rmtree(out),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # each run removed the one the run before it left
        assert len(temporaries()) == 1 and temporaries() != before
    # another output's stale temporary, and a directory that only looks like one
    other = tmp_path / '.quark-tmp-OTHER1'
    other.mkdir()
    (other / 'lock').write_text('libquark temporary output\noutput=other\npid=1\n')
    unmarked = tmp_path / '.quark-tmp-PLAIN1'
    unmarked.mkdir()
    (unmarked / 'keep.txt').write_text('not ours')
    # killed while setting up (no lock yet): removed once its process is
    # gone, kept while it lives
    gone = subprocess.Popen(['true'])
    gone.wait()
    (tmp_path / ('.quark-tmp-%d-SETUP1' % gone.pid)).mkdir()
    (tmp_path / ('.quark-tmp-%d-SETUP2' % os.getpid())).mkdir()
    r = subprocess.run([QUARK, 'quantize', str(model), '-o', str(out), '--preset', 'int8_per_channel_wo'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == sorted(['.quark-tmp-OTHER1', '.quark-tmp-PLAIN1', 'model', 'out',
                                                   '.quark-tmp-%d-SETUP2' % os.getpid()])
    assert (unmarked / 'keep.txt').read_text() == 'not ours'


def test_live_writer_temporary_is_kept(tmp_path):
    """A writer that is alive holds its lock: another writer for the same
    output does not remove its temporary directory."""
    Quark = quark_module()
    if Quark is None:
        pytest.skip('no Quark typelib (a build without introspection)')
    first = Quark.CheckpointWriter.new(str(tmp_path / 'out'), 0, False)
    mine = [n for n in os.listdir(tmp_path) if n.startswith('.quark-tmp')]
    second = Quark.CheckpointWriter.new(str(tmp_path / 'out'), 0, False)
    assert set(mine) <= set(os.listdir(tmp_path))
    second.abort()
    first.abort()
    assert os.listdir(tmp_path) == []


def test_concurrent_force_writers(tmp_path):
    """Four runs replace the same output at once: each exits 0 or fails
    cleanly, the output is one complete checkpoint, nothing else is left."""
    model = tmp_path / 'model'
    model.mkdir()
    write_safetensors(model / 'model.safetensors',
                      {'model.layers.%d.mlp.up_proj.weight' % i: ('BF16', weights(256, 512, i)) for i in range(8)}, PT)
    out = tmp_path / 'out'
    procs = [subprocess.Popen([QUARK, 'quantize', str(model), '-o', str(out), '--preset', preset, '--force'],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for preset in ['int8_per_channel_wo', 'int4_wo_128', 'int8_per_channel_wo', 'mxfp4']]
    codes = [p.wait(timeout=120) for p in procs]
    assert set(codes) <= {0, 1} and 0 in codes
    assert sorted(os.listdir(tmp_path)) == ['model', 'out']
    t = read_out(out)
    weights_out = [n for n in t if n.endswith('.weight')]
    assert len(weights_out) == 8 and all(n + '_scale' in t for n in weights_out)
    assert len(t) in (16, 24)                       # MX FP4, or integers with zero points


@pytest.mark.parametrize('mask,mode', [(0o022, 0o755), (0o077, 0o700), (0o002, 0o775)])
def test_output_mode_follows_umask(tmp_path, mask, mode):
    model = tmp_path / 'model'
    model.mkdir()
    valid(model, None)
    r = subprocess.run([QUARK, 'quantize', str(model), '-o', str(tmp_path / 'out'), '--preset', 'int8_per_channel_wo'],
                       capture_output=True, text=True, preexec_fn=lambda: os.umask(mask))
    assert r.returncode == 0, r.stderr
    assert os.stat(tmp_path / 'out').st_mode & 0o777 == mode


def test_requantize_through_library(tmp_path):
    """What --requantize does, with the library: dequantize with the
    checkpoint's own config (the result has no quantization_config left),
    then quantize."""
    Quark = quark_module()
    if Quark is None:
        pytest.skip('no Quark typelib (a build without introspection)')
    out = tmp_path / 'out'
    model = tmp_path / 'model'
    model.mkdir()
    own_output(model, out)
    registry = Quark.Registry.get_default()
    quantized = Quark.Model.load(str(model), None)
    assert quantized.is_quantized()[0]
    config = registry.get_backend('quark').new_config_for_preset('int8_per_channel_wo')
    restored = registry.new_quantizer(config).dequantize_model(quantized)
    assert not restored.is_quantized()[0]
    assert 'quantization_config' not in json.loads(Quark.json_to_string(restored.props.metadata, False))
    library_quantize_model = registry.new_quantizer(registry.get_backend('quark').new_config_for_preset('int4_wo_128'))
    result = library_quantize_model.quantize_model(restored, None, None)
    assert result.get_tensor(W).get_dtype() == Quark.DType.INT32
