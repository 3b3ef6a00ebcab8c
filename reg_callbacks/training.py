"""The fast training entry point: `model.fit` semantics, one Keras epoch per logging interval.

The course trains small nets with thousands of full-batch gradient steps. `model.fit(epochs=
iterations)` pays Python, iterator and callback overhead on every step (~30 ms on a 2-core
CPU, ~300x a NumPy loop). `train` instead runs each logging interval as one call of a
compiled loop over Keras's own train step, and drives the usual
`keras.callbacks.CallbackList` once per interval. So `History`, `EarlyStopping` (patience
counted in intervals), MLflow's and our own callbacks work unchanged, and the model is
trained by exactly the Keras code that `fit` uses: same loss, regularization penalties,
optimizer and metrics.

The loop is the backend's (`reg_callbacks.backends`): on TensorFlow an XLA-compiled
`tf.function` that also computes the callbacks' interval probes (what makes it fast is told
in `reg_callbacks.backends.tensorflow`); on JAX a jitted `lax.fori_loop` over the stateless
`model.train_step`, after which the callbacks measure for themselves.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from reg_callbacks import backends
from reg_callbacks.examples import as_tensor, symbolic_like

DEFAULT_LOG_EVERY = 1000  # iterations per logging interval: the course prints its cost this often


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite."""


