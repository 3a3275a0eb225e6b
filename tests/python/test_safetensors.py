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
