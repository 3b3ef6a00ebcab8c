"""`BiasVarianceCallback`: train and dev error measured the way the course means them.

The running training metric that `fit` reports is averaged over the epoch's batches and
computed with dropout on, so it is not the train error. This callback re-evaluates the model
on the train and dev sets with `training=False` and diagnoses the result.

The train and dev sets go through one forward pass, a `tf.function` traced once per model
and reused: an eager `model(x)` costs milliseconds, as much as the 1000 steps of a small
net it follows. Not XLA: its compilation takes seconds and saves ~0.05 ms a call.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import tensorflow as tf

from reg_callbacks.diagnosis import (
    DEFAULT_BIAS_THRESHOLD,
    DEFAULT_VARIANCE_THRESHOLD,
    Diagnosis,
    diagnose,
)
from reg_callbacks.training import IntervalProbed, compiled_for_model

LOG_KEYS = ("train_error", "dev_error", "avoidable_bias", "variance")


def predict(model: keras.Model, x):
    """`model(x, training=False)` through a compiled function cached per model; NumPy arrays.

    Example:
        >>> predict(model, x_dev).shape
        (200, 1)
    """
    forward = compiled_for_model(model, ("predict",), _forward_function, jit_compile=False)
    outputs = forward(tf.nest.map_structure(tf.convert_to_tensor, x))
    return tf.nest.map_structure(np.asarray, outputs)


def forward_pass(model: keras.Model, *inputs) -> tuple:
    """`model(x, training=False)` for each input, in graph code (`train`'s interval probe)."""
    return tuple(model(x, training=False) for x in inputs)


def _forward_function(model_ref):
    def forward(x):
        return model_ref()(x, training=False)

    return forward


def _forward_pass_function(model_ref):
    def run(*inputs):
        return forward_pass(model_ref(), *inputs)

    return run


def classification_error(y_true, y_pred) -> float:
    """Fraction of misclassified examples.

    A single output column is a sigmoid probability (threshold 0.5); several columns are
    class scores (argmax) against integer or one-hot labels.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_pred.ndim == 1 or y_pred.shape[-1] == 1:
        predicted = y_pred.reshape(-1) > 0.5
        return float(np.mean(predicted != (y_true.reshape(-1) > 0.5)))
    predicted = np.argmax(y_pred, axis=-1)
    labels = np.argmax(y_true, axis=-1) if y_true.ndim == y_pred.ndim else y_true.reshape(-1)
    return float(np.mean(predicted != labels))


class BiasVarianceCallback(IntervalProbed, keras.callbacks.Callback):
    """Logs train error, dev error, avoidable bias and variance; keeps the diagnosis.

    Every `every` epochs (and at the end of training) the model predicts the train and dev
    sets with `training=False` (dropout off), and the callback writes `train_error`,
    `dev_error`, `avoidable_bias` and `variance` into `logs`, so that callbacks after it in
    the list (`EarlyStopping(monitor="dev_error")`, MLflow recording, `History`) see them.
    Put it first in the callback list. The label is a string, which Keras and MLflow
    metric loggers cannot take, so it lives in `.diagnosis.label`, not in `logs`.

    Args:
        train_data: `(x_train, y_train)`.
        dev_data: `(x_dev, y_dev)`.
        bayes_error: Best achievable error, a fraction in [0, 1] (0 for a task humans
            solve perfectly).
        every: Evaluate every this many epochs.
        error_fn: `error_fn(y_true, y_pred) -> float`; defaults to `classification_error`.
        bias_threshold, variance_threshold: Passed to `diagnose`.

    Attributes:
        diagnosis: The latest `Diagnosis`, or `None` before the first evaluation.
        history: `{"epoch": [...], "train_error": [...], ...}`, one entry per evaluation.

    Example:
        >>> callback = BiasVarianceCallback((x, y), (x_dev, y_dev), every=5)
        >>> model.fit(x, y, epochs=20, callbacks=[callback], verbose=0)
        >>> callback.diagnosis.label
        'high variance'
    """

    def __init__(
        self,
        train_data,
        dev_data,
        *,
        bayes_error: float = 0.0,
        every: int = 1,
        error_fn=classification_error,
        bias_threshold: float = DEFAULT_BIAS_THRESHOLD,
        variance_threshold: float = DEFAULT_VARIANCE_THRESHOLD,
    ):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer; got {every!r}.")
        # Validates bayes_error and the thresholds now rather than at the first epoch's end.
        diagnose(
            0.0,
            0.0,
            bayes_error,
            bias_threshold=bias_threshold,
            variance_threshold=variance_threshold,
        )
        self.train_data = _pair("train_data", train_data)
        self.dev_data = _pair("dev_data", dev_data)
        self.bayes_error = bayes_error
        self.every = every
        self.error_fn = error_fn
        self.bias_threshold = bias_threshold
        self.variance_threshold = variance_threshold

    def on_train_begin(self, logs=None):
        self.diagnosis: Diagnosis | None = None
        self.history = {"epoch": [], **{key: [] for key in LOG_KEYS}}
        self._last_epoch = None
        self._probed = None

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        if (epoch + 1) % self.every == 0:
            self._evaluate(epoch, logs)

    def on_train_end(self, logs=None):
        evaluated = self.history["epoch"]
        if self._last_epoch is not None and (not evaluated or evaluated[-1] != self._last_epoch):
            self._evaluate(self._last_epoch, logs)

    def interval_probe(self, epoch):
        """For `train`: this epoch's forward pass, to run in its one call an interval."""
        inputs = self._forward_inputs()
        if (epoch + 1) % self.every or inputs is None:
            return None
        return forward_pass, inputs

    def _evaluate(self, epoch, logs):
        train_predictions, dev_predictions = self._predictions(epoch)
        train_error = self._error(self.train_data[1], train_predictions)
        dev_error = self._error(self.dev_data[1], dev_predictions)
        self.diagnosis = diagnose(
            train_error,
            dev_error,
            self.bayes_error,
            bias_threshold=self.bias_threshold,
            variance_threshold=self.variance_threshold,
        )
        values = {key: getattr(self.diagnosis, key) for key in LOG_KEYS}
        if logs is not None:
            logs.update(values)
        self.history["epoch"].append(epoch)
        for key, value in values.items():
            self.history[key].append(value)

    def _predictions(self, epoch):
        """Train and dev predictions: `train`'s probe values, else one compiled call."""
        outputs = self.take_probe_values(epoch)
        if outputs is None:
            inputs = self._forward_inputs()
            if inputs is None:  # nested inputs (a multi-input model)
                x_train, x_dev = self.train_data[0], self.dev_data[0]
                return predict(self.model, x_train), predict(self.model, x_dev)
            key = ("forward_pass",)
            run = compiled_for_model(self.model, key, _forward_pass_function, jit_compile=False)
            outputs = [np.asarray(output) for output in run(*inputs)]
        if len(outputs) == 2:
            return outputs[0], outputs[1]
        n_train = len(self.train_data[1])
        return outputs[0][:n_train], outputs[0][n_train:]

    def _forward_inputs(self):
        """Train and dev inputs as tensors: stacked into one when they can be; cached."""
        x_train, x_dev = self.train_data[0], self.dev_data[0]
        cached = getattr(self, "_inputs_of", (None, None))
        if cached[0] is not x_train or cached[1] is not x_dev:
            self._inputs_of = (x_train, x_dev)
            self._inputs = _forward_inputs(x_train, x_dev)
        return self._inputs

    def _error(self, y, predictions) -> float:
        error = float(self.error_fn(y, predictions))
        if not np.isfinite(error) or not 0.0 <= error <= 1.0:
            warnings.warn(f"error_fn returned {error!r}, not a fraction in [0, 1].", stacklevel=3)
            error = float(np.clip(np.nan_to_num(error, nan=1.0), 0.0, 1.0))
        return error


def _forward_inputs(x_train, x_dev):
    """`(stacked,)` or `(x_train, x_dev)` tensors; `None` for nested (multi-input) data."""
    if not all(isinstance(x, (np.ndarray, tf.Tensor)) for x in (x_train, x_dev)):
        return None
    x_train, x_dev = np.asarray(x_train), np.asarray(x_dev)
    if x_train.shape[1:] != x_dev.shape[1:] or x_train.dtype != x_dev.dtype:
        return tf.constant(x_train), tf.constant(x_dev)
    # One forward pass for both: a call's fixed cost exceeds a small net's compute.
    return (tf.constant(np.concatenate([x_train, x_dev])),)


def _pair(name, data):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"{name} must be a pair (x, y); got {type(data).__name__}.")
    x, y = data
    if len(x) != len(y):
        raise ValueError(f"{name} must have as many rows in x as in y; got {len(x)} and {len(y)}.")
    return np.asarray(x, dtype=keras.config.floatx()) if not hasattr(x, "dtype") else x, y
