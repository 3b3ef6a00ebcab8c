"""The fast training path: same results as `fit`, callbacks driven per interval."""

import gc
import threading
import time
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src import backend as keras_backend
from sklearn.datasets import make_moons

import reg_callbacks.mlflow_callback as mlflow_callback
from reg_callbacks import (
    BiasVarianceCallback,
    GradientNormLogger,
    TrainingDiverged,
    layer_gradient_norms,
    train,
)
from reg_callbacks.backends import tensorflow as tf_backend
from reg_callbacks.backends.tensorflow import (
    _steps_function,
    compiled_for_model,
    counter_based_dropout,
)
from reg_callbacks.bias_variance import predict
from reg_callbacks.mlflow_callback import RecorderCallback

pytestmark = pytest.mark.backends
on_jax = keras.backend.backend() == "jax"


def tensorflow_only(why):
    return pytest.mark.skipif(on_jax, reason=why)


XLA_FALLBACK = "jit_compile='auto' falling back to a plain graph is TensorFlow's"
TF_CACHE = "the key of the TensorFlow loop in its cache"
TF_DROPOUT = "counter_based_dropout swaps TensorFlow's own dropout under XLA"


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
    # On JAX both run under XLA: fit jits one step, train a loop of them.
    tolerance = 0.0 if not jit_compile and not on_jax else 1e-6
    for a, b in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=tolerance)


def test_logs_are_the_exact_cost_at_the_last_step_of_each_interval(moons):
    x, y = moons
    model = course_net()
    history = train(model, x, y, iterations=250, log_every=100)
    assert len(history.history["loss"]) == 3  # intervals of 100, 100 and 50 steps
    assert int(model.optimizer.iterations) == 250
    exact = float(np.mean(keras.losses.binary_crossentropy(y, model(x))))
    # logs["loss"] is the cost before the last update; one more step moves it very little
    assert history.history["loss"][-1] == pytest.approx(exact, abs=2e-3)


class WeightSnapshots(keras.callbacks.Callback):
    """Copies the weights before training (`at[-1]`) and at every epoch's end (`at[epoch]`).

    Placed after the callbacks under test, so that what they measured at an epoch's end can
    be recomputed independently from the very weights they measured.
    """

    def on_train_begin(self, logs=None):
        self.at = {-1: self.model.get_weights()}

    def on_epoch_end(self, epoch, logs=None):
        self.at[epoch] = self.model.get_weights()


def course_net_probabilities(weights, x) -> np.ndarray:
    """`course_net`'s inference forward pass (dropout off) in NumPy, float64."""
    kernels, biases = weights[::2], weights[1::2]
    activations = np.asarray(x, np.float64)
    for kernel, bias in zip(kernels[:-1], biases[:-1], strict=True):
        activations = np.maximum(0.0, activations @ kernel + bias)
    return 1.0 / (1.0 + np.exp(-(activations @ kernels[-1] + biases[-1])))


def assert_error_rate(measured: float, y, probabilities) -> None:
    """`measured` is the fraction of rows whose probability falls on the wrong side of 0.5.

    A row within float32 rounding of 0.5 may fall either way in float32 and float64: the
    tolerance is the fraction of such rows (none, nearly always).
    """
    probabilities, labels = probabilities.reshape(-1), np.asarray(y).reshape(-1)
    expected = np.mean((probabilities > 0.5) != (labels > 0.5))
    undecided = np.mean(np.abs(probabilities - 0.5) < 1e-6)
    assert abs(measured - expected) <= undecided, (measured, expected)


