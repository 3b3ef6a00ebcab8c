"""The fast training entry point: `model.fit` semantics, one Keras epoch per logging interval.

The course trains small nets with thousands of full-batch gradient steps. `model.fit(epochs=
iterations)` pays Python, iterator and callback overhead on every step (~30 ms on a 2-core
CPU, ~300x a NumPy loop). `train` instead runs each logging interval as one call of an
XLA-compiled loop over Keras's own `model.train_step`, and drives the usual
`keras.callbacks.CallbackList` once per interval. So `History`, `EarlyStopping` (patience
counted in intervals), MLflow's and our own callbacks work unchanged, and the model is
trained by exactly the Keras code that `fit` uses: same loss, regularization penalties,
optimizer and metrics.

What makes it fast, measured with `benchmarks/bench_training.py` on a shared 2-core CPU
(numbers there):

- The interval loop under XLA: ~0.03 ms a step for the course's 2-20-3-1 net, against
  ~0.15 ms for the same loop as a plain `tf.function` and ~0.1 ms for the NumPy loop.
- Compiled once per model: the loop (and the callbacks' forward and gradient functions)
  is cached per model and `compile`, so a second `train` call does not pay the 1-3 s of
  tracing and XLA compilation again, and called through its concrete function, which
  skips `tf.function`'s per-call dispatch.
- Dropout: Keras's `Dropout` draws its mask with `tf.random.stateless_uniform`'s default
  generator, which XLA runs ~10x slower on CPU than the whole rest of the step (2-20-3-1
  with keep_prob 0.86: ~0.2-0.4 ms a step, against ~0.26 ms without XLA). Inside the XLA
  loop `counter_based_dropout` swaps in `threefry_dropout`: the same inverted dropout from
  the same seed generator (a fresh mask every step, nothing at inference), drawn with
  Threefry, which XLA fuses into a few integer loops (~0.05-0.07 ms a step). Measured and
  rejected: Philox under XLA (~2x Threefry), a hand-written integer hash (no faster
  inside the step), and a plain graph (Keras's dropout runs there, ~4x slower).
- `jit_compile="auto"` therefore means XLA, falling back to a plain graph only when a
  layer has no XLA kernel: XLA was faster per step for every net measured. Its price is
  compilation, ~2.5 s against ~0.8 s for a plain graph on 2-20-3-1: a single run shorter
  than ~15 000 steps finishes sooner with `jit_compile=False`.
- One TensorFlow call an interval: a call costs ~0.5-2 ms on a 2-core CPU whatever it
  computes, so what the callbacks measure at an interval's end (`BiasVarianceCallback`'s
  forward pass, `GradientNormLogger`'s gradients, `RecorderCallback`'s step count) is
  computed by the interval's own compiled loop after its last step. Validation data runs as
  a separate plain graph: it would not repay XLA's seconds of compilation.
"""

from __future__ import annotations

import contextlib
import math
import threading
import weakref

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.tensorflow import random as keras_tf_random

from reg_callbacks.examples import as_tensor, symbolic_like

