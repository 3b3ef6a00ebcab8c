"""Numerical gradient checking for Keras 3 models: the course's "grad check", vectorized.

The course checks backprop by comparing the analytic gradient g with the two-sided difference
g~_i = (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps) and reading the relative error
||g - g~|| / (||g|| + ||g~||): about 1e-7 is fine, about 1e-5 deserves a closer look, 1e-3 or
more is likely a bug. With eps = 1e-7 in float64 a correct model lands far below the "fine"
line: 2.9e-10 for the course's one-parameter J = theta * x, ~3e-9 for a 47-parameter net,
~4e-8 for a 10k-parameter MLP (the rounding noise of J / eps adds up over more parameters).

`gradient_check` does that for any Keras model (Sequential, functional or subclassed, with
nested blocks, shared layers, several inputs and outputs, custom layers) in float64, with
the cost that training minimizes (compiled loss with its `loss_weights`, plus
`model.losses`, i.e. L1/L2 penalties) and dropout off. The forward and backward passes are
compiled, as under `fit`, so a custom gradient that works in training works here. The 2n
perturbed costs are evaluated in chunks, each one compiled call over `StatelessScope`
forward passes (`tf.vectorized_map`; a `lax.map` loop on JAX), so a 10k-parameter MLP
checks in about 5 s on two CPU cores (TensorFlow, batch of 64; the cost grows with
parameters squared times batch size). For larger models, `max_params` checks a random subset.

On JAX, float64 is switched on for the check only (`backends.jax.float64_scope`: JAX's x64
and Keras's type promotion, which otherwise demotes float64 off TensorFlow), and a model
whose float64 copy still computes partly in float32 (a cast in its own code) is refused,
naming where.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf  # for tf.data, the input pipeline on every backend

from reg_callbacks import backends
from reg_callbacks.examples import symbolic_like
from reg_callbacks.layer_paths import variable_paths

FINE_THRESHOLD = 1e-6  # below: "fine" (the course sees ~1e-7 and less when backprop is right)
BUG_THRESHOLD = 1e-3  # at or above: "likely a bug"; in between: "look closer" (~1e-5)
FINE, LOOK_CLOSER, LIKELY_BUG = "fine", "look closer", "likely a bug"
MAX_EPSILON = 1e-2
# A difference quotient (J(theta + eps) - J(theta)) / eps carries rounding noise of about
# |J| * 2.2e-16 / eps (2e-9 for J ~ 1 at eps = 1e-7). Differences of more than RESOLVED times
# that are signal: a parameter is on a kink where its two one-sided slopes differ by that
# much and by more than KINK_JUMP of their sizes (on a smooth cost they differ by eps * J''),
# and a variable is a suspect only where its gradient is that far above the noise.
RESOLVED = 30.0
KINK_JUMP = 0.1
N_WORST = 10
# Elements (float64) one chunk of perturbed forward passes may hold: parameter vectors plus
# activations, about 64 MB; vectorized_map's temporaries take a few times that.
_CHUNK_ELEMENTS = 2**23


@dataclass(frozen=True)
class ParameterCheck:
    """One parameter's analytic and numerical derivative."""

    path: str  # the variable's path through the model, as in `per_variable`
    index: int  # flat (row-major) index inside the variable
    analytic: float
    numerical: float
    abs_diff: float


