#!/usr/bin/python3
# Regenerates the seed corpora of the fuzz targets under fuzz/corpus/.
#
#   /usr/bin/python3 fuzz/make-corpus.py build
#
# safetensors: small valid files of each dtype and a few malformed ones;
# json and config: the test configs (valid and invalid) and every preset;
# calibration: statistics files, valid and broken; config also every
# brevitas preset's config;
# checkpoint: a tiny model quantized with each quark preset by the built
# `quark` tool (presets with static activations skipped), prefixed with the preset's index (the target's first byte);
# roundtrip: small float models (every float dtype, ragged and 1-row
# shapes, non-finite values, integer tensors) prefixed with a preset index
# and an options byte;
# tokenizer: small tokenizer.json files of each family (byte-level with
# GPT-2's pattern and with a Split, SentencePiece-style with normalizers and
# with Metaspace, added tokens), valid and broken, each followed by a NUL
# and a text (ASCII, multi-byte, invalid UTF-8).
# Inputs the fuzzers found that add coverage (libFuzzer -merge=1) are kept
# alongside, named by their SHA-1. Needs numpy; runs the tool from BUILDDIR.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, 'build'))
CORPUS = os.path.join(ROOT, 'fuzz', 'corpus')
ENV = dict(os.environ, QUARK_BACKEND_PATH=os.path.join(BUILD, 'libquark', 'backends', 'quark') + ':' +
           os.path.join(BUILD, 'libquark', 'backends', 'brevitas'), QUARK_BACKEND_SYSTEM_PATH='')
QUARK = os.path.join(BUILD, 'tools', 'quark')
# the order of quark_backend_list_presets() for the quark backend
PRESETS = ['int8', 'fp8', 'ptpc_fp8', 'int4_wo_32', 'int4_wo_64', 'int4_wo_128', 'uint4_wo_32',
           'uint4_wo_64', 'uint4_wo_128', 'mxfp4', 'mxfp6_e2m3', 'mxfp6_e3m2', 'mxfp4_fp8', 'int4_fp8',
           'mxfp8', 'int8_per_channel_wo']


def safetensors(tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header['__metadata__'] = metadata
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b' ' * (-len(text) % 8)
    return struct.pack('<Q', len(text)) + text + b''.join(blobs)


def put(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, name), 'wb') as f:
        f.write(data)


def calibration_seeds():
    """Statistics files as quark_calibration_save() writes them, and a few
    broken ones."""
    def hist(rng, exp):
        return {'range_exp': exp, 'zeros': int(rng.integers(0, 50)),
                'positive': [int(v) for v in rng.poisson(3, 2048) * (np.arange(2048) < 700)],
                'negative': [int(v) for v in rng.poisson(1, 2048) * (np.arange(2048) < 300)]}
    rng = np.random.default_rng(11)
    entry = {'layer': 'fc1', 'role': 'input', 'batches': 3, 'values': 3000, 'min': -1.5, 'max': 3.25,
             'moving_average_min': -1.4, 'moving_average_max': 3.0,
             'batch_percentile': {'q': 99.999, 'batches': 3, 'abs': 3.1, 'low': -1.2, 'high': 3.1,
                                  'span': 4.3, 'negative_low': -1.2},
             'histogram': hist(rng, 2)}
    out = dict(entry, role='output', layer='k_proj', histogram=hist(rng, -3))
    del out['batch_percentile']
    chan = dict(entry, layer='conv1', channels={'axis': 1, 'min': [-1.0, 0.0, -0.25], 'max': [1.0, 2.0, 0.5]})
    empty = {'layer': 'e', 'role': 'input', 'batches': 1, 'values': 0, 'min': None, 'max': None,
             'moving_average_min': None, 'moving_average_max': None,
             'histogram': {'range_exp': None, 'zeros': 0, 'positive': [0] * 2048, 'negative': [0] * 2048}}
    doc = {'format': 'libquark-calibration', 'version': 1, 'entries': [entry, out, chan, empty]}
    text = json.dumps(doc, separators=(',', ':')).encode()
    put('calibration', 'valid', text)
    put('calibration', 'valid-top-range', json.dumps(dict(doc, entries=[dict(entry, histogram=hist(rng, 128))])).encode())
    put('calibration', 'bad-version', text.replace(b'"version":1', b'"version":2'))
    put('calibration', 'short-histogram', text.replace(b'"positive":[', b'"positive":[1,', 1))
    put('calibration', 'duplicate-entry', json.dumps(dict(doc, entries=[entry, entry])).encode())


