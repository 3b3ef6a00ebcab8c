"""`train()` and the callbacks on models written as keras.io's examples write them.

One test per failure a user met (issue 25): `train()` compiling a convnet with XLA, refusing
a `tf.data.Dataset`, crashing on a custom `train_step`'s nested metric dicts; the callbacks
evaluating a whole set in one call, and re-reading a `tf.data` probe from scratch. Expected
values come from Keras itself (`fit`, `predict`, `evaluate`). Speed is measured in
`benchmarks/`, not here.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from public_examples import (
    custom_trainer,
    mnist_convnet,
    mnist_like,
    structured_data_model,
    structured_dataset,
    tabular_like,
    timeseries_conv1d,
    transformer_classifier,
)

from reg_callbacks import BiasVarianceCallback, GradientNormLogger, train
from reg_callbacks.gradient_norms import layer_gradient_norms

pytestmark = pytest.mark.backends
ON_TF = keras.backend.backend() == "tensorflow"
tf_only = pytest.mark.skipif(not ON_TF, reason="the example's train_step uses tf.GradientTape")


def twin_models(build, *args):
    """Two models built alike from the same seed: the same weights and dropout seeds."""
    models = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        models.append(build(*args))
    return models


@pytest.mark.skipif(not ON_TF, reason="jit_compile is TensorFlow's choice")
def test_auto_trains_a_convnet_without_xla_exactly_as_fit():
    # Under XLA the dropout masks are Threefry's, not fit's: weights would differ by far more.
    x, y = mnist_like(64)
    ours, reference = twin_models(mnist_convnet)
    train(ours, x, y, iterations=2, log_every=1)
    reference.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0)
    for mine, theirs in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not ON_TF, reason="jit_compile is TensorFlow's choice")
def test_auto_keeps_xla_for_dense_nets_only():
    from reg_callbacks.backends.tensorflow import prefers_xla

    dense = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    assert prefers_xla(dense) and prefers_xla(custom_trainer())
    for model in (mnist_convnet(), timeseries_conv1d(), transformer_classifier(maxlen=8)):
        assert not prefers_xla(model), model.name
    recurrent = keras.Sequential([keras.Input((5, 2)), keras.layers.LSTM(3), keras.layers.Dense(1)])
    assert not prefers_xla(recurrent)


@tf_only
def test_custom_train_step_logs_are_flattened_as_fit_flattens_them():
    x, y = tabular_like(50)
    ours, reference = twin_models(custom_trainer)
    before = reference.predict(x, verbose=0)
    history = train(ours, x, y, iterations=1, log_every=1)
    fitted = reference.fit(x, y, batch_size=50, epochs=1, shuffle=False, verbose=0)
    assert set(history.history) == set(fitted.history) == {"loss", "accuracy"}
    # The one step's accuracy is that of the weights before it, as Keras predicts them.
    expected = np.mean((before > 0.5) == (y > 0.5))
    assert history.history["accuracy"][0] == pytest.approx(expected)
    assert history.history["loss"][0] == pytest.approx(fitted.history["loss"][0], rel=1e-5)


@pytest.mark.skipif(
    not ON_TF, reason="on JAX train's dropout masks come from its own hash, not fit's"
)
def test_train_takes_a_tf_data_dataset_of_dict_batches_as_fit_does():
    dataset = structured_dataset(96, batch_size=32).cache()  # one fixed order for both
    ours, reference = twin_models(structured_data_model, dataset)
    # Two passes over a finite dataset: train reads it again from its start, as fit's epochs.
    train(ours, dataset, iterations=6, log_every=3, jit_compile=False)
    reference.fit(dataset, epochs=2, verbose=0)
    for mine, theirs in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5)


def test_train_refuses_a_dataset_with_targets_or_a_batch_size():
    dataset = structured_dataset(64)
    model = structured_data_model(dataset)
    with pytest.raises(ValueError, match="y must be None when x is a tf.data.Dataset"):
        train(model, dataset, np.zeros(64), iterations=2)
    with pytest.raises(ValueError, match="batch_size must be None when x is a tf.data.Dataset"):
        train(model, dataset, iterations=2, batch_size=8)


class RowsSeen(keras.layers.Layer):
    """Identity layer noting the rows of every inference call's input whose row count is
    known when the call is traced (the probes' compiled functions see fixed shapes)."""

    def __init__(self):
        super().__init__()
        self.rows_seen = []

    def call(self, inputs, training=False):
        if not training and isinstance(inputs.shape[0], int):
            self.rows_seen.append(int(inputs.shape[0]))
        return inputs


def counted_convnet():
    spy = RowsSeen()
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            spy,
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "categorical_crossentropy")
    return model, spy


def test_callbacks_never_call_the_model_on_more_than_a_batch():
    x, y = mnist_like(700)
    model, spy = counted_convnet()
    bias_variance = BiasVarianceCallback((x[:500], y[:500]), (x[500:], y[500:]), batch_size=64)
    gradients = GradientNormLogger((x[:200], y[:200]), batch_size=64)
    model.fit(x[:64], y[:64], epochs=2, verbose=0, callbacks=[bias_variance, gradients])
    assert spy.rows_seen and max(spy.rows_seen) <= 64
    # Batched, the errors are Keras's own over every row.
    predicted = model.predict(x, verbose=0).argmax(-1) != y.argmax(-1)
    assert bias_variance.history["train_error"][-1] == pytest.approx(predicted[:500].mean())
    assert bias_variance.history["dev_error"][-1] == pytest.approx(predicted[500:].mean())


