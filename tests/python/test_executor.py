# Quark.Executor against an independent torch forward pass (llama_torch.py)
# on small random models of each supported shape (llama, tied embeddings and
# llama3 RoPE scaling, qwen2 biases, mistral's sliding window; F32, F16 and
# BF16 weights), and against transformers' logits for docs-llama in
# ../shared when it is there. Also `quark eval` and the calibration feed.
import json
import math
import os
import subprocess

import gi
import numpy as np
import pytest

gi.require_version('Quark', '1.0')
from gi.repository import GLib, Quark  # noqa: E402

torch = pytest.importorskip('torch')
from llama_torch import LlamaTorch, load  # noqa: E402
from safetensors_writer import write_safetensors  # noqa: E402
from tiny_llama import VARIANTS, byte_tokenizer, make_model  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS_LLAMA = os.path.join(HERE, '..', '..', '..', 'shared', 'models', 'docs-llama')
QUARK = os.environ.get('QUARK_TOOL', 'quark')

def logits_of(executor, ids):
    t = executor.forward(ids, None)
    return np.frombuffer(t.get_data().get_data(), dtype=np.float32).reshape(len(ids), -1)


def ids_for(n, vocab=40, seed=1):
    return [int(i) for i in np.random.default_rng(seed).integers(0, vocab, n)]


@pytest.mark.parametrize('dtype', ['F32', 'F16', 'BF16'])
@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_logits_match_torch(tmp_path, variant, dtype):
    d = make_model(str(tmp_path / 'm'), variant, dtype)
    executor = Quark.Executor.new_from_path(d)
    config, weights = load(d)
    ids = ids_for(24)
    got = logits_of(executor, ids)
    want = LlamaTorch(config, weights).logits(ids).numpy()
    assert got.shape == (24, 40)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert executor.get_vocab_size() == 40 and executor.get_max_context() == 64


def test_sliding_window_matters(tmp_path):
    # the same weights as llama with a window of 5: different logits past
    # position 5, the same before
    a = logits_of(Quark.Executor.new_from_path(make_model(str(tmp_path / 'a'), 'llama')), ids_for(12))
    b = logits_of(Quark.Executor.new_from_path(make_model(str(tmp_path / 'b'), 'mistral')), ids_for(12))
    assert np.abs(a[:5] - b[:5]).max() < 1e-5
    assert np.abs(a[6:] - b[6:]).max() > 1e-3


@pytest.mark.parametrize('ctx,stride', [(16, 16), (16, 8), (16, 5), (64, 0)])
def test_perplexity_matches_torch(tmp_path, ctx, stride):
    d = make_model(str(tmp_path / 'm'), 'llama', 'BF16', scale=3.0)
    executor = Quark.Executor.new_from_path(d)
    ids = ids_for(61)
    ok, ppl, ref_ppl, kl, n = executor.evaluate(None, ids, ctx, stride, None)
    want, want_n = LlamaTorch(*load(d)).perplexity(ids, ctx, stride or ctx)
    assert ok and n == want_n
    assert abs(ppl / want - 1) < 1e-5
    assert ref_ppl == 0 and kl == 0
    if stride in (0, ctx):
        # windows that do not overlap score ctx - 1 predictions each
        assert n == sum(min(ctx, 61 - s) - 1 for s in range(0, 61, ctx))


def test_compare_kl(tmp_path):
    a = Quark.Executor.new_from_path(make_model(str(tmp_path / 'a'), 'llama', seed=0))
    b_dir = make_model(str(tmp_path / 'b'), 'llama', seed=0)
    # perturb one weight of b
    config, weights = load(b_dir)
    w = {k: ('F32', v.numpy()) for k, v in weights.items()}
    w['model.layers.1.mlp.down_proj.weight'] = ('F32', w['model.layers.1.mlp.down_proj.weight'][1] * 1.5)
    write_safetensors(os.path.join(b_dir, 'model.safetensors'), w)
    b = Quark.Executor.new_from_path(b_dir)
    ids = ids_for(40)
    ok, ppl, ref_ppl, kl, n = a.evaluate(a, ids, 20, 20, None)
    assert abs(ppl - ref_ppl) < 1e-9 and abs(kl) < 1e-9
    ok, ppl, ref_ppl, kl, n = b.evaluate(a, ids, 20, 20, None)
    # KL(a || b) computed independently from torch's log-softmax
    ta, tb = LlamaTorch(*load(str(tmp_path / 'a'))), LlamaTorch(*load(b_dir))
    want = 0.0
    for s in (0, 20):
        la = torch.log_softmax(ta.logits(ids[s:s + 20]).double(), -1)[:-1]
        lb = torch.log_softmax(tb.logits(ids[s:s + 20]).double(), -1)[:-1]
        want += (la.exp() * (la - lb)).sum().item()
    assert n == 38
    assert kl > 0 and abs(kl / (want / n) - 1) < 1e-4


