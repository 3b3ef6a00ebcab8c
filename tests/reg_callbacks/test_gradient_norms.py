"""Tier 1-2: per-layer gradient norms against hand-written backprop, health labels, callback."""

import keras
import numpy as np
import pytest

from reg_callbacks import GradientNormLogger, gradient_health, layer_gradient_norms

pytestmark = pytest.mark.backends


def small_net(l2=0.0):
    regularizer = keras.regularizers.L2(l2) if l2 else None
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, "tanh", kernel_regularizer=regularizer, name="hidden"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(1, "sigmoid", name="out"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    return model


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.normal(size=(32, 3)).astype("float32"), rng.integers(0, 2, (32, 1)).astype("float32")


@pytest.mark.parametrize("l2", [0.0, 0.5])
def test_norms_match_hand_written_loss_including_l2(batch, l2):
    x, y = batch
    model = small_net(l2)
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    # Backprop by hand: mean binary cross-entropy of sigmoid(tanh(x w1 + b1) w2 + b2), plus
    # l2 * ||w1||^2 (dropout is off at training=False).
    h = np.tanh(x @ w1 + b1)
    p = 1 / (1 + np.exp(-(h @ w2 + b2)))
    dz2 = (p - y) / len(x)
    dz1 = (dz2 @ w2.T) * (1 - h**2)
    grads = [x.T @ dz1 + 2 * l2 * w1, dz1.sum(axis=0)]
    expected = np.sqrt(sum(float(np.sum(g**2)) for g in grads))
    norms = layer_gradient_norms(model, x, y)
    assert list(norms) == ["grad_norm/hidden", "grad_norm/out"]
    assert norms["grad_norm/hidden"] == pytest.approx(expected, rel=1e-5)


def test_functional_model_with_branches(batch):
    x, y = batch
    inputs = keras.Input((3,))
    left = keras.layers.Dense(2, name="left")(inputs)
    right = keras.layers.Dense(2, name="right")(inputs)
    merged = keras.layers.Concatenate()([left, right])
    model = keras.Model(inputs, keras.layers.Dense(1, "sigmoid", name="head")(merged))
    model.compile("sgd", "binary_crossentropy")
    norms = layer_gradient_norms(model, x, y)
    assert set(norms) == {"grad_norm/left", "grad_norm/right", "grad_norm/head"}
    assert all(value > 0 for value in norms.values())


def deep_linear(depth, gain):
    model = keras.Sequential(
        [keras.Input((4,))]
        + [
            keras.layers.Dense(
                4, use_bias=False, kernel_initializer=keras.initializers.Identity(gain)
            )
            for _ in range(depth)
        ]
    )
    model.compile("sgd", "mse")
    return model


@pytest.mark.parametrize(("gain", "health"), [(1.5, "exploding"), (0.5, "vanishing")])
def test_deep_linear_nets_scale_as_gain_to_the_depth(gain, health):
    # y = g^L x, so dJ/dW_l = (g^(L-l) dJ/dy)(g^(l-1) x)^T with dJ/dy proportional to g^L:
    # every layer's gradient is g^(2L-1) times the gain-1 gradient.
    depth, x, y = 16, np.ones((8, 4), "float32"), np.zeros((8, 4), "float32")
    reference = list(layer_gradient_norms(deep_linear(depth, 1.0), x, y).values())
    norms = layer_gradient_norms(deep_linear(depth, gain), x, y)
    predicted = np.array(reference) * gain ** (2 * depth - 1)
    np.testing.assert_allclose(list(norms.values()), predicted, rtol=1e-3)
    assert gradient_health(norms) == health
    assert gradient_health(reference) == "healthy"


@pytest.mark.parametrize(
    ("norms", "health"),
    [
        ([1.0, 0.5, 0.4, 0.3, 0.2], "healthy"),
        ([1e-4, 1e-3, 1e-2, 0.1, 1.0], "vanishing"),  # input side 10^4 smaller than output
        ([50.0, 10.0, 5.0, 1.0, 0.1], "exploding"),  # input side 500x larger
        ([0.026, 0.004, 0.00013], "healthy"),  # shallow net near convergence: no depth to blame
        ([1e-9, 1e-8], "vanishing"),
        ([2e3, 1e3], "exploding"),
        ([1.0, float("nan")], "exploding"),
        ([float("inf"), 1.0], "exploding"),
        ([0.0, 1.0, 1.0, 1.0, 1.0], "vanishing"),
        ([0.0, 0.0, 0.3], "vanishing"),  # zeros init: only the output bias gets a gradient
        ([1e-9, 0.5, 0.3], "vanishing"),  # the input layer no longer moves, at any depth
    ],
)
def test_gradient_health_thresholds(norms, health):
    assert gradient_health(norms) == health


def test_gradient_health_needs_a_norm():
    with pytest.raises(ValueError, match="at least one"):
        gradient_health([])


def test_non_finite_gradients_are_reported_not_raised(batch):
    x, y = batch
    model = small_net()
    model.get_layer("hidden").kernel.assign(np.full((3, 4), np.nan, "float32"))
    norms = layer_gradient_norms(model, x, y)
    assert np.isnan(norms["grad_norm/hidden"])
    assert gradient_health(norms) == "exploding"


def test_logger_writes_logs_and_keeps_history(batch):
    x, y = batch
    model = small_net()
    logger = GradientNormLogger((x, y), every=2)
    history = model.fit(x, y, epochs=4, verbose=0, callbacks=[logger])
    assert logger.epochs == [-1, 1, 3]  # before training, then every second epoch
    assert len(logger.history["grad_norm/hidden"]) == 3
    assert history.history["grad_norm/out"] == pytest.approx(logger.history["grad_norm/out"][1:])
    assert logger.health == "healthy" and logger.health_history == ["healthy"] * 3


def test_logger_rejects_bad_arguments(batch):
    with pytest.raises(ValueError, match="every"):
        GradientNormLogger(batch, every=0)
    with pytest.raises(ValueError, match="probe_data"):
        GradientNormLogger(batch[0])
