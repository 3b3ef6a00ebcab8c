"""Keras's JAX backend: the library's primitives as jitted stateless functions (see `backends`).

A jitted JAX function cannot read a Keras variable: it gets the variables' current values as
arguments and calls the model statelessly, the way Keras's own JAX trainer does
(`model.stateless_call`, `model.compute_loss_and_updates`, `model.train_step(state, data)`).
Each function is jitted once per model (`cached_for_model`) and traced once per input shape.

float64 is a process-wide switch on JAX (`jax_enable_x64`); `float64_scope` turns it on for
the calling thread only, for the length of a gradient check (`jax.enable_x64`), so the rest
of the process keeps JAX's float32 defaults. Keras's type promotion also maps float64 to
float32 on every backend but TensorFlow (tanh, RNN cells, loss means): the scope lifts that
mapping for its length too.

`train`'s loop traces Keras's dropout as `hashed_dropout` (`counter_based_dropout`, the same
kind of scoped swap as TensorFlow's Threefry one): Keras's JAX dropout draws Threefry-2x32
bits, which XLA's CPU code makes the most expensive part of a small net's step.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import threading

import jax
import jax.numpy as jnp
import keras
import numpy as np

# Keras's promotion table, which demotes float64 to float32 off TensorFlow: no public API
# reaches it, and without lifting it a float64 gradient check is not float64 on JAX.
from keras.src.backend.common import dtypes as keras_dtypes

# Keras's JAX dropout, to swap a counter-based hash in within `train`'s loop: no public API
# reaches it (layers look it up as `keras.src.backend.random.dropout` on every call).
from keras.src.backend.jax import random as keras_jax_random

from reg_callbacks.backends import ScopedSwap, cached_for_model, float_logs

# `train`'s loop computes no interval probes: it writes the weights back after each interval,
# and the callbacks run their own jitted functions on them, as under `fit`.
RUNS_INTERVAL_PROBES = False


def loss_gradients(model, x, y, sample_weight=None, training=False) -> list[np.ndarray]:
    gradients = cached_for_model(
        model,
        ("gradients", bool(training)),
        lambda ref: jax.jit(functools.partial(_gradients, ref, bool(training))),
    )
    grads = gradients(_loss_state(model, training), _arrays(x), _arrays(y), _arrays(sample_weight))
    return [np.asarray(g, np.float32) for g in grads]


def gradient_norms(model, x, y, groups, training=False) -> np.ndarray:
    groups = tuple(tuple(group) for group in groups)

    def norms(model_ref, state, x, y):
        squares = [
            jnp.sum(jnp.square(g.astype("float32")))
            for g in _gradients(model_ref, bool(training), state, x, y, None)
        ]
        return jnp.stack(
            [jnp.sqrt(sum((squares[i] for i in group), jnp.float32(0))) for group in groups]
        )

    compiled = cached_for_model(
        model,
        ("gradient_norms", groups, bool(training)),
        lambda ref: jax.jit(functools.partial(norms, ref)),
    )
    return np.asarray(compiled(_loss_state(model, training), _arrays(x), _arrays(y)))


def forward(model, *inputs) -> tuple:
    def run(model_ref, trainable, non_trainable, inputs):
        model = model_ref()
        # `stateless_call` hands its keywords to `call` as they are; a subclassed model's
        # `call(self, x)` often takes no `training` (Keras's own JAX trainer asks first, too).
        mode = {"training": False} if _takes_training(model) else {}
        return tuple(model.stateless_call(trainable, non_trainable, x, **mode)[0] for x in inputs)

    compiled = cached_for_model(
        model, ("forward",), lambda ref: jax.jit(functools.partial(run, ref))
    )
    outputs = compiled(
        _values(model.trainable_variables),
        _values(model.non_trainable_variables),
        _arrays(inputs),
    )
    return keras.tree.map_structure(np.asarray, outputs)


def graph_call(model, key: tuple, function):
    """`run(*args)`: `function(model, forward, *args)` jitted once per model and `key`,
    `forward(x)` being the model's stateless call (training=False) on its current weights."""

    def run(model_ref, trainable, non_trainable, args):
        model = model_ref()
        mode = {"training": False} if _takes_training(model) else {}  # as in `forward`

        def forward(x):
            return model.stateless_call(trainable, non_trainable, x, **mode)[0]

        return function(model, forward, *args)

    compiled = cached_for_model(
        model, ("graph_call", *key), lambda ref: jax.jit(functools.partial(run, ref))
    )
    return lambda *args: keras.tree.map_structure(
        np.asarray,
        compiled(
            _values(model.trainable_variables),
            _values(model.non_trainable_variables),
            _arrays(args),
        ),
    )


