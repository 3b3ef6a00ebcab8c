"""`train`'s dropout on JAX: Keras's inverted dropout with its bits from a counter-based hash,
swapped in for the jitted loop only (Keras's own draws Threefry, which XLA runs slowly on CPU).
"""

import keras
import numpy as np
import pytest
from sklearn.datasets import make_moons

from reg_callbacks import train

pytestmark = [
    pytest.mark.backends,
    pytest.mark.skipif(keras.backend.backend() != "jax", reason="the JAX backend's dropout"),
]


@pytest.fixture
def jax_backend():
    from reg_callbacks.backends import jax as jax_backend

    return jax_backend


def test_hashed_dropout_is_inverted_dropout_with_fresh_independent_masks(jax_backend):
    x = np.ones((1000, 100), "float32")
    seed = keras.random.SeedGenerator(0)
    first, second = (np.asarray(jax_backend.hashed_dropout(x, 0.14, seed=seed)) for _ in "12")
    # 1e5 draws: the kept fraction's standard deviation is 0.0011.
    assert np.mean(first != 0) == pytest.approx(0.86, abs=0.005)
    np.testing.assert_allclose(np.unique(first), [0.0, 1 / 0.86], rtol=1e-6)
    # Independent masks agree on 0.86² + 0.14² of entries: two calls, and neighbours in one.
    agree = 0.86**2 + 0.14**2
    assert np.mean((first != 0) == (second != 0)) == pytest.approx(agree, abs=0.01)
    assert np.mean((first[:, 1:] != 0) == (first[:, :-1] != 0)) == pytest.approx(agree, abs=0.01)
    assert np.mean((first[1:] != 0) == (first[:-1] != 0)) == pytest.approx(agree, abs=0.01)
    # Rows and columns vary as independent draws do (binomial variance; no stripes): the
    # variance ratio's standard deviation is sqrt(2 / 1000) over rows, sqrt(2 / 100) columns.
    rows, columns = np.mean(first != 0, axis=1), np.mean(first != 0, axis=0)
    assert rows.var() / (0.86 * 0.14 / 100) == pytest.approx(1, abs=0.2)
    assert columns.var() / (0.86 * 0.14 / 1000) == pytest.approx(1, abs=0.45)
    # Same seed, same mask.
    again = np.asarray(jax_backend.hashed_dropout(x, 0.14, seed=keras.random.SeedGenerator(0)))
    np.testing.assert_array_equal(again, first)


def test_train_traces_the_hashed_dropout_is_reproducible_and_restores_keras(
    jax_backend, monkeypatch
):
    from keras.src.backend.jax import random as keras_jax_random  # what the swap replaces

    keras_dropout = keras_jax_random.dropout
    traced = []
    hashed = jax_backend.hashed_dropout
    monkeypatch.setattr(
        jax_backend._DROPOUT_SWAP,
        "replacement",
        lambda *a, **k: traced.append(1) or hashed(*a, **k),
    )
    x, y = make_moons(200, noise=0.3, random_state=0)
    x, y = x.astype("float32"), y.reshape(-1, 1).astype("float32")
    weights = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((2,)),
                keras.layers.Dense(20, "relu"),
                keras.layers.Dropout(0.14, seed=1),
                keras.layers.Dense(1, "sigmoid"),
            ]
        )
        model.compile(keras.optimizers.SGD(0.3), "binary_crossentropy")
        history = train(model, x, y, iterations=60, log_every=30)
        weights.append(model.get_weights())
    assert traced, "train's loop did not trace the hashed dropout"
    assert keras_jax_random.dropout is keras_dropout
    for first, second in zip(*weights, strict=True):
        np.testing.assert_array_equal(first, second)
    assert np.isfinite(history.history["loss"]).all()
