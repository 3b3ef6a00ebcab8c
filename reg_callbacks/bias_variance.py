"""`BiasVarianceCallback`: train and dev error measured the way the course means them.

The running training metric that `fit` reports is averaged over the epoch's batches and
computed with dropout on, so it is not the train error. This callback re-evaluates the model
on the train and dev sets with `training=False` and diagnoses the result.

The train and dev sets are evaluated in batches by a forward pass compiled once per model
and reused (`reg_callbacks.probes`): memory is bounded by a batch, and an eager `model(x)`
would cost milliseconds, as much as the 1000 steps of a small net it follows. A large
training set is measured on a fixed random subsample (`train_rows`). Under `fit` it measures
as often as a share of the training time allows (`every="auto"`, `probes.Schedule`).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from reg_callbacks import backends, probes
from reg_callbacks.diagnosis import (
    DEFAULT_BIAS_THRESHOLD,
    DEFAULT_VARIANCE_THRESHOLD,
    Diagnosis,
    diagnose,
)
from reg_callbacks.examples import as_tensor, rows
from reg_callbacks.training import IntervalProbed

LOG_KEYS = ("train_error", "dev_error", "avoidable_bias", "variance")
# Training rows measured by default: an error rate over 1024 rows is within ~1.6 points
# (one standard error at 50 %), and the course's training sets all fit in it whole.
DEFAULT_TRAIN_ROWS = 1024


def predict(model: keras.Model, x):
    """`model(x, training=False)` through a compiled function cached per model; NumPy arrays.

    Example:
        >>> predict(model, x_dev).shape
        (200, 1)
    """
    return backends.current().forward(model, keras.tree.map_structure(as_tensor, x))[0]


def classification_error(y_true, y_pred) -> float:
    """Fraction of misclassified examples.

    A single output column is a sigmoid probability (threshold 0.5) against 0/1 labels;
    several columns are class scores (argmax) against integer or one-hot labels.

    Raises:
        ValueError: the rows differ, or the targets are not class labels (a regression
            target cannot be classified: give `BiasVarianceCallback` an `error_fn`).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"y_true and y_pred must have as many rows; got {len(y_true)} and {len(y_pred)}."
        )
    if y_pred.ndim <= 1 or y_pred.shape[-1] == 1:
        if not np.isin(y_true, (0, 1)).all():
            raise ValueError(
                "classification_error needs 0/1 labels for a one-column output; got targets "
                f"such as {_not_in(y_true, (0, 1))}. For a regression output pass error_fn=."
            )
        predicted = y_pred.reshape(-1) > 0.5
        return float(np.mean(predicted != (y_true.reshape(-1) > 0.5)))
    classes = y_pred.shape[-1]
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == classes:
        labels = np.argmax(y_true, axis=-1)
    else:
        labels = y_true.reshape(-1)
        if not np.isin(labels, np.arange(classes)).all():
            raise ValueError(
                f"classification_error needs integer labels in [0, {classes}) or one-hot rows "
                f"for a {classes}-column output; got targets such as "
                f"{_not_in(labels, np.arange(classes))}."
            )
    return float(np.mean(np.argmax(y_pred, axis=-1).reshape(labels.shape) != labels))


def _not_in(values: np.ndarray, allowed) -> str:
    return ", ".join(f"{v:g}" for v in np.unique(values[~np.isin(values, allowed)])[:3])


