# Second-moment calibration: Quark.Calibration with second-moments learns,
# per layer input, the Gram matrix Σ x xᵀ (float64), the token count and
# per-feature Σx, Σx² and max |x|; checked against numpy in float64, saved
# beside the statistics file, merged across sessions, fed from threads and
# by the native executor.
import json
import os
import threading

import gi
import numpy as np
import pytest

gi.require_version('Quark', '1.0')
from gi.repository import GLib, Quark  # noqa: E402


def session():
    s = Quark.Calibration.new()
    s.set_second_moments_enabled(True)
    return s


def observe(s, layer, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    s.observe_floats(layer, Quark.Role.INPUT, x.ravel().tolist(), list(x.shape))


def f64(t):
    return np.frombuffer(t.get_data().get_data(), dtype=np.float64 if t.get_dtype() == Quark.DType.FLOAT64
                         else np.float32).reshape(list(t.get_shape()))


def batches(seed=0, n=24):
    rng = np.random.default_rng(seed)
    # [tokens, n], [batch, tokens, n] and a single row: rows of the last dimension
    return [rng.standard_normal((7, n)) * 3, rng.standard_normal((2, 5, n)), rng.standard_normal((1, n)) - 2]


def expected(xs):
    rows = np.concatenate([np.asarray(x, dtype=np.float32).reshape(-1, x.shape[-1]).astype(np.float64) for x in xs])
    return rows.T @ rows, rows


def test_gram_and_channel_statistics():
    s = session()
    xs = batches()
    for x in xs:
        observe(s, 'fc', x)
    gram, tokens, mean, mean_sq, abs_max = s.get_second_moments('fc')
    want, rows = expected(xs)
    assert tokens == 18
    assert np.allclose(f64(gram), want, rtol=1e-12, atol=1e-12)
    assert np.array_equal(f64(gram), f64(gram).T)
    assert np.allclose(f64(mean), rows.mean(0), rtol=1e-12)
    assert np.allclose(f64(mean_sq), (rows ** 2).mean(0), rtol=1e-12)
    assert np.array_equal(f64(abs_max), np.abs(rows).max(0).astype(np.float32))
    # the other statistics are kept as before
    ok, lo, hi = s.get_min_max('fc', Quark.Role.INPUT)
    assert ok and lo == np.float32(rows.min()) and hi == np.float32(rows.max())


def test_off_by_default_and_errors():
    s = Quark.Calibration.new()
    assert not s.props.second_moments
    observe(s, 'fc', np.ones((2, 3)))
    with pytest.raises(GLib.Error) as e:
        s.get_second_moments('fc')
    assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_ARGUMENT) and 'fc' in e.value.message
    s.props.second_moments = True
    observe(s, 'fc', np.ones((2, 3)))
    with pytest.raises(GLib.Error) as e:
        observe(s, 'fc', np.ones((2, 4)))
    assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_TENSOR) and '4 features' in e.value.message
    # outputs have no second moments
    s.observe_floats('fc', Quark.Role.OUTPUT, [1.0, 2.0], [1, 2])
    gram, tokens, *_ = s.get_second_moments('fc')
    assert tokens == 2 and f64(gram)[0, 0] == 2.0


def test_save_load_beside(tmp_path):
    s = session()
    for x in batches(1):
        observe(s, 'model.layers.0.mlp.down_proj', x)
    observe(s, 'lm_head', np.arange(6.0).reshape(2, 3))
    path = str(tmp_path / 'stats.json')
    s.save(path)
    with open(path) as f:
        doc = json.load(f)
    assert doc['second_moments'] == {'file': 'stats.moments.safetensors'}
    assert os.path.exists(tmp_path / 'stats.moments.safetensors')
    loaded = Quark.Calibration.load(path)
    assert loaded.props.second_moments
    for layer in ('model.layers.0.mlp.down_proj', 'lm_head'):
        a, b = s.get_second_moments(layer), loaded.get_second_moments(layer)
        assert a[1] == b[1]
        for x, y in zip([a[0]] + list(a[2:]), [b[0]] + list(b[2:])):
            assert f64(x).tobytes() == f64(y).tobytes()
    # from bytes there is no directory to find the file in
    with pytest.raises(GLib.Error) as e:
        Quark.Calibration.load_from_bytes(GLib.Bytes.new(open(path, 'rb').read()), 'stats')
    assert 'stats.moments.safetensors' in e.value.message
    # a missing or damaged sidecar is an error naming it
    os.remove(tmp_path / 'stats.moments.safetensors')
    with pytest.raises(GLib.Error) as e:
        Quark.Calibration.load(path)
    assert 'stats.moments.safetensors' in e.value.message
    doc['second_moments'] = {'file': '../elsewhere.safetensors'}
    with open(path, 'w') as f:
        json.dump(doc, f)
    with pytest.raises(GLib.Error) as e:
        Quark.Calibration.load(path)
    assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_FILE) and 'second_moments.file' in e.value.message


def test_merge_equals_one_session():
    xs = batches(2) + batches(3)
    whole, first, second = session(), session(), session()
    for i, x in enumerate(xs):
        observe(whole, 'fc', x)
        observe(first if i < 3 else second, 'fc', x)
    observe(second, 'other', np.ones((1, 2)))
    assert first.merge_second_moments(second)
    a, b = whole.get_second_moments('fc'), first.get_second_moments('fc')
    assert a[1] == b[1] == 36
    assert np.allclose(f64(a[0]), f64(b[0]), rtol=1e-12, atol=1e-12)
    assert np.array_equal(f64(a[4]), f64(b[4]))
    assert first.get_second_moments('other')[1] == 1
    bad = session()
    observe(bad, 'fc', np.ones((1, 5)))
    with pytest.raises(GLib.Error) as e:
        first.merge_second_moments(bad)
    assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_TENSOR)
    assert first.get_second_moments('fc')[1] == 36          # unchanged


