"""Per-layer activation statistics, a health label, and `ActivationStatsLogger` on top of them.

The course's case for Xavier/He initialization is about activations: with Var(w) = 1/n (2/n
before a ReLU) each layer keeps the spread of its input, while larger or smaller weights make
the spread grow or shrink geometrically with depth. Two failures show in the activations
before any gradient: ReLU units that never fire on any example (dead: no gradient reaches
their weights) and tanh/sigmoid units pinned at their limits (saturated: a gradient near 0).

What is measured, for each weighted layer (the paths of `reg_callbacks.layer_paths`, as
`GradientNormLogger` names them), on fixed probe inputs with `training=False`:

- `act_mean/<path>`, `act_std/<path>`: mean and standard deviation of the layer's output over
  every element (rows, positions, units); a layer called at several places pools them.
- `dead_fraction/<path>`: for a ReLU-family output, the fraction of units (last-axis
  channels) never positive on any probe row or position; 0 for other activations.
- `saturated_fraction/<path>`: the fraction of elements with tanh |a| > 0.99 or sigmoid
  outside [0.01, 0.99]; 0 for other activations.
- `z_std/<path>`: where the layer applies its own activation (Dense, EinsumDense or a
  convolution built with `activation=`), the spread of its pre-activation z.

A layer's output is read by wrapping its `call` (and its `activation`, for z) while the
model's forward pass is traced, so any model works: Sequential, functional, subclassed,
nested, shared layers; the statistics are reduced inside the compiled call
(`probes.evaluate_batches`), so only a few numbers a layer leave it, a probe batch at a time.
Weights that a model holds itself (`add_weight` in a subclassed model) have no layer output
and no entry.
"""

from __future__ import annotations

import contextlib
import math

import keras
import numpy as np

from reg_callbacks import probes
from reg_callbacks.layer_paths import weighted_layers

MEASUREMENTS = ("act_mean", "act_std", "dead_fraction", "saturated_fraction", "z_std")
HEALTHY, EXPLODING, VANISHING = "healthy", "exploding", "vanishing"
DEAD_UNITS, SATURATED = "dead units", "saturated"
HISTOGRAM_BINS = 40
# Histograms count the outputs of each probe batch's first rows only: binning is a scatter
# over every element, ~10x a forward pass on MobileNet at 256 rows, and 32 rows of a layer
# hold thousands of values or more, plenty for 40 bins.
HISTOGRAM_ROWS = 32