DEFAULT_LOG_EVERY = 1000  # iterations per logging interval: the course prints its cost this often


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite."""


def train(
    model: keras.Model,
    x,
    y,
    *,
    iterations: int,
    log_every: int = DEFAULT_LOG_EVERY,
    batch_size: int | None = None,
    validation_data: tuple | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    shuffle_seed: int = 0,
    jit_compile: bool | str = "auto",
    verbose: int = 0,
) -> keras.callbacks.History:
    """Train a compiled Keras model for a number of gradient steps, logging every interval.

    Each Keras *epoch* is one logging interval of `log_every` optimizer steps (the last one
    may be shorter), run as one call of a compiled loop over `model.train_step`. The logs an
    interval ends with are those of its *last* step, not the interval's mean: with full-batch
    gradient descent, `logs["loss"]` is the exact cost at that iteration, regularization
    included, as the course prints it.

    Args:
        model: A compiled Keras model (`model.compile(optimizer, loss, metrics)`).
        x: Training inputs, samples as rows.
        y: Training targets.
        iterations: Total number of optimizer steps.
        log_every: Steps per logging interval, i.e. per Keras epoch. Callbacks run once per
            interval, so `EarlyStopping(patience=p)` waits `p` intervals.
        batch_size: `None` (or >= the number of samples) for full-batch gradient descent;
            otherwise mini-batches drawn from the data reshuffled on every pass, like
            `Dataset.shuffle().repeat().batch()`, so every batch has `batch_size` samples.
        validation_data: `(x_dev, y_dev)`; adds `val_`-prefixed loss and metrics to the logs
            at the end of every interval, evaluated as `model.evaluate` would.
        callbacks: Keras callbacks, driven exactly as `fit` drives them. A callback with
            an `interval_probe(epoch)` method (`BiasVarianceCallback`, `GradientNormLogger`,
            `RecorderCallback`) may return `(function, input_tensors)`: `function(model,
            *input_tensors)`, graph code, then runs inside the interval's compiled call,
            right after its last step, and the callback gets the NumPy values through
            `set_interval_probe_values(epoch, values)` before `on_epoch_end`. An interval
            whose callbacks ask for a different set of probes compiles its own loop (once).
        shuffle_seed: Seed of the mini-batch order.
        jit_compile: `True` for XLA, `False` for a plain `tf.function`, `"auto"` for XLA with
            a fall-back to a plain graph when a layer has no XLA kernel. Under XLA, Keras
            `Dropout` layers draw their masks with Threefry (`counter_based_dropout`).
        verbose: 1 prints the course-style "Cost after iteration N" line every interval.

    Returns:
        The `keras.callbacks.History`, also available as `model.history`.

    Raises:
        TrainingDiverged: the loss became NaN or infinite. Callbacks have seen the interval's
            logs and `on_train_end`, so recorders can store the failure.
        ValueError: a bad argument; the message names it.

    Example:
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, "sigmoid")])
        >>> model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
        >>> x, y = np.random.rand(20, 2), np.random.randint(0, 2, (20, 1))
        >>> history = train(model, x, y, iterations=300, log_every=100)
        >>> len(history.history["loss"])
        3
    """
    _check_args(model, iterations, log_every, batch_size, jit_compile)
    if isinstance(x, tf.data.Dataset):
        raise ValueError(
            "x must be arrays (train runs full-batch or mini-batch steps over data in "
            "memory); got a tf.data.Dataset: use model.fit for a dataset."
        )
    x, y = keras.tree.map_structure(as_tensor, x), keras.tree.map_structure(as_tensor, y)
    n_rows = sorted({int(t.shape[0]) for t in keras.tree.flatten((x, y))})
    if len(n_rows) != 1:
        raise ValueError(f"x and y must have the same number of rows; got {n_rows}.")
    n_samples = n_rows[0]
    if not model.built:
        model(symbolic_like(x))  # a subclassed model builds on its first call, as in fit
    if batch_size is not None and batch_size >= n_samples:
        batch_size = None

    epochs = math.ceil(iterations / log_every)
    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=True, model=model, verbose=0, epochs=epochs, steps=log_every
    )
    evaluate = None
    if validation_data is not None:
        # A plain graph: run once an interval, it would not repay XLA's seconds of compilation.
        evaluate = compiled_for_model(model, ("evaluate",), _evaluate_function, False)
        validation_data = keras.tree.map_structure(as_tensor, tuple(validation_data))
    batches = _BatchOrder(n_samples, batch_size, shuffle_seed) if batch_size else None
    probing = [cb for cb in callback_list.callbacks if hasattr(cb, "interval_probe")]
    loops = {}  # probe layout -> compiled loop, looked up once a call, not once an interval

    first_step = int(model.optimizer.iterations.numpy()) if batches is not None else 0
    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    failure = None
    for epoch in range(epochs):
        steps = min(log_every, iterations - epoch * log_every)
        callback_list.on_epoch_begin(epoch)
        probes = _interval_probes(probing, epoch)
        layout = tuple((function, len(inputs)) for _, function, inputs in probes)
        if layout not in loops:
            key = ("train", batch_size is None, layout)
            loops[layout] = compiled_for_model(model, key, _steps_function, jit_compile=jit_compile)
        run_steps = loops[layout]
        probe_inputs = [tensor for _, _, inputs in probes for tensor in inputs]
        if batches is None:
            logs, probed = run_steps(x, y, tf.constant(steps), *probe_inputs)
        else:
            order = tf.constant(batches.indices(first_step + epoch * log_every, steps))
            logs, probed = run_steps(x, y, order, *probe_inputs)
        logs = {name: float(value) for name, value in logs.items()}
        for (callback, _, _), values in zip(probes, probed, strict=True):
            callback.set_interval_probe_values(epoch, tf.nest.map_structure(np.asarray, values))
        if evaluate is not None:
            val_logs = evaluate(*validation_data)
            logs.update({f"val_{name}": float(value) for name, value in val_logs.items()})
        if verbose:
            print(f"Cost after iteration {epoch * log_every + steps}: {logs['loss']:.6f}")
        callback_list.on_epoch_end(epoch, logs)
        if not math.isfinite(logs["loss"]):
            iteration = epoch * log_every + steps
            failure = TrainingDiverged(f"loss became {logs['loss']} by iteration {iteration}")
            break
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    if failure is not None:
        raise failure
    return model.history


def _steps_function(model_ref, full_batch: bool, probe_layout: tuple):
    """`run(x, y, steps | batch_indices, *probe_inputs)`: that many train steps, then probes.

    Returns the last step's logs and, on the weights that step left, each probe's
    `function(model, *its_inputs)` (`probe_layout` is `((function, n_inputs), ...)`). The
    probes are in the same compiled call because a TensorFlow call costs ~0.5-2 ms on a
    2-core CPU whatever it computes: an interval of 1000 steps of 2-20-3-1 plus a separate
    call for the probes took 2.3 % longer than one call doing both (100 alternating pairs).
    """

    def last_step_logs(model, batch):
        for metric in model.metrics:
            metric.reset_state()
        return model.train_step(batch)

    def probe(model, inputs):
        outputs, start = [], 0
        for function, count in probe_layout:
            outputs.append(function(model, *inputs[start : start + count]))
            start += count
        return outputs

    def gathered(data, rows):
        return keras.tree.map_structure(lambda t: tf.gather(t, rows), data)

    if full_batch:

        def run(x, y, steps, *probe_inputs):
            model = model_ref()
            for _ in tf.range(steps - 1):
                model.train_step((x, y))
            return last_step_logs(model, (x, y)), probe(model, probe_inputs)

    else:

        def run(x, y, batch_indices, *probe_inputs):
            model = model_ref()
            for i in tf.range(tf.shape(batch_indices)[0] - 1):
                model.train_step(gathered((x, y), batch_indices[i]))
            logs = last_step_logs(model, gathered((x, y), batch_indices[-1]))
            return logs, probe(model, probe_inputs)

    return run


class IntervalProbed:
    """Mixin for a callback whose `interval_probe` values `train` hands back each interval.

    `train` calls `set_interval_probe_values(epoch, values)` before `on_epoch_end`; the
    callback takes them there with `take_probe_values(epoch)`, or gets `None` (under `fit`,
    or when `train` probed another epoch) and measures for itself.
    """

    _probed = None

    def set_interval_probe_values(self, epoch, values):
        self._probed = (epoch, values)

    def take_probe_values(self, epoch):
        """This epoch's probe values, once; `None` if `train` computed none for it."""
        probed, self._probed = self._probed, None
        return probed[1] if probed is not None and probed[0] == epoch else None


