# safetensors written by libquark, read by an independent parser (struct and
# json, following the format reference), and numpy-made files read by
# libquark. SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import struct

import gi
gi.require_version('Quark', '1.0')
from gi.repository import GLib, Quark  # noqa: E402

import pytest  # noqa: E402

np = pytest.importorskip('numpy')

from safetensors_writer import write_safetensors  # noqa: E402

DTYPES = {'F32': np.float32, 'F16': np.float16, 'I8': np.int8, 'U8': np.uint8, 'I32': np.int32,
          'F64': np.float64, 'I64': np.int64, 'U16': np.uint16, 'I16': np.int16}


def parse(path):
    with open(path, 'rb') as f:
        raw = f.read()
    n = struct.unpack('<Q', raw[:8])[0]
    header_text = raw[8:8 + n].decode()
    header = json.loads(header_text)
    return raw, n, header


write = write_safetensors   # the reference writer, shared with test_quantize_cli.py


def test_libquark_output_follows_the_format(tmp_path):
    model = Quark.Model.new()
    rng = np.random.default_rng(0)
    arrays = {
        'b.weight': rng.standard_normal((4, 6)).astype(np.float32),
        'a.bias': rng.integers(-100, 100, 5).astype(np.int8),
        'c.norm': rng.standard_normal(3).astype(np.float16),
        'scalar': np.array(3.5, dtype=np.float64),
    }
    kinds = {np.dtype(np.float32): Quark.DType.FLOAT32, np.dtype(np.int8): Quark.DType.INT8,
             np.dtype(np.float16): Quark.DType.FLOAT16, np.dtype(np.float64): Quark.DType.FLOAT64}
    for name, a in arrays.items():
        model.add_tensor(Quark.Tensor.new(name, kinds[a.dtype], list(a.shape), GLib.Bytes.new(a.tobytes())))
    out = tmp_path / 'out'
    model.save(str(out), 0, False, None, None)
    raw, n, header = parse(out / 'model.safetensors')
    assert n % 8 == 0                                   # data 8-byte aligned
    assert header['__metadata__']['format'] == 'pt'
    assert header['__metadata__']['quantized_by'].startswith('libquark ')
    names = [k for k in header if k != '__metadata__']
    # descending alignment, then name
    sizes = {'F64': 8, 'F32': 4, 'F16': 2, 'I8': 1}
    assert names == sorted(names, key=lambda k: (-sizes[header[k]['dtype']], k))
    end = 0
    for k in sorted(names, key=lambda k: header[k]['data_offsets'][0]):
        b, e = header[k]['data_offsets']
        assert b == end
        end = e
        got = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=DTYPES[header[k]['dtype']]).reshape(header[k]['shape'])
        assert np.array_equal(got, arrays[k])
    assert 8 + n + end == len(raw)


def test_reference_files_load(tmp_path):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 3)).astype(np.float32)
    q = rng.integers(0, 255, (2, 2, 2)).astype(np.uint8)
    d = tmp_path / 'model'
    d.mkdir()
    write(d / 'model-00001-of-00002.safetensors', {'w': ('F32', w)}, {'format': 'pt'})
    write(d / 'model-00002-of-00002.safetensors', {'q': ('U8', q), 'empty': ('F16', np.zeros((0, 4), np.float16))})
    (d / 'model.safetensors.index.json').write_text(json.dumps({
        'metadata': {'total_size': w.nbytes + q.nbytes},
        'weight_map': {'w': 'model-00001-of-00002.safetensors', 'q': 'model-00002-of-00002.safetensors',
                       'empty': 'model-00002-of-00002.safetensors'}}))
    (d / 'config.json').write_text('{"model_type": "llama", "num_hidden_layers": 2}')
    model = Quark.Model.load(str(d), None)
    assert model.get_tensor_names() == ['w', 'q', 'empty']
    assert np.array_equal(np.frombuffer(model.get_tensor('w').get_data().get_data(), np.float32).reshape(8, 3), w)
    assert list(model.get_tensor('q').get_shape()) == [2, 2, 2]
    assert model.get_metadata().get_object().get_int_member('num_hidden_layers') == 2

    # a tensor missing from the index is an error naming the index
    (d / 'model.safetensors.index.json').write_text(json.dumps({
        'weight_map': {'w': 'model-00001-of-00002.safetensors', 'q': 'model-00002-of-00002.safetensors'}}))
    with pytest.raises(GLib.Error) as info:
        Quark.Model.load(str(d), None)
    assert info.value.matches(Quark.Error.quark(), Quark.Error.INVALID_FILE)
    assert 'model.safetensors.index.json' in info.value.message and 'empty' in info.value.message