def course_net_gradient_norms(weights, x, y, l2: float) -> list[float]:
    """Per-layer L2 norms of d(cost)/d(kernel, bias) for `course_net`, in float64 with a
    hand-written forward pass: mean binary cross-entropy plus `l2 * sum(kernel**2)`."""
    variables = [tf.Variable(w.astype(np.float64)) for w in weights]
    x, y = tf.constant(x, tf.float64), tf.constant(y, tf.float64)
    with tf.GradientTape() as tape:
        activations = x
        for kernel, bias in zip(variables[:-2:2], variables[1:-2:2], strict=True):
            activations = tf.nn.relu(activations @ kernel + bias)
        p = tf.sigmoid(activations @ variables[-2] + variables[-1])
        cost = -tf.reduce_mean(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p))
        cost += l2 * tf.add_n([tf.reduce_sum(kernel**2) for kernel in variables[::2]])
    gradients = [g.numpy() for g in tape.gradient(cost, variables)]
    return [
        float(np.sqrt(np.sum(kernel**2) + np.sum(bias**2)))
        for kernel, bias in zip(gradients[::2], gradients[1::2], strict=True)
    ]


@pytest.mark.parametrize("batch_size", [None, 64])
def test_every_probed_interval_matches_numpy_on_that_intervals_weights(moons, batch_size):
    x, y = moons
    x_dev, y_dev = x[::-1].copy(), 1 - y[::-1]
    probe_x, probe_y = x[:50], y[:50]
    errors = BiasVarianceCallback((x, y), (x_dev, y_dev), every=2)
    norms = GradientNormLogger((probe_x, probe_y), every=3)
    snapshots = WeightSnapshots()
    model = course_net(l2=0.01, dropout=0.2)
    # 7 intervals (the last of 5 steps); probes at 1, 3 and 5 (errors), 2 and 5 (norms): four
    # probe layouts, so four compiled loops, each checked. Errors are measured once more at
    # the end, outside the compiled call, for the last interval.
    history = train(
        model,
        x,
        y,
        iterations=65,
        log_every=10,
        batch_size=batch_size,
        callbacks=[errors, norms, snapshots],
    )
    assert int(model.optimizer.iterations) == 65 and len(history.history["loss"]) == 7

    assert errors.history["epoch"] == [1, 3, 5, 6]
    for i, epoch in enumerate(errors.history["epoch"]):
        weights = snapshots.at[epoch]
        train_error, dev_error = errors.history["train_error"][i], errors.history["dev_error"][i]
        assert_error_rate(train_error, y, course_net_probabilities(weights, x))
        assert_error_rate(dev_error, y_dev, course_net_probabilities(weights, x_dev))
        assert errors.history["avoidable_bias"][i] == train_error  # the Bayes error is 0
        assert errors.history["variance"][i] == pytest.approx(dev_error - train_error)
    # The interval ends' values reached the logs, and so `History`.
    assert history.history["dev_error"] == errors.history["dev_error"][:3]

    layer_names = [layer.name for layer in model.layers if layer.weights]
    keys = [f"grad_norm/{name}" for name in layer_names]
    assert norms.epochs == [-1, 2, 5] and sorted(norms.history) == sorted(keys)
    for i, epoch in enumerate(norms.epochs):
        expected = course_net_gradient_norms(snapshots.at[epoch], probe_x, probe_y, l2=0.01)
        measured = [norms.history[key][i] for key in keys]
        np.testing.assert_allclose(measured, expected, rtol=1e-4, err_msg=f"epoch {epoch}")
    for key in keys:
        assert history.history[key] == norms.history[key][1:]


def test_validation_logs_are_keras_evaluate_on_each_intervals_weights(moons):
    x, y = moons
    x_dev, y_dev = make_moons(97, noise=0.3, random_state=1)
    x_dev, y_dev = x_dev.astype("float32"), y_dev.reshape(-1, 1).astype("float32")
    snapshots = WeightSnapshots()
    model = course_net(l2=0.01, dropout=0.2)
    history = train(
        model,
        x,
        y,
        iterations=50,
        log_every=10,
        validation_data=(x_dev, y_dev),
        callbacks=[snapshots],
    )
    judge = course_net(l2=0.01, dropout=0.2)  # same layers, loss, penalty and metrics
    val_losses = []
    for epoch in range(5):
        judge.set_weights(snapshots.at[epoch])
        expected = judge.evaluate(x_dev, y_dev, batch_size=len(x_dev), verbose=0, return_dict=True)
        assert history.history["val_loss"][epoch] == pytest.approx(expected["loss"], rel=1e-6)
        assert history.history["val_accuracy"][epoch] == pytest.approx(expected["accuracy"])
        val_losses.append(expected["loss"])
    assert len(set(val_losses)) == 5  # the weights moved: each interval was checked on its own


