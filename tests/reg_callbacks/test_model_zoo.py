"""The library on Keras models it never built: every public piece, same call, no flags.

Expected values come from outside the library: per-layer keys from the layers `model_zoo`
finds with `get_layer`, gradient norms from a hand-written `tf.GradientTape` over those
layers' weights, errors from NumPy on `model.predict`, and the broken layer from the zoo's
own record of where it planted the wrong gradient.
"""

import math

import keras
import mlflow
import numpy as np
import pytest
import tensorflow as tf
from model_zoo import CASES, Case, CustomGradientDense, binary_labelled, seeded_rng

from reg_callbacks import (
    BiasVarianceCallback,
    GradientNormLogger,
    RunRecorder,
    gradient_check,
    layer_gradient_norms,
    train,
)
from reg_callbacks.gradient_checking import FINE, LIKELY_BUG, LOOK_CLOSER

# Every test here runs on each backend: `KERAS_BACKEND=jax pytest -m backends`.
pytestmark = pytest.mark.backends

KINDS = list(CASES)

on_jax = keras.backend.backend() == "jax"


def expected_norms(case: Case) -> dict[str, float]:
    """`grad_norm/<path>` of the training loss, from a hand-written gradient over each
    expected layer's weights: a `tf.GradientTape`, or `jax.grad` of a stateless call."""
    model = case.model
    x, y = (keras.tree.map_structure(keras.ops.convert_to_tensor, a) for a in (case.x, case.y))
    weights = [layer.trainable_weights for layer in case.layers.values()]
    if keras.backend.backend() == "jax":
        grads = _jax_gradients(model, weights, x, y)
    else:

        @tf.function
        def gradients(x, y):
            with tf.GradientTape() as tape:
                loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=False), training=False)
            return tape.gradient(loss, weights)

        grads = [[tf.convert_to_tensor(g) for g in layer] for layer in gradients(x, y)]
    return {
        f"grad_norm/{path}": math.sqrt(sum(float(np.sum(np.square(g))) for g in layer_grads))
        for path, layer_grads in zip(case.layers, grads, strict=True)
    }


def _jax_gradients(model, weights, x, y):
    import jax

    def loss(values):
        mapping = [
            (v, value)
            for group, group_values in zip(weights, values, strict=True)
            for v, value in zip(group, group_values, strict=True)
        ]
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True):
            return model.compute_loss(x=x, y=y, y_pred=model(x, training=False), training=False)

    return jax.grad(loss)([[v.value for v in group] for group in weights])


def built(case: Case) -> Case:
    case.model(keras.tree.map_structure(keras.ops.convert_to_tensor, case.x))
    return case


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_check_passes_every_correct_model(kind):
    case = CASES[kind]()
    report = gradient_check(case.model, case.x, case.y, **case.check)
    assert report.verdict == FINE, report.summary()
    assert report.relative_error < 1e-6
    assert report.suspect_layers == []
    print(f"{kind}: {report.relative_error:.2e} over {report.n_checked} of {report.n_params}")


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_check_names_the_broken_layer_by_its_path(kind):
    case = CASES[kind](broken=True)
    report = gradient_check(case.model, case.x, case.y, **case.check)
    assert report.verdict == LIKELY_BUG, report.summary()
    assert report.suspect_layers == [f"{case.target}/kernel"]


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_norms_name_every_layer_by_its_path(kind):
    case = built(CASES[kind]())
    expected = expected_norms(case)
    norms = layer_gradient_norms(case.model, case.x, case.y)
    assert list(norms) == list(expected)
    np.testing.assert_allclose(list(norms.values()), list(expected.values()), rtol=1e-4)
    assert all(math.isfinite(v) and v > 0 for v in norms.values())


def numpy_error(y, p) -> float:
    """Misclassified fraction: sigmoid column at 0.5, else argmax against integer labels."""
    y, p = np.asarray(y).reshape(len(y), -1), np.asarray(p)
    if p.shape[-1] == 1:
        return float(np.mean((p[:, 0] > 0.5) != (y[:, 0] > 0.5)))
    return float(np.mean(np.argmax(p, axis=-1) != y[:, 0]))


def diagnosed(case: Case, predictions):
    """The targets and predictions of the output the case's BiasVarianceCallback diagnoses."""
    if case.output is None:
        return case.y, predictions
    return case.y[case.output], predictions[case.output]


