"""Per-layer gradient norms, a health label, and `GradientNormLogger` on top of them.

Vanishing and exploding gradients show as gradient norms that shrink or grow geometrically
from the output layer back to the input layer. The norms here are of the full training
loss (compiled loss plus the layers' regularization penalties), measured on fixed probe data
by a function compiled once per model and reused, a batch at a time (`reg_callbacks.probes`).
Under `fit` the logger measures as often as a share of the training time allows
(`every="auto"`, `probes.Schedule`).
"""

from __future__ import annotations

import math

import keras
import numpy as np

from reg_callbacks import backends, probes
from reg_callbacks.layer_paths import weighted_layers
from reg_callbacks.training import IntervalProbed

KEY_PREFIX = "grad_norm/"
HEALTHY, VANISHING, EXPLODING = "healthy", "vanishing", "exploding"

# Two orders of magnitude between the first and the last layer's gradient norm: a factor
# a plain net reaches at gain 1.5 by depth 12 and at gain 0.5 by depth 7, while a well
# initialised ReLU net of depth 50 stays within one order.
RATIO_THRESHOLD = 1e2
# The ratio rules need depth: vanishing/exploding gradients compound layer over layer. In a
# shallow net near convergence the output layer's gradient shrinks first, and a 3-layer
# regularized net reached first/last = 200 with every norm below 0.03 (healthy training).
RATIO_MIN_LAYERS = 5
# Absolute bounds: a norm above this overshoots any sensible learning rate, one below this
# no longer moves float32 weights.
EXPLODING_NORM = 1e3
VANISHING_NORM = 1e-7


def layer_gradient_norms(
    model: keras.Model,
    x,
    y=None,
    *,
    training: bool = False,
    batch_size: int = probes.GRADIENT_BATCH_SIZE,
) -> dict:
    """The L2 norm of the loss gradient with respect to each layer's trainable weights.

    The loss is what `fit` minimises: the compiled loss (with its `loss_weights`) plus
    `model.losses` (L1/L2 penalties). A layer's norm covers all its trainable weights (kernel
    and bias); a layer used at several call sites is one entry, its gradient summed over them.

    Args:
        model: A compiled Keras model: Sequential, functional or subclassed, nested or not.
        x, y: The probe batch: arrays, or dicts/lists of arrays for named inputs and several
            outputs. Or `x` a finite `tf.data.Dataset` of `(x, y[, sample_weight])` batches
            and `y` left out: the gradient is then of the loss over all its examples (each
            batch's gradient weighted by its size).
        training: Forward pass mode; `False` (default) switches dropout off so that the
            norms of successive calls are comparable.
        batch_size: Rows in one gradient computation; more rows are measured a batch at a
            time (the mean loss over all of them), which bounds the memory.

    Returns:
        `{"grad_norm/<layer path>": norm}`, input side first. The path names the layer
        through the models that nest it (`grad_norm/block/inner`; a flat model's layers keep
        their names, `grad_norm/dense_1`): see `reg_callbacks.layer_paths`. Non-finite
        gradients give `inf`/`nan` entries; nothing is raised.

    Raises:
        ValueError: the model has no loss or no trainable weights, or the data is malformed.

    Example:
        >>> layer_gradient_norms(model, x[:64], y[:64])
        {'grad_norm/dense': 0.031, 'grad_norm/dense_1': 0.12, 'grad_norm/dense_2': 0.25}
    """
    probe = probes.ProbeData("probe data", x if y is None else (x, y), batch_size=batch_size)
    probe.build(model)
    return _measure(model, probe, training)


def _measure(model, probe: probes.ProbeData, training: bool = False) -> dict[str, float]:
    _check_model(model)
    return _named(model, probes.gradient_norms(model, probe, _groups(model), training))


def batched_gradient_norms(model: keras.Model, *batches) -> list:
    """Graph code for `train`'s interval call: the layer norms over the probe's batches
    (`x0, y0, x1, y1, ...`) as one tensor, input side first."""
    pairs = list(zip(batches[::2], batches[1::2], strict=True))
    return backends.current().graph_batched_gradient_norms(model, pairs, _groups(model))


def _groups(model) -> list[list[int]]:
    """For each weighted layer, the indices of its variables in `model.trainable_variables`."""
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    return [[index[id(v)] for v in group] for group in weighted_layers(model).values()]


def _named(model, norms) -> dict[str, float]:
    return {
        KEY_PREFIX + path: float(norm)
        for path, norm in zip(weighted_layers(model), np.asarray(norms), strict=True)
    }


def _check_model(model) -> None:
    if getattr(model, "loss", None) is None:
        raise ValueError("model must be compiled with a loss to measure gradient norms.")
    if not model.trainable_variables:
        raise ValueError(
            f"model {model.name!r} has no trainable weights (is it built, and trainable?); "
            "there is no gradient to measure."
        )


