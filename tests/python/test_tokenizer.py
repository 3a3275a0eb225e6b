# Quark.Tokenizer: tokenizer.json read natively.
#
# The expected ids come from two places:
# - the docs-llama model in ../shared (when it is there): its data/*_tokens.npy
#   were made by the `tokenizers` library from data/*.txt, so every id of
#   185 documents (470k ids) is compared;
# - two small tokenizers written here, one byte-level (GPT-2 style) and one
#   SentencePiece style (Llama 2 normalizers, and Mistral's Metaspace), whose
#   expected ids are worked out by hand in the comments below from the BPE
#   rules (lowest merge rank first, leftmost among equal ranks; GPT-2's split
#   pattern; byte fallback).
import json
import os

import gi
import pytest

gi.require_version('Quark', '1.0')
from gi.repository import GLib, Quark  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS_LLAMA = os.path.join(HERE, '..', '..', '..', 'shared', 'models', 'docs-llama')
SEPARATOR = '\n\n<|document|>\n\n'


def byte_chars():
    """GPT-2's published byte -> character table."""
    printable = list(range(ord('!'), ord('~') + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table, n = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


def write_tokenizer(directory, tokenizer, config=None):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, 'tokenizer.json'), 'w', encoding='utf-8') as f:
        json.dump(tokenizer, f, ensure_ascii=False)
    if config is not None:
        with open(os.path.join(directory, 'tokenizer_config.json'), 'w', encoding='utf-8') as f:
            json.dump(config, f)
    return Quark.Tokenizer.new_from_file(directory)


def encode(tok, text, special=False):
    return list(tok.encode(text, -1, special))


# ---- byte-level BPE (GPT-2 style) -----------------------------------------

@pytest.fixture
def byte_level(tmp_path):
    chars = byte_chars()
    vocab = {chars[b]: b for b in range(256)}           # id = byte value
    merges = [['Ġ', 'w'], ['o', 'r'], ['Ġw', 'or'], ['l', 'd'], ["'", 's']]
    for i, (a, b) in enumerate(merges):
        vocab[a + b] = 256 + i                           # Ġw 256, or 257, Ġwor 258, ld 259, 's 260
    tokenizer = {
        'version': '1.0',
        'added_tokens': [{'id': 261, 'content': '<|endoftext|>', 'special': True, 'lstrip': False,
                          'rstrip': False, 'single_word': False, 'normalized': False}],
        'normalizer': None,
        'pre_tokenizer': {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True},
        'post_processor': None, 'decoder': {'type': 'ByteLevel'},
        'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': None,
                  'end_of_word_suffix': None, 'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': False,
                  'vocab': vocab, 'merges': merges},
    }
    return write_tokenizer(str(tmp_path / 'bl'), tokenizer)


def test_byte_level_split_and_merges(byte_level):
    # GPT-2's pattern splits "it's  world" into "it", "'s", " ", " world"
    # (\s+(?!\S) leaves the last space to " world"); bytes are ids: i 105,
    # t 116; "'s" merges (rank 4) to 260; " " is Ġ = byte 0x20 = 32;
    # "Ġworld": Ġ w (rank 0), then o r (rank 1), Ġw or (rank 2), l d (rank 3)
    assert encode(byte_level, "it's  world") == [105, 116, 260, 32, 258, 259]
    assert byte_level.get_model_kind() == 'byte-level-bpe'


def test_byte_level_whitespace_and_utf8(byte_level):
    # "a\n\nb": the first newline is split off alone because the second one
    # is followed by "b"; é is bytes C3 A9, characters Ã and ©, ids 195, 169
    assert encode(byte_level, 'a\n\nb') == [97, 10, 10, 98]
    assert encode(byte_level, 'é') == [0xC3, 0xA9]
    assert encode(byte_level, '') == []


def test_byte_level_added_tokens_and_round_trip(byte_level):
    assert encode(byte_level, 'd<|endoftext|>d') == [100, 261, 100]
    for text in ["it's  world", 'a\n\nb', 'tab\there — ünïcödé 🙂 ∑', ' leading', 'trailing  ']:
        ids = byte_level.encode(text, -1, False)
        assert byte_level.decode(ids, False) == text
    assert byte_level.decode([100, 261, 100], True) == 'dd'


def test_unknown_ids(byte_level):
    with pytest.raises(GLib.Error) as e:
        byte_level.decode([9999], False)
    assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_ARGUMENT)
    assert '9999' in e.value.message


# ---- SentencePiece-style BPE (Llama 2, Mistral) ---------------------------

SP_VOCAB = ['<unk>', '<s>', '</s>'] + ['<0x%02X>' % b for b in range(256)] + \
    ['▁', 'h', 'e', 'l', 'o', 'w', 'r', 'd']   # ▁ 259, h 260, e 261, l 262, o 263, w 264, r 265, d 266
SP_MERGES = [('l', 'l'), ('▁', 'h'), ('ll', 'o'), ('e', 'llo'), ('▁h', 'ello'), ('▁', 'w'), ('o', 'r'),
             ('▁w', 'or')]                       # ll 267, ▁h 268, llo 269, ello 270, ▁hello 271, ▁w 272, or 273, ▁wor 274