LOOPS = [(kind, loop) for kind in KINDS for loop in ("fit", "train")]
# MobileNet under `train` would spend its time in XLA compilation of a 200k-parameter step;
# `fit` is how such a model trains.
LOOPS.remove(("mobilenet", "train"))


@pytest.mark.parametrize(("kind", "loop"), LOOPS)
def test_callbacks_record_every_layer_under_fit_and_train(kind, loop, mlflow_store):
    case = CASES[kind]()
    logger = GradientNormLogger((case.x, case.y))
    bias_variance = BiasVarianceCallback((case.x, case.y), (case.x, case.y), output=case.output)
    with RunRecorder("zoo", run_name=kind) as recorder:
        callbacks = [bias_variance, logger, recorder.keras_callback(flush_secs=0)]
        if loop == "fit":
            case.model.fit(case.x, case.y, epochs=2, batch_size=8, verbose=0, callbacks=callbacks)
        else:
            train(case.model, case.x, case.y, iterations=4, log_every=2, callbacks=callbacks)

    keys = [f"grad_norm/{path}" for path in case.layers]
    assert list(logger.history) == keys
    assert all(np.isfinite(logger.history[key]).all() for key in keys)
    np.testing.assert_allclose(
        [logger.history[key][-1] for key in keys], list(expected_norms(case).values()), rtol=1e-4
    )
    y, p = diagnosed(case, case.model.predict(case.x, verbose=0))
    assert bias_variance.diagnosis.train_error == pytest.approx(numpy_error(y, p))
    run = mlflow.MlflowClient(mlflow_store).get_run(recorder.run_id)
    assert set(keys) | {"train_error", "dev_error"} <= set(run.data.metrics)


def batched(x, y, batch_size=10):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


@pytest.mark.parametrize("kind", ["functional", "multi_io"])
def test_datasets_stand_for_all_their_batches(kind):
    # 32 examples in batches of 10, 10, 10 and 2: each batch's gradient weighs by its size.
    case = built(CASES[kind]())
    logger = GradientNormLogger(batched(case.x, case.y))
    bias_variance = BiasVarianceCallback(
        batched(case.x, case.y), batched(case.x, case.y, 7), output=case.output
    )
    case.model.fit(
        batched(case.x, case.y),
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[logger, bias_variance],
    )
    measured = {key: values[-1] for key, values in logger.history.items()}
    assert list(measured) == list(expected_norms(case))
    np.testing.assert_allclose(
        list(measured.values()), list(expected_norms(case).values()), rtol=1e-4
    )
    y, p = diagnosed(case, case.model.predict(case.x, verbose=0))
    assert bias_variance.diagnosis.train_error == pytest.approx(numpy_error(y, p))
    assert bias_variance.diagnosis.dev_error == pytest.approx(numpy_error(y, p))


def test_an_infinite_dataset_is_refused_in_one_line():
    case = CASES["functional"]()
    with pytest.raises(ValueError, match=r"infinite tf.data.Dataset .* dataset.take\(10\)"):
        GradientNormLogger(batched(case.x, case.y).repeat())


def test_integer_inputs_reach_the_embedding_unchanged():
    case = CASES["recurrent"]()
    report = gradient_check(case.model, case.x, case.y)
    # Every trainable parameter is a weight: token ids are neither parameters nor cast.
    assert report.n_params == sum(int(np.prod(v.shape)) for v in case.model.trainable_variables)
    assert report.verdict == FINE
    assert np.isfinite(report.analytic["embedding/embeddings"]).all()


def test_several_outputs_without_output_are_refused_naming_them():
    case = CASES["multi_io"]()
    callback = BiasVarianceCallback((case.x, case.y), (case.x, case.y))
    with pytest.raises(ValueError, match=r"2 outputs \('binary', 'classes'\); pass .*output="):
        case.model.fit(case.x, case.y, epochs=1, verbose=0, callbacks=[callback])


@pytest.mark.parametrize("output", ["binary", 0])
def test_an_output_is_chosen_by_name_or_index(output):
    case = CASES["multi_io"]()
    callback = BiasVarianceCallback((case.x, case.y), (case.x, case.y), output=output)
    case.model.fit(case.x, case.y, epochs=1, verbose=0, callbacks=[callback])
    predictions = case.model.predict(case.x, verbose=0)
    expected = numpy_error(case.y["binary"], predictions["binary"])
    assert callback.diagnosis.train_error == pytest.approx(expected)