def gradient_health(norms) -> str:
    """Label per-layer gradient norms "vanishing", "exploding" or "healthy".

    Args:
        norms: Norms in layer order, input side first (a list or the dict returned by
            `layer_gradient_norms`).

    Returns:
        "exploding" if any norm is non-finite or above `EXPLODING_NORM`, or the first
        layer's norm exceeds the last layer's by more than `RATIO_THRESHOLD`;
        "vanishing" if the first layer's norm (or every norm) is below `VANISHING_NORM`:
        no gradient reaches the input side, as with zeros initialization; or if the first
        layer's norm is under the last layer's by more than `RATIO_THRESHOLD`; otherwise
        "healthy". The first/last ratio rules apply from `RATIO_MIN_LAYERS` layers on.
    """
    values = np.asarray(list(norms.values()) if isinstance(norms, dict) else norms, float)
    if values.size == 0:
        raise ValueError("norms must hold at least one layer's gradient norm; got none.")
    if not np.all(np.isfinite(values)) or values.max() > EXPLODING_NORM:
        return EXPLODING
    first, last = values[0], values[-1]
    if first < VANISHING_NORM:
        return VANISHING
    if values.size < RATIO_MIN_LAYERS:
        return HEALTHY
    if last > 0 and first / last > RATIO_THRESHOLD:
        return EXPLODING
    if last / first > RATIO_THRESHOLD:
        return VANISHING
    return HEALTHY


class GradientNormLogger(IntervalProbed, keras.callbacks.Callback):
    """Logs each layer's gradient norm on fixed probe data and labels gradient health.

    Before training, and at the epochs `every` chooses, it writes `grad_norm/<layer path>`
    into `logs`, appends to the layer x epoch `history` (for a heatmap) and updates
    `health`. Works unchanged on any
    Keras model compiled with a loss: Sequential, functional or subclassed, with nested
    blocks (each of their layers its own entry, `grad_norm/block/inner`), shared layers,
    several inputs or outputs (the compiled loss with its `loss_weights`).

    Args:
        probe_data: `(x, y)` the norms are measured on (arrays, or dicts of arrays for
            named inputs), or a finite `tf.data.Dataset` of `(x, y)` batches, measured over
            all of them through one iterator made once; keep it fixed (and small, a few
            hundred rows: each measurement costs about a training step over them) so that
            epochs are comparable.
        every: `"auto"` (default): under `fit`, measure before training, at the last epoch
            and at any other whose measurement keeps this logger within
            `probes.MEASUREMENT_BUDGET` of the training time so far (`probes.Schedule`; the
            cost is the latest measurement's): on epochs of a few thousand rows, a gradient
            over a few hundred probe rows every epoch costs a large share of an epoch
            (`benchmarks/bench_callbacks.py --every 1` measures it; this default's overhead
            is on the results page). Under `train`, whose interval call computes a small
            probe's norms nearly for free, every epoch (a larger probe: as under `fit`).
            An integer: before training and every this many epochs.
        batch_size: Rows in one gradient computation; a larger probe is measured a batch
            at a time, which bounds the memory.

    Attributes:
        history: `{"grad_norm/<layer path>": [norm per measured epoch]}`.
        epochs: The epochs measured.
        health: Latest label from `gradient_health`; `health_history` has one per
            measurement, so the start of training (often the interesting part) is kept.

    Raises:
        ValueError: on construction, a bad argument; as training begins, a model without a
            loss or without trainable weights.

    Example:
        >>> logger = GradientNormLogger((x[:256], y[:256]), every=1)
        >>> model.fit(x, y, epochs=5, callbacks=[logger], verbose=0)
        >>> logger.health
        'healthy'
    """

    def __init__(
        self,
        probe_data,
        *,
        every: int | str = "auto",
        batch_size: int = probes.GRADIENT_BATCH_SIZE,
    ):
        super().__init__()
        self.schedule = probes.Schedule(every)
        self.probe = probes.ProbeData("probe_data", probe_data, batch_size=batch_size)
        self._in_loop = probes.in_loop_batches(self.probe)
        self.every = every

    def on_train_begin(self, logs=None):
        self.history: dict[str, list[float]] = {}
        self.epochs: list[int] = []
        self.health: str | None = None
        self.health_history: list[str] = []
        self._probed = None
        self._last_epoch = None
        self.probe.build(self.model)
        self.schedule.start()
        self.schedule.timed(self.measure, -1)

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        last = epoch + 1 == (self.params or {}).get("epochs")
        in_loop = self._in_loop is not None and self.under_train()
        if self.has_probe_values(epoch):  # computed by `train`'s interval call
            norms = self.measure(epoch)
        elif self.schedule.due(epoch, last, every_interval=in_loop):
            norms = self.schedule.timed(self.measure, epoch)
        else:
            return
        if logs is not None:
            logs.update(norms)

    def on_train_end(self, logs=None):
        # Under "auto", `health` is the trained model's even when training stopped early.
        if self.schedule.auto and self._last_epoch not in (None, self.epochs[-1]):
            self.schedule.timed(self.measure, self._last_epoch)

    def interval_probe(self, epoch):
        """For `train`: this epoch's measurement, to run in its one call an interval; every
        epoch under `every="auto"`."""
        if self._in_loop is None or (not self.schedule.auto and not self.schedule.due(epoch)):
            return None
        return batched_gradient_norms, self._in_loop

    def measure(self, epoch: int) -> dict[str, float]:
        """Measure now and record the result under `epoch` (-1: before training)."""
        probed = self.take_probe_values(epoch)
        if probed is not None:  # computed by `train` for this epoch
            norms = _named(self.model, probed)
        else:
            norms = _measure(self.model, self.probe)
        for key, value in norms.items():
            self.history.setdefault(key, []).append(value)
        self.epochs.append(epoch)
        self.health = gradient_health(norms)
        self.health_history.append(self.health)
        return norms


def norm_ratio(norms: dict[str, float]) -> float:
    """First layer's gradient norm over the last's (1.5**L-like growth shows here)."""
    values = list(norms.values())
    return values[0] / values[-1] if values[-1] else math.inf
