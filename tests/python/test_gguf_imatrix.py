# Importance matrices (llama.cpp's imatrix) for GGUF: `quark quantize
# --export-format gguf --imatrix FILE` writes the bytes llama-quantize
# --imatrix writes (committed digests from tests/data/gguf/make-reference.py,
# and live against the llama.cpp oracle at $QUARK_LLAMA_CPP_BIN), from
# llama.cpp's GGUF imatrix files and its older .dat files alike; `quark
# imatrix` computes the statistic (per column Σx² and the token count of
# every block weight's input) by running the model natively, checked
# against a PyTorch forward of the same model.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import hashlib
import json
import os
import subprocess

import pytest

np = pytest.importorskip('numpy')

from test_gguf import (TINY, REFERENCE, DOCS_LLAMA, read_gguf, quantize, llama_bin,  # noqa: E402
                       QUARK)
from gguf_fixture import (write_kquant_model, imatrix_entries, gguf_imatrix_bytes,  # noqa: E402
                          legacy_imatrix_bytes)

# the types llama-quantize quantizes with an importance matrix (Q8_0 and
# MXFP4 ignore it; ggml-quants.c quantize_q8_0, quantize_mxfp4), and the
# model each is checked on (as tests/data/gguf/make-reference.py)
SCHEMES = {'Q8_0': 'tiny', 'Q4_0': 'tiny', 'Q4_1': 'tiny', 'Q5_0': 'tiny', 'Q5_1': 'tiny', 'Q2_K': 'kquant',
           'Q3_K_S': 'kquant', 'Q3_K_M': 'kquant', 'Q3_K_L': 'kquant', 'Q4_K_S': 'kquant', 'Q4_K_M': 'kquant',
           'Q5_K_S': 'kquant', 'Q5_K_M': 'kquant', 'Q6_K': 'kquant', 'IQ4_NL': 'tiny', 'MXFP4_MOE': 'tiny'}


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """Each model, its F32 GGUF, and the importance matrix of its 2-D
    weights as a GGUF and as a .dat file."""
    d = tmp_path_factory.mktemp('imatrix')
    out = {}
    for m in ('tiny', 'kquant'):
        src = TINY if m == 'tiny' else str(d / 'kquant')
        if m == 'kquant':
            write_kquant_model(src)
        f32 = d / (m + '-f32.gguf')
        r = quantize(src, f32, '--export-format', 'gguf', '--type', 'F32')
        assert r.returncode == 0, r.stderr
        _, tensors = read_gguf(f32)
        entries = imatrix_entries({n: t[1] for n, t in tensors.items() if len(t[1]) == 2})
        gg, dat = d / (m + '-imatrix.gguf'), d / (m + '-imatrix.dat')
        gg.write_bytes(gguf_imatrix_bytes(entries))
        dat.write_bytes(legacy_imatrix_bytes(entries))
        out[m] = {'src': src, 'f32': f32, 'gguf': gg, 'dat': dat, 'entries': entries}
    return out


def tensor_digests(path):
    _, tensors = read_gguf(path)
    return tensors


@pytest.mark.parametrize('scheme', list(SCHEMES))
def test_blocks_equal_llama_quantize_imatrix(tmp_path, models, scheme):
    """Every tensor's type and bytes as llama-quantize --imatrix's."""
    m = models[SCHEMES[scheme]]
    out = tmp_path / 'm.gguf'
    r = quantize(m['src'], out, '--export-format', 'gguf', '--type', scheme, '--imatrix', str(m['gguf']))
    assert r.returncode == 0, r.stderr
    kv, tensors = read_gguf(out)
    ref = json.load(open(REFERENCE))['types'][scheme + ':imatrix']
    if 'digest' in ref:
        assert [[n, t[0]] for n, t in tensors.items()] == ref['order']
        assert hashlib.sha256(b''.join(t[2] for t in tensors.values())).hexdigest() == ref['digest']
    else:
        assert set(ref) == set(tensors)
        for name, (tname, digest) in ref.items():
            assert tensors[name][0] == tname, name
            assert hashlib.sha256(tensors[name][2]).hexdigest() == digest, name
    # llama-quantize's key-values (quantize.cpp's overrides): the file, the
    # first dataset, the entries, the chunks
    assert kv['quantize.imatrix.file'] == str(m['gguf'])
    assert kv['quantize.imatrix.dataset'] == 'calibration.txt'
    assert kv['quantize.imatrix.entries_count'] == len(m['entries'])
    assert kv['quantize.imatrix.chunks_count'] == 4
    # the importance changes the blocks, except where llama.cpp ignores it
    plain = tmp_path / 'plain.gguf'
    assert quantize(m['src'], plain, '--export-format', 'gguf', '--type', scheme).returncode == 0
    _, without = read_gguf(plain)
    changed = tensors['blk.0.attn_q.weight'][2] != without['blk.0.attn_q.weight'][2]
    assert changed == (scheme not in ('Q8_0', 'MXFP4_MOE'))
    # token_embd has no entry: quantized without, as llama-quantize
    assert tensors['token_embd.weight'] == without['token_embd.weight']