def train(
    model: keras.Model,
    x,
    y=None,
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
        model: A compiled Keras model (`model.compile(optimizer, loss, metrics)`), its own
            `train_step` included (nested metric dicts in its logs are flattened as `fit`
            flattens them).
        x: Training inputs, samples as rows; or a `tf.data.Dataset` of `(x, y)` batches,
            finite (read again from its start when a pass ends, as over several `fit`
            epochs) or infinite. A dataset's steps each run as one compiled call on the
            next batch, as `fit` runs them, so each interval is `log_every` calls.
        y: Training targets; `None` with a dataset.
        iterations: Total number of optimizer steps.
        log_every: Steps per logging interval, i.e. per Keras epoch. Callbacks run once per
            interval, so `EarlyStopping(patience=p)` waits `p` intervals.
        batch_size: `None` (or >= the number of samples) for full-batch gradient descent;
            otherwise mini-batches drawn from the data reshuffled on every pass, like
            `Dataset.shuffle().repeat().batch()`, so every batch has `batch_size` samples.
            `None` with a dataset, which batches itself.
        validation_data: `(x_dev, y_dev)`; adds `val_`-prefixed loss and metrics to the logs
            at the end of every interval, evaluated as `model.evaluate` would.
        callbacks: Keras callbacks, driven exactly as `fit` drives them. A callback with
            an `interval_probe(epoch)` method (`BiasVarianceCallback`, `GradientNormLogger`,
            `RecorderCallback`) may return `(function, input_tensors)`: `function(model,
            *input_tensors)`, graph code, then runs inside the interval's compiled call,
            right after its last step, and the callback gets the NumPy values through
            `set_interval_probe_values(epoch, values)` before `on_epoch_end`. An interval
            whose callbacks ask for a different set of probes compiles its own loop (once).
            On JAX the loop computes no probes: the callbacks measure in `on_epoch_end`.
        shuffle_seed: Seed of the mini-batch order.
        jit_compile: `True` for XLA, `False` for a plain `tf.function`. `"auto"` chooses
            from what the model is made of: on a machine without a GPU, a plain graph for a
            model with convolution, attention or recurrent layers (TensorFlow's own kernels
            run those far faster than XLA's CPU code, as Keras's own `"auto"` assumes) or a
            layer with `supports_jit=False`; XLA otherwise (nets of dense layers, where XLA
            fuses the step's many small ops), falling back to a plain graph when a layer has
            no XLA kernel (`reg_callbacks.backends.tensorflow.prefers_xla`). Under XLA,
            Keras `Dropout` layers draw their masks with Threefry (`counter_based_dropout`).
            TensorFlow's choice: on JAX the loop is always jitted.
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
    stream = None
    if isinstance(x, tf.data.Dataset):
        stream = _dataset_stream(model, x, y, batch_size)
    else:
        if y is None:
            raise ValueError("y must hold the training targets when x is arrays; got None.")
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
        callbacks,
        add_history=True,
        model=model,
        verbose=0,
        epochs=epochs,
        steps=log_every,
        **{TRAINER_PARAM: TRAINER},
    )
    backend = backends.current()
    evaluate = None
    if validation_data is not None:
        # A plain graph: run once an interval, it would not repay XLA's seconds of compilation.
        evaluate = backend.evaluator(model)
        validation_data = keras.tree.map_structure(as_tensor, tuple(validation_data))
    batches = _BatchOrder(n_samples, batch_size, shuffle_seed) if batch_size else None
    full_batch = batch_size is None
    probing = [cb for cb in callback_list.callbacks if hasattr(cb, "interval_probe")]
    if not backend.RUNS_INTERVAL_PROBES:
        probing = []
    loops = {}  # probe layout -> compiled loop, looked up once a call, not once an interval

    first_step = 0
    if batches is not None:
        first_step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    failure = None
    for epoch in range(epochs):
        steps = min(log_every, iterations - epoch * log_every)
        callback_list.on_epoch_begin(epoch)
        probes = _interval_probes(probing, epoch)
        layout = tuple((function, len(inputs)) for _, function, inputs in probes)
        for wanted in {layout, ()} if stream is not None else {layout}:
            if wanted not in loops:
                loops[wanted] = backend.interval_runner(model, full_batch, wanted, jit_compile)
        run_steps = loops[layout]
        probe_inputs = [tensor for _, _, inputs in probes for tensor in inputs]
        if stream is not None:
            for _ in range(steps - 1):
                loops[()](*next(stream), 1)
            logs, probed = run_steps(*next(stream), 1, *probe_inputs)
        elif batches is None:
            logs, probed = run_steps(x, y, steps, *probe_inputs)
        else:
            order = batches.indices(first_step + epoch * log_every, steps)
            logs, probed = run_steps(x, y, order, *probe_inputs)
        for (callback, _, _), values in zip(probes, probed, strict=True):
            callback.set_interval_probe_values(epoch, values)
        if evaluate is not None:
            val_logs = evaluate(*validation_data)
            logs.update({f"val_{name}": value for name, value in val_logs.items()})
        if verbose:
            print(f"Cost after iteration {epoch * log_every + steps}: {logs['loss']:.6f}")
        callback_list.on_epoch_end(epoch, logs)
        if not math.isfinite(logs.get("loss", 0.0)):
            iteration = epoch * log_every + steps
            failure = TrainingDiverged(f"loss became {logs['loss']} by iteration {iteration}")
            break
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    if failure is not None:
        raise failure
    return model.history


def _dataset_stream(model, dataset: tf.data.Dataset, y, batch_size):
    """`(x, y)` batches of the dataset, endlessly: its passes one after another."""
    if y is not None:
        raise ValueError("y must be None when x is a tf.data.Dataset: it yields (x, y) batches.")
    if batch_size is not None:
        raise ValueError(
            f"batch_size must be None when x is a tf.data.Dataset (it batches itself); "
            f"got {batch_size!r}."
        )
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError(
            f"x, a tf.data.Dataset, must yield (x, y) batches (train takes no sample "
            f"weights); got elements {spec}."
        )
    if not model.built:
        model(keras.tree.map_structure(lambda s: keras.KerasTensor(s.shape, s.dtype), spec[0]))
    to_tensors = keras.tree.map_structure
    return (to_tensors(as_tensor, batch) for batch in dataset.repeat())


# What `train` adds to its callbacks' `params`: a callback can tell its intervals from `fit`'s
# epochs (`IntervalProbed.under_train`).
TRAINER_PARAM, TRAINER = "trainer", "reg_callbacks.train"


class IntervalProbed:
    """Mixin for a callback whose `interval_probe` values `train` hands back each interval.

    `train` calls `set_interval_probe_values(epoch, values)` before `on_epoch_end`; the
    callback takes them there with `take_probe_values(epoch)`, or gets `None` (under `fit`,
    or when `train` probed another epoch) and measures for itself.
    """

    _probed = None

    def set_interval_probe_values(self, epoch, values):
        self._probed = (epoch, values)

    def under_train(self) -> bool:
        """Whether the running training is `train`'s (intervals), not `fit`'s (epochs)."""
        return (getattr(self, "params", None) or {}).get(TRAINER_PARAM) == TRAINER

    def has_probe_values(self, epoch) -> bool:
        """Whether `train` computed this epoch's probe values."""
        return self._probed is not None and self._probed[0] == epoch

    def take_probe_values(self, epoch):
        """This epoch's probe values, once; `None` if `train` computed none for it."""
        probed, self._probed = self._probed, None
        return probed[1] if probed is not None and probed[0] == epoch else None


def _interval_probes(callbacks, epoch) -> list[tuple]:
    """`(callback, function, inputs)` for each callback with a probe for this interval."""
    requests = ((callback, callback.interval_probe(epoch)) for callback in callbacks)
    return [(callback, *probe) for callback, probe in requests if probe is not None]


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