def to_numpy(value) -> np.ndarray:
    return np.asarray(value.value if isinstance(value, keras.Variable) else value)


_KERAS_FLOAT64_PROMOTION = keras_dtypes.BIT64_TO_BIT32_DTYPE["float64"]
_promotion_lock = threading.Lock()
_promotion_users = 0


@contextlib.contextmanager
def float64_scope():
    """float64 arrays for the calling thread (`jax.enable_x64`), and Keras's type promotion
    keeping float64, until the block exits.

    JAX's jit caches key on the x64 setting, so functions traced inside are traced anew.
    Keras's table is process-wide: it is lifted when the first block (in any thread) enters
    and put back when the last one exits; only float64 inputs reach the entry it changes.
    """
    global _promotion_users
    with _promotion_lock:
        if _promotion_users == 0:
            keras_dtypes.BIT64_TO_BIT32_DTYPE["float64"] = "float64"
        _promotion_users += 1
    try:
        with jax.enable_x64(True):
            yield
    finally:
        with _promotion_lock:
            _promotion_users -= 1
            if _promotion_users == 0:
                keras_dtypes.BIT64_TO_BIT32_DTYPE["float64"] = _KERAS_FLOAT64_PROMOTION


def float64_demotions(cost, values, x, y) -> list[str]:
    """Where the traced cost casts float64 to float32, by Keras name scope, in order."""
    return _float64_demotions(jax.make_jaxpr(cost)(values, x, y).jaxpr)


def value_and_gradients(cost, values, x, y, autograph=True):
    """`(J, y_pred, dJ/dvalue for each value)` with `(J, y_pred) = cost(values, x, y)`."""
    (value, y_pred), grads = jax.jit(jax.value_and_grad(cost, has_aux=True))(list(values), x, y)
    return value, y_pred, [np.asarray(g) for g in grads]


def _float64_demotions(jaxpr) -> list[str]:
    """Where the traced computation casts float64 to float32, by Keras name scope, in order."""
    places = []
    for equation in jaxpr.eqns:
        if (
            equation.primitive.name == "convert_element_type"
            and equation.invars[0].aval.dtype == jnp.float64
            and equation.params["new_dtype"] == jnp.float32
        ):
            places.append(str(equation.source_info.name_stack) or "the model")
        for param in equation.params.values():
            inner = getattr(param, "jaxpr", None)  # a closed jaxpr: scan, cond, custom_vjp ...
            if inner is not None:
                places.extend(_float64_demotions(getattr(inner, "jaxpr", inner)))
    return list(dict.fromkeys(places))


def costs_at_points(cost, shapes, x, y, dtype, autograph=True):
    """`costs(points)`: J at each row of `points` (flat parameter vectors), one jitted call.

    One pass after another inside the compiled loop (`lax.map`), not a `vmap`: batching
    passes that each use other weights batches the weights themselves, and XLA's CPU code
    for a convolution with a kernel per batch element needs memory per element (tens of GB
    on MobileNet); on an MLP the loop was faster too.
    """
    sizes = [math.prod(shape) for shape in shapes]
    splits = [int(i) for i in np.cumsum(sizes)[:-1]]

    def at(point):
        parts = jnp.split(point, splits) if splits else [point]
        return cost([p.reshape(s) for p, s in zip(parts, shapes, strict=True)], x, y)[0]

    run = jax.jit(lambda points: jax.lax.map(at, points))
    return lambda points: np.asarray(run(jnp.asarray(points, dtype)), np.float64)


