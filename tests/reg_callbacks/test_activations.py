"""Tier 1-3: activation statistics against NumPy forward passes on `get_weights()` and
Keras's own layer outputs, health labels, `ActivationStatsLogger` under `fit` and `train`."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from model_zoo import CASES
from public_examples import activation_block_net, mnist_convnet, mnist_like

from reg_callbacks import ActivationStatsLogger, activation_health, activation_stats, train
from reg_callbacks.activations import HISTOGRAM_BINS, HISTOGRAM_ROWS

pytestmark = pytest.mark.backends


def planted_net():
    """relu -> tanh -> sigmoid, with 2 of the 8 ReLU units dead (bias -100) and the tanh
    layer's first 2 units saturated (weights x50)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(8, "relu", name="relu"),
            keras.layers.Dense(4, "tanh", name="tanh"),
            keras.layers.Dense(2, "sigmoid", name="out"),
        ]
    )
    w1, b1, w2, b2, w3, b3 = model.get_weights()
    b1[:2] = -100.0
    w1[0, 1] = 0.0  # so a large first feature can wake unit 0 alone
    w2[:, :2] *= 50.0
    model.set_weights([w1, b1, w2, b2, w3, b3])
    model.compile("sgd", "binary_crossentropy")
    return model


def numpy_stats(model, x) -> dict:
    """The planted net's statistics by a float64 NumPy forward pass on `get_weights()`."""
    w1, b1, w2, b2, w3, b3 = (w.astype(np.float64) for w in model.get_weights())
    z1 = x @ w1 + b1
    a1 = np.maximum(z1, 0)
    z2 = a1 @ w2 + b2
    a2 = np.tanh(z2)
    z3 = a2 @ w3 + b3
    a3 = 1 / (1 + np.exp(-z3))
    stats = {}
    for name, z, a, dead, saturated in (
        ("relu", z1, a1, np.mean(~(a1 > 0).any(axis=0)), 0.0),
        ("tanh", z2, a2, 0.0, np.mean(np.abs(a2) > 0.99)),
        ("out", z3, a3, 0.0, np.mean((a3 < 0.01) | (a3 > 0.99))),
    ):
        stats.update(
            {
                f"act_mean/{name}": a.mean(),
                f"act_std/{name}": a.std(),
                f"dead_fraction/{name}": dead,
                f"saturated_fraction/{name}": saturated,
                f"z_std/{name}": z.std(),
            }
        )
    return stats


@pytest.fixture
def probe_x():
    return np.random.default_rng(1).normal(size=(300, 5)).astype("float32")


def assert_matches(stats, expected):
    assert set(stats) == set(expected)
    for key, value in expected.items():
        assert stats[key] == pytest.approx(value, rel=2e-5, abs=1e-6), key


def test_matches_numpy_forward_pass_on_planted_net(probe_x):
    model = planted_net()
    before = [(vars(layer).get("call"), layer.activation) for layer in model.layers]
    stats = activation_stats(model, probe_x)
    assert_matches(stats, numpy_stats(model, probe_x))
    assert list(stats)[:5] == [
        f"{m}/relu" for m in ("act_mean", "act_std", "dead_fraction", "saturated_fraction", "z_std")
    ]
    assert stats["dead_fraction/relu"] == 2 / 8
    assert stats["saturated_fraction/tanh"] >= 0.4  # 2 of 4 units pinned, on most rows
    assert [(vars(layer).get("call"), layer.activation) for layer in model.layers] == before
    assert activation_stats(model, probe_x) == stats  # the layers are left as they were


def test_batched_and_dataset_probes_match_one_pass(probe_x):
    """Rows cut in batches of 64 (the last one short), and a tf.data probe of 32-row
    batches: the same numbers; a unit positive on one row of the last batch only is alive."""
    model = planted_net()
    x = probe_x.copy()
    w1, b1 = model.get_weights()[:2]
    # Unit 0 (bias -100) fires on the last row only.
    x[-1] = 0
    x[-1, 0] = 200.0 / w1[0, 0]
    expected = numpy_stats(model, x)
    assert 0 < expected["dead_fraction/relu"] < 2 / 8
    assert_matches(activation_stats(model, x, batch_size=64), expected)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(32)
    assert_matches(activation_stats(model, dataset, batch_size=64), expected)