def test_a_regression_output_cannot_be_classified():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    x, y = np.ones((4, 2), "float32"), np.array([[0.5], [2.0], [3.5], [1.0]], "float32")
    callback = BiasVarianceCallback((x, y), (x, y))
    with pytest.raises(ValueError, match="needs 0/1 labels .* such as 0.5, 2, 3.5.*error_fn="):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])


def test_a_model_without_trainable_weights_is_refused():
    inputs = keras.Input((2,))
    frozen = keras.layers.Dense(1, "sigmoid")
    model = keras.Model(inputs, frozen(inputs))
    frozen.trainable = False
    model.compile("sgd", "binary_crossentropy")
    x, y = np.ones((4, 2), "float32"), np.ones((4, 1), "float32")
    with pytest.raises(ValueError, match="no trainable weights"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[GradientNormLogger((x, y))])
    with pytest.raises(ValueError, match="no trainable variables"):
        gradient_check(model, x, y)


def test_a_model_without_loss_is_refused():
    uncompiled = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, "sigmoid")])
    x, y = np.ones((4, 2), "float32"), np.ones((4, 1), "float32")
    with pytest.raises(ValueError, match="compiled with a loss"):
        layer_gradient_norms(uncompiled, x, y)
    with pytest.raises(ValueError, match="loss must be given"):
        gradient_check(uncompiled, x, y)


def test_gradient_check_takes_the_compiled_weighted_loss():
    case = CASES["multi_io"]()
    report = gradient_check(case.model, case.x, case.y)
    predictions = case.model.predict(case.x, verbose=0)
    binary = keras.losses.binary_crossentropy(case.y["binary"], predictions["binary"])
    classes = keras.losses.sparse_categorical_crossentropy(
        case.y["classes"], predictions["classes"]
    )
    weighted = float(np.mean(binary)) + 0.3 * float(np.mean(classes))  # loss_weights 1, 0.3
    assert report.cost == pytest.approx(weighted, rel=1e-5)


def test_a_slightly_wrong_gradient_reads_look_closer():
    # A kernel gradient 1e-4 too large: e = 1e-4 / (2 + 1e-4) ~ 5e-5 in that layer, between
    # "fine" (1e-6) and "likely a bug" (1e-3), and diluted over the model's other weights.
    seeded_rng()
    model = keras.Sequential(
        [
            keras.Input((4,)),
            CustomGradientDense(6, kernel_gradient_scale=1.0001, activation="tanh", name="slight"),
            keras.layers.Dense(1, "sigmoid", name="out"),
        ]
    )
    model.compile(loss="binary_crossentropy")
    x, y = binary_labelled(np.random.default_rng(0), 16, 4)
    report = gradient_check(model, x, y)
    assert report.verdict == LOOK_CLOSER, report.summary()
    assert report.per_variable["slight/kernel"] == pytest.approx(1e-4 / (2 + 1e-4), rel=1e-3)
    assert report.suspect_layers == []


@keras.saving.register_keras_serializable(package="test_model_zoo")
class Float32Cast(keras.layers.Layer):
    """A user's layer that casts to float32 whatever its dtype policy says."""

    def call(self, inputs):
        return keras.ops.cast(inputs, "float32")


@pytest.mark.skipif(not on_jax, reason="float64 is JAX's process-wide switch only")
def test_on_jax_float64_is_on_for_the_check_only_and_a_float32_cast_is_said():
    seeded_rng()
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, "tanh", name="hidden"),
            Float32Cast(name="to_float32"),
            keras.layers.Dense(1, "sigmoid", name="out"),
        ]
    )
    model.compile(loss="binary_crossentropy")
    x, y = binary_labelled(np.random.default_rng(0), 8, 4)
    report = gradient_check(model, x, y)  # checked in float32, the cast named
    assert report.precision == "float32" and report.verdict == FINE, report.summary()
    assert "cast float64 to float32: " in report.notes[0] and "to_float32" in report.notes[0]
    # Back to JAX's and Keras's float32: x64, floatx, and Keras's promotion of float64.
    import jax.numpy as jnp

    assert jnp.asarray(np.zeros(1)).dtype == "float32" and keras.config.floatx() == "float32"
    assert keras.backend.result_type("float64", "float32") == "float32"