def sentencepiece(tmp_path, name, normalizer, pre_tokenizer):
    vocab = {t: i for i, t in enumerate(SP_VOCAB)}
    for a, b in SP_MERGES:
        vocab[a + b] = len(vocab)
    specials = [{'id': i, 'content': t, 'special': True, 'lstrip': False, 'rstrip': False,
                 'single_word': False, 'normalized': False} for i, t in enumerate(SP_VOCAB[:3])]
    tokenizer = {
        'version': '1.0', 'added_tokens': specials, 'normalizer': normalizer, 'pre_tokenizer': pre_tokenizer,
        'post_processor': None, 'decoder': None,
        'model': {'type': 'BPE', 'dropout': None, 'unk_token': '<unk>', 'continuing_subword_prefix': None,
                  'end_of_word_suffix': None, 'fuse_unk': True, 'byte_fallback': True, 'ignore_merges': False,
                  'vocab': vocab, 'merges': [a + ' ' + b for a, b in SP_MERGES]},
    }
    return write_tokenizer(str(tmp_path / name), tokenizer,
                           {'bos_token': '<s>', 'eos_token': '</s>', 'add_bos_token': True, 'add_eos_token': False})


@pytest.fixture
def llama2(tmp_path):
    return sentencepiece(tmp_path, 'llama2', {'type': 'Sequence', 'normalizers': [
        {'type': 'Prepend', 'prepend': '▁'},
        {'type': 'Replace', 'pattern': {'String': ' '}, 'content': '▁'}]}, None)


@pytest.fixture
def mistral(tmp_path):
    return sentencepiece(tmp_path, 'mistral', None,
                         {'type': 'Metaspace', 'replacement': '▁', 'prepend_scheme': 'first', 'split': False})


@pytest.mark.parametrize('flavour', ['llama2', 'mistral'])
def test_sentencepiece_merges(flavour, request):
    tok = request.getfixturevalue(flavour)
    # "hello world" -> "▁hello▁world" -> ▁ h e l l o ▁ w o r l d; merges in
    # rank order: ll, ▁h, llo, ello, ▁hello, ▁w, or, ▁wor -> ▁hello ▁wor l d
    assert encode(tok, 'hello world') == [271, 274, 262, 266]
    assert encode(tok, 'hello world', True) == [1, 271, 274, 262, 266]     # add_bos_token
    # "é" is not in the vocabulary: its bytes C3 A9 become <0xC3> <0xA9>
    assert encode(tok, 'hello é') == [271, 259, 3 + 0xC3, 3 + 0xA9]
    # "lll": two equal-rank pairs, the leftmost merges first
    assert encode(tok, 'lll') == [259, 267, 262]
    assert tok.decode([271, 274, 262, 266], False) == 'hello world'
    assert tok.decode([271, 259, 3 + 0xC3, 3 + 0xA9], False) == 'hello é'
    assert tok.get_model_kind() == 'bpe'
    assert (tok.get_bos_id(), tok.get_eos_id()) == (1, 2)


def test_sentencepiece_prepend_first(llama2, mistral):
    # After a special token the Prepend normalizer (Llama 2) still adds ▁ to
    # the next segment; Metaspace with prepend_scheme "first" (Mistral) does
    # not: h + ello (ll, llo, ello)
    assert encode(llama2, '<s>hello') == [1, 271]
    assert encode(mistral, '<s>hello') == [1, 260, 270]


# ---- errors ---------------------------------------------------------------

def test_missing_and_unsupported(tmp_path):
    with pytest.raises(GLib.Error) as e:
        Quark.Tokenizer.new_from_file(str(tmp_path / 'nowhere'))
    assert e.value.matches(Quark.error_quark(), Quark.Error.NOT_FOUND)
    bad = tmp_path / 'unigram'
    bad.mkdir()
    (bad / 'tokenizer.json').write_text(json.dumps({'model': {'type': 'Unigram', 'vocab': []}}))
    with pytest.raises(GLib.Error) as e:
        Quark.Tokenizer.new_from_file(str(bad))
    assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_FILE)
    assert 'model.type' in e.value.message and 'Unigram' in e.value.message
    (bad / 'tokenizer.json').write_text(json.dumps({'model': {'type': 'BPE', 'vocab': {'a': 0}, 'merges': ['a b']}}))
    with pytest.raises(GLib.Error) as e:
        Quark.Tokenizer.new_from_file(str(bad))
    assert 'model.merges[0]' in e.value.message
    (bad / 'tokenizer.json').write_text(json.dumps({'model': {'type': 'BPE', 'vocab': {'a': 0}, 'merges': []},
                                                    'pre_tokenizer': {'type': 'Whitespace'}}))
    with pytest.raises(GLib.Error) as e:
        Quark.Tokenizer.new_from_file(str(bad))
    assert 'pre_tokenizer' in e.value.message and 'Whitespace' in e.value.message