@dataclass(frozen=True)
class GradientCheckReport:
    """Outcome of `gradient_check`.

    `relative_error` is ||g - g~||_2 / (||g||_2 + ||g~||_2) over the checked parameters (0
    when both norms are 0); `per_variable` is the same per trainable variable, keyed by its
    path through the model (`block/inner/kernel`, `reg_callbacks.layer_paths`).
    `suspect_layers` lists the variables whose own error is at or above `BUG_THRESHOLD`, worst
    first, among those whose gradient stands out of the finite differences' rounding noise (a
    layer no gradient reaches, 1e-18 against 0, is no suspect). `verdict` is "likely a bug"
    when there is a suspect, which can be when `relative_error` alone is small: a wrong
    gradient in one layer of a large model (or a layer with small gradients) is diluted in the
    overall norm. Otherwise it reads `relative_error`: "fine" below `FINE_THRESHOLD` (1e-6),
    "likely a bug" at or above `BUG_THRESHOLD` (1e-3), else "look closer". `analytic` and
    `numerical` hold the gradients per variable, shaped like the variable (`numerical` is NaN
    where a parameter was not compared; a variable with no compared parameter is left out of
    `per_variable`). `n_checked` parameters were compared: those `max_params` drew, less the
    `n_kinks` that sit on a kink of the cost (a ReLU input at exactly 0), where there is no
    derivative to compare.
    """

    relative_error: float
    per_variable: dict[str, float]
    worst: list[ParameterCheck]
    verdict: str
    suspect_layers: list[str]
    n_params: int
    n_checked: int
    n_kinks: int
    epsilon: float
    cost: float
    analytic: dict[str, np.ndarray] = field(repr=False)
    numerical: dict[str, np.ndarray] = field(repr=False)

    def summary(self) -> str:
        lines = [
            f"Gradient check: relative error {self.relative_error:.2e} -> {self.verdict} "
            f"(J = {self.cost:.6g}, {self.n_checked} of {self.n_params} parameters, "
            f"epsilon = {self.epsilon:g})"
        ]
        if self.n_kinks:
            lines.append(f"  left out: {self.n_kinks} parameters on a kink (no derivative there)")
        for path in self.suspect_layers:
            lines.append(f"  suspect: {path} (relative error {self.per_variable[path]:.2e})")
        if self.worst:
            w = self.worst[0]
            lines.append(
                f"  worst parameter: {w.path}[{w.index}] analytic {w.analytic:.6g}, "
                f"numerical {w.numerical:.6g}, |diff| {w.abs_diff:.2e}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def gradient_check(
    model: keras.Model,
    x,
    y,
    epsilon: float = 1e-7,
    *,
    loss=None,
    max_params: int | None = None,
    seed: int = 0,
) -> GradientCheckReport:
    """Compare a model's backprop gradient with two-sided finite differences, in float64.

    The model is copied with every floating layer in float64 and its weights copied (cast
    exactly), layer by layer; the original model is left as it was. The global dtype policy
    and floatx are float64 during the call and restored afterwards (so do not build models
    in another thread meanwhile). The cost is J = compiled loss (mean over the batch,
    `loss_weights` applied) + `sum(model.losses)` (regularization penalties), computed with
    `training=False`, so dropout is off and batch normalization uses its moving statistics.
    The analytic gradient comes from the backend's autodiff (`tf.GradientTape`, `jax.grad`);
    the numerical one perturbs each parameter by +-epsilon.

    Args:
        model: A `keras.Model` compiled with a loss unless `loss` is given. A subclassed
            model not built yet is built for `x` first, as its first call would. Weights
            are keyed by their path through the model (`block/inner/kernel`; see
            `reg_callbacks.layer_paths`).
        x: Inputs for the check, a small batch (samples as rows).
        y: Targets for `x`.
        epsilon: Perturbation size, in (0, 0.01). The course's 1e-7 is the default.
        loss: A loss (string, function or `keras.losses.Loss`) to use instead of the
            compiled one; required when the model is not compiled.
        max_params: If set, check only this many parameters, drawn at random (without
            replacement, seeded by `seed`), to bound the cost for large models: half of
            them spread evenly over the trainable variables, so every layer is checked,
            the rest uniformly over all parameters. The analytic gradient is still complete.
        seed: Seed of the `max_params` subset.

    Returns:
        A `GradientCheckReport`; `print(report)` gives a few-line summary.

    Raises:
        ValueError: an argument is out of range, `x` is a dataset, the model has no
            trainable parameters or no loss, or a layer has no `get_config()` to rebuild it.
        RuntimeError: the float64 copy does not compute what the model computes (a
            layer's config misses an argument) or a layer hard-codes a lower precision
            (on JAX, a cast to float32 inside the traced cost is named).

    Example:
        >>> import numpy as np, keras
        >>> model = keras.Sequential([
        ...     keras.Input((4,)),
        ...     keras.layers.Dense(3, activation="tanh",
        ...                        kernel_regularizer=keras.regularizers.L2(0.1)),
        ...     keras.layers.Dense(1, activation="sigmoid"),
        ... ])
        >>> model.compile(loss="binary_crossentropy")
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(8, 4)), rng.integers(0, 2, size=(8, 1))
        >>> report = gradient_check(model, x, y)
        >>> report.verdict, report.n_params
        ('fine', 19)
    """
    _check_args(model, x, epsilon, loss, max_params, seed)
    if not model.built:
        model(symbolic_like(x))  # builds a subclassed model, as its first call would
    if not model.trainable_variables:
        raise ValueError(f"model {model.name!r} has no trainable variables; nothing to check.")
    paths = variable_paths(model)
    backend = backends.current()
    with backend.float64_scope(), _float64_defaults():
        x64, y64 = _to_float64(x), _to_float64(y)
        clone, variables = _float64_copy(model, x64)
        _compile_like(clone, model, loss)
        shapes = [tuple(v.shape) for v in variables]
        sizes = [math.prod(s) for s in shapes]

        cost, y_pred, grads = backend.analytic_gradient(clone, variables, x64, y64, _cost)
        _check_float64(clone, y_pred, cost)
        analytic = np.concatenate(
            [
                np.zeros(size) if g is None else g.reshape(-1)
                for g, size in zip(grads, sizes, strict=True)
            ]
        )

        drawn = _checked_parameters(sizes, max_params, seed)
        numerical, on_kink = _numerical_gradient(clone, variables, x64, y64, drawn, epsilon)

    return _report(
        paths=paths,
        shapes=shapes,
        sizes=sizes,
        analytic=analytic,
        checked=drawn[~on_kink],
        numerical_checked=numerical[~on_kink],
        n_kinks=int(on_kink.sum()),
        epsilon=float(epsilon),
        cost=float(cost),
    )