CATEGORIES = 8  # bins per moons coordinate


def categorical_moons(x, y):
    """Each moons coordinate as one of `CATEGORIES` integer ids (100, 101, ...)."""
    edges = np.linspace(x.min(), x.max(), CATEGORIES + 1)[1:-1]
    return (100 + np.digitize(x, edges)).astype("int64"), y


def categorical_net(seed=0):
    """Integer ids through `IntegerLookup` (a hash table: no XLA kernel), then an embedding."""
    initializer = keras.initializers.RandomNormal(stddev=0.3, seed=seed)
    ids = keras.Input((2,), dtype="int64")
    index = keras.layers.IntegerLookup(vocabulary=np.arange(100, 100 + CATEGORIES))(ids)
    embedded = keras.layers.Embedding(CATEGORIES + 1, 4, embeddings_initializer=initializer)(index)
    hidden = keras.layers.Dense(8, "relu", kernel_initializer=initializer)(
        keras.layers.Flatten()(embedded)
    )
    output = keras.layers.Dense(1, "sigmoid", kernel_initializer=initializer)(hidden)
    model = keras.Model(ids, output)
    model.compile(keras.optimizers.SGD(0.3), "binary_crossentropy", metrics=["accuracy"])
    return model


@tensorflow_only(XLA_FALLBACK)
@pytest.mark.parametrize("batch_size", [None, 64])
def test_auto_without_an_xla_kernel_trains_as_a_plain_graph_exactly_iterations_steps(
    moons, batch_size
):
    ids, y = categorical_moons(*moons)
    ids_dev, y_dev = ids[::-1].copy(), 1 - y[::-1]
    # The control: this model really has no XLA kernel, and XLA refuses it before any step.
    xla_only = categorical_net()
    initial = xla_only.get_weights()
    with pytest.raises(tf.errors.InvalidArgumentError, match="XLA"):
        train(xla_only, ids, y, iterations=35, log_every=10, jit_compile=True)
    assert int(xla_only.optimizer.iterations) == 0
    for before, after in zip(initial, xla_only.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)

    trained = {}
    for jit_compile in ("auto", False):
        model = categorical_net()
        model.set_weights(initial)
        errors = BiasVarianceCallback((ids, y), (ids_dev, y_dev), every=2)  # varies the layout
        history = train(
            model,
            ids,
            y,
            iterations=35,
            log_every=10,
            batch_size=batch_size,
            callbacks=[errors],
            jit_compile=jit_compile,
        )
        assert int(model.optimizer.iterations) == 35, jit_compile
        trained[jit_compile] = (model.get_weights(), history.history, errors.history)
    (auto_weights, *auto_logs), (plain_weights, *plain_logs) = trained["auto"], trained[False]
    for auto, plain, first in zip(auto_weights, plain_weights, initial, strict=True):
        np.testing.assert_array_equal(auto, plain)  # the same graph ran: bit-identical
        assert not np.array_equal(auto, first)  # and it trained
    assert auto_logs == plain_logs


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


@tensorflow_only(TF_CACHE)
def test_compiled_loop_is_reused_and_rebuilt_after_compile(moons):
    x, y = moons
    model = course_net()
    train(model, x, y, iterations=20, log_every=10)
    steps = compiled_for_model(model, ("train", True, ()), _steps_function)
    train(model, x, y, iterations=20, log_every=10)
    assert compiled_for_model(model, ("train", True, ()), _steps_function) is steps
    model.compile(keras.optimizers.SGD(0.0), "binary_crossentropy")  # a new optimizer
    before = model.get_weights()
    train(model, x, y, iterations=20, log_every=10)
    assert compiled_for_model(model, ("train", True, ()), _steps_function) is not steps
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the new optimizer's learning rate 0 was used