def test_calibration_sees_linear_inputs(tmp_path):
    d = make_model(str(tmp_path / 'm'), 'qwen2')
    executor = Quark.Executor.new_from_path(d)
    calibration = Quark.Calibration.new()
    ids = ids_for(30)
    progress = []
    executor.connect('progress', lambda e, done, total: progress.append((done, total)))
    assert executor.calibrate(calibration, ids, 16, None)
    assert progress == [(16, 30), (30, 30)]
    seen = {}

    def hook(name, x):
        lo, hi = seen.get(name, (math.inf, -math.inf))
        seen[name] = (min(lo, x.min().item()), max(hi, x.max().item()))
    model = LlamaTorch(*load(d), hooks=hook)
    model.logits(ids[:16])
    model.logits(ids[16:])
    layers = calibration.list_layers(Quark.Role.INPUT)
    assert sorted(layers) == sorted(seen) and len(layers) == 2 * 7 + 1     # every linear layer
    for name, (lo, hi) in seen.items():
        ok, got_lo, got_hi = calibration.get_min_max(name, Quark.Role.INPUT)
        assert ok and abs(got_lo - lo) <= 1e-5 * max(1, abs(lo)) and abs(got_hi - hi) <= 1e-5 * max(1, abs(hi))
        assert calibration.get_n_batches(name, Quark.Role.INPUT) == 2


def test_errors(tmp_path):
    d = make_model(str(tmp_path / 'm'))
    executor = Quark.Executor.new_from_path(d)
    with pytest.raises(GLib.Error) as e:
        executor.forward([0, 40], None)
    assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_ARGUMENT) and '40' in e.value.message
    with pytest.raises(GLib.Error) as e:
        executor.forward(list(range(40)) * 2, None)
    assert 'max_position_embeddings' in e.value.message
    with pytest.raises(GLib.Error):
        executor.evaluate(None, [1], 16, 16, None)
    cancellable = Quark.__dict__.get('Cancellable') or __import__('gi.repository.Gio', fromlist=['Gio']).Cancellable()
    cancellable.cancel()
    with pytest.raises(GLib.Error) as e:
        executor.forward([1, 2, 3], cancellable)
    assert e.value.matches(GLib.quark_from_string('g-io-error-quark'), 19)   # G_IO_ERROR_CANCELLED

    with open(os.path.join(d, 'config.json')) as f:
        config = json.load(f)
    for change, message, code in [({'model_type': 'gpt2'}, 'gpt2', Quark.Error.UNSUPPORTED_SCHEME),
                                  ({'intermediate_size': 50}, 'mlp.gate_proj.weight', Quark.Error.INVALID_FILE),
                                  ({'num_hidden_layers': 3}, 'model.layers.2.', Quark.Error.INVALID_FILE),
                                  ({'rope_scaling': {'rope_type': 'yarn', 'factor': 4.0}}, 'yarn',
                                   Quark.Error.UNSUPPORTED_SCHEME),
                                  ({'hidden_size': None}, 'hidden_size', Quark.Error.INVALID_FILE)]:
        with open(os.path.join(d, 'config.json'), 'w') as f:
            json.dump({k: v for k, v in dict(config, **change).items() if v is not None}, f)
        with pytest.raises(GLib.Error) as e:
            Quark.Executor.new_from_path(d)
        assert e.value.matches(Quark.error_quark(), code), e.value.message
        assert message in e.value.message and d in e.value.message


# ---- quark eval -------------------------------------------------------------