def test_vocabulary_and_merges_errors_name_the_entry(tmp_path):
    """model.vocab and model.merges are read entry by entry from the text,
    outside the tree of the rest (a tree of a vocabulary of 150 000 tokens
    took seconds): every error still names the entry, and tokenizer.json may
    be larger than the 16 MiB of a config (large vocabularies' are tens of
    MB)."""
    bad = tmp_path / 't'
    bad.mkdir()

    def load(model):
        text = json.dumps({'model': dict({'type': 'BPE'}, **model)})
        (bad / 'tokenizer.json').write_text(text)
        with pytest.raises(GLib.Error) as e:
            Quark.Tokenizer.new_from_file(str(bad))
        return e.value

    e = load({'vocab': {'a': 0, 'b': 'one'}, 'merges': []})
    assert e.matches(Quark.error_quark(), Quark.Error.INVALID_FILE)
    assert 'model.vocab["b"]: expected an integer id' in e.message
    e = load({'vocab': {'a': 0, 'b': 0}, 'merges': []})
    assert 'model.vocab["b"]' in e.message and 'given to both a and b' in e.message
    e = load({'vocab': {'a': 0, 'b': -3}, 'merges': []})
    assert 'model.vocab["b"]' in e.message and 'out of range' in e.message
    e = load({'vocab': {'a': 0, 'b': 1, 'ab': 2}, 'merges': ['a b', ['a', 'c']]})
    assert 'model.merges[1]' in e.message and 'not in the vocabulary' in e.message
    e = load({'vocab': {'a': 0, 'b': 1, 'ab': 2}, 'merges': ['a b', 'ab']})
    assert 'model.merges[1]' in e.message and 'LEFT RIGHT' in e.message
    e = load({'vocab': [], 'merges': []})
    assert 'model.vocab' in e.message and 'expected an object' in e.message
    e = load({'vocab': {'a': 0}, 'merges': {}})
    assert 'model.merges' in e.message and 'expected an array' in e.message
    # the text is checked as the rest: a name twice, a syntax error inside
    (bad / 'tokenizer.json').write_text('{"model": {"type": "BPE", "vocab": {"a": 0, "a": 1}, "merges": []}}')
    with pytest.raises(GLib.Error) as e:
        Quark.Tokenizer.new_from_file(str(bad))
    assert 'model.vocab.a' in e.value.message and 'duplicate key' in e.value.message
    (bad / 'tokenizer.json').write_text('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a a",]}}')
    with pytest.raises(GLib.Error) as e:
        Quark.Tokenizer.new_from_file(str(bad))
    assert 'tokenizer.json:1:' in e.value.message and 'trailing comma' in e.value.message
    # larger than a config may be; what loads encodes
    vocab = {'a': 0, 'b': 1, 'ab': 2}
    (bad / 'tokenizer.json').write_text(json.dumps({'model': {'type': 'BPE', 'vocab': vocab, 'merges': ['a b']},
                                                    'padding_text': 'x' * (17 << 20)}))
    tok = Quark.Tokenizer.new_from_file(str(bad))
    assert list(tok.encode('abab', -1, False)) == [2, 2]


# ---- the real tokenizer of docs-llama, against the tokenizers library -----

@pytest.mark.skipif(not os.path.isdir(DOCS_LLAMA), reason='../shared/models/docs-llama is not here')
@pytest.mark.parametrize('name', ['dev', 'calib'])
def test_docs_llama_ids_match_tokenizers_library(name):
    np = pytest.importorskip('numpy')
    tok = Quark.Tokenizer.new_from_file(DOCS_LLAMA)
    with open(os.path.join(DOCS_LLAMA, 'data', name + '.txt'), encoding='utf-8') as f:
        documents = f.read().split(SEPARATOR)
    ids = []
    for doc in documents:
        ids += [tok.get_bos_id()] + list(tok.encode(doc, -1, False)) + [tok.get_eos_id()]
    expected = np.load(os.path.join(DOCS_LLAMA, 'data', name + '_tokens.npy'))
    assert len(ids) == len(expected)
    assert np.array_equal(np.array(ids, dtype=np.int64), expected.astype(np.int64))
    # and back
    first = tok.encode(documents[0], -1, False)
    assert tok.decode(first, False) == documents[0]


def test_from_bytes(tmp_path, llama2):
    # the same tokenizer from memory, its tokenizer_config.json too
    directory = tmp_path / 'llama2'
    tok = Quark.Tokenizer.new_from_bytes(GLib.Bytes.new((directory / 'tokenizer.json').read_bytes()),
                                         GLib.Bytes.new((directory / 'tokenizer_config.json').read_bytes()), 'mem')
    assert encode(tok, 'hello world', True) == encode(llama2, 'hello world', True) == [1, 271, 274, 262, 266]
    with pytest.raises(GLib.Error) as e:
        Quark.Tokenizer.new_from_bytes(GLib.Bytes.new(b'{"model": {"type": "BPE", "vocab": {}, "merges": [1]}}'),
                                       None, 'mem')
    assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_FILE) and 'mem: model.merges[0]' in e.value.message
    with pytest.raises(GLib.Error) as e:
        Quark.Tokenizer.new_from_bytes(GLib.Bytes.new(b'{"model": '), None, 'mem')
    assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_FILE)