RELU_FAMILY = ("relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "hard_silu")
SATURATING = ("tanh", "sigmoid", "hard_sigmoid", "hard_tanh", "soft_sign")
TANH_SATURATION = 0.99  # |tanh(z)| > 0.99 means |z| > 2.65: a gradient below 0.02
SIGMOID_SATURATION = 0.01  # sigmoid outside [0.01, 0.99]: a gradient below 0.01

# Two orders of magnitude between the first and the last hidden layer's activation std: a
# plain ReLU net reaches it by depth 7 with N(0, 1) weights at width 64 (gain sqrt(32) a
# layer), while He keeps a 50-layer net within a factor of a few. Like the gradient ratios,
# it needs depth to mean anything (`RATIO_MIN_LAYERS` hidden layers).
RATIO_THRESHOLD = 1e2
RATIO_MIN_LAYERS = 5
# Absolute bounds: inputs scaled to unit spread give activations of order 1; pixels in
# [0, 255] give a first layer of order 100; 1e3 is beyond both. Below 1e-6 a layer passes
# on nothing float32 training can use (all zeros: the zeros initialization).
EXPLODING_STD = 1e3
VANISHING_STD = 1e-6
# More than half of a hidden layer's units dead, or more than half of its elements saturated,
# is a layer that has lost most of its capacity; a He-initialized ReLU net has no dead unit
# on a probe of a few hundred rows (each fires on about half of them).
DEAD_THRESHOLD = 0.5
SATURATED_THRESHOLD = 0.5


def activation_kind(layer) -> str:
    """The name of the activation a layer applies to its output (`"linear"` if none)."""
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear"
    name = getattr(activation, "__name__", None) or type(activation).__name__
    name = name.lower()
    return {"relu_layer": "relu", "leakyrelu": "leaky_relu"}.get(name, name)


def histogram_range(kind: str, mean: float, std: float) -> tuple[float, float]:
    """The histogram's range for an activation kind: its bounds where it has them, otherwise
    mean ± 4 std of the first measurement (kept for the whole run, so histograms of later
    measurements are comparable; values outside fall into the end bins)."""
    if kind == "tanh":
        return -1.0, 1.0
    if kind in ("sigmoid", "hard_sigmoid", "softmax"):
        return 0.0, 1.0
    if kind == "relu6":
        return 0.0, 6.0
    spread = 4 * std if math.isfinite(std) and std > 0 else 1.0
    center = mean if math.isfinite(mean) else 0.0
    low = 0.0 if kind == "relu" else center - spread
    return low, center + spread


def _owned_layers(model) -> dict[str, object]:
    """`{layer path: the layer object}` for each weighted layer that is a layer (not weights
    a model holds itself)."""
    candidates = list(_all_layers(model))
    owners = {}
    for path, variables in weighted_layers(model).items():
        wanted = {id(v) for v in variables}
        holding = [
            layer for layer in candidates if wanted <= {id(v) for v in layer.trainable_weights}
        ]
        if holding:
            owners[path] = min(holding, key=lambda layer: len(layer.trainable_weights))
    return owners


def _all_layers(layer, seen=None):
    """Every layer reachable from `layer`: models' layers and the sub-layers custom layers
    hold as attributes (or in lists, tuples and dicts of them), each once."""
    seen = set() if seen is None else seen
    children = list(getattr(layer, "layers", []) if isinstance(layer, keras.Model) else [])
    for value in vars(layer).values():
        items = value.values() if isinstance(value, dict) else value
        items = items if isinstance(items, (list, tuple)) else [value]
        children.extend(v for v in items if isinstance(v, keras.layers.Layer))
    for child in children:
        if id(child) not in seen:
            seen.add(id(child))
            yield child
            yield from _all_layers(child, seen)


def _applies_own_activation(layer) -> bool:
    return activation_kind(layer) != "linear" and isinstance(
        layer,
        (
            keras.layers.Dense,
            keras.layers.EinsumDense,
            keras.layers.Conv1D,
            keras.layers.Conv2D,
            keras.layers.Conv3D,
            keras.layers.Conv1DTranspose,
            keras.layers.Conv2DTranspose,
            keras.layers.Conv3DTranspose,
            keras.layers.SeparableConv1D,
            keras.layers.SeparableConv2D,
            keras.layers.DepthwiseConv1D,
            keras.layers.DepthwiseConv2D,
        ),
    )


@contextlib.contextmanager
def _captured(layers: list):
    """Inside the block, each layer's outputs (and pre-activations, where it applies its
    own activation) are appended to `captured[i]["a"]` / `["z"]` as the model calls it."""
    captured = [{"a": [], "z": []} for _ in layers]
    replaced = []  # (layer, attribute, its own value before, or _ABSENT)
    try:
        for slot, layer in zip(captured, layers, strict=True):
            original_call = layer.call

            def call(*args, _original=original_call, _slot=slot, **kwargs):
                outputs = _original(*args, **kwargs)
                _slot["a"].append(keras.tree.flatten(outputs)[0])
                return outputs

            replaced.append((layer, "call", vars(layer).get("call", _ABSENT)))
            layer.call = call
            if _applies_own_activation(layer):
                original_activation = layer.activation

                def activation(z, _original=original_activation, _slot=slot):
                    _slot["z"].append(z)
                    return _original(z)

                replaced.append((layer, "activation", original_activation))
                layer.activation = activation
        yield captured
    finally:
        for layer, name, before in reversed(replaced):
            if before is _ABSENT:
                delattr(layer, name)
            else:
                setattr(layer, name, before)


_ABSENT = object()


def _flat(tensors: list):
    """All elements of `tensors` as one float32 vector."""
    flat = [keras.ops.reshape(keras.ops.cast(t, "float32"), (-1,)) for t in tensors]
    return flat[0] if len(flat) == 1 else keras.ops.concatenate(flat)


def _moments(flat):
    """`(count, scale, mean, var)` of a vector in float32 without overflow: computed on the
    values divided by their largest magnitude (`scale`), as a net with N(0, 1) weights
    reaches activations of 1e15 by depth 20 and their squares overflow. A non-finite value
    makes the mean and var NaN (inf / inf)."""
    scale = keras.ops.maximum(keras.ops.max(keras.ops.abs(flat)), 1e-30)
    scaled = flat / scale
    mean = keras.ops.mean(scaled)
    var = keras.ops.mean(keras.ops.square(scaled - mean))
    return keras.ops.stack([keras.ops.cast(keras.ops.size(flat), "float32"), scale, mean, var])


def _batch_statistics(model, forward, x, ranges, layers, kinds, histograms: bool):
    """Graph code: each layer's statistics on one batch (see `_Measurer` for their use)."""
    with _captured(layers) as captured:
        forward(x)
    results = []
    for i, (slot, kind) in enumerate(zip(captured, kinds, strict=True)):
        if not slot["a"]:
            results.append(None)
            continue
        flat = _flat(slot["a"])
        units = slot["a"][0].shape[-1] if len(slot["a"][0].shape) > 1 else 1
        result = {"a": _moments(flat)}
        if slot["z"]:
            result["z"] = _moments(_flat(slot["z"]))
        if kind in RELU_FAMILY:
            result["unit_max"] = keras.ops.max(keras.ops.reshape(flat, (-1, units)), axis=0)
        if kind == "tanh":
            saturated = keras.ops.abs(flat) > TANH_SATURATION
        elif kind == "sigmoid":
            saturated = keras.ops.abs(flat - 0.5) > 0.5 - SIGMOID_SATURATION
        if kind in ("tanh", "sigmoid"):
            result["saturated"] = keras.ops.sum(keras.ops.cast(saturated, "float32"))
        if histograms:
            low, high = ranges[i, 0], ranges[i, 1]
            first_rows = _flat([a[:HISTOGRAM_ROWS] for a in slot["a"]])
            position = (first_rows - low) * (HISTOGRAM_BINS / keras.ops.maximum(high - low, 1e-30))
            finite = keras.ops.isfinite(position)
            bins = keras.ops.cast(
                keras.ops.clip(keras.ops.where(finite, position, 0.0), 0, HISTOGRAM_BINS - 1),
                "int32",
            )
            result["histogram"] = keras.ops.segment_sum(
                keras.ops.cast(finite, "float32"), bins, num_segments=HISTOGRAM_BINS
            )
        results.append(result)
    return results


def _combined_moments(parts) -> tuple[float, float]:
    """Mean and std over batches from each batch's `(count, scale, mean, var)`, in float64."""
    count = mean = m2 = 0.0
    for n, scale, batch_mean, batch_var in (np.asarray(p, np.float64) for p in parts):
        if n == 0:
            continue
        batch_mean, batch_m2 = batch_mean * scale, batch_var * scale * scale * n
        delta = batch_mean - mean
        total = count + n
        mean += delta * n / total
        m2 += batch_m2 + delta * delta * count * n / total
        count = total
    if count == 0:
        return math.nan, math.nan
    return float(mean), float(math.sqrt(m2 / count)) if math.isfinite(m2) else math.nan


class _Measurer:
    """Holds what a model's measurement needs (its layers, their kinds and histogram
    ranges) and measures it on a probe."""

    def __init__(self, model):
        self.model = model
        owners = _owned_layers(model)
        self.paths = list(owners)
        self.layers = [owners[path] for path in self.paths]
        self.kinds = tuple(activation_kind(layer) for layer in self.layers)
        self.ranges: np.ndarray | None = None

    def measure(self, probe: probes.ProbeData, *, compiled: bool = True, histograms: bool = True):
        """`(numbers, histograms)`: `{"<measurement>/<path>": value}` and `{path: counts}`.

        `compiled`: one function traced once per model and reused (a callback measuring
        every epoch); else run eagerly (a single measurement, which a trace of a deep net
        would cost more than it saves). The first measurement with `histograms` runs twice:
        its numbers, measured eagerly (a second trace would cost more than a 31-layer course
        net's whole measurement), fix the histograms' ranges.
        """
        if not self.paths:
            raise ValueError(
                f"model {self.model.name!r} has no layer with trainable weights (is it built, "
                "and trainable?); there are no activations to measure."
            )
        if histograms and self.ranges is None:
            first = self._run(probe, None, compiled=False)
            numbers = self._numbers(first)
            self.ranges = np.asarray(
                [
                    histogram_range(kind, numbers[f"act_mean/{p}"], numbers[f"act_std/{p}"])
                    for p, kind in zip(self.paths, self.kinds, strict=True)
                ],
                np.float32,
            )
        batches = self._run(probe, self.ranges if histograms else None, compiled)
        counts = {
            path: sum(np.asarray(b[i]["histogram"], np.int64) for b in batches)
            for i, path in enumerate(self.paths)
            if histograms and batches[0][i] is not None
        }
        return self._numbers(batches), counts

    def _run(self, probe, ranges, compiled: bool):
        layers, kinds, histograms = self.layers, self.kinds, ranges is not None

        def statistics(model, forward, x, ranges):
            return _batch_statistics(model, forward, x, ranges, layers, kinds, histograms)

        if ranges is None:
            ranges = np.zeros((len(layers), 2), np.float32)
        if compiled:
            key = ("activation_stats", histograms)
            return probes.evaluate_batches(self.model, probe, key, statistics, ranges)
        model = self.model
        return [
            keras.tree.map_structure(
                keras.ops.convert_to_numpy,
                statistics(model, lambda x: model(x, training=False), x, ranges),
            )
            for x, _, _ in probe.batches()
        ]

    def _numbers(self, batches) -> dict[str, float]:
        numbers = {}
        for i, (path, kind) in enumerate(zip(self.paths, self.kinds, strict=True)):
            if batches[0][i] is None:  # never called on the probe (a branch not taken)
                values = dict.fromkeys(MEASUREMENTS, math.nan)
            else:
                parts = [b[i] for b in batches]
                mean, std = _combined_moments(p["a"] for p in parts)
                elements = sum(float(p["a"][0]) for p in parts)
                dead = 0.0
                if kind in RELU_FAMILY:
                    unit_max = np.max(np.stack([p["unit_max"] for p in parts]), axis=0)
                    dead = float(np.mean(~(unit_max > 0)))
                saturated = sum(float(p.get("saturated", 0.0)) for p in parts) / elements
                values = {
                    "act_mean": mean,
                    "act_std": std,
                    "dead_fraction": dead,
                    "saturated_fraction": saturated,
                }
                if _applies_own_activation(self.layers[i]):
                    values["z_std"] = _combined_moments(p["z"] for p in parts)[1]
            numbers.update({f"{name}/{path}": value for name, value in values.items()})
        return numbers


def _probe_of(name: str, x, batch_size: int) -> probes.ProbeData:
    """Probe data of inputs only: a target column of zeros the measurement never reads."""
    import tensorflow as tf

    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        if not (isinstance(spec, tuple) and len(spec) in (2, 3)):
            x = x.map(lambda inputs: (inputs, tf.zeros(tf.shape(tf.nest.flatten(inputs)[0])[:1])))
        return probes.ProbeData(name, x, batch_size=batch_size)
    leaves = keras.tree.flatten(x)
    if not leaves or not all(hasattr(leaf, "shape") and len(leaf.shape) for leaf in leaves):
        raise ValueError(
            f"{name} must be an array, a dict or list of arrays (one row per example), or a "
            f"tf.data.Dataset; got {type(x).__name__}."
        )
    return probes.ProbeData(name, (x, np.zeros(int(leaves[0].shape[0]))), batch_size=batch_size)


def activation_stats(
    model: keras.Model, x, *, batch_size: int = probes.DEFAULT_BATCH_SIZE
) -> dict[str, float]:
    """Each weighted layer's activation statistics on `x`, at the model's current weights.

    Args:
        model: A Keras model, built or not (it is built on `x`): Sequential, functional or
            subclassed, nested or not; no compile needed.
        x: The inputs: an array, a dict or list of arrays (named or several inputs), or a
            finite `tf.data.Dataset` of inputs (or of `(x, y)` batches, `y` unused).
        batch_size: Rows in one model call; memory is bounded by a batch.

    Returns:
        `{"act_mean/<path>", "act_std/<path>", "dead_fraction/<path>",
        "saturated_fraction/<path>"[, "z_std/<path>"]: value}`, input side first (see the
        module docstring; `nan` for a layer the probe never reached).

    Example:
        >>> stats = activation_stats(model, x[:256])
        >>> stats["act_std/dense"], stats["dead_fraction/dense"]
        (0.83, 0.0)
    """
    probe = _probe_of("x", x, batch_size)
    probe.build(model)
    return _Measurer(model).measure(probe, compiled=False, histograms=False)[0]


def activation_health(stats: dict[str, float]) -> str:
    """Label activation statistics "exploding", "vanishing", "dead units", "saturated" or
    "healthy".

    Args:
        stats: The dict of `activation_stats` (or a logger's latest numbers).

    Returns:
        Over the hidden layers (every measured layer but the last, the output layer, whose
        sigmoid saturating is a confident prediction): "exploding" if a std is non-finite or
        above `EXPLODING_STD`, or the last hidden layer's std exceeds the first's by more than
        `RATIO_THRESHOLD`; "vanishing" if the last hidden std is below `VANISHING_STD`, or
        under the first's by more than `RATIO_THRESHOLD` (ratio rules from
        `RATIO_MIN_LAYERS` hidden layers on); "dead units" if a hidden layer has more than
        `DEAD_THRESHOLD` of its units dead; "saturated" if more than `SATURATED_THRESHOLD` of
        a hidden layer's elements are saturated; otherwise "healthy".
    """
    paths = [key.split("/", 1)[1] for key in stats if key.startswith("act_std/")]
    paths = [p for p in paths if not math.isnan(stats[f"act_std/{p}"])] or paths
    if not paths:
        raise ValueError("stats must hold at least one layer's act_std; got none.")
    hidden = paths[:-1] or paths
    std = np.asarray([stats[f"act_std/{p}"] for p in hidden], float)
    if not np.all(np.isfinite(std)) or std.max() > EXPLODING_STD:
        return EXPLODING
    first, last = std[0], std[-1]
    if last < VANISHING_STD:
        return VANISHING
    if std.size >= RATIO_MIN_LAYERS:
        if first > 0 and last / first > RATIO_THRESHOLD:
            return EXPLODING
        if first / last > RATIO_THRESHOLD:
            return VANISHING
    if any(stats[f"dead_fraction/{p}"] > DEAD_THRESHOLD for p in hidden):
        return DEAD_UNITS
    if any(stats[f"saturated_fraction/{p}"] > SATURATED_THRESHOLD for p in hidden):
        return SATURATED
    return HEALTHY


class ActivationStatsLogger(keras.callbacks.Callback):
    """Logs each weighted layer's activation statistics on fixed probe inputs, and a label.

    Once before the first step (the initialization) and then every `every` epochs (logging
    intervals under `reg_callbacks.train`), it measures the layers' outputs on the probe with
    `training=False` and writes `act_mean/<path>`, `act_std/<path>`, `dead_fraction/<path>`,
    `saturated_fraction/<path>` and, where a layer applies its own activation, `z_std/<path>`
    into `logs` (see `activation_stats`). Works on any Keras model, on TensorFlow and JAX.

    Args:
        probe_x: The probe inputs: an array, a dict or list of arrays, or a finite
            `tf.data.Dataset` (read through one iterator made once); keep it fixed and small
            (a few hundred rows: a measurement costs about a forward pass over them).
        every: Measure every this many epochs.
        batch_size: Rows in one model call; a larger probe is measured a batch at a time.

    Attributes:
        history: `{"<measurement>/<path>": [value per measurement]}` (layer x measurement).
        epochs: The epochs measured (-1: before training).
        histograms: `{path: array (measurements, HISTOGRAM_BINS)}` of element counts over
            the first `HISTOGRAM_ROWS` rows of each probe batch, binned over `ranges[path]`
            (`(low, high)`, fitted to the activation: `histogram_range`).
        health: Latest label from `activation_health`; `health_history` has one per
            measurement.

    Raises:
        ValueError: on construction, a bad argument; as training begins, a model without a
            weighted layer.

    Example:
        >>> logger = ActivationStatsLogger(x[:256], every=1)
        >>> model.fit(x, y, epochs=5, callbacks=[logger], verbose=0)
        >>> logger.health
        'healthy'
    """

    def __init__(self, probe_x, every: int = 1, *, batch_size: int = probes.DEFAULT_BATCH_SIZE):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer; got {every!r}.")
        self.probe = _probe_of("probe_x", probe_x, batch_size)
        self.every = every

    def on_train_begin(self, logs=None):
        self.history: dict[str, list[float]] = {}
        self.epochs: list[int] = []
        self.histograms: dict[str, np.ndarray] = {}
        self.health: str | None = None
        self.health_history: list[str] = []
        self.probe.build(self.model)
        # Kept across `fit` calls on one model: its histogram ranges stay those of its
        # first measurement, so the histograms of every call compare.
        if getattr(self, "_measurer", None) is None or self._measurer.model is not self.model:
            self._measurer = _Measurer(self.model)
        self.measure(-1)
        self.ranges = dict(
            zip(self._measurer.paths, map(tuple, self._measurer.ranges), strict=True)
        )

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            numbers = self.measure(epoch)
            if logs is not None:
                logs.update(numbers)

    def measure(self, epoch: int) -> dict[str, float]:
        """Measure now and record the result under `epoch` (-1: before training)."""
        numbers, histograms = self._measurer.measure(self.probe)
        for key, value in numbers.items():
            self.history.setdefault(key, []).append(value)
        for path, counts in histograms.items():
            previous = self.histograms.get(path, np.zeros((0, HISTOGRAM_BINS), np.int64))
            self.histograms[path] = np.vstack([previous, counts])
        self.epochs.append(epoch)
        self.health = activation_health(numbers)
        self.health_history.append(self.health)
        return numbers