class BiasVarianceCallback(IntervalProbed, keras.callbacks.Callback):
    """Logs train error, dev error, avoidable bias and variance; keeps the diagnosis.

    At the epochs `every` chooses (and at the end of training) the model predicts the train
    and dev sets with `training=False` (dropout off), `batch_size` rows at a time, and the
    callback writes `train_error`, `dev_error`, `avoidable_bias` and `variance` into `logs`, so that
    callbacks after it in the list (`EarlyStopping(monitor="dev_error")`, MLflow recording,
    `History`) see them.
    Put it first in the callback list. The label is a string, which Keras and MLflow
    metric loggers cannot take, so it lives in `.diagnosis.label`, not in `logs`.

    Args:
        train_data: `(x_train, y_train)`: arrays, or dicts/lists of arrays for named inputs
            and several outputs; or a finite `tf.data.Dataset` of `(x, y)` batches, read
            through one iterator for the whole run (its pipeline is not rebuilt at every
            evaluation).
        dev_data: `(x_dev, y_dev)`, likewise; always evaluated whole.
        train_rows: Training rows the train error is measured on (default 1024): a fixed
            random subsample, drawn once, of a larger training set (of a dataset, its first
            batches up to that many rows); `None` measures every row at every evaluation,
            which costs about a forward pass over the training set per evaluation.
        batch_size: Rows evaluated in one model call; bounds the evaluation's memory.
        bayes_error: Best achievable error, a fraction in [0, 1] (0 for a task humans
            solve perfectly).
        every: `"auto"` (default): under `fit`, evaluate at the last epoch and at any other
            whose evaluation keeps this callback within `probes.MEASUREMENT_BUDGET` of the
            training time so far (`probes.Schedule`; the cost is first estimated from one
            batch timed at the first epoch's end, then taken from the latest evaluation): on
            epochs of a few thousand rows, evaluating the train subsample and the whole dev
            set every epoch costs a large share of an epoch (`benchmarks/bench_callbacks.py
            --every 1` measures it; this default's overhead is on the results page). Under
            `train`, whose interval call evaluates small sets nearly for free, every epoch
            (sets too large for it: as under `fit`). An integer: evaluate every this many
            epochs; `EarlyStopping(monitor="dev_error")` needs `1`.
        output: For a model with several outputs, the one to diagnose: its name or index.
            Its targets are `y[name]` (a dict), `y[index]` (a list) or `y` itself.
        error_fn: `error_fn(y_true, y_pred) -> float`; defaults to `classification_error`.
        bias_threshold, variance_threshold: Passed to `diagnose`.

    Attributes:
        diagnosis: The latest `Diagnosis`, or `None` before the first evaluation.
        history: `{"epoch": [...], "train_error": [...], ...}`, one entry per evaluation.

    Raises:
        ValueError: on construction, a bad argument; at the first evaluation, a model with
            several outputs and no `output`, an unknown `output`, or targets that
            `classification_error` cannot classify.

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
        every: int | str = "auto",
        output: str | int | None = None,
        error_fn=classification_error,
        bias_threshold: float = DEFAULT_BIAS_THRESHOLD,
        variance_threshold: float = DEFAULT_VARIANCE_THRESHOLD,
        train_rows: int | None = DEFAULT_TRAIN_ROWS,
        batch_size: int = probes.DEFAULT_BATCH_SIZE,
    ):
        super().__init__()
        self.schedule = probes.Schedule(every)
        if output is not None and (
            isinstance(output, bool)
            or not isinstance(output, (str, int))
            or (isinstance(output, int) and output < 0)
        ):
            raise ValueError(f"output must be an output's name or index; got {output!r}.")
        # Validates bayes_error and the thresholds now rather than at the first epoch's end.
        diagnose(
            0.0,
            0.0,
            bayes_error,
            bias_threshold=bias_threshold,
            variance_threshold=variance_threshold,
        )
        if train_rows is not None and (
            isinstance(train_rows, bool) or not isinstance(train_rows, int) or train_rows < 1
        ):
            raise ValueError(f"train_rows must be None or a positive integer; got {train_rows!r}.")
        self.train = probes.ProbeData(
            "train_data", train_data, batch_size=batch_size, max_rows=train_rows
        )
        self.dev = probes.ProbeData("dev_data", dev_data, batch_size=batch_size)
        self.bayes_error = bayes_error
        self.every = every
        self.output = output
        self.error_fn = error_fn
        self.bias_threshold = bias_threshold
        self.variance_threshold = variance_threshold
        self._in_loop = probes.in_loop_chunks(self.train, self.dev)

    def on_train_begin(self, logs=None):
        names = _output_names(self.model)
        if len(names) > 1:  # refused before training, not at the first evaluation
            _output_index(self.model.name, names, len(names), self.output)
        self.diagnosis: Diagnosis | None = None
        self.history = {"epoch": [], **{key: [] for key in LOG_KEYS}}
        self._last_epoch = None
        self._probed = None
        self.schedule.start()

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        if self.has_probe_values(epoch):  # computed by `train`'s interval call
            self._evaluate(epoch, logs)
            return
        last = epoch + 1 == (self.params or {}).get("epochs")
        in_loop = self._in_loop is not None and self.under_train()
        if self.schedule.auto and self.schedule.cost is None and not (last or in_loop):
            self.schedule.cost = self._estimated_cost()
        if self.schedule.due(epoch, last, every_interval=in_loop):
            self._evaluate(epoch, logs)

    def on_train_end(self, logs=None):
        evaluated = self.history["epoch"]
        if self._last_epoch is not None and (not evaluated or evaluated[-1] != self._last_epoch):
            self._evaluate(self._last_epoch, logs)

    def interval_probe(self, epoch):
        """For `train`: this epoch's forward pass, to run in its one call an interval, when
        the train and dev sets are small enough (`probes.in_loop_chunks`); every epoch
        under `every="auto"`."""
        if self._in_loop is None or (not self.schedule.auto and not self.schedule.due(epoch)):
            return None
        return probes.forward_chunks, self._in_loop[0]

    def _estimated_cost(self) -> float | None:
        """Seconds an evaluation should take: one batch of the training rows timed (on a
        second call: the first may trace), scaled to the rows of both sets, its time counted
        as spent; `None` when a set is a dataset (its rows are unknown before a pass)."""
        if self.train.tensors is None or self.dev.tensors is None:
            return None
        x, _, _ = next(self.train.batches())
        forward, began = backends.current().forward, self.schedule.clock()
        forward(self.model, x)
        second = self.schedule.clock()
        forward(self.model, x)
        done = self.schedule.clock()
        self.schedule.spent += done - began
        return (done - second) * (self.train.n_rows + self.dev.n_rows) / rows(x)

    def _evaluate(self, epoch, logs):
        self.schedule.timed(self._measure, epoch, logs)

    def _measure(self, epoch, logs):
        (y_train, train_predictions), (y_dev, dev_predictions) = self._predictions(epoch)
        train_error = self._error(y_train, train_predictions)
        dev_error = self._error(y_dev, dev_predictions)
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
        """`((y_train, train predictions), (y_dev, dev predictions))` of the chosen output."""
        outputs = self.take_probe_values(epoch)  # computed by `train` for this epoch
        if outputs is None:
            return (
                self._chosen(*probes.predict(self.model, self.train)),
                self._chosen(*probes.predict(self.model, self.dev)),
            )
        train, dev = probes.split_rows(probes.concatenate(list(outputs)), self._in_loop[1])
        return (
            self._chosen(self.train.tensors[1], train),
            self._chosen(self.dev.tensors[1], dev),
        )

    def _chosen(self, y, predictions):
        """The diagnosed output's targets and predictions, as NumPy arrays."""
        y, predictions = _output_of(self.model, self.output, y, predictions)
        return np.asarray(y), np.asarray(predictions)

    def _error(self, y, predictions) -> float:
        error = float(self.error_fn(y, predictions))
        if not np.isfinite(error) or not 0.0 <= error <= 1.0:
            warnings.warn(f"error_fn returned {error!r}, not a fraction in [0, 1].", stacklevel=3)
            error = float(np.clip(np.nan_to_num(error, nan=1.0), 0.0, 1.0))
        return error


