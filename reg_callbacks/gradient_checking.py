"""Numerical gradient checking for Keras 3 models: the course's "grad check", for real models.

The course checks backprop by comparing the analytic gradient g with the two-sided difference
g~_i = (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps) and reading the relative error
||g - g~|| / (||g|| + ||g~||): about 1e-7 is fine, about 1e-5 deserves a closer look, 1e-3 or
more is likely a bug.

`gradient_check` does that for any Keras model that `fit` trains (Sequential, functional or
subclassed, a model wrapping another, custom layers, dict inputs, adapted preprocessing
layers) in float64, with the cost that training minimizes (compiled loss with its
`loss_weights`, plus `model.losses`, i.e. L1/L2 penalties) and dropout off. The model itself
runs, through its own `call`, on float64 values of its weights: no copy of it is rebuilt from
configs. By default every trainable variable is checked along random directions (perturb the
whole variable along a random unit vector u: two forward passes give the directional
derivative, compared with the analytic g . u), and then parameters one by one, the course's
way, on every variable that disagrees and on a sample of the others, so that the report
names the worst parameters. `mode="per_parameter"` is the course's loop over every parameter
(or `max_params` of them).

A disagreement counts only when it is many times the rounding noise of the difference
quotient (|J| * 2.2e-16 / eps, or the spread of J evaluated twice, whichever is larger): a
relative error that one rounding step of J can make (tiny gradients) is no evidence. A
disagreement the numerical side cannot vouch for, because the one-sided slopes of J change
with the step (a ReLU or a max switching inside +-eps, a kink), is left out and said so.

Where float64 is impossible (a layer or the backend casts to float32 inside, as Keras's JAX
attention does), the check runs in float32 with a step and noise that suit float32, and the
report says so.
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
DIRECTIONAL, PER_PARAMETER = "directional", "per_parameter"
MAX_EPSILON = 1e-2
# A difference quotient carries rounding noise of about sigma / eps, sigma the noise of one
# evaluation of J. A difference counts only beyond NOISE_STEPS times that.
NOISE_STEPS = 100.0
FLOAT32_EPSILON = 1e-3  # the step of a float32 check (the course's 1e-7 is below float32's noise)
N_WORST = 10
FOLLOW_UP_PARAMETERS = 256  # per-parameter comparisons on a variable whose directions disagree
SAMPLED_PARAMETERS = 1  # ... and on each other variable (its largest gradient)
RETRIES = 2  # new directions drawn for a variable whose direction landed on a kink
# Elements one call of perturbed forward passes may hold as parameter vectors (float64).
_CHUNK_ELEMENTS = 2**22


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

    `per_variable` is the relative error ||a - n|| / (||a|| + ||n||) of each trainable
    variable, keyed by its path through the model (`block/inner/kernel`,
    `reg_callbacks.layer_paths`): over its random directions (a = g . u, n the two-sided
    difference along u) in the directional mode, over its parameters in the per-parameter
    mode. `relative_error` is the same over everything compared. `suspect_layers` lists the
    variables whose analytic and numerical values differ by more than `NOISE_STEPS` times
    the rounding noise and by a relative error at or above `BUG_THRESHOLD`, worst first
    (ties: the variable nearest the output first, where a wrong backward pass shows first).
    `verdict` is "likely a bug" when there is a suspect, "look closer" when a variable
    differs beyond the noise by a relative error in [`FINE_THRESHOLD`, `BUG_THRESHOLD`),
    else "fine": differences within the noise are no evidence, whatever their relative size.

    `worst` lists the parameters compared one by one with the largest |analytic - numerical|;
    `analytic` and `numerical` hold the gradients per variable, shaped like it (`numerical`
    is NaN where a parameter was not compared one by one). `n_variables` variables were
    compared along `n_directions` random directions in all, and `n_checked` of `n_params`
    parameters one by one; `n_kinks` directions or parameters sat on a kink (their one-sided
    slopes change with the step) and were left out. `precision` is "float64", or "float32"
    when float64 was impossible (then `notes` says why). `deterministic` is False when J
    evaluated twice at the same weights differed (by `notes`).
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
    mode: str
    precision: str
    n_variables: int
    n_directions: int
    deterministic: bool
    notes: list[str]
    analytic: dict[str, np.ndarray] = field(repr=False)
    numerical: dict[str, np.ndarray] = field(repr=False)

    def summary(self) -> str:
        lines = [
            f"Gradient check: relative error {self.relative_error:.2e} -> {self.verdict} "
            f"(J = {self.cost:.6g}, {self.precision}, epsilon = {self.epsilon:g})"
        ]
        if self.mode == DIRECTIONAL:
            lines.append(
                f"  compared: all {self.n_variables} variables along {self.n_directions} "
                f"random directions, then {self.n_checked} of {self.n_params} parameters one "
                "by one"
            )
        else:
            lines.append(f"  compared: {self.n_checked} of {self.n_params} parameters one by one")
        if self.n_kinks:
            lines.append(f"  left out: {self.n_kinks} on a kink (one-sided slopes disagree)")
        for path in self.suspect_layers:
            lines.append(f"  suspect: {path} (relative error {self.per_variable[path]:.2e})")
        if self.worst:
            w = self.worst[0]
            lines.append(
                f"  worst parameter: {w.path}[{w.index}] analytic {w.analytic:.6g}, "
                f"numerical {w.numerical:.6g}, |diff| {w.abs_diff:.2e}"
            )
        lines.extend(f"  note: {note}" for note in self.notes)
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
    mode: str = DIRECTIONAL,
    directions: int = 2,
    max_params: int | None = None,
    seed: int = 0,
) -> GradientCheckReport:
    """Compare a model's backprop gradient with two-sided finite differences, in float64.

    The model runs through its own `call` on float64 values of its weights: for the length
    of the call every layer's dtype policy is float64 and its weights are read as float64
    (the model is given back as it was, weights untouched; do not use it from another thread
    meanwhile). The cost is J = compiled loss (mean over the batch, `loss_weights` applied) +
    `sum(model.losses)` (regularization penalties), with `training=False`: dropout is off and
    batch normalization uses its moving statistics. The analytic gradient comes from the
    backend's autodiff (`tf.GradientTape` in a `tf.function`, `jax.grad`), compiled as under
    `fit`, so a custom gradient that works in training works here.

    By default (`mode="directional"`) every trainable variable is checked along `directions`
    random unit directions over the whole variable (two forward passes each), then the
    course's per-parameter comparison runs on every variable that disagrees (up to
    `FOLLOW_UP_PARAMETERS` of its parameters) and on `SAMPLED_PARAMETERS` of each other one.
    `mode="per_parameter"` is the course's loop: every parameter (or `max_params` of them)
    perturbed by +-epsilon, two forward passes each, cost parameters x batch.

    Args:
        model: A `keras.Model` compiled with a loss unless `loss` is given. A subclassed
            model not built yet is built for `x` first, as its first call would.
        x: Inputs for the check, a small batch, structured as `fit` takes them.
        y: Targets for `x`.
        epsilon: Perturbation size, in (0, 0.01): of each parameter, or the length of the
            step along a direction. The course's 1e-7 is the default.
        loss: A loss (string, function or `keras.losses.Loss`) to use instead of the
            compiled one; required when the model is not compiled.
        mode: "directional" (the default) or "per_parameter" (the course's loop).
        directions: Random directions per variable in the directional mode, at least 1.
        max_params: At most this many parameters compared one by one. In the per-parameter
            mode they are drawn at random (half spread evenly over the variables, half
            uniformly); in the directional mode they are drawn from its follow-up.
        seed: Seed of the random directions and parameter samples.

    Returns:
        A `GradientCheckReport`; `print(report)` gives a few-line summary.

    Raises:
        ValueError: an argument is out of range, `x` is a dataset, or the model has no
            trainable parameters or no loss.

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
        >>> report.verdict, report.n_params, report.n_variables
        ('fine', 19, 4)
    """
    _check_args(model, x, epsilon, loss, mode, directions, max_params, seed)
    if not model.built:
        model(symbolic_like(x))  # builds a subclassed model, as its first call would
    if not model.trainable_variables:
        raise ValueError(f"model {model.name!r} has no trainable variables; nothing to check.")
    paths = variable_paths(model)
    reference = _to_numpy_nest(model.predict_on_batch(x))
    with _float64_view(model, loss) as view:
        problem = view.precision_problem(x, y)
        if problem is None:
            passes = _analytic_pass(view, x, y)
            problem = passes.problem(reference)
        if problem is None:
            return _run(view, passes, paths, epsilon, mode, directions, max_params, seed, [])
    epsilon = max(epsilon, FLOAT32_EPSILON)
    notes = [
        f"float64 was impossible ({problem}); checked in float32 with epsilon {epsilon:g} "
        "and float32's rounding noise"
    ]
    with _float32_view(model, loss) as view:
        passes = _analytic_pass(view, x, y)
        return _run(view, passes, paths, epsilon, mode, directions, max_params, seed, notes)


def _check_args(model, x, epsilon, loss, mode, directions, max_params, seed) -> None:
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
    if mode not in (DIRECTIONAL, PER_PARAMETER):
        raise ValueError(f"mode must be {DIRECTIONAL!r} or {PER_PARAMETER!r}; got {mode!r}.")
    if not _positive_int(directions):
        raise ValueError(f"directions must be a positive integer; got {directions!r}.")
    if max_params is not None and not _positive_int(max_params):
        raise ValueError(f"max_params must be None or a positive integer; got {max_params!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}.")
    if loss is None and not model.compiled:
        raise ValueError(
            "loss must be given when the model is not compiled; got loss=None. Pass "
            "loss='binary_crossentropy' (or any Keras loss) or compile the model first."
        )


def _positive_int(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 1


# The model on float64 (or float32) values of its weights.


class _View:
    """`cost(values, x, y) -> (J, y_pred)`: the model's cost at `values` of its trainable
    variables, statelessly, in `dtype` (its other float variables at their own values)."""

    def __init__(self, model, loss, dtype):
        self.model, self.dtype = model, dtype
        self.variables = list(model.trainable_variables)
        trainable = {id(v) for v in self.variables}
        self.fixed = [
            (v, keras.ops.cast(v.value, dtype))
            for v in model.variables
            if id(v) not in trainable and _is_floating(v.dtype)
        ]
        self.compile_loss = _compiled_loss(model, loss, dtype)
        # Keras's own layers branch on no tensor in Python (they are written for JAX too);
        # a user's layer or model may, as `fit` allows.
        self.autograph = not all(_is_keras(type(layer)) for layer in _all_layers(model))

    def cost(self, values, x, y):
        model = self.model
        mapping = list(zip(self.variables, values, strict=True)) + self.fixed
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True):
            y_pred = model(x, training=False)
            original, model._compile_loss = model._compile_loss, self.compile_loss
            try:
                value = model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
            finally:
                model._compile_loss = original
        return value, y_pred

    def values(self) -> list:
        return [keras.ops.cast(v.value, self.dtype) for v in self.variables]

    def data(self, x, y):
        return _cast_floats(x, self.dtype), _cast_floats(y, self.dtype)

    def precision_problem(self, x, y) -> str | None:
        """Why this view cannot compute in its dtype (a variable kept in a lower precision,
        a cast in the traced cost); None if it can."""
        low = [v.path for v in self.variables if v.dtype != self.dtype]
        if low:
            return f"variables kept in lower precision: {', '.join(low)}"
        demoted = backends.current().float64_demotions(self.cost, self.values(), *self.data(x, y))
        if demoted:
            return f"these parts cast float64 to float32: {', '.join(demoted)}"
        return None


@dataclass
class _AnalyticPass:
    """The data and weights in the view's dtype, J there, the outputs, backprop's gradient."""

    x: object
    y: object
    values: list
    cost: object
    y_pred: object
    gradients: list

    def problem(self, reference) -> str | None:
        """Why these outputs are not float64 or differ from the model's; None if fine."""
        to_numpy = backends.current().to_numpy
        wrong = [
            f"output {i} ({t.dtype})"
            for i, t in enumerate(keras.tree.flatten(self.y_pred))
            if _is_floating(t.dtype) and not _is_float64(t.dtype)
        ]
        if not _is_float64(self.cost.dtype):
            wrong.append(f"cost ({self.cost.dtype})")
        if wrong:
            return f"still in lower precision: {', '.join(wrong)}"
        outputs = zip(keras.tree.flatten(reference), keras.tree.flatten(self.y_pred), strict=True)
        for want, have in outputs:
            want, have = np.asarray(want), to_numpy(have)
            if want.dtype.kind != "f":
                continue
            difference = np.max(np.abs(want - have), initial=0.0)
            if not difference <= 1e-3 * (1.0 + np.max(np.abs(want), initial=0.0)):
                return f"its outputs in float64 differ from its float32 ones by {difference:.3g}"
        return None


def _analytic_pass(view, x, y) -> _AnalyticPass:
    x_, y_ = view.data(x, y)
    values = view.values()
    cost, y_pred, grads = backends.current().value_and_gradients(
        view.cost, values, x_, y_, autograph=view.autograph
    )
    return _AnalyticPass(x_, y_, values, cost, y_pred, grads)


@contextlib.contextmanager
def _float64_view(model, loss):
    """The model's layers, float variables and functional inputs in float64 for the block,
    then restored. The variables keep their values: only their dtype reads float64, so
    that the values the check maps onto them stay float64 (their layers read them as is)."""
    layers = _all_layers(model)
    variables = [v for v in model.variables if _is_floating(v.dtype)]
    variable_dtypes = [v._dtype for v in variables]
    policies = [(layer, layer.dtype_policy) for layer in layers]
    # What a model casts its inputs to: its functional graph's input tensors, and a
    # Sequential's input layer.
    inputs = [t for layer in layers for t in _functional_inputs(layer) if _is_floating(t.dtype)]
    inputs += [
        layer
        for layer in layers
        if isinstance(layer, keras.layers.InputLayer) and _is_floating(layer.dtype)
    ]
    dtypes = [t.dtype for t in inputs]
    floatx, default_policy = keras.config.floatx(), keras.config.dtype_policy()
    try:
        with backends.current().float64_scope():
            # Losses Keras builds on first use take floatx; sublayers built lazily the policy.
            keras.config.set_floatx("float64")
            keras.config.set_dtype_policy("float64")
            for layer, policy in policies:
                if _is_floating(policy.compute_dtype) and policy.quantization_mode is None:
                    layer.dtype_policy = keras.dtype_policies.DTypePolicy("float64")
            for t in inputs:
                t._dtype = "float64"
            view = _View(model, loss, "float64")  # reads the values before the dtype changes
            for v in variables:
                v._dtype = "float64"
            yield view
    finally:
        for v, dtype in zip(variables, variable_dtypes, strict=True):
            v._dtype = dtype
        for t, dtype in zip(inputs, dtypes, strict=True):
            t._dtype = dtype
        for layer, policy in policies:
            layer.dtype_policy = policy
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(default_policy)


@contextlib.contextmanager
def _float32_view(model, loss):
    yield _View(model, loss, "float32")


def _all_layers(model) -> list:
    """The model, every layer and sub-layer in it, and the functional graphs of Sequentials."""
    found, seen = [], set()

    def walk(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        found.append(layer)
        for sub in layer._flatten_layers(include_self=False, recursive=False):
            walk(sub)
        functional = getattr(layer, "_functional", None)  # a built Sequential's graph
        if functional is not None:
            walk(functional)

    walk(model)
    return found


def _functional_inputs(layer) -> list:
    if not hasattr(layer, "_inputs") or not hasattr(layer, "_run_through_graph"):
        return []
    return list(keras.tree.flatten(layer._inputs))


def _compiled_loss(model, loss, dtype):
    """A compiled loss like the model's (or of `loss`) whose losses compute in `dtype`."""
    loss_weights = None
    if loss is None:
        loss = model.loss
        try:  # Keras keeps compile(loss_weights=...) in the compile config alone
            loss_weights = model.get_compile_config()["loss_weights"]
        except (TypeError, ValueError, KeyError, NotImplementedError):
            loss_weights = None
    holder = _LossHolder(getattr(model, "output_names", None))
    floatx = keras.config.floatx()
    keras.config.set_floatx(dtype)  # the compiled loss wrapper takes floatx
    try:
        holder.compile(
            loss=keras.tree.map_structure(lambda item: _loss_in(item, dtype), loss),
            loss_weights=loss_weights,
        )
    finally:
        keras.config.set_floatx(floatx)
    return holder._compile_loss


class _LossHolder(keras.Model):
    """A model with no layers, compiled only to hold a compiled loss for another model's
    outputs (named as that model names them)."""

    def __init__(self, output_names):
        super().__init__()
        if output_names is not None:
            self.output_names = list(output_names)


def _loss_in(loss, dtype):
    """A copy of a `Loss` object computing in `dtype` (it casts its inputs to its own)."""
    if not isinstance(loss, keras.losses.Loss) or loss.dtype == dtype:
        return loss
    rebuilt = copy.copy(loss)
    rebuilt._dtype_policy = keras.dtype_policies.DTypePolicy(dtype)
    rebuilt._dtype = dtype
    return rebuilt


# The check.


@dataclass
class _Compared:
    """Pairs of analytic and numerical derivatives, with what each belongs to."""

    owner: np.ndarray  # variable index of each pair
    analytic: np.ndarray
    numerical: np.ndarray
    mismatch: np.ndarray  # differs beyond the noise, on a smooth stretch of J
    kink: np.ndarray


def _run(view, passes, paths, epsilon, mode, directions, max_params, seed, notes):
    backend = backends.current()
    shapes = [tuple(v.shape) for v in view.variables]
    sizes = [math.prod(s) for s in shapes]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    analytic = np.concatenate(
        [
            np.zeros(size) if g is None else np.asarray(g, np.float64).reshape(-1)
            for g, size in zip(passes.gradients, sizes, strict=True)
        ]
    )
    values, x_, y_ = passes.values, passes.x, passes.y
    theta = np.concatenate([backend.to_numpy(v).astype(np.float64).reshape(-1) for v in values])
    costs = _Costs(
        backend.costs_at_points(view.cost, shapes, x_, y_, view.dtype, autograph=view.autograph),
        backend.costs_at_parameters(
            view.cost, shapes, x_, y_, view.dtype, autograph=view.autograph
        ),
        theta,
    )

    # The determinism guard: J twice at the same weights, in the call the differences use.
    j0, j1 = costs.at_theta_twice()
    spread = abs(j1 - j0)
    deterministic = spread == 0.0
    if not deterministic:
        notes.append(
            f"J evaluated twice at the same weights differed by {spread:.3g}: the model is "
            "not deterministic (the noise allowance includes it)"
        )
    unit = float(np.finfo(view.dtype).eps)
    sigma = max(abs(j0) * unit, spread)
    rng = np.random.default_rng(seed)

    if mode == DIRECTIONAL:
        along = _directional(costs, analytic, offsets, sizes, epsilon, sigma, directions, rng)
        follow = _follow_up(along, analytic, offsets, sizes, rng)
        if max_params is not None and max_params < len(follow):
            follow = np.sort(rng.choice(follow, size=max_params, replace=False))
    else:
        along = None
        follow = _sampled_parameters(sizes, max_params, rng)
    singles = _per_parameter(
        costs, analytic, offsets, follow, epsilon, sigma, batched=mode == PER_PARAMETER
    )
    graded = along if along is not None else singles
    return _report(
        mode=mode,
        paths=paths,
        shapes=shapes,
        offsets=offsets,
        analytic=analytic,
        graded=graded,
        singles=singles,
        checked=follow,
        epsilon=epsilon,
        cost=j0,
        precision=view.dtype,
        n_directions=0 if along is None else len(along.owner),
        deterministic=deterministic,
        notes=notes,
    )


class _Costs:
    """J at points of the flat parameter vector, evaluated in chunks of compiled calls."""

    def __init__(self, costs_at_points, costs_at_parameters, theta):
        self.costs_at_points, self.costs_at_parameters = costs_at_points, costs_at_parameters
        self.theta = theta
        self.chunk = max(2, _CHUNK_ELEMENTS // max(1, len(theta)))

    def at_theta_twice(self):
        at = self.costs_at_points(np.stack([self.theta, self.theta]))
        self.j0 = float(at[0])
        return float(at[0]), float(at[1])

    def along(self, directions: np.ndarray, steps) -> np.ndarray:
        """`J(theta + step * direction)` for each direction (rows) and step (columns)."""
        out = np.empty((len(directions), len(steps)))
        per_call = max(1, self.chunk // len(steps))
        for start in range(0, len(directions), per_call):
            block = directions[start : start + per_call]
            points = np.concatenate([self.theta + step * block for step in steps])
            if len(points) == 1:  # one point per call mis-broadcasts a conv's bias
                points = np.concatenate([points, points])
            at = self.costs_at_points(points)[: len(steps) * len(block)]
            out[start : start + len(block)] = at.reshape(len(steps), len(block)).T
        return out

    def at_parameters(self, indices: np.ndarray, steps, batched: bool) -> np.ndarray:
        """Like `along`, for the unit directions of the parameters at `indices`: batched
        (the course's loop over many parameters, one vectorized call a chunk), or as points
        (a few parameters of a large model, one forward pass each)."""
        if not batched:
            directions = np.zeros((len(indices), len(self.theta)))
            directions[np.arange(len(indices)), indices] = 1.0
            return self.along(directions, steps)
        out = np.empty((len(indices), len(steps)))
        per_call = max(1, self.chunk // len(steps))
        for start in range(0, len(indices), per_call):
            block = indices[start : start + per_call]
            at = self.costs_at_parameters(
                self.theta,
                np.tile(block, len(steps)).astype(np.int64),
                np.repeat(np.asarray(steps, np.float64), len(block)),
            )
            out[start : start + len(block)] = at.reshape(len(steps), len(block)).T
        return out


def _compare(costs_of, analytic, at_theta, epsilon, sigma):
    """Analytic vs two-sided numerical derivatives, with the kink test.

    `costs_of(steps)` gives J at each step along each compared direction (rows). A pair
    whose difference exceeds the noise is looked at again with twice the step: on a smooth
    stretch of J the two-sided difference stays put (its error is eps^2 J''' / 6) and the
    one-sided slopes move apart in proportion to the step (eps J''); on a kink (a ReLU or a
    max switching inside the step) either changes otherwise, beyond the noise. Then backprop
    cannot be judged by this pair: it is on a kink.
    """
    tolerance = NOISE_STEPS * sigma / epsilon
    at = costs_of([epsilon, -epsilon])
    forward, backward = (at[:, 0] - at_theta) / epsilon, (at_theta - at[:, 1]) / epsilon
    numerical = (at[:, 0] - at[:, 1]) / (2 * epsilon)
    mismatch = np.abs(analytic - numerical) > tolerance
    kink = np.zeros(len(analytic), bool)
    if mismatch.any():
        wide = costs_of([2 * epsilon, -2 * epsilon], rows=np.flatnonzero(mismatch))
        m = mismatch
        numerical_wide = (wide[:, 0] - wide[:, 1]) / (4 * epsilon)
        jump = 2 * (forward[m] - backward[m]) - (
            (wide[:, 0] - at_theta) - (at_theta - wide[:, 1])
        ) / (2 * epsilon)
        kinked = (np.abs(numerical_wide - numerical[m]) > tolerance) | (
            np.abs(jump) > 3 * tolerance
        )
        kink[m] = kinked
        mismatch[m] &= ~kinked
    return numerical, mismatch, kink


def _directional(costs, analytic, offsets, sizes, epsilon, sigma, directions, rng):
    owners, a_all, n_all, mis_all, kink_all = [], [], [], [], []
    wanted = np.full(len(sizes), directions)
    for attempt in range(1 + RETRIES):
        first = attempt == 0
        owner = np.repeat(np.arange(len(sizes)), wanted)
        if not len(owner):
            break
        units = np.zeros((len(owner), len(costs.theta)))
        for row, v in enumerate(owner):
            u = rng.standard_normal(sizes[v])
            u /= np.linalg.norm(u)
            gradient = analytic[offsets[v] : offsets[v + 1]]
            if first and row == np.flatnonzero(owner == v)[0] and np.any(gradient):
                # Half along backprop's own gradient: g . u is then of the size of |g|, not
                # |g| / sqrt(size), far above the noise even in a large variable.
                along_gradient = gradient / np.linalg.norm(gradient)
                u = np.copysign(1.0, u @ along_gradient) * u + along_gradient
                u /= np.linalg.norm(u)
            units[row, offsets[v] : offsets[v + 1]] = u
        a = units @ analytic

        def costs_of(steps, rows=None, units=units):
            return costs.along(units if rows is None else units[rows], steps)

        numerical, mismatch, kink = _compare(costs_of, a, costs.j0, epsilon, sigma)
        owners.append(owner)
        a_all.append(a)
        n_all.append(numerical)
        mis_all.append(mismatch)
        kink_all.append(kink)
        wanted = np.bincount(owner[kink], minlength=len(sizes))  # a new direction for each
    return _Compared(
        *(np.concatenate(parts) for parts in (owners, a_all, n_all, mis_all, kink_all))
    )


def _follow_up(along, analytic, offsets, sizes, rng) -> np.ndarray:
    """Flat indices to compare one by one: up to `FOLLOW_UP_PARAMETERS` of each variable
    whose directions disagree (its largest gradients, and as many drawn at random), and
    `SAMPLED_PARAMETERS` of each other one (its largest gradients first)."""
    disagreeing = set(along.owner[along.mismatch].tolist())
    picked = []
    for v, size in enumerate(sizes):
        count = min(size, FOLLOW_UP_PARAMETERS if v in disagreeing else SAMPLED_PARAMETERS)
        local = np.abs(analytic[offsets[v] : offsets[v + 1]])
        largest = np.argsort(-local, kind="stable")[: (count + 1) // 2]
        rest = np.setdiff1d(np.arange(size), largest)
        drawn = rng.choice(rest, size=min(len(rest), count - len(largest)), replace=False)
        picked.append(offsets[v] + np.concatenate([largest, drawn]).astype(np.int64))
    return np.sort(np.concatenate(picked))


def _sampled_parameters(sizes, max_params, rng) -> np.ndarray:
    """All parameters, or `max_params` drawn at random: half spread evenly over the variables
    (a small layer of a large model is checked too), half uniformly over all parameters."""
    n_params = sum(sizes)
    if max_params is None or max_params >= n_params:
        return np.arange(n_params)
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


def _per_parameter(costs, analytic, offsets, indices, epsilon, sigma, batched) -> _Compared:
    owner = np.searchsorted(offsets, indices, side="right") - 1

    def costs_of(steps, rows=None):
        return costs.at_parameters(indices if rows is None else indices[rows], steps, batched)

    numerical, mismatch, kink = _compare(costs_of, analytic[indices], costs.j0, epsilon, sigma)
    return _Compared(owner, analytic[indices], numerical, mismatch, kink)


def _report(
    *,
    mode,
    paths,
    shapes,
    offsets,
    analytic,
    graded,
    singles,
    checked,
    epsilon,
    cost,
    precision,
    n_directions,
    deterministic,
    notes,
):
    used = ~graded.kink
    per_variable, suspects, closer = {}, [], []
    for v, path in enumerate(paths):
        mine = used & (graded.owner == v)
        if not mine.any():
            continue
        error = _relative_error(graded.analytic[mine], graded.numerical[mine])
        per_variable[path] = error
        if (graded.mismatch & mine).any():
            if not error < BUG_THRESHOLD:
                suspects.append((v, path))
            elif error >= FINE_THRESHOLD:
                closer.append(path)
    # Worst first; between near-equal errors, the variable nearest the output first.
    suspects.sort(
        key=lambda item: (-round(math.log10(per_variable[item[1]] + 1e-300), 2), -item[0])
    )
    relative_error = _relative_error(graded.analytic[used], graded.numerical[used])
    verdict = (
        LIKELY_BUG if suspects or math.isnan(relative_error) else (LOOK_CLOSER if closer else FINE)
    )

    numerical = np.full(len(analytic), np.nan)
    kept = ~singles.kink
    numerical[checked[kept]] = singles.numerical[kept]
    diff = np.abs(singles.analytic - singles.numerical)
    order = [j for j in np.argsort(-diff, kind="stable") if kept[j]][:N_WORST]
    worst = [
        ParameterCheck(
            path=paths[singles.owner[j]],
            index=int(checked[j] - offsets[singles.owner[j]]),
            analytic=float(singles.analytic[j]),
            numerical=float(singles.numerical[j]),
            abs_diff=float(diff[j]),
        )
        for j in order
    ]
    return GradientCheckReport(
        relative_error=relative_error,
        per_variable=per_variable,
        worst=worst,
        verdict=verdict,
        suspect_layers=[path for _, path in suspects],
        n_params=len(analytic),
        n_checked=int(kept.sum()),
        n_kinks=int(graded.kink.sum()) + (int(singles.kink.sum()) if mode == DIRECTIONAL else 0),
        epsilon=float(epsilon),
        cost=float(cost),
        mode=mode,
        precision=precision,
        n_variables=len(set(graded.owner.tolist())) if mode == DIRECTIONAL else 0,
        n_directions=n_directions,
        deterministic=deterministic,
        notes=list(notes),
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


def _cast_floats(data, dtype):
    def convert(value):
        tensor = keras.ops.convert_to_tensor(value)
        return keras.ops.cast(tensor, dtype) if _is_floating(tensor.dtype) else tensor

    return keras.tree.map_structure(convert, data)


def _to_numpy_nest(data):
    return keras.tree.map_structure(np.asarray, data)


def _is_keras(cls) -> bool:
    return cls.__module__.split(".")[0] == "keras"


def _is_float64(dtype) -> bool:
    return keras.backend.standardize_dtype(dtype) == "float64"


def _is_floating(dtype) -> bool:
    return keras.backend.is_float_dtype(keras.backend.standardize_dtype(dtype))