def reference_outputs(name, case):
    """{path: [outputs of each call]} computed by calling the case's layers by hand (eager
    Keras, no library code), as the model composes them."""
    layers, x = case.layers, case.x
    if name == "subclassed":
        h = layers["hidden"](x)
        t = layers["target"](h)
        return {"hidden": [h], "target": [t], "out": [layers["out"](t)]}
    if name == "shared":
        ta, tb = layers["target"](x["a"]), layers["target"](x["b"])
        return {"target": [ta, tb], "out": [layers["out"](ta + tb)]}
    if name == "nested":
        conv = layers["conv"](x)
        bn = layers["bn"](conv, training=False)
        dense = layers["block/inner/dense"](keras.ops.reshape(bn, (len(x), -1)))
        target = layers["block/inner/target"](dense)
        return {
            "conv": [conv],
            "bn": [bn],
            "block/inner/dense": [dense],
            "block/inner/target": [target],
            "out": [layers["out"](target)],
        }
    # Flat functional models: Keras's own graph up to each layer's output.
    model = case.model
    taps = keras.Model(model.inputs, [layer.output for layer in layers.values()])
    return {path: [out] for path, out in zip(layers, taps(x, training=False), strict=True)}


@pytest.mark.parametrize(
    "name", ["sequential", "functional", "subclassed", "nested", "shared", "multi_io", "recurrent"]
)
def test_model_kinds_match_their_layers_outputs(name):
    case = CASES[name]()
    stats = activation_stats(case.model, case.x)
    reference = reference_outputs(name, case)
    assert [k.split("/", 1)[1] for k in stats if k.startswith("act_std/")] == list(case.layers)
    for path, outputs in reference.items():
        values = np.concatenate(
            [np.asarray(keras.ops.convert_to_numpy(o), np.float64).ravel() for o in outputs]
        )
        assert stats[f"act_std/{path}"] == pytest.approx(values.std(), rel=1e-4, abs=1e-6), path
        assert stats[f"act_mean/{path}"] == pytest.approx(values.mean(), rel=1e-4, abs=1e-6)


def test_public_example_models():
    """keras.io's MNIST convnet (ReLU convolutions: z_std, dead channels per last axis) and a
    model written like the examples: a custom block without `**kwargs` holding Dense layers,
    dict inputs named unlike their keys."""
    model = mnist_convnet()
    x, _ = mnist_like(64)
    stats = activation_stats(model, x)
    conv = model.layers[0]
    h = np.asarray(keras.ops.convert_to_numpy(conv(x)), np.float64)
    assert stats[f"act_std/{conv.name}"] == pytest.approx(h.std(), rel=1e-4)
    channels_dead = np.mean(~(h > 0).reshape(-1, h.shape[-1]).any(axis=0))
    assert stats[f"dead_fraction/{conv.name}"] == channels_dead
    assert math.isfinite(stats[f"z_std/{conv.name}"])

    model, x = activation_block_net()
    stats = activation_stats(model, x)
    block = model.get_layer("block")
    hidden = block.inner(x["numbers"])
    inner, outer = f"block/{block.inner.name}", f"block/{block.outer.name}"
    assert [k for k in stats if k.startswith("act_std/")] == [
        f"act_std/{inner}",
        f"act_std/{outer}",
        "act_std/head",
    ]
    assert stats[f"act_std/{inner}"] == pytest.approx(
        float(np.std(keras.ops.convert_to_numpy(hidden))), rel=1e-4
    )
    assert stats[f"act_std/{outer}"] == pytest.approx(
        float(np.std(keras.ops.convert_to_numpy(block.outer(hidden)))), rel=1e-4
    )


def deep_mlp(kernel_initializer, activation="relu", depth=20, width=64):
    layers = [keras.Input((width,))]
    for i in range(depth):
        init = keras.initializers.get(kernel_initializer)
        if hasattr(init, "seed"):
            init = init.__class__.from_config({**init.get_config(), "seed": i})
        layers.append(keras.layers.Dense(width, activation, kernel_initializer=init))
    return keras.Sequential(layers)


def test_health_labels_on_deep_nets():
    x = np.random.default_rng(0).normal(size=(256, 64)).astype("float32")
    model = deep_mlp("he_normal")
    assert activation_health(activation_stats(model, x)) == "healthy"
    for scale, label in ((1.0, "exploding"), (0.01, "vanishing")):
        model.set_weights([w if w.ndim == 1 else w * scale / w.std() for w in model.get_weights()])
        assert activation_health(activation_stats(model, x)) == label
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    assert activation_health(activation_stats(model, x)) == "vanishing"


