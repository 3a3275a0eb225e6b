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
import signal
import struct
import subprocess
import time

import pytest

np = pytest.importorskip('numpy')

from safetensors_writer import write_safetensors  # noqa: E402

QUARK = os.environ['QUARK_TOOL']
PT = {'format': 'pt'}
W = 'model.layers.0.mlp.up_proj.weight'

# QuarkError codes (quark-error.h; stable)
INVALID_ARGUMENT, INVALID_FILE, UNSUPPORTED_SCHEME, INVALID_TENSOR, IO, CANCELLED = 1, 2, 4, 5, 7, 8
QUARK_ERROR = 'quark-error-quark'


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
    kinds = {'I8': np.int8, 'U8': np.uint8, 'F32': np.float32, 'BF16': np.uint16, 'I32': np.int32}
    t = {}
    for k, v in header.items():
        if k != '__metadata__':
            b, e = v['data_offsets']
            t[k] = np.frombuffer(raw[8 + n + b:8 + n + e], kinds[v['dtype']]).reshape(v['shape'])
    return t


def check_saturated(out):
    t = read_out(out)
    codes, scale = t[W], t[W + '_scale']
    assert np.isfinite(scale).all() and (scale > 0).all()
    assert codes[3, 5] == 0                                     # NaN -> 0
    # +-inf become +-amax: Quark's symmetric int8 scale is amax / 127.5, so
    # they land on the ends of the full range
    assert codes[3, 6] == 127 and codes[3, 7] == -128


def check_all_zero(out):
    t = read_out(out)
    assert (t[W] == 0).all()
    assert np.isfinite(t[W + '_scale']).all() and (t[W + '_scale'] > 0).all()


def check_all_zero_mx(out):
    t = read_out(out)
    assert (t[W] == 0).all()                                    # FP4 +0 codes, two per byte
    assert t[W + '_scale'].dtype == np.uint8 and t[W + '_scale'].shape == (16, 4)


def check_zero_element_and_scalar(out):
    t = read_out(out)
    assert t[W].shape == (0, 128) and t['model.layers.0.mlp.down_proj.weight'].shape == (16, 0)
    assert t['model.norm.weight'].shape == (0,)
    g = 'model.layers.0.mlp.gate_proj.weight'
    assert t[g].shape == () and int(t[g]) == int(bf16(np.float32(0.5)))   # a scalar is not a weight matrix


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
    ('interrupted', large, 'int4_wo_128', [], (QUARK_ERROR, CANCELLED, 'interrupted')),
]


def snapshot(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob('*')) if p.is_file()}


def run_cli(model, out, preset, args, env, interrupt):
    cmd = [QUARK, 'quantize', str(model), '-o', str(out), '--preset', preset, '--json', *args]
    full_env = dict(os.environ, **env)
    if not interrupt:
        r = subprocess.run(cmd, capture_output=True, text=True, env=full_env, stdin=subprocess.DEVNULL)
        return r.returncode, r.stdout, r.stderr
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    deadline = time.time() + 30
    while time.time() < deadline and not any(n.startswith('.quark-tmp') for n in os.listdir(out.parent)):
        time.sleep(0.001)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    return p.returncode, stdout, stderr


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

    status, stdout, stderr = run_cli(model, out, preset, args, options.get('env', {}),
                                     options.get('interrupt', False))

    assert snapshot(model) == before_model, 'the input was modified'
    if callable(expected):
        assert status == 0, stderr
        expected(out)
        return
    domain, code, needle = expected
    assert status == 1, stderr
    assert stderr.startswith('quark quantize: ')
    error = json.loads(stdout)['error']
    assert (error['domain'], error['code']) == (domain, code), error
    assert needle.format(file=model / 'model.safetensors') in error['message']
    assert error['message'] in stderr
    # nothing that looks like an output; no temporary left behind
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == before_dir


# ---- the same rows through the library ---------------------------------------

def quark_module():
    try:
        import gi
        gi.require_version('Quark', '1.0')
        from gi.repository import Quark
        return Quark
    except (ImportError, ValueError):
        return None


LIBRARY_ROWS = [r for r in ROWS if r[0] not in ('output-inside-input',)]   # a CLI policy


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

    registry = Quark.Registry.get_default()
    cancellable = Gio.Cancellable()
    try:
        model = Quark.Model.load(str(model_dir), None)
        config = registry.get_backend('quark').new_config_for_preset(preset)
        quantizer = registry.new_quantizer(config)
        if '--allow-nonfinite' in args:
            quantizer.props.allow_nonfinite = True
        if options.get('interrupt'):
            quantizer.connect('progress', lambda q, done, total, item: cancellable.cancel())
        writer = Quark.CheckpointWriter.new(str(out), 0, False)
        try:
            quantizer.quantize_model_to_writer(model, None, writer, cancellable)
            writer.finish(cancellable)
        except GLib.Error:
            writer.abort()
            raise
    except GLib.Error as e:
        assert not callable(expected), e.message
        domain, code, needle = expected
        assert e.matches(Quark.Error.quark(), code), (e.domain, e.code, e.message)
        assert e.domain == domain
        if name != 'interrupted':
            assert needle.format(file=model_dir / 'model.safetensors') in e.message
    else:
        assert callable(expected), 'expected an error'
        expected(out)
    assert snapshot(model_dir) == before
    if not callable(expected):
        assert not out.exists()
        assert sorted(os.listdir(tmp_path)) == before_dir


def test_disk_full_at_every_stage(tmp_path, monkeypatch):
    """The disk fills up while writing tensor data, a shard header, the
    index, config.json or a copied file: every limit below the checkpoint's
    size fails with QUARK_ERROR_IO naming the output and leaves nothing;
    the exact size succeeds."""
    Quark = quark_module()
    if Quark is None:
        pytest.skip('no Quark typelib (a build without introspection)')
    from gi.repository import GLib
    model_dir = tmp_path / 'model'
    model_dir.mkdir()
    write_safetensors(model_dir / 'model.safetensors',
                      {'model.layers.%d.mlp.up_proj.weight' % i: ('BF16', weights(16, 128, i)) for i in range(3)}, PT)
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
    total = sum(p.stat().st_size for p in (tmp_path / 'reference').iterdir())
    assert len(list((tmp_path / 'reference').glob('model-*.safetensors'))) > 1
    limits = sorted(set(list(range(0, total, max(1, total // 97))) + [total - 1, total - 30, 8, 9]))
    for limit in limits:
        out = tmp_path / ('out-%d' % limit)
        with pytest.raises(GLib.Error) as info:
            attempt(out, limit)
        assert info.value.matches(Quark.Error.quark(), IO), info.value.message
        assert 'No space left on device' in info.value.message and str(out) in info.value.message
        assert not out.exists()
    attempt(tmp_path / 'room', 2 * total)
    assert sorted(os.listdir(tmp_path)) == ['model', 'reference', 'room']