def test_threads():
    s = session()
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((16, 32)) for _ in range(32)]

    def feed(part):
        for x in part:
            observe(s, 'fc', x)
    threads = [threading.Thread(target=feed, args=(xs[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    want, _ = expected(xs)
    gram, tokens, *_ = s.get_second_moments('fc')
    assert tokens == 512 and np.allclose(f64(gram), want, rtol=1e-12, atol=1e-12)


def test_executor_feeds_second_moments(tmp_path):
    torch = pytest.importorskip('torch')
    from llama_torch import LlamaTorch, load
    from test_executor import ids_for, make_model
    d = make_model(str(tmp_path / 'm'), 'llama', 'F32')
    executor = Quark.Executor.new_from_path(d)
    s = session()
    ids = ids_for(40)
    assert executor.calibrate(s, ids, 16, None)
    seen = {}

    def hook(name, x):
        seen.setdefault(name, []).append(x.double())
    model = LlamaTorch(*load(d), hooks=hook)
    for start in range(0, 40, 16):
        model.logits(ids[start:start + 16])
    for name, parts in seen.items():
        rows = torch.cat(parts)
        gram, tokens, *_ = s.get_second_moments(name)
        assert tokens == 40
        want = (rows.T @ rows).numpy()
        assert np.abs(f64(gram) - want).max() <= 1e-5 * np.abs(want).max(), name


def test_shared_batches_equal_separate_ones():
    # one batch for q, k and v at once: the same statistics as three observes
    shared, separate = session(), session()
    for x in batches(5):
        x = np.ascontiguousarray(x, dtype=np.float32)
        shared.observe_floats_shared(['q', 'k', 'v'], Quark.Role.INPUT, x.ravel().tolist(), list(x.shape))
        for layer in ('q', 'k', 'v'):
            observe(separate, layer, x)
    for layer in ('q', 'k', 'v'):
        a, b = shared.get_second_moments(layer), separate.get_second_moments(layer)
        assert a[1] == b[1]
        assert np.allclose(f64(a[0]), f64(b[0]), rtol=1e-12, atol=1e-12)
        assert np.array_equal(f64(a[4]), f64(b[4]))
        assert shared.get_min_max(layer, Quark.Role.INPUT) == separate.get_min_max(layer, Quark.Role.INPUT)
        assert shared.get_n_batches(layer, Quark.Role.INPUT) == 3


def test_without_gram_matrix(tmp_path):
    """gram-matrix unset: the count and per-feature sums only (memory linear
    in the features); the sums equal a session's with the Gram matrix; the
    Gram matrix is asked for in vain; save, load and merge keep it absent."""
    full, lite = session(), session()
    assert lite.props.gram_matrix
    lite.set_gram_matrix_enabled(False)
    assert not lite.get_gram_matrix_enabled()
    xs = batches(4)
    for x in xs:
        observe(full, 'fc', x)
        observe(lite, 'fc', x)
    sums, tokens = lite.get_input_sum_squares('fc')
    _, rows = expected(xs)
    assert tokens == 18
    assert np.allclose(f64(sums), (rows ** 2).sum(0), rtol=1e-12)
    assert f64(sums).tobytes() == f64(full.get_input_sum_squares('fc')[0]).tobytes()
    assert f64(lite.get_input_mean_abs('fc')).tobytes() == f64(full.get_input_mean_abs('fc')).tobytes()
    mean = f64(lite.get_input_mean('fc'))
    assert np.allclose(mean, rows.mean(0), rtol=1e-12, atol=1e-15)
    assert mean.tobytes() == f64(full.get_input_mean('fc')).tobytes() == f64(full.get_second_moments('fc')[2]).tobytes()
    # max |x|: float32, exactly the batches' own, as get_second_moments() gives it
    amax = lite.get_input_abs_max('fc')
    assert amax.get_dtype() == Quark.DType.FLOAT32
    got = np.frombuffer(amax.get_data().get_data(), dtype=np.float32)
    assert got.tobytes() == np.abs(rows).max(0).astype(np.float32).tobytes()
    assert got.tobytes() == full.get_second_moments('fc')[4].get_data().get_data()
    with pytest.raises(GLib.Error):
        lite.get_input_abs_max('nothing')
    with pytest.raises(GLib.Error) as e:
        lite.get_second_moments('fc')
    assert e.value.matches(Quark.error_quark(), Quark.Error.INVALID_ARGUMENT) and 'Gram' in e.value.message
    # shared batches (q, k, v) follow the session's setting
    lite.observe_floats_shared(['q', 'k'], Quark.Role.INPUT, [1.0, 2.0, 3.0, 4.0], [2, 2])
    assert lite.get_input_sum_squares('k')[1] == 2
    with pytest.raises(GLib.Error):
        lite.get_second_moments('q')
    path = str(tmp_path / 'stats.json')
    lite.save(path)
    loaded = Quark.Calibration.load(path)
    assert f64(loaded.get_input_sum_squares('fc')[0]).tobytes() == f64(sums).tobytes()
    with pytest.raises(GLib.Error):
        loaded.get_second_moments('fc')
    # a merge keeps the Gram matrix only where both sides have one
    assert full.merge_second_moments(lite)
    assert full.get_input_sum_squares('fc')[1] == 36
    with pytest.raises(GLib.Error):
        full.get_second_moments('fc')
    with pytest.raises(GLib.Error):
        full.get_second_moments('q')