def _check_args(model, x, epsilon, loss, max_params, seed) -> None:
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model; got {type(model).__name__}.")
    if isinstance(x, tf.data.Dataset):
        raise ValueError(
            "x must be a small batch of arrays, not a tf.data.Dataset; take one with "
            "x, y = next(iter(dataset))."
        )
    if (
        isinstance(epsilon, bool)
        or not isinstance(epsilon, (int, float, np.floating, np.integer))
        or not math.isfinite(float(epsilon))
        or not 0.0 < float(epsilon) < MAX_EPSILON
    ):
        raise ValueError(f"epsilon must be in (0, {MAX_EPSILON:g}); got {epsilon!r}.")
    if max_params is not None and (
        isinstance(max_params, bool)
        or not isinstance(max_params, (int, np.integer))
        or max_params < 1
    ):
        raise ValueError(f"max_params must be None or a positive integer; got {max_params!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}.")
    if loss is None and not model.compiled:
        raise ValueError(
            "loss must be given when the model is not compiled; got loss=None. Pass "
            "loss='binary_crossentropy' (or any Keras loss) or compile the model first."
        )


def _graph_model(layer) -> bool:
    """A Sequential or functional model: one whose layers can be cloned one by one."""
    if not isinstance(layer, keras.Model):
        return False
    try:
        return bool(layer.inputs) and bool(layer.outputs)
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def _float64_defaults():
    # Layers we build take the global dtype policy; Keras losses (and the compiled-loss
    # wrapper, which Keras builds on first use) take floatx. Both are process-global.
    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)


def _float64_copy(model: keras.Model, x64) -> tuple[keras.Model, list]:
    """A float64 copy of `model` holding its weights, and the copy's variable for each of
    `model.trainable_variables`, in that order.

    A Sequential or functional model is cloned layer by layer, and so is every such model
    nested in it, each behind new float64 inputs: a nested model keeps its own input layer,
    and a cloned one would still cast what flows in to that layer's float32, so everything
    upstream of it would be differentiated through float32 rounding. Any other layer, and a
    subclassed model, is rebuilt from its config with every float dtype in it made float64.
    Each original layer's weights are then copied onto its own copy's, so the mapping never
    rests on two models listing their weights in the same order.
    """
    pairs = []  # (original, copy) of each layer or model rebuilt from its config
    if _graph_model(model):
        clone = _clone_graph(model, pairs)
    else:
        clone = _rebuilt(model)
        clone(symbolic_like(x64))
        pairs.append((model, clone))
    copy_of = {}
    for original, rebuilt in pairs:
        if len(original.weights) != len(rebuilt.weights):
            raise RuntimeError(
                f"the float64 copy of {original.name!r} has {len(rebuilt.weights)} weights, "
                f"the layer {len(original.weights)}; its get_config() misses something."
            )
        for source, target in zip(original.weights, rebuilt.weights, strict=True):
            if tuple(target.shape) != tuple(source.shape):
                raise RuntimeError(
                    f"weight {source.path} has shape {source.shape} in the model but "
                    f"{target.shape} in its float64 copy."
                )
            target.assign(_to_numpy(source).astype(target.dtype))
            copy_of[id(source)] = target
    missing = [v.path for v in model.weights if id(v) not in copy_of]
    if missing:
        raise RuntimeError(f"gradient_check could not copy these weights: {', '.join(missing)}.")
    _check_same_outputs(model, clone, x64)
    return clone, [copy_of[id(v)] for v in model.trainable_variables]