@tensorflow_only(TF_CACHE)
def test_models_of_one_architecture_share_one_loop_and_train_as_fit_would(moons):
    x, y = moons
    first = course_net(seed=1)
    callbacks = [GradientNormLogger((x, y)), BiasVarianceCallback((x, y), (x, y))]
    train(first, x, y, iterations=60, log_every=30, validation_data=(x, y), callbacks=callbacks)
    first_weights = first.get_weights()
    second, reference = course_net(seed=2), course_net(seed=2)
    for model in (second, reference):  # another learning rate: a variable, not the graph's
        model.compile(keras.optimizers.SGD(0.05), "binary_crossentropy", metrics=["accuracy"])
    reference.set_weights(second.get_weights())
    assert tf_backend._template_for(second) is tf_backend._template_for(first) is not None
    train(second, x, y, iterations=100, log_every=40, validation_data=(x, y))
    reference.fit(x, y, batch_size=len(x), epochs=100, shuffle=False, verbose=0)
    for a, b in zip(second.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)  # XLA's rounding, as above
    for a, b in zip(first.get_weights(), first_weights, strict=True):
        np.testing.assert_array_equal(a, b)  # training the second left the first alone


@tensorflow_only("tf.function's tracing count")
def test_a_new_architecture_is_traced_once_per_function(moons, monkeypatch):
    # Keras builds compile metrics on their first update; built inside a trace, their new
    # variables make tf.function trace the whole loop a second time.
    x, y = moons
    functions = []

    def recorded(*args, **kwargs):
        function = real_function(*args, **kwargs)
        functions.append(function)
        return function

    real_function = tf.function
    monkeypatch.setattr(tf, "function", recorded)
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(13, "tanh"), keras.layers.Dense(1, "sigmoid")]
    )
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy", metrics=["accuracy"])
    callbacks = [GradientNormLogger((x, y)), BiasVarianceCallback((x, y), (x, y))]
    train(model, x, y, iterations=40, log_every=20, validation_data=(x, y), callbacks=callbacks)
    counts = [function.experimental_get_tracing_count() for function in functions]
    assert counts.count(1) >= 2  # the loop and the evaluator at least
    # 0: the plain-graph fallback XLA did not need. The gradient probe, larger than a
    # gradient batch, is measured before training in batches whose last is shorter: its
    # function is traced once per batch shape, and it is the only one traced twice.
    assert set(counts) <= {0, 1, 2} and counts.count(2) <= 1


@tensorflow_only(TF_CACHE)
def test_a_model_trained_on_a_shared_loop_holds_its_last_steps_metrics(moons):
    x, y = moons
    train(course_net(seed=3), x, y, iterations=20, log_every=10)  # the architecture's loop
    model = course_net(seed=4)
    assert tf_backend._template_for(model) is not None
    history = train(model, x, y, iterations=30, log_every=10)
    result = model.get_metrics_result()  # as after fit: the last step's loss and accuracy
    assert float(result["accuracy"]) == pytest.approx(history.history["accuracy"][-1], abs=1e-6)
    assert float(result["loss"]) == pytest.approx(history.history["loss"][-1], rel=1e-5)


@tensorflow_only(TF_CACHE)
def test_l2_nets_of_any_lambda_share_one_loop_and_each_trains_with_its_own(moons):
    x, y = moons
    trained = {}
    for lambd in (0.01, 0.05, 0.01):
        model, reference = course_net(seed=7, l2=lambd), course_net(seed=7, l2=lambd)
        train(model, x, y, iterations=50, log_every=25)
        reference.fit(x, y, batch_size=len(x), epochs=50, shuffle=False, verbose=0)
        for a, b in zip(model.get_weights(), reference.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)  # XLA's rounding, as above
        trained.setdefault(lambd, []).append(model)
    assert (
        tf_backend._template_for(trained[0.01][0])
        is tf_backend._template_for(trained[0.05][0])
        is not None
    )
    assert not np.array_equal(trained[0.01][0].get_weights()[0], trained[0.05][0].get_weights()[0])


