"""The fast training entry point: `model.fit` semantics, one Keras epoch per logging interval.

The course trains small nets with thousands of full-batch gradient steps. `model.fit(epochs=
iterations)` pays Python, iterator and callback overhead on every step (~30 ms on a 2-core
CPU, ~300x a NumPy loop). `train` instead runs each logging interval as one call of an
XLA-compiled loop over Keras's own `model.train_step`, and drives the usual
`keras.callbacks.CallbackList` once per interval. So `History`, `EarlyStopping` (patience
counted in intervals), MLflow's and our own callbacks work unchanged, and the model is
trained by exactly the Keras code that `fit` uses: same loss, regularization penalties,
optimizer and metrics.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

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
        callbacks: Keras callbacks, driven exactly as `fit` drives them.
        shuffle_seed: Seed of the mini-batch order.
        jit_compile: `True` for XLA, `False` for a plain `tf.function`, `"auto"` for XLA with
            a fall-back to a plain graph when a layer has no XLA kernel.
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
    x, y = _as_tensor(x), _as_tensor(y)
    n_samples = int(x.shape[0])
    if int(y.shape[0]) != n_samples:
        raise ValueError(
            f"x and y must have the same number of rows; got {n_samples} and {y.shape[0]}."
        )
    if batch_size is not None and batch_size >= n_samples:
        batch_size = None

    epochs = math.ceil(iterations / log_every)
    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=True, model=model, verbose=0, epochs=epochs, steps=log_every
    )
    run_steps = _compiled_steps(model, full_batch=batch_size is None, jit_compile=jit_compile)
    evaluate = _compiled_evaluate(model, jit_compile) if validation_data is not None else None
    batches = _BatchOrder(n_samples, batch_size, shuffle_seed) if batch_size else None

    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    failure = None
    for epoch in range(epochs):
        steps = min(log_every, iterations - epoch * log_every)
        callback_list.on_epoch_begin(epoch)
        if batches is None:
            logs = run_steps(x, y, tf.constant(steps))
        else:
            first = int(model.optimizer.iterations.numpy())
            logs = run_steps(x, y, tf.constant(batches.indices(first, steps)))
        logs = {name: float(value) for name, value in logs.items()}
        if evaluate is not None:
            val_logs = evaluate(*map(_as_tensor, validation_data))
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


def _compiled_steps(model: keras.Model, *, full_batch: bool, jit_compile):
    """A compiled function running `steps` train steps; returns the last step's logs."""

    def last_step_logs(batch):
        for metric in model.metrics:
            metric.reset_state()
        return model.train_step(batch)

    if full_batch:

        def run(x, y, steps):
            for _ in tf.range(steps - 1):
                model.train_step((x, y))
            return last_step_logs((x, y))

    else:

        def run(x, y, batch_indices):
            for i in tf.range(tf.shape(batch_indices)[0] - 1):
                rows = batch_indices[i]
                model.train_step((tf.gather(x, rows), tf.gather(y, rows)))
            rows = batch_indices[-1]
            return last_step_logs((tf.gather(x, rows), tf.gather(y, rows)))

    return _with_xla_fallback(run, jit_compile)


def _compiled_evaluate(model: keras.Model, jit_compile):
    def evaluate(x, y):
        for metric in model.metrics:
            metric.reset_state()
        return model.test_step((x, y))

    return _with_xla_fallback(evaluate, jit_compile)


def _with_xla_fallback(fn, jit_compile):
    if jit_compile != "auto":
        return tf.function(fn, jit_compile=bool(jit_compile))
    compiled, plain = tf.function(fn, jit_compile=True), tf.function(fn, jit_compile=False)
    chosen = []

    def call(*args):
        if chosen:
            return chosen[0](*args)
        try:
            result = compiled(*args)
            chosen.append(compiled)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
            # XLA refuses before anything runs, so no step has been applied yet.
            if "XLA" not in str(error) and "xla" not in str(error):
                raise
            result = plain(*args)
            chosen.append(plain)
        return result

    return call


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


def _as_tensor(array):
    if isinstance(array, tf.Tensor):
        return array
    array = np.asarray(array)
    if array.dtype.kind == "f":
        array = array.astype(keras.config.floatx())
    return tf.constant(array)


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