@pytest.mark.parametrize('scheme', ['Q4_0', 'Q5_0', 'IQ4_NL'])
def test_imatrix_changes_llama_quantize_choices(tmp_path, models, scheme):
    """llama_tensor_get_type with an importance matrix: Q4_0 and Q5_0 give
    the first eighth of ffn_down Q4_1 and Q5_1; IQ4_NL no longer gives it
    Q5_K (src/llama-quant.cpp)."""
    m = models['kquant']
    a, b = tmp_path / 'a.gguf', tmp_path / 'b.gguf'
    assert quantize(m['src'], a, '--export-format', 'gguf', '--type', scheme).returncode == 0
    assert quantize(m['src'], b, '--export-format', 'gguf', '--type', scheme, '--imatrix',
                    str(m['gguf'])).returncode == 0
    _, plain = read_gguf(a)
    _, weighted = read_gguf(b)
    first = plain['blk.0.ffn_down.weight'][0], weighted['blk.0.ffn_down.weight'][0]
    assert first == {'Q4_0': ('Q4_0', 'Q4_1'), 'Q5_0': ('Q5_0', 'Q5_1'), 'IQ4_NL': ('Q5_K', 'IQ4_NL')}[scheme]
    # twelve layers: the first eighth is blk.0 only
    assert plain['blk.1.ffn_down.weight'][0] == weighted['blk.1.ffn_down.weight'][0]


@pytest.mark.parametrize('scheme', ['Q4_K_M', 'Q4_0', 'IQ4_NL'])
def test_legacy_dat_file_equals_gguf_file(tmp_path, models, scheme):
    """The older .dat format reads to the same importances."""
    m = models['kquant' if scheme == 'Q4_K_M' else 'tiny']
    a, b = tmp_path / 'a.gguf', tmp_path / 'b.gguf'
    assert quantize(m['src'], a, '--export-format', 'gguf', '--type', scheme, '--imatrix',
                    str(m['gguf'])).returncode == 0
    r = quantize(m['src'], b, '--export-format', 'gguf', '--type', scheme, '--imatrix', str(m['dat']))
    assert r.returncode == 0, r.stderr
    ta, tb = read_gguf(a)[1], read_gguf(b)[1]
    assert all(ta[n] == tb[n] for n in ta)
    kv = read_gguf(b)[0]
    assert kv['quantize.imatrix.chunks_count'] == 4 and kv['quantize.imatrix.dataset'] == 'calibration.txt'


@pytest.mark.parametrize('scheme', ['Q4_K_M', 'Q4_0', 'Q2_K', 'IQ4_NL', 'Q6_K'])
def test_live_llama_quantize_imatrix(tmp_path, models, scheme):
    """Against the oracle itself: llama-quantize --imatrix on libquark's F32
    conversion gives byte for byte the file libquark writes directly, for
    both imatrix formats."""
    quantizer = llama_bin('llama-quantize')
    m = models['tiny' if scheme in ('Q4_0', 'IQ4_NL') else 'kquant']
    for fmt in ('gguf', 'dat'):
        ours, theirs = tmp_path / ('ours-' + fmt), tmp_path / ('theirs-' + fmt)
        assert quantize(m['src'], ours, '--export-format', 'gguf', '--type', scheme, '--imatrix',
                        str(m[fmt])).returncode == 0
        subprocess.run([quantizer, '--imatrix', str(m[fmt]), str(m['f32']), str(theirs), scheme], check=True,
                       capture_output=True)
        assert ours.read_bytes() == theirs.read_bytes(), fmt      # the whole file, key-values included