def test_truncated_file_is_an_error_and_untouched(tmp_path):
    w = np.arange(12, dtype=np.float32)
    path = tmp_path / 'w.safetensors'
    write(path, {'w': ('F32', w)})
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    before = path.read_bytes()
    with pytest.raises(GLib.Error) as info:
        Quark.Model.load(str(path), None)
    assert info.value.matches(Quark.Error.quark(), Quark.Error.INVALID_FILE)
    assert str(path) in info.value.message
    assert path.read_bytes() == before


def check_file(path, arrays):
    """Every tensor of a libquark shard: contiguous from 0, naturally aligned
    in the file, equal to what was written; returns the header length."""
    raw, n, header = parse(path)
    assert (8 + n) % 8 == 0
    names = [k for k in header if k != '__metadata__']
    end = 0
    for k in sorted(names, key=lambda k: header[k]['data_offsets'][0]):
        b, e = header[k]['data_offsets']
        assert b == end, k
        end = e
        a = arrays[k]
        assert (8 + n + b) % a.dtype.itemsize == 0, k
        got = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=a.dtype).reshape(header[k]['shape'])
        assert np.array_equal(got, a), k
    assert 8 + n + end == len(raw)
    return n, names


def save(model_arrays, out, max_shard=0):
    kinds = {np.dtype(np.float32): Quark.DType.FLOAT32, np.dtype(np.int8): Quark.DType.INT8,
             np.dtype(np.float16): Quark.DType.FLOAT16, np.dtype(np.uint8): Quark.DType.UINT8}
    model = Quark.Model.new()
    for name, a in model_arrays.items():
        model.add_tensor(Quark.Tensor.new(name, kinds[a.dtype], list(a.shape), GLib.Bytes.new(a.tobytes())))
    model.save(str(out), max_shard, False, None, None)


def test_large_tensors_are_written_once_behind_the_header(tmp_path):
    # tensors of 64 KiB or more whose size is a multiple of 8 go straight into
    # the shard behind room kept for the header, which is padded with spaces
    # (the safetensors format allows it) so that their data starts on a page;
    # the others follow, grouped by element size
    rng = np.random.default_rng(1)
    arrays = {
        'big.f32': rng.standard_normal((512, 1024)).astype(np.float32),
        'odd.f16': rng.standard_normal(3).astype(np.float16),
        'big.i8': rng.integers(-128, 128, (1024, 1024)).astype(np.int8),
        'small.f32': rng.standard_normal(5).astype(np.float32),
        'big.f16': rng.standard_normal((1024, 513)).astype(np.float16),
        'tail.u8': rng.integers(0, 255, 7).astype(np.uint8),
        'just.f32': rng.standard_normal(16384).astype(np.float32),     # 64 KiB: straight in
        'under.f32': rng.standard_normal(16382).astype(np.float32),    # 8 bytes less: a side file
    }
    save(arrays, tmp_path / 'out')
    path = tmp_path / 'out' / 'model.safetensors'
    n, names = check_file(path, arrays)
    assert (8 + n) % 4096 == 0
    raw, _, header = parse(path)
    text = raw[8:8 + n].decode()
    assert text.rstrip(' ').endswith('}') and len(text) - len(text.rstrip(' ')) > 1000   # padding
    assert json.loads(text.rstrip(' ')) == header
    assert sorted(names) == sorted(arrays)
    # the large ones first, in the order they came
    by_offset = sorted(names, key=lambda k: header[k]['data_offsets'][0])
    assert by_offset[:4] == ['big.f32', 'big.i8', 'big.f16', 'just.f32']
    # then the side files, the 4-byte class first, each in arrival order
    assert by_offset[4:6] == ['small.f32', 'under.f32']


def test_a_header_larger_than_its_room_moves_the_data(tmp_path):
    # without a hint the room is 128 KiB; 1500 long names need more: the data
    # already written is moved up once, and the file is as if it had fitted
    rng = np.random.default_rng(2)
    arrays = {'big': rng.integers(-128, 128, (1024, 2048)).astype(np.int8)}
    for i in range(1500):
        arrays['model.layers.%04d.a_rather_long_name_for_a_small_tensor.with.more.words.in.it' % i] = \
            rng.standard_normal(2).astype(np.float32)
    save(arrays, tmp_path / 'out')
    n, names = check_file(tmp_path / 'out' / 'model.safetensors', arrays)
    assert n + 8 > 128 * 1024 and (8 + n) % 4096 == 0
    assert len(names) == len(arrays)