def test_batched_gradient_norms_are_those_of_the_whole_probe():
    x, y = mnist_like(96)
    model, _ = counted_convnet()
    whole = layer_gradient_norms(model, x, y, batch_size=96)
    batched = layer_gradient_norms(model, x, y, batch_size=40)
    assert batched.keys() == whole.keys()
    np.testing.assert_allclose(list(batched.values()), list(whole.values()), rtol=1e-4)


def test_train_error_on_a_large_training_set_uses_a_fixed_subsample():
    x, y = mnist_like(1300)
    model, spy = counted_convnet()
    callback = BiasVarianceCallback((x[:1200], y[:1200]), (x[1200:], y[1200:]), train_rows=300)
    model.fit(x[:64], y[:64], epochs=2, verbose=0, callbacks=[callback])
    assert callback.train.n_rows == 300
    errors = np.asarray(callback.history["train_error"]) * 300
    np.testing.assert_allclose(errors, np.round(errors), atol=1e-6)  # a count over 300 rows
    everything = BiasVarianceCallback((x[:1200], y[:1200]), (x[1200:], y[1200:]), train_rows=None)
    model.fit(x[:64], y[:64], epochs=1, verbose=0, callbacks=[everything])
    predicted = model.predict(x[:1200], verbose=0).argmax(-1) != y[:1200].argmax(-1)
    assert everything.history["train_error"][-1] == pytest.approx(predicted.mean())


def test_a_tf_data_probe_is_read_through_one_pipeline_for_the_whole_run():
    train_ds = structured_dataset(200, batch_size=32, seed=0)
    # filter(): unknown cardinality, so the first pass also counts the batches.
    dev_ds = structured_dataset(150, batch_size=32, seed=1).filter(lambda x, y: True)
    model = structured_data_model(train_ds)
    callback = BiasVarianceCallback(train_ds, dev_ds)
    model.fit(train_ds, epochs=3, verbose=0, callbacks=[callback])
    iterator = callback.dev._iterator
    model.fit(train_ds, epochs=2, verbose=0, callbacks=[callback])
    assert iterator is not None and callback.dev._iterator is iterator
    # Each evaluation covered the dev set once: Keras's own accuracy over it agrees.
    accuracy = model.evaluate(dev_ds, verbose=0, return_dict=True)["accuracy"]
    assert callback.history["dev_error"][-1] == pytest.approx(1 - accuracy, abs=1e-6)


def test_a_transformer_example_is_diagnosed_in_batches():
    x = np.random.default_rng(0).integers(1, 50, (120, 8)).astype("int32")
    y = (x[:, 0] > 25).astype("int64")
    model = transformer_classifier(maxlen=8, vocab_size=50)
    callback = BiasVarianceCallback((x[:80], y[:80]), (x[80:], y[80:]), batch_size=16)
    model.fit(x[:80], y[:80], epochs=1, batch_size=16, verbose=0, callbacks=[callback])
    predicted = model.predict(x, verbose=0).argmax(-1) != y
    assert callback.history["dev_error"][-1] == pytest.approx(predicted[80:].mean())


@pytest.mark.parametrize("rows", [50, 1100])
def test_train_matches_its_callbacks_in_loop_and_batched(rows):
    # Small probes run inside train's interval call, large ones batch by batch after it:
    # either way the errors are Keras's predictions on the trained weights.
    x, y = tabular_like(rows + 100)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, "relu"), keras.layers.Dense(1, "sigmoid")]
    )
    model.compile("adam", "binary_crossentropy")
    callback = BiasVarianceCallback((x[:rows], y[:rows]), (x[rows:], y[rows:]), train_rows=None)
    train(model, x[:rows], y[:rows], iterations=20, log_every=10, callbacks=[callback])
    predicted = (model.predict(x, verbose=0) > 0.5) != (y > 0.5)
    assert callback.history["train_error"][-1] == pytest.approx(predicted[:rows].mean())
    assert callback.history["dev_error"][-1] == pytest.approx(predicted[rows:].mean())


def test_probe_settings_are_validated():
    x, y = tabular_like(10)
    with pytest.raises(ValueError, match="batch_size must be a positive integer; got 0"):
        BiasVarianceCallback((x, y), (x, y), batch_size=0)
    with pytest.raises(ValueError, match="train_rows must be None or a positive integer"):
        BiasVarianceCallback((x, y), (x, y), train_rows=-1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        GradientNormLogger((x, y), batch_size=True)


def test_a_dense_net_on_dict_dataset_batches_trains_as_fit():
    dataset = tf.data.Dataset.from_tensor_slices(
        ({"a": np.random.default_rng(0).normal(size=(40, 2)).astype("float32")}, np.ones((40, 1)))
    ).batch(16)

    def build():
        inputs = keras.Input((2,), name="a")
        model = keras.Model({"a": inputs}, keras.layers.Dense(1, "sigmoid")(inputs))
        model.compile("sgd", "binary_crossentropy")
        return model

    ours, reference = twin_models(build)
    train(ours, dataset, iterations=3, log_every=2)  # XLA on TensorFlow: a dense net
    reference.fit(dataset, epochs=1, verbose=0)
    for mine, theirs in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


def test_gradient_norms_inside_train_are_those_of_the_whole_probe():
    # 200 probe rows in batches of 64: on TensorFlow four batches inside the interval call.
    x, y = tabular_like(300)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, "relu"), keras.layers.Dense(1, "sigmoid")]
    )
    model.compile("adam", "binary_crossentropy")
    logger = GradientNormLogger((x[:200], y[:200]), batch_size=64)
    train(model, x, y, iterations=20, log_every=10, callbacks=[logger])
    whole = layer_gradient_norms(model, x[:200], y[:200], batch_size=200)
    measured = [logger.history[key][-1] for key in whole]
    np.testing.assert_allclose(measured, list(whole.values()), rtol=1e-5)
