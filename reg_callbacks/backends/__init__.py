"""The few backend-specific primitives the library needs, one module per Keras backend.

Each module (`tensorflow`, `jax`) provides the same functions, and the rest of the library
calls them through `current()`, so callbacks stay backend-neutral:

- `loss_gradients(model, x, y, sample_weight, training)`: the gradient of the training loss
  (compiled loss with its `loss_weights` plus `model.losses`) for each trainable variable,
  as float32 NumPy arrays.
- `gradient_norms(model, x, y, groups, training)`: the L2 norm over each group of
  trainable-variable indices of those gradients, as one NumPy vector.
- `forward(model, *inputs)`: `model(x, training=False)` for each input, as NumPy nests.
- `graph_call(model, key, function)`: `function(model, forward, *args)` compiled once per
  model and `key`, `forward(x)` the model's inference call on its current weights (graph
  code that reads what the model computes inside, as the activation statistics do).
- `to_numpy(value)`: a tensor, variable or gradient as a NumPy array.
- For `gradient_check`, on a stateless `cost(values, x, y) -> (J, y_pred)`: `float64_scope()`
  (where float64 is allowed), `float64_demotions(cost, values, x, y)` (casts to float32 in
  the traced cost, by name), `value_and_gradients(...)` and
  `costs_at_points(cost, shapes, x, y, dtype)` (J at many flat parameter vectors) and
  `costs_at_parameters(...)` (J with one parameter moved, for many, the course's loop);
  each takes `autograph=False` when the model is Keras's own layers only (TensorFlow then
  traces without converting their Python, most of a trace's time).
- For `train`: `interval_runner(model, full_batch, probe_layout, jit_compile)`,
  `evaluator(model)`, and `RUNS_INTERVAL_PROBES`: whether the runner computes the
  callbacks' interval probes inside its compiled call (then `graph_gradient_norms(model, x,
  y, groups)`, or `graph_batched_gradient_norms(model, batches, groups)` over several
  batches, is the gradient-norm probe, in graph code); where it does not, the callbacks
  measure for themselves in `on_epoch_end`.

Every compiled function is cached per model with `cached_for_model`, and the logs a train
or test step returns become Python floats through `float_logs`. A PyTorch module would
implement the same names.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import weakref

import keras

SUPPORTED = ("tensorflow", "jax")

_COMPILED = weakref.WeakKeyDictionary()
_LOADED: dict = {}


def current():
    """The backend module for Keras's backend of this process."""
    name = keras.backend.backend()
    module = _LOADED.get(name)
    if module is None:
        if name not in SUPPORTED:
            raise NotImplementedError(
                f"reg_callbacks runs on Keras's {' and '.join(SUPPORTED)} backends; this "
                f"process uses {name!r} (set KERAS_BACKEND before importing Keras)."
            )
        # Imported once: graph code calls this too, and AutoGraph, tracing an import, warns
        # that it cannot convert importlib's internals.
        module = _LOADED[name] = importlib.import_module(f"reg_callbacks.backends.{name}")
    return module


def cached_for_model(model: keras.Model, key: tuple, make):
    """`make(model_ref)`, made once per model and `key`, and again after `model.compile` or a
    change of its trainable variables (what a compiled function captured).

    The cache holds models weakly (it never keeps one alive) and `make` gets a `weakref` to
    the model, so the compiled function does not keep it alive either.
    """
    stamp = _compile_stamp(model)
    functions = _COMPILED.setdefault(model, {})
    entry = functions.get(key)
    if entry is None or not _same_stamp(entry[0], stamp):
        entry = (_weak_stamp(stamp), make(weakref.ref(model)))
        functions[key] = entry
    return entry[1]


def float_logs(logs) -> dict[str, float]:
    """A step's logs as Python floats, flattened the way `fit` flattens them: a custom
    `train_step` returning `{m.name: m.result() for m in self.metrics}` nests the compile
    metrics' dict, whose entries become top-level keys (keys sorted, as Keras sorts them)."""
    flat = {}
    for name, value in sorted(logs.items()):
        if isinstance(value, dict):
            flat.update(float_logs(value))
        else:
            flat[name] = float(value)
    return flat


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


class ScopedSwap:
    """`owner.name` replaced by `replacement` for the calls of threads inside a block.

    `with swap():` puts a dispatcher in place of the original when the first block (in any
    thread) enters, and the original back when the last one exits; the dispatcher routes
    only calls made by a thread inside a block, so other threads keep the original
    meanwhile. For a Keras function looked up on every call (its dropout): the swap shapes
    what a function traced inside the block computes.
    """

    def __init__(self, owner, name: str, replacement):
        self.owner, self.name, self.replacement = owner, name, replacement
        self.original = getattr(owner, name)
        self._inside = threading.local()
        self._lock = threading.Lock()
        self._blocks = 0

    def _dispatch(self, *args, **kwargs):
        inside = getattr(self._inside, "depth", 0) > 0
        return (self.replacement if inside else self.original)(*args, **kwargs)

    @contextlib.contextmanager
    def __call__(self):
        with self._lock:
            if self._blocks == 0:
                setattr(self.owner, self.name, self._dispatch)
            self._blocks += 1
        self._inside.depth = getattr(self._inside, "depth", 0) + 1
        try:
            yield
        finally:
            self._inside.depth -= 1
            with self._lock:
                self._blocks -= 1
                if self._blocks == 0:
                    setattr(self.owner, self.name, self.original)