def test_every_shard_keeps_its_own_header_room(tmp_path):
    rng = np.random.default_rng(3)
    arrays = {'t%d' % i: rng.integers(-128, 128, (1024, 1024 + 8 * i)).astype(np.int8) for i in range(5)}
    arrays['s'] = rng.standard_normal(3).astype(np.float32)
    save(arrays, tmp_path / 'out', max_shard=2 * 1024 * 1024 + 4096)
    seen = []
    files = sorted(p for p in os.listdir(tmp_path / 'out') if p.endswith('.safetensors'))
    assert len(files) >= 3
    for f in files:
        seen += check_file(tmp_path / 'out' / f, arrays)[1]
    assert sorted(seen) == sorted(arrays)


def test_tensors_of_a_loaded_file_are_copied_from_it(tmp_path):
    # a tensor over a file mapping is written by copying from its file
    # (copy_file_range, the mapping untouched): the bytes are the same
    rng = np.random.default_rng(4)
    arrays = {'big': rng.standard_normal((1024, 512)).astype(np.float32),
              'small': rng.standard_normal(7).astype(np.float16),
              'mid': rng.integers(-128, 128, (1 << 20) + 8).astype(np.int8)}
    save(arrays, tmp_path / 'a')
    model = Quark.Model.load(str(tmp_path / 'a'), None)
    assert all(model.get_tensor(k).is_mapped() for k in arrays)
    model.save(str(tmp_path / 'b'), 0, False, None, None)
    check_file(tmp_path / 'b' / 'model.safetensors', arrays)


def big_metadata():
    # about 700 KB of JSON: ten pieces of the writer's 64 KiB at a time,
    # with escapes, non-ASCII text, doubles, nesting and empty containers
    layers = {}
    for i in range(1500):
        layers['model.layers.%d.mlp.up_proj' % i] = {
            'weight': {'dtype': 'fp4', 'group_size': 32, 'scale': 2.0 ** -(i % 40), 'max': 6.0,
                       'note': 'tab\there "quoted" \\ back\u00e9\u4e2d\n', 'flags': [True, False, None],
                       'shape': [i, 2048], 'empty': {}, 'none': []}}
    return {'model_type': 'llama', 'hidden_size': 2048, 'quantization_config': {'layers': layers}}


@pytest.mark.parametrize('sealed', [False, True])
def test_large_config_json_is_written_in_pieces(tmp_path, sealed):
    """config.json goes out a piece at a time: the same text as
    quark_json_to_string() with a newline, read back equal. The writer
    copies metadata it is given, so a change after set_metadata() does not
    reach the file; a sealed node it keeps as it is."""
    meta = big_metadata()
    text = json.dumps(meta)
    node = Quark.json_parse(text, len(text.encode()), 'metadata')   # sealed, as parsed nodes are
    if not sealed:
        node = Quark.json_copy(node)
    assert node.is_immutable() == sealed
    expected = Quark.json_to_string(node, True) + '\n'
    assert len(expected) > 10 * 65536
    writer = Quark.CheckpointWriter.new(str(tmp_path / 'out'), 0, False)
    writer.add(Quark.Tensor.new('t', Quark.DType.FLOAT32, [2], GLib.Bytes.new(b'\0' * 8)))
    writer.set_metadata(node)
    if not sealed:
        node.get_object().set_int_member('hidden_size', 1)
    writer.finish(None)
    written = (tmp_path / 'out' / 'config.json').read_text()
    assert written == expected
    assert json.loads(written) == meta


def test_a_failed_config_json_write_leaves_nothing(tmp_path, monkeypatch):
    """The writer's write limit (QUARK_DEBUG_WRITE_LIMIT, a full disk) hit
    inside config.json's pieces: an I/O error naming the output, and no
    output directory."""
    meta = big_metadata()
    text = json.dumps(meta)
    node = Quark.json_parse(text, len(text.encode()), 'metadata')

    def attempt(out):
        writer = Quark.CheckpointWriter.new(str(out), 0, False)
        writer.add(Quark.Tensor.new('t', Quark.DType.FLOAT32, [2], GLib.Bytes.new(b'\0' * 8)))
        writer.set_metadata(node)
        try:
            writer.finish(None)
        except GLib.Error:
            writer.abort()
            raise

    attempt(tmp_path / 'reference')
    tensors = (tmp_path / 'reference' / 'model.safetensors').stat().st_size
    size = (tmp_path / 'reference' / 'config.json').stat().st_size
    assert size > 10 * 65536
    for limit in (tensors + 100, tensors + 65536 + 7, tensors + size // 2, tensors + size - 1):
        out = tmp_path / ('out-%d' % limit)
        monkeypatch.setenv('QUARK_DEBUG_WRITE_LIMIT', str(limit))
        with pytest.raises(GLib.Error) as info:
            attempt(out)
        assert info.value.matches(Quark.error_quark(), Quark.Error.IO), info.value.message
        assert 'No space left on device' in info.value.message and str(out) in info.value.message
        assert not out.exists()