@tensorflow_only(TF_CACHE)
def test_a_dropout_net_trains_the_same_before_and_after_another_of_its_architecture(moons):
    x, y = moons

    def trained(seed):
        model = course_net(seed=seed, dropout=0.2)
        train(model, x, y, iterations=60, log_every=20)
        return model.get_weights(), int(model.optimizer.iterations.numpy())

    weights, steps = trained(5)
    other_weights, _ = trained(6)
    weights_again, steps_again = trained(5)
    assert steps == steps_again == 60
    assert not np.array_equal(weights[0], other_weights[0])
    for a, b in zip(weights, weights_again, strict=True):
        np.testing.assert_array_equal(a, b)  # no weights, step count or dropout seed leaked


@tensorflow_only(TF_CACHE)
def test_architecture_key_tells_apart_what_changes_the_graph():
    key = tf_backend.architecture_key
    assert key(course_net(seed=1)) == key(course_net(seed=2))
    assert len({key(course_net()), key(course_net(l2=0.1)), key(course_net(dropout=0.2))}) == 3
    assert key(course_net(l2=0.1)) == key(course_net(l2=0.2))  # λ lives in a variable
    l1l2 = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(1, kernel_regularizer=keras.regularizers.L1L2(0.1))]
    )
    l1l2_other = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(1, kernel_regularizer=keras.regularizers.L1L2(0.2))]
    )
    assert key(l1l2) != key(l1l2_other)  # L1L2 branches on its factors: they stay in the key
    other_loss = course_net()
    other_loss.compile(keras.optimizers.SGD(0.3), "mse")
    assert key(other_loss) != key(course_net())
    momentum = course_net()
    momentum.compile(keras.optimizers.SGD(0.3, momentum=0.9), "binary_crossentropy")
    assert key(momentum) != key(course_net())

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x) * 2.0

    subclassed = Subclassed()
    subclassed(np.zeros((1, 2), "float32"))
    assert key(subclassed) is None  # its call may do anything its config does not say
    normalization = keras.layers.Normalization()
    normalization.adapt(np.random.default_rng(0).normal(size=(8, 2)))
    adapted = keras.Sequential([keras.Input((2,)), normalization, keras.layers.Dense(1)])
    assert key(adapted) is None  # its adapted mean and variance are not variables


def test_compiled_functions_do_not_keep_the_model_alive(moons):
    x, y = moons
    model = course_net(dropout=0.2)
    train(model, x, y, iterations=20, log_every=10, validation_data=(x, y))
    GradientNormLogger((x, y)).set_model(model)
    layer_gradient_norms(model, x, y)
    predict(model, x)
    reference = weakref.ref(model)
    del model
    gc.collect()
    assert reference() is None


@pytest.fixture
def xla_dropout():
    """A Dropout layer's training-mode output, twice, and its inference output, under XLA."""
    layer = keras.layers.Dropout(0.14, seed=3)

    @tf.function(jit_compile=True)
    def outputs(x):
        return layer(x, training=True), layer(x, training=True), layer(x, training=False)

    return outputs


@tensorflow_only(TF_DROPOUT)
def test_counter_based_dropout_is_inverted_dropout_with_a_fresh_mask(xla_dropout):
    x = tf.ones((1000, 100))
    with counter_based_dropout():
        first, second, inference = (output.numpy() for output in xla_dropout(x))
    # 1e5 draws: the kept fraction's standard deviation is 0.0011.
    assert np.mean(first != 0) == pytest.approx(0.86, abs=0.005)
    assert np.mean(first) == pytest.approx(1.0, abs=0.006)  # inverted: the mean is kept
    np.testing.assert_allclose(np.unique(first), [0.0, 1 / 0.86], rtol=1e-6)
    # A fresh mask on each call: two independent masks agree on 0.86² + 0.14² of entries.
    assert np.mean((first != 0) == (second != 0)) == pytest.approx(0.86**2 + 0.14**2, abs=0.01)
    np.testing.assert_array_equal(inference, x.numpy())  # off at inference