def _interval_probes(callbacks, epoch) -> list[tuple]:
    """`(callback, function, inputs)` for each callback with a probe for this interval."""
    requests = ((callback, callback.interval_probe(epoch)) for callback in callbacks)
    return [(callback, *probe) for callback, probe in requests if probe is not None]


def _evaluate_function(model_ref):
    def evaluate(x, y):
        model = model_ref()
        for metric in model.metrics:
            metric.reset_state()
        return model.test_step((x, y))

    return evaluate


_COMPILED = weakref.WeakKeyDictionary()


def compiled_for_model(model: keras.Model, key: tuple, build, jit_compile="auto"):
    """`build(model_ref, *key[1:])` as a compiled function, traced once per model and compile.

    The function is cached per model (weakly: the cache never keeps a model alive, and
    `build` gets a `weakref` to it) and rebuilt when what its graph captured changes:
    `model.compile` (optimizer, loss, metrics) or the trainable variables. Calls run the XLA
    version with `counter_based_dropout` (see the module docstring).

    Args:
        model: The Keras model the function closes over.
        key: Names the function: `key[0]` a kind, the rest passed on to `build`.
        build: `build(model_ref, *key[1:]) -> python function` to compile.
        jit_compile: `True`, `False` or `"auto"` (XLA, falling back to a plain graph when
            a layer has no XLA kernel).
    """
    stamp = _compile_stamp(model)
    functions = _COMPILED.setdefault(model, {})
    entry = functions.get((key, jit_compile))
    if entry is None or not _same_stamp(entry[0], stamp):
        fn = build(weakref.ref(model), *key[1:])
        entry = (_weak_stamp(stamp), _with_xla_fallback(fn, jit_compile))
        functions[(key, jit_compile)] = entry
    return entry[1]