def test_bad_importance_matrices(tmp_path, models):
    """Errors name the file or the tensor; nothing is written."""
    m = models['tiny']
    out = tmp_path / 'out.gguf'
    cases = {}
    wrong = dict(m['entries'])
    wrong['blk.0.attn_q.weight'] = wrong['blk.0.attn_q.weight'][:-32]
    cases['size'] = (gguf_imatrix_bytes(wrong), 'blk.0.attn_q.weight')
    cases['not-imatrix'] = (m['f32'].read_bytes(), 'not an importance matrix')
    cases['truncated-dat'] = (legacy_imatrix_bytes(m['entries'])[:100], 'truncated')
    cases['empty'] = (b'', 'not an importance matrix')
    for name, (blob, message) in cases.items():
        f = tmp_path / (name + '.imatrix')
        f.write_bytes(blob)
        r = quantize(m['src'], out, '--export-format', 'gguf', '--type', 'Q4_0', '--imatrix', str(f))
        assert r.returncode == 1, name
        assert message in r.stderr and (name == 'size' or str(f) in r.stderr), (name, r.stderr)
        assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []
    r = quantize(m['src'], out, '--export-format', 'gguf', '--type', 'Q4_0', '--imatrix', str(tmp_path / 'none'))
    assert r.returncode == 1 and 'none' in r.stderr
    # --imatrix is GGUF's; and not with --calibration-text
    r = quantize(m['src'], tmp_path / 'q', '--preset', 'int8', '--imatrix', str(m['gguf']))
    assert r.returncode == 2 and '--export-format gguf only' in r.stderr
    r = quantize(m['src'], out, '--export-format', 'gguf', '--type', 'Q4_0', '--imatrix', str(m['gguf']),
                 '--calibration-text', str(m['gguf']))
    assert r.returncode == 2 and 'choose one' in r.stderr