def _output_of(model, output, y, predictions):
    """`(targets, predictions)` of the output `output` names, from a model's outputs."""
    if not isinstance(predictions, (list, tuple, dict)):
        if output not in (None, 0, *_output_names(model)[:1]):
            raise ValueError(f"output {output!r} is not an output of {model.name!r}: it has one.")
        return y, predictions
    names = _output_names(model)
    if isinstance(predictions, dict) and set(names) != set(predictions):
        names = list(predictions)
    index = _output_index(model.name, names, len(predictions), output)
    name = names[index] if index < len(names) else None
    chosen = predictions[name] if isinstance(predictions, dict) else predictions[index]
    if isinstance(y, dict):
        y = y[name]
    elif isinstance(y, (list, tuple)):
        y = y[index]
    return y, chosen


def _output_index(model_name: str, names: list[str], count: int, output) -> int:
    """The index of the output `output` names (a name or an index) among `count` outputs."""
    if output is None:
        listed = ", ".join(map(repr, names)) if len(names) == count else f"indices 0-{count - 1}"
        raise ValueError(
            f"model {model_name!r} has {count} outputs ({listed}); pass "
            "BiasVarianceCallback(output=...) with the name or index of the one to diagnose."
        )
    if isinstance(output, str):
        if output not in names:
            raise ValueError(
                f"output {output!r} is not an output of {model_name!r}; its outputs are "
                f"{', '.join(map(repr, names))}."
            )
        return names.index(output)
    if not 0 <= output < count:
        raise ValueError(f"output index {output} is out of range: {model_name!r} has {count}.")
    return output


def _output_names(model) -> list[str]:
    try:
        return list(model.output_names)
    except (AttributeError, ValueError):
        return []