def costs_at_parameters(cost, shapes, x, y, dtype, autograph=True):
    """`costs(theta, indices, steps)`: J with the parameter at each flat index moved by its
    step, one jitted `lax.map` over all pairs (the course's loop)."""
    sizes = [math.prod(shape) for shape in shapes]
    splits = [int(i) for i in np.cumsum(sizes)[:-1]]
    n_params = sum(sizes)

    def at(theta, pair):
        index, step = pair
        point = theta + step * jax.nn.one_hot(index, n_params, dtype=theta.dtype)
        parts = jnp.split(point, splits) if splits else [point]
        return cost([p.reshape(s) for p, s in zip(parts, shapes, strict=True)], x, y)[0]

    run = jax.jit(
        lambda theta, indices, steps: jax.lax.map(lambda p: at(theta, p), (indices, steps))
    )

    def costs(theta, indices, steps):
        values = run(jnp.asarray(theta, dtype), jnp.asarray(indices), jnp.asarray(steps, dtype))
        return np.asarray(values, np.float64)

    return costs


def interval_runner(model, full_batch: bool, probe_layout: tuple, jit_compile):
    """`run(x, y, steps | batch_indices) -> (logs, [])`: an interval's train steps as one
    jitted `lax.fori_loop` over `model.train_step(state, data)`; the logs are the last step's.

    The model's variables hold the interval's result when `run` returns, so callbacks read
    the trained weights.
    """
    if probe_layout:
        raise ValueError("the JAX interval loop computes no probes; callbacks measure instead.")
    steps_function = cached_for_model(
        model,
        ("train", full_batch),
        lambda ref: jax.jit(functools.partial(_steps, ref, full_batch)),
    )

    def run(x, y, schedule):
        _build_for_training(model, x, y)
        model.reset_metrics()  # the last step's logs are its own, as on TensorFlow
        state = _train_state(model)
        with counter_based_dropout():  # traced on the first call
            logs, state = steps_function(
                state, state[3], _arrays(x), _arrays(y), jnp.asarray(schedule)
            )
        _assign(model, state)
        return float_logs(logs), []

    return run


def evaluator(model):
    """`evaluate(x, y) -> logs`, as `model.evaluate` computes them (one jitted test step)."""

    def evaluate(model_ref, state, x, y):
        return model_ref().test_step(state, (x, y))[0]

    compiled = cached_for_model(
        model, ("evaluate",), lambda ref: jax.jit(functools.partial(evaluate, ref))
    )

    def run(x, y):
        _build_for_training(model, x, y)
        model.reset_metrics()
        state = (
            _values(model.trainable_variables),
            _values(model.non_trainable_variables),
            _values(model.metrics_variables),
        )
        return float_logs(compiled(state, _arrays(x), _arrays(y)))

    return run


def _steps(model_ref, full_batch, state, reset_metrics, x, y, schedule):
    model = model_ref()
    if full_batch:
        n_steps, batch = schedule, lambda i: (x, y)
    else:
        n_steps = schedule.shape[0]

        def batch(i):
            return keras.tree.map_structure(lambda t: jnp.take(t, schedule[i], axis=0), (x, y))

    def step(i, state):
        return model.train_step(state, batch(i))[1]

    state = jax.lax.fori_loop(0, n_steps - 1, step, state)
    trainable, non_trainable, optimizer, _ = state
    return model.train_step(
        (trainable, non_trainable, optimizer, reset_metrics), batch(n_steps - 1)
    )


def _gradients(model_ref, training, state, x, y, sample_weight):
    trainable, non_trainable, metrics, optimizer = state
    grads, _ = jax.grad(model_ref().compute_loss_and_updates, has_aux=True)(
        trainable,
        non_trainable,
        metrics,
        x,
        y,
        sample_weight,
        training=training,
        optimizer_variables=optimizer,
    )
    return grads


def _loss_state(model, training):
    optimizer = getattr(model, "optimizer", None)
    return (
        _values(model.trainable_variables),
        _values(model.non_trainable_variables),
        _values(model.metrics_variables),
        _values(optimizer.variables) if training and optimizer is not None else None,
    )