def _compile_stamp(model) -> tuple:
    return (
        getattr(model, "optimizer", None),
        getattr(model, "_compile_loss", None),
        getattr(model, "_compile_metrics", None),
        *model.trainable_variables,
    )


def _weak_stamp(stamp: tuple) -> tuple:
    return tuple(None if obj is None else weakref.ref(obj) for obj in stamp)


def _same_stamp(weak_stamp: tuple, stamp: tuple) -> bool:
    if len(weak_stamp) != len(stamp):
        return False
    return all(
        (ref is None and obj is None) or (ref is not None and ref() is obj)
        for ref, obj in zip(weak_stamp, stamp, strict=True)
    )


def _with_xla_fallback(fn, jit_compile):
    if jit_compile != "auto" and not jit_compile:
        return _ByInputSpec(tf.function(fn, jit_compile=False))
    compiled = _ByInputSpec(tf.function(fn, jit_compile=True))

    def call_compiled(*args):
        # Active on every call, not only the first: a retrace (new shapes) must see it too.
        with counter_based_dropout():
            return compiled(*args)

    if jit_compile != "auto":
        return call_compiled
    plain = _ByInputSpec(tf.function(fn, jit_compile=False))
    chosen = []

    def call(*args):
        if chosen:
            return chosen[0](*args)
        try:
            result = call_compiled(*args)
            chosen.append(call_compiled)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
            # XLA refuses before anything runs, so no step has been applied yet.
            if "XLA" not in str(error) and "xla" not in str(error):
                raise
            result = plain(*args)
            chosen.append(plain)
        return result

    return call


class _ByInputSpec:
    """Calls a `tf.function`'s concrete function for the arguments' shapes and dtypes.

    Skips `tf.function`'s per-call dispatch (signature binding, type canonicalization), a
    large share of the cost of a call that runs a small net once: ~0.35 ms against ~0.2 ms
    for the concrete function on this 2-core CPU. Arguments must be (nests of) tensors.
    """

    def __init__(self, function):
        self.function = function
        self.concrete = {}

    def __call__(self, *args):
        key = tuple((tuple(arg.shape), arg.dtype) for arg in tf.nest.flatten(args))
        concrete = self.concrete.get(key)
        if concrete is None:
            concrete = self.function.get_concrete_function(*args)
            self.concrete[key] = concrete
        return concrete(*args)


# Keras's TensorFlow `dropout`, which `keras.layers.Dropout` (and `keras.random.dropout`)
# look up as `keras.src.backend.random.dropout` on every call.
_KERAS_DROPOUT = keras_tf_random.dropout
_dropout_patch = threading.local()
_dropout_patch_lock = threading.Lock()
_dropout_patch_users = 0