def run(*args, check=True):
    p = subprocess.run([QUARK] + [str(a) for a in args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def calibration_model(tmp_path, repeats=12):
    """The algorithm tests' model: a tiny llama in float32 with a byte
    tokenizer, and a calibration text of @repeats sentences."""
    d = make_model(str(tmp_path / 'm'), 'llama', 'F32', scale=2.0)
    byte_tokenizer(d)
    text = tmp_path / 'calib.txt'
    text.write_text('a bad cafe faced a big dog. ' * repeats)
    return d, text


def quantize_config(tmp_path, model, name, config, *extra):
    """quark quantize MODEL -o TMP/NAME on one thread, with @config (a
    dict) written to TMP/NAME.json; the finished process"""
    path = tmp_path / (name + '.json')
    path.write_text(json.dumps(config))
    return run('quantize', model, '-o', tmp_path / name, '--config', path, '-j', 1, *extra, check=False)


def test_eval_cli(tmp_path):
    d = make_model(str(tmp_path / 'm'), 'llama', 'BF16', scale=2.0)
    byte_tokenizer(d)
    text = tmp_path / 'text.txt'
    text.write_text('the quick brown fox.\nA cab.\n\n==\n\nfaded bed, bad egg.\n' * 3)
    p = run('eval', d, '--text', text, '--ctx', 16, '--json')
    result = json.loads(p.stdout)
    tok = Quark.Tokenizer.new_from_file(d)
    ids = [0] + list(tok.encode(text.read_text(), -1, False))
    want, n = LlamaTorch(*load(d)).perplexity(ids, 16)
    assert result['tokens'] == len(ids) and result['predictions'] == n
    assert abs(result['perplexity'] / want - 1) < 1e-5
    # documents: BOS + text + EOS each
    p = run('eval', d, '--text', text, '--ctx', 16, '--document-separator', '\n\n==\n\n', '--json')
    docs = text.read_text().split('\n\n==\n\n')
    assert json.loads(p.stdout)['tokens'] == sum(len(tok.encode(x, -1, False)) + 2 for x in docs)
    # plain output
    p = run('eval', d, '--text', text, '--ctx', 16, '--stride', 8)
    assert p.stdout.startswith('perplexity ') and 'stride 8' in p.stdout

    # against a quantized copy: the tokenizer travels with the checkpoint
    q = tmp_path / 'q'
    run('quantize', d, '-o', q, '--preset', 'int8_per_channel_wo')
    p = run('eval', '--compare', d, q, '--text', text, '--ctx', 16, '--json')
    r = json.loads(p.stdout)
    assert abs(r['reference_perplexity'] / want - 1) < 1e-5
    assert r['perplexity'] != r['reference_perplexity'] and 0 < r['kl_divergence'] < 0.05
    assert abs(r['perplexity_change'] - (r['perplexity'] / r['reference_perplexity'] - 1)) < 1e-12


def test_eval_cli_errors(tmp_path):
    d = make_model(str(tmp_path / 'm'))
    byte_tokenizer(d)
    text = tmp_path / 't.txt'
    text.write_text('abc abc abc')
    assert run('eval', d, check=False).returncode == 2                       # no --text
    assert run('eval', d, '--text', text, '--ctx', 1, check=False).returncode == 2
    assert run('eval', d, '--text', text, '--ctx', 8, '--stride', 9, check=False).returncode == 2
    p = run('eval', d, '--text', text, '--ctx', 65, check=False)
    assert p.returncode == 1 and 'context' in p.stderr
    p = run('eval', d, '--text', tmp_path / 'missing.txt', check=False)
    assert p.returncode == 1 and 'missing.txt' in p.stderr
    bad = tmp_path / 'bad.txt'
    bad.write_bytes(b'abc \xff\xfe')
    p = run('eval', d, '--text', bad, check=False)
    assert p.returncode == 1 and 'UTF-8' in p.stderr and 'bad.txt' in p.stderr
    os.remove(os.path.join(d, 'tokenizer.json'))
    p = run('eval', d, '--text', text, check=False)
    assert p.returncode == 1 and 'tokenizer.json' in p.stderr


# ---- docs-llama -------------------------------------------------------------

@pytest.mark.skipif(not os.path.isdir(DOCS_LLAMA), reason='../shared/models/docs-llama is not here')
def test_docs_llama_reference_logits_and_perplexity():
    executor = Quark.Executor.new_from_path(DOCS_LLAMA)
    ref = np.load(os.path.join(DOCS_LLAMA, 'data', 'reference_logits.npz'))
    ids = [int(i) for i in ref['input_ids'][0]]
    got = logits_of(executor, ids)
    want = ref['logits'][0]
    # transformers' float32 logits: to 1e-4 of their scale (2e-5 absolute
    # is what a float32 implementation reaches)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert np.abs(got - want).max() < 5e-5
    # perplexity of 12 windows of 512 dev tokens, against the torch forward
    dev = [int(i) for i in np.load(os.path.join(DOCS_LLAMA, 'data', 'dev_tokens.npy'))[:12 * 512]]
    ok, ppl, _, _, n = executor.evaluate(None, dev, 512, 512, None)
    want_ppl, want_n = LlamaTorch(*load(DOCS_LLAMA)).perplexity(dev, 512)
    assert n == want_n == 12 * 511
    assert abs(ppl / want_ppl - 1) < 1e-5


def test_quantize_with_calibration_text(tmp_path):
    # W8A8 int8 (static per-tensor inputs): the native run on the text
    # (--calibration-text) and a torch forward whose hooks feed a session
    # saved for --calibration give the same input scales, for every linear
    # layer (24 tokens of the text, windows of 512)
    d = make_model(str(tmp_path / 'm'), 'llama', 'F32', scale=2.0)
    byte_tokenizer(d)
    text = tmp_path / 'calib.txt'
    text.write_text('a bad cafe faced a big dog.\n' * 4)
    native, hooked = tmp_path / 'native', tmp_path / 'hooked'
    run('quantize', d, '-o', native, '--preset', 'int8', '--calibration-text', text, '--calibration-tokens', 24, '-j', 1)
    tok = Quark.Tokenizer.new_from_file(d)
    ids = ([0] + list(tok.encode(text.read_text(), -1, False)))[:24]
    session = Quark.Calibration.new()

    def observe(name, x):
        a = np.ascontiguousarray(x.numpy(), dtype=np.float32)
        session.observe_floats(name, Quark.Role.INPUT, a.ravel().tolist(), list(a.shape))
    LlamaTorch(*load(d), hooks=observe).logits(ids)
    session.save(str(tmp_path / 'stats.json'))
    run('quantize', d, '-o', hooked, '--preset', 'int8', '--calibration', tmp_path / 'stats.json')
    a, b = Quark.Model.load(str(native), None), Quark.Model.load(str(hooked), None)
    scales = [n for n in a.get_tensor_names() if n.endswith('.input_scale')]
    assert len(scales) == 14
    for name in scales:
        x = np.frombuffer(a.get_tensor(name).get_data().get_data(), dtype=np.float32)
        y = np.frombuffer(b.get_tensor(name).get_data().get_data(), dtype=np.float32)
        assert np.allclose(x, y, rtol=1e-5, atol=0), name
    # and it runs: the quantized checkpoint evaluates (activations in float)
    p = run('eval', '--compare', d, native, '--text', text, '--ctx', 16, '--json')
    assert json.loads(p.stdout)['kl_divergence'] > 0


def test_calibration_text_usage(tmp_path):
    d = make_model(str(tmp_path / 'm'))
    byte_tokenizer(d)
    text = tmp_path / 'c.txt'
    text.write_text('abc')
    stats = tmp_path / 's.json'
    stats.write_text('{}')
    p = run('quantize', d, '-o', tmp_path / 'q', '--preset', 'int8', '--calibration-text', text,
            '--calibration', stats, check=False)
    assert p.returncode == 2 and 'choose one' in p.stderr
    p = run('quantize', d, '-o', tmp_path / 'q', '--preset', 'int8', '--calibration-text', tmp_path / 'none.txt',
            check=False)
    assert p.returncode == 1 and 'none.txt' in p.stderr and not os.path.exists(tmp_path / 'q')


def test_static_input_quantization_matches_torch(tmp_path):
    # W8A8 int8: the executor runs the dequantized weights and fake-quantizes
    # every linear layer's input with its stored scale; torch does the same
    # from the definition (symmetric int8, q = clamp(round_half_even(x ·
    # fl(1/s)), -128, 127), x' = q · s) on the same dequantized weights
    d = make_model(str(tmp_path / 'm'), 'llama', 'F32', scale=2.0)
    byte_tokenizer(d)
    text = tmp_path / 'calib.txt'
    text.write_text('a bad cafe faced a big dog.\n' * 4)
    q = str(tmp_path / 'q')
    run('quantize', d, '-o', q, '--preset', 'int8', '--calibration-text', text)
    executor = Quark.Executor.new_from_path(q)
    inputs = executor.get_quantized_inputs()
    assert len(inputs) == 14 and 'lm_head' not in inputs         # AMD Quark's int8 leaves lm_head in float
    checkpoint = Quark.Model.load(q, None)
    scales = {n: float(np.frombuffer(checkpoint.get_tensor(n + '.input_scale').get_data().get_data(),
                                     dtype=np.float32)[0]) for n in inputs}
    restored = Quark.Registry.get_default().dequantize_checkpoint(checkpoint)
    weights = {n: torch.from_numpy(np.frombuffer(restored.get_tensor(n).get_data().get_data(), dtype=np.float32)
                                   .reshape(list(restored.get_tensor(n).get_shape())).copy())
               for n in restored.get_tensor_names()}
    with open(os.path.join(d, 'config.json')) as f:
        config = json.load(f)

    class FakeQuant(LlamaTorch):
        def _linear(self, name, x):
            if name in scales:
                s = torch.tensor(scales[name], dtype=torch.float32)
                x = torch.clamp(torch.round(x * (1 / s)), -128, 127) * s
            return super()._linear(name, x)
    ids = ids_for(30)
    want = FakeQuant(config, weights).logits(ids).numpy()
    got = logits_of(executor, ids)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    # in float the inputs differ: a different result
    executor.set_property('quantize-inputs', False)
    assert np.abs(logits_of(executor, ids) - want).max() > 1e-3
    assert LlamaTorch(config, weights).logits(ids).numpy() == pytest.approx(logits_of(executor, ids), abs=1e-4)


def fp8_e4m3(v):
    """Round float32 values to OCP FP8 E4M3 (half to even, subnormals from
    2^-9, saturating at 448), in numpy from the definition."""
    a = np.abs(v).astype(np.float64)
    _, e = np.frexp(np.where(a > 0, a, 1.0))
    step = np.exp2(np.maximum(e - 1, -6) - 3)
    q = np.minimum(np.rint(a / step) * step, 448.0)
    return (np.sign(v) * q).astype(np.float32)


def check_inputs_as_torch(executor, config, weights, quantize_input):
    """The executor's logits equal torch's on the same weights with every
    linear input passed through quantize_input(name, x) first, and differ
    from them with the executor's inputs in float."""
    class Fake(LlamaTorch):
        def _linear(self, name, x):
            return super()._linear(name, quantize_input(name, x))
    ids = ids_for(30)
    want = Fake(config, weights).logits(ids).numpy()
    assert np.abs(logits_of(executor, ids) - want).max() <= 1e-4 * np.abs(want).max()
    executor.props.quantize_inputs = False
    assert np.abs(logits_of(executor, ids) - want).max() > 1e-3
    executor.props.quantize_inputs = True


def test_dynamic_inputs_match_torch(tmp_path):
    # ptpc_fp8: FP8 per-channel weights and dynamic per-token FP8 inputs.
    # The executor quantizes every linear layer's input from its own rows
    # (s = amax / 448 per token, codes = fp8 (x / s), x' = codes * s); torch
    # does the same from the definition on the same dequantized weights.
    d = make_model(str(tmp_path / 'm'), 'llama', 'F32', scale=2.0)
    byte_tokenizer(d)
    q = str(tmp_path / 'q')
    run('quantize', d, '-o', q, '--preset', 'ptpc_fp8')
    executor = Quark.Executor.new_from_path(q)
    inputs = executor.get_quantized_inputs()
    assert len(inputs) == 14
    weights = dequantized_weights(Quark.Model.load(q, None))
    with open(os.path.join(d, 'config.json')) as f:
        config = json.load(f)

    def per_token_fp8(name, x):
        if name not in inputs:
            return x
        v = x.numpy().astype(np.float32)
        s = (np.abs(v).max(axis=-1, keepdims=True) / np.float32(448)).astype(np.float32)
        return torch.from_numpy((fp8_e4m3((v / s).astype(np.float32)) * s).astype(np.float32))
    check_inputs_as_torch(executor, config, weights, per_token_fp8)
    text = tmp_path / 't.txt'
    text.write_text('abc abc abc abc')
    p = run('eval', q, '--text', text, '--ctx', 8)
    assert 'perplexity' in p.stdout
    p = run('eval', q, '--text', text, '--ctx', 8, '--float-inputs')
    assert 'inputs in float' in p.stdout


KV_FP8 = {'dtype': 'fp8_e4m3', 'qscheme': 'per_tensor', 'is_dynamic': False}
# W8A8 FP8 with a static FP8 KV cache: AMD Quark's layout gives k_proj and
# v_proj an output spec (kv_cache_group), stored as LAYER.output_scale
KV_CONFIG = {'backend': 'quark', 'quant_method': 'quark', 'exclude': ['lm_head'],
             'global_quant_config': {'weight': KV_FP8, 'input_tensors': KV_FP8},
             'layer_quant_config': {'*k_proj': {'weight': KV_FP8, 'input_tensors': KV_FP8, 'output_tensors': KV_FP8},
                                    '*v_proj': {'weight': KV_FP8, 'input_tensors': KV_FP8, 'output_tensors': KV_FP8}},
             'export': {'kv_cache_group': ['*k_proj', '*v_proj']}}


def test_kv_cache_calibrated_and_evaluated(tmp_path):
    # --calibration-text observes the outputs the config quantizes (k_proj
    # and v_proj, before RoPE) as well as every input: the same scales as a
    # torch forward whose hooks feed a saved session. The executor then
    # fake-quantizes those outputs (x' = fp8 (x / s) * s) where the layer
    # makes them, as torch does from the definition.
    d, text = calibration_model(tmp_path)
    p = quantize_config(tmp_path, d, 'native', KV_CONFIG, '--calibration-text', text, '--calibration-tokens', 24)
    assert p.returncode == 0, p.stderr
    tok = Quark.Tokenizer.new_from_file(d)
    ids = ([0] + list(tok.encode(text.read_text(), -1, False)))[:24]
    session = Quark.Calibration.new()

    def feed(name, role, x):
        a = np.ascontiguousarray(x.numpy(), dtype=np.float32)
        session.observe_floats(name, role, a.ravel().tolist(), list(a.shape))

    class Outputs(LlamaTorch):
        def _linear(self, name, x):
            y = super()._linear(name, x)
            if name.endswith(('k_proj', 'v_proj')):
                feed(name, Quark.Role.OUTPUT, y)
            return y
    Outputs(*load(d), hooks=lambda name, x: feed(name, Quark.Role.INPUT, x)).logits(ids)
    session.save(str(tmp_path / 'stats.json'))
    p = quantize_config(tmp_path, d, 'hooked', KV_CONFIG, '--calibration', tmp_path / 'stats.json')
    assert p.returncode == 0, p.stderr
    a, b = Quark.Model.load(str(tmp_path / 'native'), None), Quark.Model.load(str(tmp_path / 'hooked'), None)
    names = [n for n in a.get_tensor_names() if n.endswith('.output_scale')]
    assert sorted(names) == ['model.layers.%d.self_attn.%s.output_scale' % (i, m) for i in range(2)
                             for m in ('k_proj', 'v_proj')]
    assert not any(n.endswith('q_proj.output_scale') for n in a.get_tensor_names())
    for name in names + [n for n in a.get_tensor_names() if n.endswith('.input_scale')]:
        x = np.frombuffer(a.get_tensor(name).get_data().get_data(), dtype=np.float32)
        y = np.frombuffer(b.get_tensor(name).get_data().get_data(), dtype=np.float32)
        assert np.allclose(x, y, rtol=1e-5, atol=0), name

    q = str(tmp_path / 'native')
    executor = Quark.Executor.new_from_path(q)
    outputs = list(executor.get_quantized_outputs())
    assert sorted(outputs) == sorted(n[:-len('.output_scale')] for n in names)
    assert len(executor.get_quantized_inputs()) == 14
    scale = {n: np.frombuffer(a.get_tensor(n).get_data().get_data(), dtype=np.float32)[0]
             for n in a.get_tensor_names() if n.endswith(('.input_scale', '.output_scale'))}
    weights = dequantized_weights(a)
    with open(os.path.join(d, 'config.json')) as f:
        config = json.load(f)

    def fq(x, s):
        v = x.numpy().astype(np.float32)
        return torch.from_numpy((fp8_e4m3((v / s).astype(np.float32)) * s).astype(np.float32))

    class KvFp8(LlamaTorch):
        def _linear(self, name, x):
            if name + '.input_scale' in scale:
                x = fq(x, scale[name + '.input_scale'])
            y = super()._linear(name, x)
            if name + '.output_scale' in scale:
                y = fq(y, scale[name + '.output_scale'])
            return y
    ids = ids_for(30)
    want = KvFp8(config, weights).logits(ids).numpy()
    got = logits_of(executor, ids)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()

    class InputsOnly(KvFp8):
        def _linear(self, name, x):
            if name + '.input_scale' in scale:
                x = fq(x, scale[name + '.input_scale'])
            return LlamaTorch._linear(self, name, x)
    assert np.abs(got - InputsOnly(config, weights).logits(ids).numpy()).max() > 1e-4 * np.abs(want).max()
    # quark eval says so
    p = run('eval', q, '--text', text, '--ctx', 16, '--json')
    assert json.loads(p.stdout)['quantized_outputs'] == 4
    assert 'outputs of 4 linear layers (the KV cache)' in run('eval', q, '--text', text, '--ctx', 16).stdout


def dequantized_weights(checkpoint):
    full = Quark.Registry.get_default().dequantize_checkpoint(checkpoint)
    out = {}
    for name in full.get_tensor_names():
        t = full.get_tensor(name)
        raw = t.get_data().get_data()
        if t.get_dtype() == Quark.DType.FLOAT32:
            a = np.frombuffer(raw, dtype=np.float32)
        else:                                       # bfloat16 norms, copied as they were
            a = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        out[name] = torch.from_numpy(a.copy()).reshape(list(t.get_shape()))
    return out


@pytest.mark.parametrize('fmt', ['quark', 'compressed-tensors', 'awq'])
def test_quantized_checkpoints_read_back_a_layer_at_a_time(tmp_path, fmt):
    # the executor reads a quantized checkpoint back one decoder layer at a
    # time; the logits equal torch's on the whole checkpoint read back at once
    d = make_model(str(tmp_path / 'm'), 'llama', 'BF16', scale=2.0)
    cfg = tmp_path / 'int4.json'
    cfg.write_text(json.dumps({'global_quant_config': {'weight': {
        'dtype': 'int4', 'qscheme': 'per_group', 'group_size': 16, 'ch_axis': -1, 'symmetric': True}},
        'exclude': ['lm_head']}))
    out = tmp_path / 'q'
    run('quantize', d, '-o', out, '--config', cfg, '--export-format', fmt)
    executor = Quark.Executor.new_from_path(str(out))
    # the float model it keeps holds no decoder layer
    assert not any(n.startswith('model.layers.') for n in executor.get_model().get_tensor_names())
    with open(os.path.join(d, 'config.json')) as f:
        config = json.load(f)
    ids = ids_for(20)
    want = LlamaTorch(config, dequantized_weights(Quark.Model.load(str(out), None))).logits(ids).numpy()
    assert np.abs(logits_of(executor, ids) - want).max() <= 1e-4 * np.abs(want).max()


# ---- compressed-tensors checkpoints: their input_activations applied ---------

W4A8 = {'backend': 'quark', 'exclude': ['lm_head'], 'global_quant_config': {
    'weight': {'dtype': 'int4', 'qscheme': 'per_group', 'ch_axis': -1, 'group_size': 128},
    'input_tensors': {'dtype': 'fp8_e4m3', 'qscheme': 'per_channel', 'ch_axis': 1, 'is_dynamic': True}}}


def wide_model(tmp_path):
    """A tiny llama whose linear inputs are 128 or 256 wide (for groups and
    blocks of 128)"""
    return make_model(str(tmp_path / 'wide'), 'llama', 'F32', scale=2.0, hidden_size=128, intermediate_size=256,
                      num_attention_heads=16, num_key_value_heads=8)


@pytest.mark.parametrize('how,layout', [('int8', 'compressed-tensors'), ('ptpc_fp8', 'compressed-tensors'),
                                        ('w4a8', 'compressed-tensors'), ('fp8', 'fp8')])
def test_format_inputs_as_in_quark_layout(tmp_path, how, layout):
    # the same quantization in another layout and in AMD Quark's: static int8
    # per tensor (compressed-tensors' input_scale), dynamic per-token FP8
    # (strategy token; with int4 weights, W4A8), static FP8 per tensor
    # (quant_method fp8, activation_scheme static) run the same inputs, so
    # the logits are the same
    d, text = calibration_model(tmp_path, repeats=4)
    if how == 'w4a8':
        d = wide_model(tmp_path)      # (W4A8's groups of 128)
    executors = {}
    for fmt in ('quark', layout):
        out = str(tmp_path / fmt)
        if how == 'w4a8':
            r = quantize_config(tmp_path, d, fmt, W4A8, '--export-format', fmt)
            assert r.returncode == 0, r.stderr
        else:
            run('quantize', d, '-o', out, '--preset', how, '--export-format', fmt, '--calibration-text', text)
        executors[fmt] = Quark.Executor.new_from_path(out)
    a, b = executors['quark'], executors[layout]
    assert sorted(b.get_quantized_inputs()) == sorted(a.get_quantized_inputs()) and len(a.get_quantized_inputs()) == 14
    ids = ids_for(30)
    want = logits_of(a, ids)
    assert np.array_equal(logits_of(b, ids), want)
    b.props.quantize_inputs = False
    assert np.abs(logits_of(b, ids) - want).max() > 1e-4


def test_fp8_block_inputs_match_torch(tmp_path):
    # quant_method fp8 with 128 × 128 weight blocks: vLLM quantizes every
    # linear input per token group of 128 (per_token_group_quant_fp8), s =
    # amax / 448 per group; torch does the same on the same weights
    d = wide_model(tmp_path)
    fp8 = {'dtype': 'fp8_e4m3', 'qscheme': 'per_block', 'block_size': [128, 128]}
    r = quantize_config(tmp_path, d, 'q', {'backend': 'quark', 'exclude': ['lm_head'], 'global_quant_config': {
        'weight': fp8, 'input_tensors': {'dtype': 'fp8_e4m3', 'qscheme': 'per_channel', 'ch_axis': 1,
                                         'is_dynamic': True}}}, '--export-format', 'fp8')
    assert r.returncode == 0, r.stderr
    executor = Quark.Executor.new_from_path(str(tmp_path / 'q'))
    inputs = executor.get_quantized_inputs()
    assert len(inputs) == 14
    with open(os.path.join(d, 'config.json')) as f:
        config = json.load(f)

    def per_group_fp8(name, x):
        if name not in inputs:
            return x
        v = x.numpy().astype(np.float32).reshape(-1, 128)
        s = (np.abs(v).max(axis=-1, keepdims=True) / np.float32(448)).astype(np.float32)
        return torch.from_numpy((fp8_e4m3((v / s).astype(np.float32)) * s).astype(np.float32).reshape(x.shape))
    check_inputs_as_torch(executor, config, dequantized_weights(Quark.Model.load(str(tmp_path / 'q'), None)),
                          per_group_fp8)


NVFP4 = {'dtype': 'fp4', 'qscheme': 'per_group', 'ch_axis': -1, 'group_size': 16, 'symmetric': True,
         'scale_format': 'e4m3'}


def test_nvfp4_inputs_match_torch(tmp_path):
    # W4A4 NVFP4 in compressed-tensors' layout: every linear input is
    # quantized by compressed-tensors' rules under the layer's stored
    # input_global_scale; torch does the same with the numpy reference of
    # those rules (test_export_formats.nvfp4_codes) on the same weights
    from test_export_formats import nvfp4_codes
    d, text = calibration_model(tmp_path, repeats=4)
    r = quantize_config(tmp_path, d, 'q', {'backend': 'quark', 'exclude': ['lm_head'], 'global_quant_config': {
        'weight': NVFP4, 'input_tensors': dict(NVFP4, is_dynamic=True)}},
        '--export-format', 'compressed-tensors', '--calibration-text', text)
    assert r.returncode == 0, r.stderr
    q = str(tmp_path / 'q')
    executor = Quark.Executor.new_from_path(q)
    inputs = executor.get_quantized_inputs()
    assert len(inputs) == 14
    checkpoint = Quark.Model.load(q, None)
    g = {n: np.frombuffer(checkpoint.get_tensor(n + '.input_global_scale').get_data().get_data(),
                          dtype=np.float32)[0] for n in inputs}
    weights = dequantized_weights(checkpoint)
    with open(os.path.join(d, 'config.json')) as f:
        config = json.load(f)
    e2m1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)

    def nvfp4_inputs(name, x):
        if name not in g:
            return x
        codes, _, eff = nvfp4_codes(x.numpy().astype(np.float32).reshape(-1, x.shape[-1]), g[name])
        return torch.from_numpy((e2m1[codes] * np.repeat(eff, 16, axis=1)).astype(np.float32).reshape(x.shape))
    check_inputs_as_torch(executor, config, weights, nvfp4_inputs)


def test_compressed_tensors_mxfp4_inputs_match_torch(tmp_path):
    # the mxfp4 preset in compressed-tensors' layout: each input quantized
    # per block of 32 by the OCP rule (X = 2^(floor(log2 amax) - 2), E2M1
    # elements nearest to x / X, ties to even, saturating at 6); torch does
    # the same with numpy on the same weights
    from test_export_formats import round_to_table
    d = wide_model(tmp_path)
    out = tmp_path / 'mx'
    run('quantize', d, '-o', out, '--preset', 'mxfp4', '--export-format', 'compressed-tensors')
    executor = Quark.Executor.new_from_path(str(out))
    inputs = executor.get_quantized_inputs()
    assert len(inputs) == 14
    with open(os.path.join(d, 'config.json')) as f:
        config = json.load(f)
    e2m1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], np.float32)

    def mxfp4(name, x):
        if name not in inputs:
            return x
        v = x.numpy().astype(np.float32).reshape(-1, 32)
        amax = np.abs(v).max(axis=-1, keepdims=True)
        e = np.floor(np.log2(np.where(amax > 0, amax, 1))).astype(np.int32) - 2
        scale = np.ldexp(np.float32(1), e).astype(np.float32)
        t = np.clip((v / scale).astype(np.float32), -6, 6)
        q = e2m1[round_to_table(np.abs(t), e2m1)] * np.where(np.signbit(t), -1, 1)
        return torch.from_numpy((q * scale).astype(np.float32).reshape(x.shape))
    check_inputs_as_torch(executor, config, dequantized_weights(Quark.Model.load(str(out), None)), mxfp4)


