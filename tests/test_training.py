"""The fast training path: same results as `fit`, callbacks driven per interval."""

import keras
import numpy as np
import pytest
from sklearn.datasets import make_moons

from reg_callbacks import TrainingDiverged, train


def course_net(seed=0, l2=0.0, dropout=0.0):
    initializer = keras.initializers.RandomNormal(stddev=0.3, seed=seed)
    regularizer = keras.regularizers.L2(l2) if l2 else None
    layers = [keras.Input((2,))]
    for units in (20, 3):
        layers.append(
            keras.layers.Dense(
                units, "relu", kernel_initializer=initializer, kernel_regularizer=regularizer
            )
        )
        if dropout:
            layers.append(keras.layers.Dropout(dropout, seed=seed))
    layers.append(
        keras.layers.Dense(
            1, "sigmoid", kernel_initializer=initializer, kernel_regularizer=regularizer
        )
    )
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.SGD(0.3), "binary_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def moons():
    x, y = make_moons(211, noise=0.3, random_state=0)
    return x.astype("float32"), y.reshape(-1, 1).astype("float32")


@pytest.mark.parametrize("l2", [0.0, 0.01])
@pytest.mark.parametrize("jit_compile", [True, False])
def test_same_weights_as_fit(moons, l2, jit_compile):
    x, y = moons
    ours, reference = course_net(l2=l2), course_net(l2=l2)
    reference.set_weights(ours.get_weights())
    train(ours, x, y, iterations=100, log_every=40, jit_compile=jit_compile)
    reference.fit(x, y, batch_size=len(x), epochs=100, shuffle=False, verbose=0)
    # Without XLA the very same ops run: bit-identical. XLA fuses them differently, which
    # moves float32 rounding (~1e-7 after 100 steps; a ReLU kink crossed later can amplify it).
    tolerance = 1e-6 if jit_compile else 0.0
    for a, b in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=tolerance)


def test_logs_are_the_exact_cost_at_the_last_step_of_each_interval(moons):
    x, y = moons
    model = course_net()
    history = train(model, x, y, iterations=250, log_every=100)
    assert len(history.history["loss"]) == 3  # intervals of 100, 100 and 50 steps
    assert int(model.optimizer.iterations) == 250
    exact = float(keras.losses.binary_crossentropy(y, model(x)).numpy().mean())
    # logs["loss"] is the cost before the last update; one more step moves it very little
    assert history.history["loss"][-1] == pytest.approx(exact, abs=2e-3)


def test_early_stopping_patience_counts_intervals(moons):
    x, y = moons
    model = course_net()
    model.compile(keras.optimizers.SGD(0.0), "binary_crossentropy")  # the loss never improves
    stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=2)
    history = train(model, x, y, iterations=10_000, log_every=100, callbacks=[stopper])
    assert len(history.history["loss"]) == 3
    assert stopper.stopped_epoch == 2


def test_minibatches_cover_every_sample_once_per_pass(moons):
    x, y = moons
    model = course_net()
    history = train(model, x, y, iterations=60, log_every=20, batch_size=64, shuffle_seed=3)
    assert len(history.history["loss"]) == 3
    from reg_callbacks.training import _BatchOrder

    order = _BatchOrder(211, 64, seed=3)
    stream = order.indices(0, 33).reshape(-1)  # 33 * 64 = 2112 = ten passes + 2 rows
    for p in range(10):
        assert sorted(stream[p * 211 : (p + 1) * 211]) == list(range(211))
    np.testing.assert_array_equal(order.indices(5, 3), order.indices(0, 8)[5:])


def test_divergence_raises_after_callbacks_saw_it(moons):
    x, y = moons
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(10.0), "mse")  # linear regression far past 2/L
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(logs["loss"])

        def on_train_end(self, logs=None):
            seen.append("end")

    with pytest.raises(TrainingDiverged, match="loss became"):
        train(model, x, y, iterations=5000, log_every=100, callbacks=[Spy()])
    assert seen[-1] == "end" and not np.isfinite(seen[-2])
    assert len(seen) < 51  # stopped early


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iterations": 0}, "iterations must be a positive integer"),
        ({"iterations": 10, "log_every": 2.5}, "log_every must be a positive integer"),
        ({"iterations": 10, "batch_size": -1}, "batch_size"),
        ({"iterations": 10, "jit_compile": "yes"}, "jit_compile"),
    ],
)
def test_bad_arguments(moons, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train(course_net(), *moons, **kwargs)


def test_uncompiled_model_is_refused(moons):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="compiled"):
        train(model, *moons, iterations=10)