def _train_state(model):
    return (
        _values(model.trainable_variables),
        _values(model.non_trainable_variables),
        _values(model.optimizer.variables),
        _values(model.metrics_variables),
    )


def _assign(model, state) -> None:
    trainable, non_trainable, optimizer, metrics = state
    for variables, values in (
        (model.trainable_variables, trainable),
        (model.non_trainable_variables, non_trainable),
        (model.optimizer.variables, optimizer),
        (model.metrics_variables, metrics),
    ):
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)


def _build_for_training(model, x, y) -> None:
    """Build what Keras builds on first use, as `fit` does before its first step, once per
    model and compile: the optimizer's slots and the compiled loss's and metrics' variables,
    so that the jitted loop's state holds every variable it updates from the start."""
    cached_for_model(model, ("built for training",), lambda _: _build_compiled_state(model, x, y))


def _build_compiled_state(model, x, y) -> bool:
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    x, y = (keras.tree.map_structure(lambda t: t[:1], part) for part in (x, y))
    y_pred = model(x, training=False)
    model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
    model.compute_metrics(x, y, y_pred, sample_weight=None)
    model.reset_metrics()
    return True


def _takes_training(model) -> bool:
    parameters = inspect.signature(model.call).parameters.values()
    return any(p.name == "training" or p.kind is p.VAR_KEYWORD for p in parameters)


def _values(variables) -> list:
    return [v.value for v in variables]


def _arrays(data):
    """Backend arrays of a nest of arrays or tensors (a `tf.data` batch included)."""
    if data is None:
        return None
    return keras.tree.map_structure(
        lambda t: t if isinstance(t, jax.Array) else jnp.asarray(np.asarray(t)), data
    )


def hashed_dropout(inputs, rate, noise_shape=None, seed=None):
    """Keras's inverted dropout, its random bits from a counter-based integer hash.

    Same contract as Keras's JAX `backend.random.dropout`: each element is kept with
    probability `1 - rate` and scaled by `1 / (1 - rate)`; the seed is drawn from the layer's
    `SeedGenerator`, which advances on every call, so every step gets a fresh mask. The bits
    of element i are `triple32` (an integer hash with full avalanche, from Chris Wellons's
    hash-prospector) of i and the seed, instead of `jax.random.bernoulli`'s Threefry-2x32,
    whose twenty rounds per pair of words XLA runs far slower on CPU. A hash is no
    cryptographic generator; dropout needs only uniform, independent-looking masks.
    """
    if rate == 1.0:
        return jnp.zeros_like(inputs)
    if rate == 0.0:
        return inputs
    key = jnp.asarray(keras_jax_random.jax_draw_seed(seed)).astype(jnp.uint32).reshape(-1)
    noise_shape = keras_jax_random._get_concrete_noise_shape(inputs, noise_shape)
    stream = _triple32(key[0] ^ _triple32(key[-1] + jnp.uint32(0x9E3779B9)))
    bits = _triple32(_triple32(jax.lax.iota(jnp.uint32, math.prod(noise_shape)) ^ stream) + key[0])
    threshold = jnp.uint32(min(int(rate * 2**32), 2**32 - 1))
    keep = jnp.broadcast_to(bits.reshape(noise_shape) >= threshold, inputs.shape)
    return jax.lax.select(keep, inputs / (1.0 - rate), jnp.zeros_like(inputs))


def _triple32(x):
    for shift, multiplier in ((17, 0xED5AD4BB), (11, 0xAC4C1B51), (15, 0x31848BAB)):
        x = (x ^ (x >> shift)) * jnp.uint32(multiplier)
    return x ^ (x >> 14)


def counter_based_dropout():
    """Within the block, Keras dropout traced by this thread uses `hashed_dropout`.

    Scoped and reversible (`ScopedSwap`), as `backends.tensorflow.counter_based_dropout`.
    """
    return _DROPOUT_SWAP()


# Keras's dropout, which `keras.layers.Dropout` (and `keras.random.dropout`) look up as
# `keras.src.backend.random.dropout` on every call.
_DROPOUT_SWAP = ScopedSwap(keras_jax_random, "dropout", hashed_dropout)