def _clone_graph(model: keras.Model, pairs: list) -> keras.Model:
    def clone_layer(layer):
        if _graph_model(layer):
            return _clone_graph(layer, pairs)
        rebuilt = _rebuilt(layer)
        pairs.append((layer, rebuilt))
        return rebuilt

    inputs = [
        keras.Input(
            batch_shape=t.shape,
            dtype="float64" if _is_floating(t.dtype) else t.dtype,
            name=t.name,
        )
        for t in model.inputs
    ]
    # Clone an uncompiled view: clone_model re-compiles a compiled model from its serialized
    # compile config, which fails for losses that are plain (unregistered) functions.
    view = keras.Model(model.inputs, model.outputs, name=model.name)
    return keras.models.clone_model(view, input_tensors=inputs, clone_function=clone_layer)


def _rebuilt(layer):
    """A new, unbuilt `layer` (or subclassed model) from its config, in float64."""
    floating = _is_floating(layer.dtype_policy.variable_dtype)
    if isinstance(layer, keras.layers.Lambda):
        # Rebuilt from the live function: a config round trip refuses Python lambdas.
        return keras.layers.Lambda(
            layer.function,
            output_shape=layer._output_shape,
            mask=layer.mask,
            arguments=layer.arguments,
            name=layer.name,
            dtype="float64" if floating else layer.dtype_policy,
        )
    try:
        config = layer.get_config()
    except NotImplementedError as error:
        raise ValueError(
            f"gradient_check rebuilds the model in float64 from its layers' configs, and "
            f"{type(layer).__name__} {layer.name!r} has no get_config(): give it one (or "
            "keep its __init__ arguments plain values, which Keras records itself)."
        ) from error
    return layer.__class__.from_config(_float64_config(config) if floating else config)