def test_health_labels_dead_and_saturated(probe_x):
    base = {"act_std/a": 1.0, "act_std/b": 1.0, "act_std/out": 0.3}
    zeros = {f"{m}/{p}": 0.0 for m in ("dead_fraction", "saturated_fraction") for p in "ab"}
    zeros.update({"dead_fraction/out": 0.9, "saturated_fraction/out": 0.9})  # output: ignored
    assert activation_health({**base, **zeros}) == "healthy"
    assert activation_health({**base, **zeros, "dead_fraction/b": 0.6}) == "dead units"
    assert activation_health({**base, **zeros, "saturated_fraction/a": 0.6}) == "saturated"
    assert activation_health({**base, **zeros, "act_std/b": math.inf}) == "exploding"
    with pytest.raises(ValueError, match="at least one layer"):
        activation_health({})


def test_logger_under_fit_matches_numpy_at_each_measurement(probe_x):
    model = planted_net()
    y = (probe_x[:, :2] > 0).astype("float32")
    logger = ActivationStatsLogger(probe_x[:200], every=2, batch_size=128)
    initial = numpy_stats(model, probe_x[:200])
    history = model.fit(probe_x, y, epochs=4, batch_size=50, callbacks=[logger], verbose=0)
    assert logger.epochs == [-1, 1, 3]
    final = numpy_stats(model, probe_x[:200])
    for key, value in final.items():
        assert logger.history[key][0] == pytest.approx(initial[key], rel=2e-5, abs=1e-6)
        assert logger.history[key][-1] == pytest.approx(value, rel=2e-5, abs=1e-6)
        assert history.history[key][-1] == logger.history[key][-1]  # in logs, for recorders
    assert len(logger.health_history) == 3
    assert logger.ranges["tanh"] == (-1.0, 1.0) and logger.ranges["relu"][0] == 0.0
    counts = logger.histograms["tanh"]
    assert counts.shape == (3, HISTOGRAM_BINS)
    w1, b1, w2, b2 = model.get_weights()[:4]
    binned = np.concatenate([probe_x[:HISTOGRAM_ROWS], probe_x[128 : 128 + HISTOGRAM_ROWS]])
    expected_counts, _ = np.histogram(
        np.tanh(np.maximum(binned @ w1 + b1, 0) @ w2 + b2), bins=HISTOGRAM_BINS, range=(-1, 1)
    )
    assert np.abs(counts[-1] - expected_counts).sum() <= 2  # float32 vs float64 at bin edges


def test_logger_under_train_intervals(probe_x):
    model = planted_net()
    y = (probe_x[:, :2] > 0).astype("float32")
    logger = ActivationStatsLogger(tf.data.Dataset.from_tensor_slices(probe_x[:100]).batch(40))
    train(model, probe_x, y, iterations=30, log_every=10, callbacks=[logger])
    assert logger.epochs == [-1, 0, 1, 2]
    final = numpy_stats(model, probe_x[:100])
    for key, value in final.items():
        assert logger.history[key][-1] == pytest.approx(value, rel=2e-5, abs=1e-6), key
    assert model.history.history["act_std/relu"][-1] == logger.history["act_std/relu"][-1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probe_x": np.zeros((4, 2)), "every": 0}, "every must be a positive integer; got 0."),
        ({"probe_x": "images"}, "probe_x must be an array, a dict or list of arrays"),
        ({"probe_x": np.zeros((4, 2)), "batch_size": 0}, "batch_size must be a positive"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match="^" + message):
        ActivationStatsLogger(**kwargs)


def test_figures_from_the_logger_arrays(probe_x):
    from reg_callbacks.plots import activation_histograms, activation_std_by_depth

    model = planted_net()
    logger = ActivationStatsLogger(probe_x[:64])
    model.fit(
        probe_x, (probe_x[:, :2] > 0).astype("float32"), epochs=2, verbose=0, callbacks=[logger]
    )
    paths = list(logger.histograms)
    std = np.array([logger.history[f"act_std/{p}"] for p in paths]).T
    figure = activation_std_by_depth(
        std, ["start", "epoch 1", "epoch 2"], theory={"flat": [1.0] * len(paths)}
    )
    ax = figure.axes[0]
    assert ax.get_yscale() == "log" and len(ax.lines) == 4
    np.testing.assert_allclose(ax.lines[0].get_ydata(), std[0])
    figure = activation_histograms(logger.histograms, logger.ranges, logger.epochs)
    image = figure.axes[paths.index("tanh")].images[0]
    assert image.get_extent()[2:] == [-1.0, 1.0]
    np.testing.assert_allclose(image.get_array(), np.log1p(logger.histograms["tanh"].T))
    with pytest.raises(ValueError, match="one label per measurement"):
        activation_std_by_depth(std, ["start"])
