"""Tier 2: BiasVarianceCallback driven by tiny models whose errors are known."""

import keras
import numpy as np
import pytest

from reg_callbacks import BiasVarianceCallback, classification_error, train

pytestmark = pytest.mark.backends


def constant_model(dropout=0.0):
    """Predicts sigmoid(x) for a 1-feature input: class 1 for x > 0, through optional dropout."""
    layers = [keras.Input((1,))]
    if dropout:
        layers.append(keras.layers.Dropout(dropout, seed=0))
    layers.append(keras.layers.Dense(1, "sigmoid", kernel_initializer="ones"))
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.SGD(0.0), "binary_crossentropy")
    return model


def labelled(n_wrong, n):
    """n points all predicted 1 (x = 1) of which n_wrong are labelled 0."""
    x = np.ones((n, 1), "float32")
    y = np.ones((n, 1), "float32")
    y[:n_wrong] = 0
    return x, y


def test_classification_error_binary_and_multiclass():
    assert classification_error([[1], [0], [1]], [[0.9], [0.2], [0.4]]) == pytest.approx(1 / 3)
    scores = [[0.1, 0.9], [0.8, 0.2]]
    assert classification_error([1, 1], scores) == 0.5
    assert classification_error([[0, 1], [1, 0]], scores) == 0.0


def test_logs_errors_gaps_and_keeps_diagnosis():
    train_data, dev_data = labelled(2, 100), labelled(20, 100)
    callback = BiasVarianceCallback(train_data, dev_data, bayes_error=0.01, every=2)
    history = constant_model().fit(*train_data, epochs=5, verbose=0, callbacks=[callback])
    assert callback.history["epoch"] == [1, 3, 4]  # every 2nd epoch, and the last one
    assert history.history["train_error"] == pytest.approx([0.02, 0.02])  # epochs 1 and 3
    assert history.history["dev_error"] == pytest.approx([0.20, 0.20])
    assert history.history["avoidable_bias"] == pytest.approx([0.01, 0.01])
    assert history.history["variance"] == pytest.approx([0.18, 0.18])
    assert callback.diagnosis.label == "high variance"


def test_evaluates_with_dropout_off():
    # Dropout(0.9) zeroes x for ~90 % of rows when training, giving p = 0.5, i.e. class 0.
    data = labelled(0, 200)
    callback = BiasVarianceCallback(data, data)
    model = constant_model(dropout=0.9)
    model.fit(*data, epochs=1, verbose=0, callbacks=[callback])
    training_mode = classification_error(data[1], np.asarray(model(data[0], training=True)))
    assert training_mode > 0.5
    assert callback.diagnosis.train_error == 0.0


def test_early_stopping_can_monitor_dev_error_through_train():
    data = labelled(10, 100)
    callback = BiasVarianceCallback(data, data)
    stopper = keras.callbacks.EarlyStopping(monitor="dev_error", mode="min", patience=1)
    history = train(
        constant_model(), *data, iterations=50, log_every=5, callbacks=[callback, stopper]
    )
    assert len(history.history["dev_error"]) == 2
    assert stopper.stopped_epoch == 1


def test_reusable_across_fits():
    data = labelled(5, 100)
    callback = BiasVarianceCallback(data, data, every=1)
    model = constant_model()
    model.fit(*data, epochs=3, verbose=0, callbacks=[callback])
    model.fit(*data, epochs=2, verbose=0, callbacks=[callback])
    assert callback.history["epoch"] == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": 0}, 'every must be a positive integer or "auto"'),
        ({"bayes_error": 1.5}, "bayes_error"),
        ({"variance_threshold": -1}, "variance_threshold"),
        ({"train_data": (np.ones((3, 1)), np.ones(2))}, "train_data must have as many rows"),
        ({"dev_data": np.ones(3)}, "dev_data must be a pair"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"train_data": labelled(0, 3), "dev_data": labelled(0, 3), **kwargs}
    with pytest.raises(ValueError, match=message):
        BiasVarianceCallback(**args)