@tensorflow_only(TF_DROPOUT)
def test_counter_based_dropout_is_scoped_to_its_thread_and_block():
    keras_dropout = keras_backend.random.dropout
    routed = []
    with counter_based_dropout():
        assert keras_backend.random.dropout is not keras_dropout
        other = threading.Thread(target=lambda: routed.append(_uses_threefry()))
        other.start()
        other.join()
        routed.append(_uses_threefry())
    assert routed == [False, True]  # another thread meanwhile keeps Keras's own dropout
    assert keras_backend.random.dropout is keras_dropout


def _uses_threefry() -> bool:
    calls = []
    swap = tf_backend._DROPOUT_SWAP
    swap.replacement = lambda *args, **kwargs: calls.append(1)
    try:
        keras_backend.random.dropout(tf.ones((2, 2)), 0.5, seed=keras.random.SeedGenerator(0))
    finally:
        swap.replacement = tf_backend.threefry_dropout
    return bool(calls)


@tensorflow_only(TF_DROPOUT)
def test_dropout_training_uses_threefry_is_reproducible_and_restores_keras(moons, monkeypatch):
    x, y = moons
    keras_dropout = keras_backend.random.dropout
    traced = []
    threefry = tf_backend.threefry_dropout
    monkeypatch.setattr(
        tf_backend._DROPOUT_SWAP,
        "replacement",
        lambda *a, **k: traced.append(1) or threefry(*a, **k),
    )
    weights = []
    for _ in range(2):
        model = course_net(dropout=0.14)
        train(model, x, y, iterations=50, log_every=25, jit_compile=True)
        weights.append(model.get_weights())
    assert traced  # the compiled loop's Dropout layers drew their masks with Threefry
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)  # same seeds, same masks, same weights
    assert keras_backend.random.dropout is keras_dropout


class _ListRecorder:
    """Stands in for `RunRecorder`: keeps the rows; slow, like a SQLite commit."""

    def __init__(self, error=None):
        self.batches, self.error = [], error

    def log_metrics(self, rows):
        time.sleep(0.05)
        if self.error:
            raise self.error
        self.batches.append([step for step, _ in rows])

    @property
    def steps(self):
        return [step for batch in self.batches for step in batch]


def test_recorder_callback_writes_in_the_background_in_order(moons):
    recorder = _ListRecorder()
    callback = RecorderCallback(recorder, flush_secs=0)
    model = course_net()
    train(model, *moons, iterations=95, log_every=10, callbacks=[callback])
    assert recorder.steps == [*range(10, 91, 10), 95]  # all written, in order, on return
    # The step is the optimizer's count, read inside the compiled call by `train`, by `fit` not.
    train(model, *moons, iterations=20, log_every=10, callbacks=[callback])
    model.fit(*moons, batch_size=len(moons[0]), epochs=1, verbose=0, callbacks=[callback])
    assert recorder.steps[10:] == [105, 115, 116]


def test_recorder_callback_writes_every_flush_secs_and_as_the_last_epoch_begins(moons, monkeypatch):
    clock = {"seconds": 0.0}
    monkeypatch.setattr(mlflow_callback, "monotonic", lambda: clock["seconds"])

    def every_epoch_takes_a_second(epoch, logs):
        clock["seconds"] += 1

    tick = keras.callbacks.LambdaCallback(on_epoch_end=every_epoch_takes_a_second)
    recorder = _ListRecorder()
    callback = RecorderCallback(recorder, flush_secs=2.5)
    train(course_net(), *moons, iterations=80, log_every=10, callbacks=[tick, callback])
    # The write `on_train_end` waits for holds the last epoch's row alone.
    assert recorder.batches == [[10, 20, 30], [40, 50, 60], [70], [80]]


@pytest.mark.parametrize("flush_secs", [-1, float("nan"), "5", True])
def test_recorder_callback_refuses_a_bad_flush_secs(flush_secs):
    with pytest.raises(ValueError, match="flush_secs must be a number of seconds >= 0"):
        RecorderCallback(_ListRecorder(), flush_secs=flush_secs)


def test_recorder_callback_raises_a_failed_write(moons):
    callback = RecorderCallback(_ListRecorder(OSError("database is gone")), flush_secs=0)
    with pytest.raises(OSError, match="database is gone"):
        train(course_net(), *moons, iterations=50, log_every=10, callbacks=[callback])
