"""Per-layer gradient norms, a health label, and `GradientNormLogger` on top of them.

Vanishing and exploding gradients show as gradient norms that shrink or grow geometrically
from the output layer back to the input layer. The norms here are of the full training
loss (compiled loss plus the layers' regularization penalties), measured on a fixed batch
by a `tf.function` traced once per model and reused (not XLA: its compilation takes
seconds, and a call would be no faster).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from reg_callbacks.training import IntervalProbed, compiled_for_model

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


def trainable_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers that own trainable weights, input side first."""
    return [layer for layer in model.layers if layer.trainable_weights]


def layer_gradient_norms(model: keras.Model, x, y, *, training: bool = False) -> dict[str, float]:
    """The L2 norm of the loss gradient with respect to each layer's trainable weights.

    The loss is what `fit` minimises: the compiled loss plus `model.losses` (L1/L2
    penalties). A layer's norm covers all its trainable weights (kernel and bias).

    Args:
        model: A compiled Keras model, Sequential or functional.
        x, y: The probe batch.
        training: Forward pass mode; `False` (default) switches dropout off so that the
            norms of successive calls are comparable.

    Returns:
        `{"grad_norm/<layer name>": norm}` in layer order, input side first. Non-finite
        gradients give `inf`/`nan` entries; nothing is raised.

    Example:
        >>> layer_gradient_norms(model, x[:64], y[:64])
        {'grad_norm/dense': 0.031, 'grad_norm/dense_1': 0.12, 'grad_norm/dense_2': 0.25}
    """
    if getattr(model, "loss", None) is None:
        raise ValueError("model must be compiled with a loss to measure gradient norms.")
    layers = trainable_layers(model)
    norms_fn = compiled_for_model(
        model, ("gradient_norms", bool(training)), _norms_function, jit_compile=False
    )
    norms = norms_fn(tf.convert_to_tensor(x), tf.convert_to_tensor(y))
    return _named(layers, norms)


def stacked_gradient_norms(model: keras.Model, x, y, training: bool = False):
    """Graph code: the layer norms of `layer_gradient_norms` as one tensor, input side first."""
    layers = trainable_layers(model)
    with tf.GradientTape() as tape:
        y_pred = model(x, training=training)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=training)
    grads = tape.gradient(loss, [layer.trainable_weights for layer in layers])
    return tf.stack(
        [
            tf.sqrt(
                tf.add_n(
                    [
                        tf.reduce_sum(tf.square(tf.cast(g, tf.float32)))
                        for g in layer_grads
                        if g is not None
                    ]
                    or [tf.constant(0.0)]
                )
            )
            for layer_grads in grads
        ]
    )


def _norms_function(model_ref, training):
    def norms(x, y):
        return stacked_gradient_norms(model_ref(), x, y, training)

    return norms


def _named(layers, norms) -> dict[str, float]:
    return {
        KEY_PREFIX + layer.name: float(norm)
        for layer, norm in zip(layers, np.asarray(norms), strict=True)
    }


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
    """Logs each layer's gradient norm on a fixed probe batch and labels gradient health.

    Every `every` epochs it writes `grad_norm/<layer name>` into `logs`, appends to the
    layer x epoch `history` (for a heatmap) and updates `health`. Works unchanged on any
    Sequential or functional model compiled with a loss.

    Args:
        probe_data: `(x, y)` batch the norms are measured on; keep it fixed (and small,
            a few hundred rows) so that epochs are comparable.
        every: Measure every this many epochs (and on the first epoch).

    Attributes:
        history: `{"grad_norm/<layer>": [norm per measured epoch]}`.
        epochs: The epochs measured.
        health: Latest label from `gradient_health`; `health_history` has one per
            measurement, so the start of training (often the interesting part) is kept.

    Example:
        >>> logger = GradientNormLogger((x[:256], y[:256]), every=1)
        >>> model.fit(x, y, epochs=5, callbacks=[logger], verbose=0)
        >>> logger.health
        'healthy'
    """

    def __init__(self, probe_data, *, every: int = 1):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer; got {every!r}.")
        if not isinstance(probe_data, (tuple, list)) or len(probe_data) != 2:
            raise ValueError("probe_data must be a pair (x, y).")
        self.probe_data = tuple(probe_data)
        self.every = every

    def on_train_begin(self, logs=None):
        self.history: dict[str, list[float]] = {}
        self.epochs: list[int] = []
        self.health: str | None = None
        self.health_history: list[str] = []
        self._probed = None
        self.measure(-1)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            norms = self.measure(epoch)
            if logs is not None:
                logs.update(norms)

    def interval_probe(self, epoch):
        """For `train`: this epoch's measurement, to run in its one call an interval."""
        probe = self._probe_tensors()
        if (epoch + 1) % self.every or probe is None:
            return None
        return stacked_gradient_norms, probe

    def measure(self, epoch: int) -> dict[str, float]:
        """Measure now and record the result under `epoch` (-1: before training)."""
        probed = self.take_probe_values(epoch)
        if probed is not None:  # computed by `train` for this epoch
            norms = _named(trainable_layers(self.model), probed)
        else:
            norms = layer_gradient_norms(self.model, *(self._probe_tensors() or self.probe_data))
        for key, value in norms.items():
            self.history.setdefault(key, []).append(value)
        self.epochs.append(epoch)
        self.health = gradient_health(norms)
        self.health_history.append(self.health)
        return norms

    def _probe_tensors(self):
        """`probe_data` as tensors, converted once; `None` for nested (multi-input) data."""
        if getattr(self, "_probe_of", None) is not self.probe_data:
            self._probe_of = self.probe_data
            plain = all(isinstance(a, (np.ndarray, tf.Tensor)) for a in self.probe_data)
            self._probe = tuple(map(tf.convert_to_tensor, self.probe_data)) if plain else None
        return self._probe


def norm_ratio(norms: dict[str, float]) -> float:
    """First layer's gradient norm over the last's (1.5**L-like growth shows here)."""
    values = list(norms.values())
    return values[0] / values[-1] if values[-1] else math.inf
