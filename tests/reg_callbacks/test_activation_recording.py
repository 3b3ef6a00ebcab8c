"""An `ActivationStatsLogger` recorded by `RunRecorder.keras_callback`, read back from the
MLflow store: the initialization's measurement at the step training began, every measured
interval, the health tags and the figures, on models written as public examples write them."""

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from reg_callbacks import ActivationStatsLogger, RunRecorder, activation_stats, train

pytestmark = pytest.mark.backends

FIGURES = {"activation_std_by_depth.png", "activation_histograms.png"}


def functional_convnet():
    """A keras.io-style functional conv net (Conv2D, pooling, a Dense head; small filters)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(16, 16, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


class TanhMlp(keras.Model):
    """A subclassed model as tutorials write it: `__init__(self, units)`, no `get_config`."""

    def __init__(self, units):
        super().__init__()
        self.hidden = [keras.layers.Dense(n, activation="tanh") for n in units]
        self.out = keras.layers.Dense(1)

    def call(self, x):
        for layer in self.hidden:
            x = layer(x)
        return self.out(x)


def numpy_tanh_mlp(weights, x) -> dict:
    """`TanhMlp`'s statistics by a float64 NumPy forward pass on `get_weights()`."""
    paths = [f"dense{suffix}" for suffix in ("", "_1", "_2")]
    a, stats = np.asarray(x, np.float64), {}
    for i, path in enumerate(paths):
        kernel, bias = (np.asarray(w, np.float64) for w in weights[2 * i : 2 * i + 2])
        z = a @ kernel + bias
        last = i == len(paths) - 1
        a = z if last else np.tanh(z)
        stats |= {
            f"act_mean/{path}": a.mean(),
            f"act_std/{path}": a.std(),
            f"dead_fraction/{path}": 0.0,
            f"saturated_fraction/{path}": 0.0 if last else np.mean(np.abs(a) > 0.99),
        }
        if not last:
            stats[f"z_std/{path}"] = z.std()
    return stats


def metric_history(run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in MlflowClient().get_metric_history(run_id, key))


def test_a_fit_records_the_initialization_at_step_0_and_every_epoch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 4, size=96)
    model = functional_convnet()
    model(x[:1])  # built, so its initial weights are the ones fit starts from
    at_initialization = activation_stats(model, x[:64])
    logger = ActivationStatsLogger(x[:64])
    with RunRecorder("demo") as recorder:
        recording = recorder.keras_callback(logger, flush_secs=0)
        model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[logger, recording])

    run = MlflowClient().get_run(recorder.run_id)
    assert set(at_initialization) == {key for key in run.data.metrics if "/" in key}
    assert any(key.startswith("z_std/conv2d") for key in at_initialization)
    for key, expected in at_initialization.items():
        history = metric_history(recorder.run_id, key)
        assert [step for step, _ in history] == [0, 3, 6], key  # 3 steps an epoch
        assert history[0][1] == pytest.approx(expected, rel=1e-4, abs=1e-6), key
        assert history[-1][1] == pytest.approx(logger.history[key][-1], rel=1e-6), key
    assert run.data.tags["activation_health"] == logger.health
    assert run.data.tags["activation_health_at_start"] == logger.health_history[0] == "healthy"
    artifacts = {a.path for a in MlflowClient().list_artifacts(recorder.run_id)}
    assert FIGURES <= artifacts


def test_train_records_a_subclassed_models_start_against_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(128, 5)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    keras.utils.clear_session()  # layer names dense, dense_1, ... as in a fresh script
    keras.utils.set_random_seed(1)
    model = TanhMlp([16, 8])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model(x[:1])
    expected = numpy_tanh_mlp(model.get_weights(), x)
    logger = ActivationStatsLogger(x, every=2)
    with RunRecorder("demo") as recorder:
        recording = recorder.keras_callback(logger, figures=False, flush_secs=0)
        train(model, x, y, iterations=40, log_every=10, callbacks=[logger, recording])

    run = MlflowClient().get_run(recorder.run_id)
    assert set(expected) == {key for key in run.data.metrics if "/" in key}
    for key, value in expected.items():
        history = metric_history(recorder.run_id, key)
        assert [step for step, _ in history] == [0, 20, 40], key  # every 2nd interval
        assert history[0][1] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert run.data.tags["activation_health"] == logger.health
    assert run.data.tags["activation_health_at_start"] == logger.health_history[0]
    assert not FIGURES & {a.path for a in MlflowClient().list_artifacts(recorder.run_id)}


def test_a_second_fit_records_its_start_at_the_step_it_began():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    keras.utils.clear_session()  # layer names dense, dense_1, ... as in a fresh script
    keras.utils.set_random_seed(2)
    model = TanhMlp([8])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    logger = ActivationStatsLogger(x)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[logger])
    before_second_fit = activation_stats(model, x)
    with RunRecorder("demo") as recorder:
        recording = recorder.keras_callback(logger, figures=False, flush_secs=0)
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[logger, recording])
    history = metric_history(recorder.run_id, "act_std/dense")
    assert [step for step, _ in history] == [2, 4]
    assert history[0][1] == pytest.approx(before_second_fit["act_std/dense"], rel=1e-5)


def test_the_tags_tell_the_start_from_the_end():
    """Targets 100x too large and a large step push the tanh layer's units to ±1."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = 100 * (x[:, :1] > 0).astype("float32")
    keras.utils.clear_session()
    keras.utils.set_random_seed(2)
    model = TanhMlp([8])
    model.compile(keras.optimizers.SGD(5.0), "mse")
    logger = ActivationStatsLogger(x)
    with RunRecorder("demo") as recorder:
        recording = recorder.keras_callback(logger, figures=False)
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[logger, recording])
    kernel, bias = model.get_weights()[:2]
    assert np.mean(np.abs(np.tanh(x @ kernel + bias)) > 0.99) > 0.5  # NumPy: saturated
    tags = MlflowClient().get_run(recorder.run_id).data.tags
    assert tags["activation_health_at_start"] == "healthy"
    assert tags["activation_health"] == "saturated"
