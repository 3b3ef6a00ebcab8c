"""`BiasVarianceCallback`: train and dev error measured the way the course means them.

The running training metric that `fit` reports is averaged over the epoch's batches and
computed with dropout on, so it is not the train error. This callback re-evaluates the model
on the train and dev sets with `training=False` and diagnoses the result.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from reg_callbacks.diagnosis import (
    DEFAULT_BIAS_THRESHOLD,
    DEFAULT_VARIANCE_THRESHOLD,
    Diagnosis,
    diagnose,
)

LOG_KEYS = ("train_error", "dev_error", "avoidable_bias", "variance")


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


class BiasVarianceCallback(keras.callbacks.Callback):
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

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        if (epoch + 1) % self.every == 0:
            self._evaluate(epoch, logs)

    def on_train_end(self, logs=None):
        evaluated = self.history["epoch"]
        if self._last_epoch is not None and (not evaluated or evaluated[-1] != self._last_epoch):
            self._evaluate(self._last_epoch, logs)

    def _evaluate(self, epoch, logs):
        train_error = self._error(*self.train_data)
        dev_error = self._error(*self.dev_data)
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

    def _error(self, x, y) -> float:
        predictions = keras.ops.convert_to_numpy(self.model(x, training=False))
        error = float(self.error_fn(y, predictions))
        if not np.isfinite(error) or not 0.0 <= error <= 1.0:
            warnings.warn(f"error_fn returned {error!r}, not a fraction in [0, 1].", stacklevel=3)
            error = float(np.clip(np.nan_to_num(error, nan=1.0), 0.0, 1.0))
        return error


def _pair(name, data):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"{name} must be a pair (x, y); got {type(data).__name__}.")
    x, y = data
    if len(x) != len(y):
        raise ValueError(f"{name} must have as many rows in x as in y; got {len(x)} and {len(y)}.")
    return np.asarray(x, dtype=keras.config.floatx()) if not hasattr(x, "dtype") else x, y