def run_quark(*args):
    return subprocess.run([QUARK, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)


@pytest.mark.skipif(not os.path.isdir(DOCS_LLAMA), reason='../shared/models/docs-llama is not here')
def test_quark_imatrix_statistic(tmp_path):
    """`quark imatrix`: per block weight, Σx² of its input per column and
    the token count, equal to a PyTorch forward's to 1e-4 relative; the
    file reads back, and quantizing with it equals quantizing with
    --calibration-text on the same text."""
    torch = pytest.importorskip('torch')
    import gi
    gi.require_version('Quark', '1.0')
    from gi.repository import Quark
    from llama_torch import LlamaTorch, load     # the test's own PyTorch Llama
    text = tmp_path / 'calib.txt'
    text.write_text(open(os.path.join(DOCS_LLAMA, 'data', 'calib.txt'), encoding='utf-8').read()[:6000],
                    encoding='utf-8')
    out = tmp_path / 'im.gguf'
    r = run_quark('imatrix', DOCS_LLAMA, '--text', str(text), '-o', str(out), '--tokens', '1024', '--json')
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    kv, tensors = read_gguf(out)
    assert kv['general.type'] == 'imatrix' and kv['imatrix.datasets'] == ['calib.txt']
    assert kv['imatrix.chunk_size'] == 512 and kv['imatrix.chunk_count'] == 2 == summary['chunks']
    names = sorted(n[:-len('.in_sum2')] for n in tensors if n.endswith('.in_sum2'))
    config = json.load(open(os.path.join(DOCS_LLAMA, 'config.json')))
    assert len(names) == summary['entries'] == 7 * config['num_hidden_layers']
    assert all(n.startswith('blk.') for n in names)        # no output.weight, as llama-imatrix by default
    # the reference: the same tokens (BOS + the text, the first 1024) in
    # windows of 512 through PyTorch, Σx² of each linear layer's input
    tok = Quark.Tokenizer.new_from_file(DOCS_LLAMA)
    ids = ([tok.get_bos_id()] + list(tok.encode(text.read_text(encoding='utf-8'), -1, False)))[:1024]
    assert len(ids) == 1024
    sums = {}

    def hook(name, x):
        if name != 'lm_head':
            sums[name] = sums.get(name, 0) + (x.double() ** 2).sum(0)
    model = LlamaTorch(*load(DOCS_LLAMA), hooks=hook)
    model.logits(ids[:512])
    model.logits(ids[512:])
    gguf_of = {'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v',
               'self_attn.o_proj': 'attn_output', 'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up',
               'mlp.down_proj': 'ffn_down'}
    assert len(sums) == len(names)
    for layer, expect in sums.items():
        parts = layer.split('.')
        name = 'blk.%s.%s.weight' % (parts[2], gguf_of['.'.join(parts[3:])])
        got = np.frombuffer(tensors[name + '.in_sum2'][2], '<f4')
        count = np.frombuffer(tensors[name + '.counts'][2], '<f4')
        assert count[0] == 1024
        expect = expect.numpy()
        assert np.abs(got - expect).max() <= 1e-4 * np.abs(expect).max(), name
    # --calibration-text computes the same importance in memory
    a, b = tmp_path / 'a.gguf', tmp_path / 'b.gguf'
    assert quantize(DOCS_LLAMA, a, '--export-format', 'gguf', '--type', 'Q4_K_M', '--imatrix', str(out)).returncode == 0
    r = quantize(DOCS_LLAMA, b, '--export-format', 'gguf', '--type', 'Q4_K_M', '--calibration-text', str(text),
                 '--calibration-tokens', '1024')
    assert r.returncode == 0, r.stderr
    ta, tb = read_gguf(a), read_gguf(b)
    assert all(ta[1][n] == tb[1][n] for n in ta[1])
    assert tb[0]['quantize.imatrix.dataset'] == 'calib.txt' and 'quantize.imatrix.file' not in tb[0]
    # an existing output is kept without --force
    r = run_quark('imatrix', DOCS_LLAMA, '--text', str(text), '-o', str(out), '--tokens', '64')
    assert r.returncode == 1 and 'exists' in r.stderr


def test_python_api(tmp_path, models):
    """The library API: load, give to the format, write; the bytes of the CLI."""
    import gi
    gi.require_version('Quark', '1.0')
    from gi.repository import Quark
    m = models['tiny']
    imatrix = Quark.importance_matrix_load(str(m['dat']))
    md = json.loads(Quark.json_to_string(imatrix.get_metadata(), False))
    assert imatrix.get_n_tensors() == len(m['entries'])
    t = imatrix.get_tensor('blk.0.attn_q.weight')
    got = np.frombuffer(t.get_data().get_data(), np.float32)
    assert np.array_equal(got, m['entries']['blk.0.attn_q.weight'])
    assert md == {'file': str(m['dat']), 'format': 'dat', 'datasets': ['calibration.txt'], 'chunk_count': 4}
    fmt = Quark.Registry.get_default().new_format('gguf')
    fmt.set_importance(imatrix)
    assert fmt.get_importance() == imatrix
    model = Quark.Model.load(m['src'], None)
    out = tmp_path / 'api.gguf'
    assert fmt.write_model(model, 'IQ4_NL', str(out), False, None)
    cli = tmp_path / 'cli.gguf'
    assert quantize(m['src'], cli, '--export-format', 'gguf', '--type', 'IQ4_NL', '--imatrix',
                    str(m['dat'])).returncode == 0
    assert read_gguf(out)[1] == read_gguf(cli)[1]


def test_save_from_a_session(tmp_path, models):
    """quark_importance_matrix_save() from a session fed by hand: Σx² and the
    token count of each block weight's input under its GGUF name, only for
    layers the session saw; without a dataset name one empty name is
    recorded (llama-quantize reads the first unchecked); the file loads back
    to Σx² / tokens."""
    import gi
    gi.require_version('Quark', '1.0')
    from gi.repository import GLib, Quark
    m = models['tiny']
    model = Quark.Model.load(m['src'], None)
    session = Quark.Calibration.new()
    session.set_second_moments_enabled(True)
    session.set_gram_matrix_enabled(False)
    width = model.get_tensor('model.layers.0.self_attn.q_proj.weight').get_shape()[1]
    x = np.random.default_rng(3).standard_normal((24, width)).astype(np.float32)
    session.observe_floats('model.layers.0.self_attn.q_proj', Quark.Role.INPUT, x.ravel().tolist(), [24, width])
    out = tmp_path / 'im.gguf'
    assert Quark.importance_matrix_save(session, model, str(out), None, 8, False)
    kv, tensors = read_gguf(out)
    assert kv['imatrix.datasets'] == [''] and kv['imatrix.chunk_count'] == 3 and kv['imatrix.chunk_size'] == 8
    assert sorted(tensors) == ['blk.0.attn_q.weight.counts', 'blk.0.attn_q.weight.in_sum2']
    sums = np.frombuffer(tensors['blk.0.attn_q.weight.in_sum2'][2], '<f4')
    assert np.allclose(sums, (x.astype(np.float64) ** 2).sum(0), rtol=1e-6)
    back = Quark.importance_matrix_load(str(out))
    got = np.frombuffer(back.get_tensor('blk.0.attn_q.weight').get_data().get_data(), np.float32)
    assert np.array_equal(got, sums / np.float32(24))
    # an existing file is kept without overwrite; a session without moments is an error
    with pytest.raises(GLib.Error) as e:
        Quark.importance_matrix_save(session, model, str(out), None, 8, False)
    assert e.value.matches(Quark.error_quark(), Quark.Error.EXISTS)
    with pytest.raises(GLib.Error) as e:
        Quark.importance_matrix_save(Quark.Calibration.new(), model, str(tmp_path / 'none.gguf'), 'x', 8, False)
    assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_ARGUMENT)
    assert not (tmp_path / 'none.gguf').exists()