def preset_config_seeds():
    """Every brevitas preset's config, as the backend writes it (through the
    Python binding of the build)."""
    code = ('import gi, sys\n'
            'gi.require_version("Quark", "1.0")\n'
            'from gi.repository import Quark\n'
            'b = Quark.Registry.get_default().get_backend("brevitas")\n'
            'for p in b.list_presets():\n'
            '    open(sys.argv[1] + "/brevitas-preset-" + p + ".json", "w").write(b.new_config_for_preset(p).to_string())\n')
    env = dict(ENV, GI_TYPELIB_PATH=os.path.join(BUILD, 'libquark'), LD_LIBRARY_PATH=os.path.join(BUILD, 'libquark'))
    os.makedirs(os.path.join(CORPUS, 'config'), exist_ok=True)
    subprocess.run(['/usr/bin/python3', '-c', code, os.path.join(CORPUS, 'config')], env=env, check=True)


def roundtrip_seeds(rng):
    def bf16(a):
        return (np.asarray(a, np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
    w = (rng.standard_normal((16, 128)) * 0.02).astype(np.float32)
    odd = (rng.standard_normal((3, 40)) * 0.02).astype(np.float32)
    nonfinite = w.copy()
    nonfinite[1, 2], nonfinite[3, 4] = np.nan, np.inf
    models = {
        'bf16': {'model.layers.0.mlp.up_proj.weight': ('BF16', [16, 128], bf16(w)),
                 'model.norm.weight': ('BF16', [128], bf16(np.ones(128)))},
        'f32-f16-f64': {'model.layers.0.self_attn.q_proj.weight': ('F32', [16, 128], w.tobytes()),
                        'model.layers.0.self_attn.k_proj.weight': ('F16', [16, 128], w.astype(np.float16).tobytes()),
                        'model.layers.0.self_attn.v_proj.weight': ('F64', [16, 128], w.astype(np.float64).tobytes())},
        'ragged': {'model.layers.0.mlp.down_proj.weight': ('F32', [3, 40], odd.tobytes()),
                   'model.layers.1.mlp.down_proj.weight': ('BF16', [1, 128], bf16(w[:1]))},
        'nonfinite': {'model.layers.0.mlp.up_proj.weight': ('F32', [16, 128], nonfinite.tobytes())},
        'integers': {'model.layers.0.mlp.up_proj.weight': ('I8', [16, 128], np.ones((16, 128), np.int8).tobytes()),
                     'model.layers.0.mlp.up_proj.weight_scale': ('F32', [16, 1], np.ones(16, np.float32).tobytes()),
                     'model.position_ids': ('I64', [1, 4], np.arange(4, dtype=np.int64).tobytes())},
        'conv': {'model.conv.weight': ('F32', [8, 2, 3, 3], (rng.standard_normal(144) * 0.1).astype(np.float32).tobytes())},
    }
    for name, tensors in models.items():
        data = safetensors(tensors, {'format': 'pt'})
        for index, options in [(0, 0), (5, 0), (9, 1), (15, 2), (11, 4), (3, 8), (14, 7)]:
            put('roundtrip', '%s-%s-%d' % (name, PRESETS[index], options), bytes([index, options]) + data)


def tokenizer_seeds():
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, k = {}, 0
    for b in range(256):
        chars[b] = chr(b) if b in printable else chr(256 + k)
        k += b not in printable
    vocab = {chars[b]: b for b in range(256)}
    merges = [['\u0120', 'w'], ['o', 'r'], ['\u0120w', 'or'], ['l', 'd']]
    for i, (a, b) in enumerate(merges):
        vocab[a + b] = 256 + i
    added = [{'id': 260, 'content': '<|end|>', 'special': True, 'lstrip': True, 'rstrip': False,
              'single_word': False, 'normalized': False}]
    model = {'type': 'BPE', 'vocab': vocab, 'merges': merges, 'byte_fallback': False, 'ignore_merges': False}
    byte_level = {'added_tokens': added, 'normalizer': None, 'model': model,
                  'pre_tokenizer': {'type': 'ByteLevel', 'add_prefix_space': False, 'use_regex': True}}
    llama3 = dict(byte_level, normalizer={'type': 'NFC'}, pre_tokenizer={'type': 'Sequence', 'pretokenizers': [
        {'type': 'Split', 'pattern': {'Regex': "(?i:'s|'t)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|\\s+"},
         'behavior': 'Isolated', 'invert': False},
        {'type': 'ByteLevel', 'add_prefix_space': False, 'use_regex': False}]}, model=dict(model, ignore_merges=True))
    sp_vocab = {t: i for i, t in enumerate(['<unk>', '<s>', '</s>'] + ['<0x%02X>' % b for b in range(256)] +
                                           ['\u2581', 'h', 'e', 'l', 'o', 'll', 'ello'])}
    sp_model = {'type': 'BPE', 'vocab': sp_vocab, 'merges': ['l l', 'e ll'], 'unk_token': '<unk>',
                'byte_fallback': True, 'fuse_unk': True}
    llama2 = {'model': sp_model, 'normalizer': {'type': 'Sequence', 'normalizers': [
        {'type': 'Prepend', 'prepend': '\u2581'}, {'type': 'Replace', 'pattern': {'String': ' '}, 'content': '\u2581'}]},
        'post_processor': {'type': 'TemplateProcessing', 'single': [{'SpecialToken': {'id': '<s>'}},
                                                                    {'Sequence': {'id': 'A'}}]}}
    mistral = {'model': sp_model, 'pre_tokenizer': {'type': 'Metaspace', 'replacement': '\u2581',
                                                     'prepend_scheme': 'first', 'split': True}}
    texts = [b"it's  world\n\nhello world<|end|>d", 'h\u00e9llo \u2211 \U0001f642 wor'.encode(), b'ab\xff\xfe cd', b'']
    for name, doc in [('byte-level', byte_level), ('llama3', llama3), ('llama2', llama2), ('mistral', mistral)]:
        for i, text in enumerate(texts):
            put('tokenizer', '%s-%d' % (name, i), json.dumps(doc).encode() + b'\0' + text)
    broken = [('unigram', {'model': {'type': 'Unigram', 'vocab': []}}),
              ('bad-merge', {'model': {'type': 'BPE', 'vocab': {'a': 0}, 'merges': ['a b']}}),
              ('bad-regex', dict(byte_level, pre_tokenizer={'type': 'Split', 'pattern': {'Regex': '(['},
                                                            'behavior': 'Isolated'})),
              ('duplicate-id', {'model': {'type': 'BPE', 'vocab': {'a': 0, 'b': 0}, 'merges': []}})]
    for name, doc in broken:
        put('tokenizer', name, json.dumps(doc).encode() + b'\0abc')
    put('tokenizer', 'not-json', b'{"model": \0abc')


def main():
    # named seeds are rewritten; inputs the fuzzers found (named by their
    # SHA-1, 40 hex digits) are kept
    for path in glob.glob(os.path.join(CORPUS, '*', '*')):
        name = os.path.basename(path)
        if not (len(name) == 40 and all(c in '0123456789abcdef' for c in name)):
            os.unlink(path)
    calibration_seeds()
    tokenizer_seeds()
    preset_config_seeds()
    rng = np.random.default_rng(7)
    roundtrip_seeds(np.random.default_rng(11))
    w = rng.standard_normal((4, 8)).astype(np.float32)
    bf16 = (w.view(np.uint32) >> 16).astype(np.uint16)
    valid = safetensors({'a': ('F32', [4, 8], w.tobytes()), 'b': ('BF16', [4, 8], bf16.tobytes()),
                         'c': ('I8', [3], b'\x01\x02\x03'), 'd': ('F8_E4M3', [2, 2], b'\x7e\x00\x38\xfe'),
                         'e': ('I32', [], struct.pack('<i', 5)), 'f': ('U8', [0], b''),
                         'g': ('F16', [2], b'\x00\x3c\x00\xc0'), 'h': ('F64', [1], struct.pack('<d', 1.5))},
                        {'format': 'pt'})
    put('safetensors', 'valid-all-dtypes', valid)
    put('safetensors', 'valid-empty', safetensors({}))
    put('safetensors', 'truncated', valid[:len(valid) - 5])
    put('safetensors', 'header-beyond', struct.pack('<Q', 1 << 40) + b'{}')
    put('safetensors', 'overlap', safetensors({'a': ('U8', [4], b'abcd')}).replace(b'[0, 4]', b'[0, 9]'))
    put('safetensors', 'unknown-dtype', safetensors({'a': ('Q7', [1], b'a')}))
    put('safetensors', 'short', b'\x02\x00')

    for path in sorted(glob.glob(os.path.join(ROOT, 'tests', 'data', 'valid', '*.json')) +
                       glob.glob(os.path.join(ROOT, 'tests', 'data', 'invalid', '*.json'))):
        data = open(path, 'rb').read()
        kind = os.path.basename(os.path.dirname(path))
        put('json', kind + '-' + os.path.basename(path), data)
        put('config', kind + '-' + os.path.basename(path), data)
    put('json', 'deep', b'[' * 70 + b']' * 70)
    put('json', 'numbers', b'[0, -0, 1e308, 1e309, -9223372036854775808, 9223372036854775808, 0.1e-400]')
    put('json', 'regress-double-2e20', b'2E20')      # json-glib wrote it back as "2e+20.0"
    put('json', 'escapes', b'{"a\\u00e9\\ud83d\\ude00": "\\n\\t\\"", "b": [true, false, null]}')

    presets = json.loads(subprocess.run([QUARK, 'presets', '--backend', 'quark', '--json'], env=ENV,
                                        check=True, capture_output=True).stdout)
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, 'model')
        os.makedirs(model)
        big = rng.standard_normal((32, 128)).astype(np.float32) * 0.05
        hb = (big.view(np.uint32) >> 16).astype(np.uint16).tobytes()
        with open(os.path.join(model, 'model.safetensors'), 'wb') as f:
            f.write(safetensors({'model.layers.0.mlp.down_proj.weight': ('BF16', [32, 128], hb),
                                 'model.layers.0.self_attn.q_proj.weight': ('BF16', [32, 128], hb)},
                                {'format': 'pt'}))
        for index, preset in enumerate(PRESETS):
            out = os.path.join(tmp, preset)
            r = subprocess.run([QUARK, 'quantize', model, '-o', out, '--preset', preset], env=ENV,
                               capture_output=True)
            if r.returncode != 0:
                continue        # static activation presets need calibration statistics
            data = open(os.path.join(out, 'model.safetensors'), 'rb').read()
            put('checkpoint', preset, bytes([index]) + data)
            cfg = json.load(open(os.path.join(out, 'config.json')))['quantization_config']
            put('config', 'preset-' + preset + '.json', json.dumps(cfg).encode())
    print('corpus written to', CORPUS, '(%d presets listed by quark presets)' % len(presets))


if __name__ == '__main__':
    main()