def test_compressed_tensors_inputs_not_run_are_refused(tmp_path):
    # input_activations the executor does not run are an error naming the
    # layer, not inputs silently left in float
    d, text = calibration_model(tmp_path, repeats=4)
    out = tmp_path / 'ct'
    run('quantize', d, '-o', out, '--preset', 'ptpc_fp8', '--export-format', 'compressed-tensors')
    config = json.loads((out / 'config.json').read_text())
    group = next(iter(config['quantization_config']['config_groups'].values()))
    group['input_activations']['symmetric'] = False
    (out / 'config.json').write_text(json.dumps(config))
    with pytest.raises(GLib.Error) as e:
        Quark.Executor.new_from_path(str(out))
    assert e.value.matches(Quark.error_quark(), Quark.Error.UNSUPPORTED_SCHEME)
    assert 'model.layers.0.self_attn.q_proj' in e.value.message and 'asymmetric' in e.value.message


def test_kv_cache_after_rope(tmp_path):
    # kv_cache_post_rope: the keys are observed and quantized as the cache
    # holds them, after RoPE (v is the same either way). The scales are the
    # ones a torch forward with the keys hooked after RoPE gives, the
    # executor's logits are torch's with the keys quantized there, and
    # compressed-tensors (whose engines apply k_scale after RoPE: vLLM's
    # attention writes the rotated keys to the cache with it) evaluates the
    # same, bit for bit.
    d, text = calibration_model(tmp_path)
    post = dict(KV_CONFIG, kv_cache_post_rope=True)
    p = quantize_config(tmp_path, d, 'post', post, '--calibration-text', text, '--calibration-tokens', 24)
    assert p.returncode == 0, p.stderr
    tok = Quark.Tokenizer.new_from_file(d)
    ids = ([0] + list(tok.encode(text.read_text(), -1, False)))[:24]
    config, weights = load(d)
    nkv, nh = config['num_key_value_heads'], config['num_attention_heads']
    assert nkv != nh
    session = Quark.Calibration.new()

    def feed(name, role, x):
        a = np.ascontiguousarray(x.reshape(x.shape[0], -1).numpy(), dtype=np.float32)
        session.observe_floats(name, role, a.ravel().tolist(), list(a.shape))

    class KeysAfterRope(LlamaTorch):
        """calls @on_key with each layer's keys after RoPE, @on_linear with
        each linear layer's name, input and output"""
        def __init__(self, config, weights, on_linear, on_key, **kw):
            super().__init__(config, weights, **kw)
            self.on_linear, self.on_key, self.layer = on_linear, on_key, -1

        def _linear(self, name, x):
            x, y = self.on_linear(name, x, None)
            y = super()._linear(name, x) if y is None else y
            if name.endswith('k_proj'):
                self.layer = int(name.split('.')[2])
            return self.on_linear(name, None, y)[1]

        def _rope(self, x, T):
            y = super()._rope(x, T)
            return self.on_key('model.layers.%d.self_attn.k_proj' % self.layer, y) if x.shape[1] == nkv else y

    def observe(name, x, y):
        if x is not None:
            feed(name, Quark.Role.INPUT, x)
        elif name.endswith('v_proj'):
            feed(name, Quark.Role.OUTPUT, y)
        return x, y

    def observe_key(name, y):
        feed(name, Quark.Role.OUTPUT, y)
        return y
    KeysAfterRope(config, weights, observe, observe_key).logits(ids)
    session.save(str(tmp_path / 'stats.json'))
    p = quantize_config(tmp_path, d, 'hooked', post, '--calibration', tmp_path / 'stats.json')
    assert p.returncode == 0, p.stderr
    a, b = Quark.Model.load(str(tmp_path / 'post'), None), Quark.Model.load(str(tmp_path / 'hooked'), None)
    scale = {}
    for name in a.get_tensor_names():
        if name.endswith(('.input_scale', '.output_scale')):
            x = np.frombuffer(a.get_tensor(name).get_data().get_data(), dtype=np.float32)
            y = np.frombuffer(b.get_tensor(name).get_data().get_data(), dtype=np.float32)
            assert np.allclose(x, y, rtol=1e-5, atol=0), name
            scale[name] = x[0]
    # before RoPE the keys' scale is another
    p = quantize_config(tmp_path, d, 'pre', KV_CONFIG, '--calibration-text', text, '--calibration-tokens', 24)
    assert p.returncode == 0, p.stderr
    key = 'model.layers.0.self_attn.k_proj.output_scale'
    pre = Quark.Model.load(str(tmp_path / 'pre'), None)
    assert np.frombuffer(pre.get_tensor(key).get_data().get_data(), dtype=np.float32)[0] != scale[key]

    def fq(x, s):
        v = x.numpy().astype(np.float32)
        return torch.from_numpy((fp8_e4m3((v / s).astype(np.float32)) * s).astype(np.float32))

    def quantize(name, x, y):
        if x is not None and name + '.input_scale' in scale:
            x = fq(x, scale[name + '.input_scale'])
        if y is not None and name.endswith('v_proj'):
            y = fq(y, scale[name + '.output_scale'])
        return x, y
    ids = ids_for(30)
    want = KeysAfterRope(config, dequantized_weights(a), quantize,
                         lambda name, y: fq(y, scale[name + '.output_scale'])).logits(ids).numpy()
    got = logits_of(Quark.Executor.new_from_path(str(tmp_path / 'post')), ids)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    # (the keys quantized before RoPE with the same scales would be another model)
    before = KeysAfterRope(config, dequantized_weights(a),
                           lambda name, x, y: quantize(name, x, fq(y, scale[name + '.output_scale'])
                                                       if y is not None and name.endswith('k_proj') else y),
                           lambda name, y: y).logits(ids).numpy()
    assert np.abs(before - want).max() > 1e-3 * np.abs(want).max()

    # compressed-tensors: the same scales under its names, run after RoPE
    p = quantize_config(tmp_path, d, 'ct', post, '--calibration-text', text, '--calibration-tokens', 24,
                        '--export-format', 'compressed-tensors')
    assert p.returncode == 0, p.stderr
    executor = Quark.Executor.new_from_path(str(tmp_path / 'ct'))
    assert len(list(executor.get_quantized_outputs())) == 4
    assert np.array_equal(logits_of(executor, ids), got)
    # without kv_cache_post_rope the keys' scale would be the wrong one: refused
    p = quantize_config(tmp_path, d, 'ct-pre', KV_CONFIG, '--calibration-text', text, '--calibration-tokens', 24,
                        '--export-format', 'compressed-tensors')
    assert p.returncode == 1 and 'kv_cache_post_rope' in p.stderr, p.stderr
    assert not os.path.exists(tmp_path / 'ct-pre')
    # the brevitas backend observes k_proj's output where the layer makes it: refused too
    fp8 = {'preset': 'Fp8e4m3OCPActPerTensorFloat'}
    bv = {'backend': 'brevitas', 'exclude': ['lm_head'],
          'global_quant_config': {'weight': {'preset': 'Fp8e4m3OCPWeightPerChannelFloat'}, 'input_tensors': fp8},
          'layer_quant_config': {'*k_proj': {'output_tensors': fp8}}}
    p = quantize_config(tmp_path, d, 'bv-ct', bv, '--calibration-text', text, '--calibration-tokens', 24,
                        '--export-format', 'compressed-tensors')
    assert p.returncode == 1 and 'after RoPE' in p.stderr and 'k_proj' in p.stderr, p.stderr
    assert not os.path.exists(tmp_path / 'bv-ct')