def threefry_dropout(inputs, rate, noise_shape=None, seed=None):
    """Keras's inverted dropout, with its random numbers drawn by Threefry-2x32.

    Same contract as Keras's TensorFlow `backend.random.dropout` (and
    `tf.nn.experimental.stateless_dropout`, which it calls): each element is kept when a
    uniform draw is `>= rate` and scaled by `1 / (1 - rate)`; the seed is drawn from the
    layer's `SeedGenerator`, which advances on every call, so every step gets a fresh mask,
    determined by the layer's seed. Only the generator differs: Threefry, a counter-based
    generator that XLA compiles into a few fused integer loops on CPU, instead of the
    default, which XLA runs an order of magnitude slower there. XLA only: TensorFlow has no
    Threefry kernel outside XLA.
    """
    if rate == 1.0:
        return tf.zeros_like(inputs)
    if rate == 0.0:
        return inputs
    seed = keras_tf_random._cast_seed(keras_tf_random.draw_seed(seed))
    noise_shape = keras_tf_random._get_concrete_noise_shape(inputs, noise_shape)
    # Drawn as one flat vector: XLA's CPU code for a (rows, units) draw is ~3x slower.
    flat = tf.random.stateless_uniform(
        tf.reshape(tf.reduce_prod(noise_shape), [1]), seed, dtype=inputs.dtype, alg="threefry"
    )
    keep = tf.cast(tf.reshape(flat, noise_shape) >= rate, inputs.dtype)
    return inputs * tf.cast(1.0 / (1.0 - rate), inputs.dtype) * keep


def _dropout_dispatch(inputs, rate, noise_shape=None, seed=None):
    if getattr(_dropout_patch, "depth", 0) > 0:
        return threefry_dropout(inputs, rate, noise_shape=noise_shape, seed=seed)
    return _KERAS_DROPOUT(inputs, rate, noise_shape=noise_shape, seed=seed)


@contextlib.contextmanager
def counter_based_dropout():
    """Within the block, Keras dropout traced by this thread uses `threefry_dropout`.

    Scoped and reversible: Keras's function is swapped for a dispatcher on entry and put
    back when the last block (in any thread) exits; the dispatcher routes only calls made
    by a thread inside a block, so other threads keep Keras's own dropout meanwhile. It
    matters only while a function is being traced; meant for XLA-compiled functions.
    """
    global _dropout_patch_users
    with _dropout_patch_lock:
        if _dropout_patch_users == 0:
            keras_tf_random.dropout = _dropout_dispatch
        _dropout_patch_users += 1
    _dropout_patch.depth = getattr(_dropout_patch, "depth", 0) + 1
    try:
        yield
    finally:
        _dropout_patch.depth -= 1
        with _dropout_patch_lock:
            _dropout_patch_users -= 1
            if _dropout_patch_users == 0:
                keras_tf_random.dropout = _KERAS_DROPOUT


class _BatchOrder:
    """Rows of each mini-batch: a stream of the samples reshuffled on every pass.

    Built on the host with NumPy (one permutation per pass, seeded by pass number), so the
    order depends only on the seed and the step, and a resumed run continues it exactly.
    """

    def __init__(self, n_samples: int, batch_size: int, seed: int):
        self.n_samples, self.batch_size, self.seed = n_samples, batch_size, seed

    def indices(self, first_step: int, steps: int) -> np.ndarray:
        start = first_step * self.batch_size
        stop = (first_step + steps) * self.batch_size
        passes = range(start // self.n_samples, (stop - 1) // self.n_samples + 1)
        stream = np.concatenate([self._permutation(p) for p in passes])
        offset = start - passes[0] * self.n_samples
        return stream[offset : offset + stop - start].reshape(steps, self.batch_size)

    def _permutation(self, pass_number: int) -> np.ndarray:
        return (
            np.random.default_rng([self.seed, pass_number])
            .permutation(self.n_samples)
            .astype(np.int32)
        )


def _check_args(model, iterations, log_every, batch_size, jit_compile) -> None:
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
        raise ValueError("model must be compiled with an optimizer and a loss before train().")
    for name, value in (("iterations", iterations), ("log_every", log_every)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    if batch_size is not None and (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be None or a positive integer; got {batch_size!r}.")
    if jit_compile not in (True, False, "auto"):
        raise ValueError(f"jit_compile must be True, False or 'auto'; got {jit_compile!r}.")