def _float64_config(config):
    """`config` with every floating dtype in it, nested layers' included, made float64."""
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and "config" in config:
            if _is_floating(config["config"].get("name", "")):
                return "float64"
        return {
            key: "float64"
            if key == "dtype" and isinstance(value, str) and _is_floating(value)
            else _float64_config(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [_float64_config(item) for item in config]
    return config


def _compile_like(clone, model, loss) -> None:
    """Compile the float64 copy with the model's loss and loss weights (or `loss`)."""
    loss_weights = None
    if loss is None:
        loss = model.loss
        try:  # Keras keeps compile(loss_weights=...) in the compile config alone
            loss_weights = model.get_compile_config()["loss_weights"]
        except (TypeError, ValueError, KeyError, NotImplementedError):
            loss_weights = None
    clone.compile(loss=keras.tree.map_structure(_float64_loss, loss), loss_weights=loss_weights)


def _check_same_outputs(model, clone, x64) -> None:
    """The copy computes what the model computes (to float32 precision): every weight landed
    where it belongs."""
    x32 = keras.tree.map_structure(
        lambda t: keras.ops.cast(t, model.compute_dtype) if _is_float64(t.dtype) else t, x64
    )
    backend = backends.current()
    (expected,), (got,) = backend.forward(model, x32), backend.forward(clone, x64)
    for want, have in zip(keras.tree.flatten(expected), keras.tree.flatten(got), strict=True):
        if not _is_floating(want.dtype):
            continue
        want, have = _to_numpy(want).astype(np.float64), _to_numpy(have)
        scale = 1.0 + np.max(np.abs(want), initial=0.0)
        if not np.all(np.abs(want - have) <= 1e-3 * scale):
            raise RuntimeError(
                "the float64 copy of the model computes other outputs than the model "
                f"(largest difference {np.max(np.abs(want - have)):.3g}); a layer's "
                "get_config() probably misses one of its arguments."
            )


def _float64_loss(loss):
    """A float64 copy of a `Loss` object (it casts its inputs to its own dtype)."""
    if not isinstance(loss, keras.losses.Loss) or loss.dtype == "float64":
        return loss
    try:
        rebuilt = type(loss).from_config(loss.get_config())  # takes floatx: float64 here
    except (TypeError, ValueError, NotImplementedError):
        rebuilt = None
    if rebuilt is None or rebuilt.dtype != "float64":
        rebuilt = copy.copy(loss)
        rebuilt._dtype_policy = keras.dtype_policies.DTypePolicy("float64")
        rebuilt._dtype = "float64"
    return rebuilt


def _check_float64(clone, y_pred, cost) -> None:
    wrong = [v.path for v in clone.weights if _is_floating(v.dtype) and v.dtype != "float64"]
    wrong += [
        f"input {t.name} of {model.name!r} ({t.dtype})"
        for model in _graph_models(clone)
        for t in model.inputs
        if _is_floating(t.dtype) and t.dtype != "float64"
    ]
    wrong += [
        f"output {i} ({t.dtype})"
        for i, t in enumerate(keras.tree.flatten(y_pred))
        if _is_floating(t.dtype) and not _is_float64(t.dtype)
    ]
    if not _is_float64(cost.dtype):
        wrong.append(f"cost ({cost.dtype})")
    if wrong:
        raise RuntimeError(
            "gradient_check could not run the model in float64; still in lower precision: "
            + ", ".join(wrong)
            + ". A layer or loss probably hard-codes its dtype."
        )


def _graph_models(model):
    """`model` and every Sequential or functional model nested in it."""
    if _graph_model(model):
        yield model
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            yield from _graph_models(layer)


def _checked_parameters(sizes: list[int], max_params: int | None, seed: int) -> np.ndarray:
    """Flat indices of the parameters to check: all, or `max_params` of them drawn at random,
    half spread evenly over the variables (so that a small layer of a large model is checked
    too) and half uniformly over all parameters."""
    n_params = sum(sizes)
    if max_params is None or max_params >= n_params:
        return np.arange(n_params)
    rng = np.random.default_rng(seed)
    per_variable = max_params // (2 * len(sizes))
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    spread = np.concatenate(
        [
            offset + rng.choice(size, size=min(size, per_variable), replace=False)
            for offset, size in zip(offsets, sizes, strict=True)
        ]
    ).astype(np.int64)
    rest = np.setdiff1d(np.arange(n_params), spread)
    uniform = rng.choice(rest, size=max_params - len(spread), replace=False)
    return np.sort(np.concatenate([spread, uniform]))


def _cost(clone, x64, y64):
    """`(y_pred, J)`: J the compiled loss plus `model.losses`, with dropout off."""
    y_pred = clone(x64, training=False)
    return y_pred, clone.compute_loss(x=x64, y=y64, y_pred=y_pred, training=False)


def _numerical_gradient(clone, variables, x64, y64, checked, epsilon: float):
    """The two-sided differences at `checked`, and which of those parameters sit on a kink.

    A kink (a ReLU input at exactly 0, as in a dead channel after a bias-free convolution,
    whose batch norm shift is still 0) has no derivative: backprop takes one side's slope,
    the two-sided difference the mean of both, so they disagree on a correct model. There
    the one-sided differences (J(theta + eps) - J) / eps and (J - J(theta - eps)) / eps
    differ by the jump in slope, where on a smooth cost they differ by eps * J'' only.
    """
    shapes = [tuple(v.shape) for v in variables]
    sizes = [math.prod(s) for s in shapes]
    n_params = sum(sizes)
    ops = keras.ops
    theta = ops.concatenate([ops.reshape(v.value, [-1]) for v in variables], axis=0)
    perturbed = {id(v) for v in variables}
    frozen = [(v, v.value) for v in clone.variables if id(v) not in perturbed]
    splits = [int(i) for i in np.cumsum(sizes)[:-1]]

    def cost_at(index, step):
        flat = theta + step * ops.one_hot(index, n_params, dtype="float64")
        parts = ops.split(flat, splits) if splits else [flat]
        values = [ops.reshape(p, s) for p, s in zip(parts, shapes, strict=True)]
        mapping = list(zip(variables, values, strict=True)) + frozen
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True):
            return _cost(clone, x64, y64)[1]

    costs_at = backends.current().vectorized_costs(cost_at)

    chunk = max(1, _CHUNK_ELEMENTS // (n_params + _activation_elements(clone, x64)))
    chunk = min(chunk, len(checked))
    forward, backward = np.empty(len(checked)), np.empty(len(checked))
    for start in range(0, len(checked), chunk):
        indices = checked[start : start + chunk]
        k = len(indices)
        # Each chunk also evaluates J itself (a step of 0), for the one-sided slopes: once
        # would do, but a vectorized_map over one element mis-broadcasts a conv's bias.
        costs = costs_at(
            np.concatenate([indices, indices, [0]]).astype(np.int64),
            np.concatenate([np.repeat([epsilon, -epsilon], k), [0.0]]),
        )
        at_theta = costs[-1]
        forward[start : start + k] = (costs[:k] - at_theta) / epsilon
        backward[start : start + k] = (at_theta - costs[k : 2 * k]) / epsilon
    jump = np.abs(forward - backward)
    on_kink = (jump > KINK_JUMP * (np.abs(forward) + np.abs(backward))) & (
        jump > RESOLVED * _rounding_noise(at_theta, epsilon)
    )
    return (forward + backward) / 2, on_kink


def _rounding_noise(cost: float, epsilon: float) -> float:
    """The rounding noise of one difference quotient of a float64 cost."""
    return abs(float(cost)) * float(np.finfo(np.float64).eps) / epsilon


def _activation_elements(clone, x64) -> int:
    """Rough per-pass activation size: batch size times the summed layer output sizes."""
    batch = int(keras.tree.flatten(x64)[0].shape[0] or 1)
    per_sample = 0
    for layer in clone.layers:
        try:
            outputs = keras.tree.flatten(layer.output)
        except (AttributeError, ValueError):
            continue
        per_sample += sum(math.prod(d or 1 for d in t.shape[1:]) for t in outputs)
    return batch * per_sample


def _report(*, paths, shapes, sizes, analytic, checked, numerical_checked, n_kinks, epsilon, cost):
    n_params = len(analytic)
    numerical = np.full(n_params, np.nan)
    numerical[checked] = numerical_checked
    owner = np.repeat(np.arange(len(paths)), sizes)
    offsets = np.concatenate([[0], np.cumsum(sizes)])

    per_variable, resolved = {}, set()
    noise = _rounding_noise(cost, epsilon)
    for v, path in enumerate(paths):
        in_var = checked[owner[checked] == v]
        if len(in_var):
            a, n = analytic[in_var], numerical[in_var]
            per_variable[path] = _relative_error(a, n)
            if max(np.linalg.norm(a), np.linalg.norm(n)) > RESOLVED * noise * np.sqrt(len(a)):
                resolved.add(path)
    suspects = sorted(
        (p for p, e in per_variable.items() if e >= BUG_THRESHOLD and p in resolved),
        key=lambda p: -per_variable[p],
    )

    diff = np.abs(analytic[checked] - numerical_checked)
    worst = [
        ParameterCheck(
            path=paths[owner[i]],
            index=int(i - offsets[owner[i]]),
            analytic=float(analytic[i]),
            numerical=float(numerical[i]),
            abs_diff=float(d),
        )
        for i, d in ((checked[j], diff[j]) for j in np.argsort(-diff, kind="stable")[:N_WORST])
    ]
    relative_error = _relative_error(analytic[checked], numerical_checked)
    return GradientCheckReport(
        relative_error=relative_error,
        per_variable=per_variable,
        worst=worst,
        verdict=LIKELY_BUG if suspects else _verdict(relative_error),
        suspect_layers=suspects,
        n_params=n_params,
        n_checked=len(checked),
        n_kinks=n_kinks,
        epsilon=epsilon,
        cost=cost,
        analytic={
            p: analytic[offsets[v] : offsets[v + 1]].reshape(shapes[v]) for v, p in enumerate(paths)
        },
        numerical={
            p: numerical[offsets[v] : offsets[v + 1]].reshape(shapes[v])
            for v, p in enumerate(paths)
        },
    )


def _relative_error(analytic: np.ndarray, numerical: np.ndarray) -> float:
    denominator = np.linalg.norm(analytic) + np.linalg.norm(numerical)
    if denominator == 0.0:
        return 0.0
    return float(np.linalg.norm(analytic - numerical) / denominator)


def _verdict(relative_error: float) -> str:
    if not relative_error < BUG_THRESHOLD:  # NaN counts as a bug
        return LIKELY_BUG
    return FINE if relative_error < FINE_THRESHOLD else LOOK_CLOSER


def _to_float64(data):
    def convert(value):
        tensor = keras.ops.convert_to_tensor(value)
        return keras.ops.cast(tensor, "float64") if _is_floating(tensor.dtype) else tensor

    return keras.tree.map_structure(convert, data)


def _to_numpy(value) -> np.ndarray:
    return backends.current().to_numpy(value)


def _is_float64(dtype) -> bool:
    return keras.backend.standardize_dtype(dtype) == "float64"


def _is_floating(dtype) -> bool:
    return keras.backend.is_float_dtype(keras.backend.standardize_dtype(dtype))
