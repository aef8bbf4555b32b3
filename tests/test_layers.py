"""Exact properties of the readout layers, and parity with a NumPy version of eqs. 4-9."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from atomsets_tf.layers import WeightedMeanReadout, WeightedSet2Set, hard_sigmoid_keras2, softplus2  # noqa: E402

RNG = np.random.default_rng(0)


# --- NumPy reference of the paper's equations, written from the paper, not from our layer ---

def np_mean(x, w):
    return (w[:, None] * x).sum(0) / w.sum()


def np_set2set(x, w, kernel, bias, rkernel, rbias, steps, carry_cell_state):
    """Eqs. 5-9 for one example with a Keras-2-style LSTM whose only input is q*."""
    units = kernel.shape[1]
    m = x @ kernel + bias
    q_star = np.zeros(2 * units)
    c = np.zeros(units)

    def gate(z):
        return np.clip(0.2 * z + 0.5, 0, 1)

    for _ in range(steps):
        z = q_star @ rkernel + rbias
        i, f, g, o = (z[k * units : (k + 1) * units] for k in range(4))
        c_new = gate(f) * c + gate(i) * np.tanh(g)
        q = gate(o) * np.tanh(c_new)
        if carry_cell_state:
            c = c_new
        e = m @ q
        a = w * np.exp(e - e.max()) / (w * np.exp(e - e.max())).sum()
        r = (a[:, None] * m).sum(0)
        q_star = np.concatenate([q, r])
    return q_star


def batch(xs, ws, n=None):
    n = n or max(len(x) for x in xs)
    d = xs[0].shape[1]
    X = np.zeros((len(xs), n, d), np.float32)
    W = np.zeros((len(xs), n), np.float32)
    for k, (x, w) in enumerate(zip(xs, ws)):
        X[k, : len(x)] = x
        W[k, : len(w)] = w
    return X, W


def examples(k=4, d=5):
    xs = [RNG.normal(size=(int(RNG.integers(1, 7)), d)).astype(np.float32) for _ in range(k)]
    ws = [RNG.uniform(0.05, 1.0, size=len(x)).astype(np.float32) for x in xs]
    return xs, ws


LAYERS = [
    lambda: WeightedMeanReadout(),
    lambda: WeightedSet2Set(6, steps=3),
    lambda: WeightedSet2Set(6, steps=3, carry_cell_state=True),
]
IDS = ["mean", "set2set", "set2set-carry"]


@pytest.fixture(params=range(len(LAYERS)), ids=IDS)
def layer(request):
    lay = LAYERS[request.param]()
    xs, ws = examples()
    lay(list(batch(xs, ws)))  # build
    if isinstance(lay, WeightedSet2Set):  # make the LSTM matter: non-trivial weights
        lay.set_weights([RNG.normal(scale=0.5, size=v.shape).astype(np.float32) for v in lay.get_weights()])
    return lay


def run(layer, xs, ws, n=None):
    return np.asarray(layer(list(batch(xs, ws, n))))


def test_permutation_invariance(layer):
    xs, ws = examples()
    perm = [RNG.permutation(len(x)) for x in xs]
    a = run(layer, xs, ws)
    b = run(layer, [x[p] for x, p in zip(xs, perm)], [w[p] for w, p in zip(ws, perm)])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_padding_invariance(layer):
    xs, ws = examples()
    a = run(layer, xs, ws)
    # Padding rows with weight 0 and arbitrary (even huge) feature values change nothing.
    X, W = batch(xs, ws, n=12)
    X[W == 0] = RNG.normal(scale=100.0, size=X[W == 0].shape)
    b = np.asarray(layer([X, W]))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Neither does the company of other examples in the batch.
    alone = np.concatenate([run(layer, [x], [w]) for x, w in zip(xs, ws)])
    np.testing.assert_allclose(a, alone, rtol=1e-5, atol=1e-6)


def test_weight_split_invariance(layer):
    xs, ws = examples()
    a = run(layer, xs, ws)
    xs2 = [np.concatenate([x, x[:1]]) for x in xs]
    ws2 = [np.concatenate([w[:1] / 2, w[1:], w[:1] / 2]) for w in ws]
    np.testing.assert_allclose(a, run(layer, xs2, ws2), rtol=1e-5, atol=1e-6)


def test_weight_scale_invariance(layer):
    xs, ws = examples()
    np.testing.assert_allclose(run(layer, xs, ws), run(layer, xs, [7.5 * w for w in ws]), rtol=1e-5, atol=1e-6)


def test_numpy_parity(layer):
    xs, ws = examples(6)
    out = run(layer, xs, ws)
    for k, (x, w) in enumerate(zip(xs, ws)):
        x64, w64 = x.astype(np.float64), w.astype(np.float64)
        if isinstance(layer, WeightedMeanReadout):
            ref = np_mean(x64, w64)
        else:
            weights = [v.astype(np.float64) for v in layer.get_weights()]
            ref = np_set2set(x64, w64, *weights, steps=layer.steps, carry_cell_state=layer.carry_cell_state)
        np.testing.assert_allclose(out[k], ref, rtol=1e-5, atol=1e-5)


def test_carry_cell_state_changes_the_result():
    xs, ws = examples()
    a, b = WeightedSet2Set(6, steps=3), WeightedSet2Set(6, steps=3, carry_cell_state=True)
    X, W = batch(xs, ws)
    a([X, W]), b([X, W])
    weights = [RNG.normal(scale=0.5, size=v.shape).astype(np.float32) for v in a.get_weights()]
    a.set_weights(weights), b.set_weights(weights)
    assert np.abs(np.asarray(a([X, W])) - np.asarray(b([X, W]))).max() > 1e-3


def test_softmax_is_stable_for_large_energies():
    lay = WeightedSet2Set(4, steps=2)
    X = np.array([[[1e4, -1e4], [2e4, 3e4], [0.0, 0.0]]], np.float32)
    W = np.array([[0.5, 0.5, 0.0]], np.float32)
    assert np.isfinite(np.asarray(lay([X, W]))).all()


def test_all_padding_example_gives_zeros_not_nan():
    X = np.zeros((2, 3, 4), np.float32)
    W = np.array([[1, 1, 0], [0, 0, 0]], np.float32)
    out = np.asarray(WeightedMeanReadout()([X + 1, W]))
    np.testing.assert_array_equal(out[1], 0)
    assert np.isfinite(np.asarray(WeightedSet2Set(3)([X + 1, W]))).all()


def test_activations_match_keras2_definitions():
    x = np.linspace(-6, 6, 101).astype(np.float32)
    np.testing.assert_allclose(np.asarray(hard_sigmoid_keras2(x)), np.clip(0.2 * x + 0.5, 0, 1), atol=1e-7)
    np.testing.assert_allclose(np.asarray(softplus2(x)), np.log1p(np.exp(x)) - np.log(2), atol=1e-6)


def _user_model(readout):
    feats = keras.Input((None, 5), name="features")
    w = keras.Input((None,), name="weights")
    h = keras.layers.Dense(8, activation="relu")(feats)
    h = readout([h, w])
    return keras.Model({"features": feats, "weights": w}, keras.layers.Dense(1)(h))


@pytest.mark.parametrize("make", [lambda: WeightedMeanReadout(), lambda: WeightedSet2Set(4, steps=2)], ids=IDS[:2])
def test_layers_train_and_round_trip_in_a_users_model(tmp_path, make):
    import tensorflow as tf

    xs, ws = examples(16)
    X, W = batch(xs, ws)
    y = X.sum(axis=(1, 2))[:, None]
    ds = tf.data.Dataset.from_tensor_slices(({"features": X, "weights": W}, y)).batch(4)
    model = _user_model(make())
    model.compile("adam", "mse")
    hist = model.fit(ds, epochs=3, verbose=0)
    assert np.isfinite(hist.history["loss"]).all()
    path = tmp_path / "user.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        np.asarray(model({"features": X, "weights": W})), np.asarray(loaded({"features": X, "weights": W})), rtol=1e-6
    )
    for layer in loaded.layers:
        if isinstance(layer, WeightedSet2Set):
            assert layer.get_config()["steps"] == 2 and layer.carry_cell_state is False
