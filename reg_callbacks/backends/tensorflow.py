"""Keras's TensorFlow backend: the library's primitives as `tf.function`s (see `backends`).

Gradients, norms and forward passes run as plain graphs traced once per model (not XLA: its
compilation takes seconds, and a call would be no faster). `train`'s interval loop runs under
XLA, with the callbacks' interval probes inside the same call.

What makes `train` fast, measured with `benchmarks/bench_training.py` on a shared 2-core CPU
(numbers there):

- The interval loop under XLA: ~0.03 ms a step for the course's 2-20-3-1 net, against
  ~0.15 ms for the same loop as a plain `tf.function` and ~0.1 ms for the NumPy loop.
- Compiled once per architecture: the loop (and the callbacks' forward and gradient
  functions) is traced on a private clone shared by every model of the same layers, loss,
  metrics and optimizer kind, whatever its weights, seeds, learning rate and L1 or L2
  penalty factors (`compiled_for_model`), which gets each model's variables and those
  values copied in and out around a call. So neither a second `train` call nor a sweep's
  next config of that shape pays the 1-3 s of tracing and XLA compilation again. Subclassed
  models and custom layers are cached per model and `compile`. Each is called through its
  concrete function, which skips `tf.function`'s per-call dispatch.
- Dropout: Keras's `Dropout` draws its mask with `tf.random.stateless_uniform`'s default
  generator, which XLA runs ~10x slower on CPU than the whole rest of the step (2-20-3-1
  with keep_prob 0.86: ~0.2-0.4 ms a step, against ~0.26 ms without XLA). Inside the XLA
  loop `counter_based_dropout` swaps in `threefry_dropout`: the same inverted dropout from
  the same seed generator (a fresh mask every step, nothing at inference), drawn with
  Threefry, which XLA fuses into a few integer loops (~0.05-0.07 ms a step). Measured and
  rejected: Philox under XLA (~2x Threefry), a hand-written integer hash (no faster
  inside the step), and a plain graph (Keras's dropout runs there, ~4x slower).
- `jit_compile="auto"` chooses per model (`prefers_xla`): XLA for nets of dense layers,
  where a step is a few small ops and XLA's fusion removes most of their per-op cost;
  a plain graph, as Keras's own `"auto"` chooses on a CPU-only machine, for a model with
  convolutions, attention or recurrent layers (or a layer that says it does not support
  XLA), whose steps are dominated by large ops that TensorFlow's oneDNN kernels run far
  faster than XLA's CPU code: a Conv1D net took ~25x `fit`'s time under XLA. With a GPU,
  `"auto"` keeps XLA. XLA still falls back to a plain graph when a layer has no XLA
  kernel. XLA's price is compilation, ~2.5 s against ~0.8 s for a plain graph on
  2-20-3-1: a single run shorter than ~15 000 steps finishes sooner with
  `jit_compile=False`.
- One TensorFlow call an interval: a call costs ~0.5-2 ms on a 2-core CPU whatever it
  computes, so what the callbacks measure at an interval's end (`BiasVarianceCallback`'s
  forward pass, `GradientNormLogger`'s gradients, `RecorderCallback`'s step count) is
  computed by the interval's own compiled loop after its last step. Validation data runs as
  a separate plain graph: it would not repay XLA's seconds of compilation.
"""

from __future__ import annotations

import collections
import contextlib
import json
import threading

import keras
import numpy as np
import tensorflow as tf

# Keras's own TensorFlow dropout, to swap Threefry in under XLA: no public API reaches it.
from keras.src.backend.tensorflow import random as keras_tf_random

from reg_callbacks.backends import ScopedSwap, cached_for_model, float_logs

RUNS_INTERVAL_PROBES = True


def loss_gradients(model, x, y, sample_weight=None, training=False) -> list[np.ndarray]:
    weighted = sample_weight is not None
    gradients = compiled_for_model(
        model, ("gradients", bool(training), weighted), _gradients_function, jit_compile=False
    )
    grads = gradients(x, y, sample_weight) if weighted else gradients(x, y)
    return [g.numpy() for g in grads]


def gradient_norms(model, x, y, groups, training=False) -> np.ndarray:
    groups = tuple(tuple(group) for group in groups)
    norms = compiled_for_model(
        model, ("gradient_norms", groups, bool(training)), _norms_function, jit_compile=False
    )
    return norms(x, y).numpy()


def forward(model, *inputs) -> tuple:
    run = compiled_for_model(model, ("forward",), _forward_function, jit_compile=False)
    return keras.tree.map_structure(np.asarray, run(*inputs))


def graph_call(model, key: tuple, function):
    """`run(*args)`: `function(model, forward, *args)` as a plain graph traced once per model
    and `key`, `forward(x)` being `model(x, training=False)` on the model's current weights."""

    def make(model_ref):
        def run(*args):
            model = model_ref()
            return function(model, lambda x: model(x, training=False), *args)

        # As for the shared loops: no AutoGraph for Keras's own layers (most of the tracing
        # time), kept for a subclassed model whose `call` may branch on a tensor.
        return tf.function(run, autograph=architecture_key(model) is None)

    compiled = cached_for_model(model, ("graph_call", *key), make)
    return lambda *args: keras.tree.map_structure(np.asarray, compiled(*args))


def to_numpy(value) -> np.ndarray:
    # Also reads Keras variables and densifies IndexedSlices gradients (embeddings).
    return tf.convert_to_tensor(value).numpy()


def graph_gradients(model, x, y, training=False, sample_weight=None) -> list:
    """Graph code: d(training loss)/d(variable), dense float32, per trainable variable."""
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        y_pred = model(x, training=training)
        loss = model.compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
    return [
        tf.zeros(v.shape, tf.float32) if g is None else tf.cast(tf.convert_to_tensor(g), tf.float32)
        for v, g in zip(variables, tape.gradient(loss, variables), strict=True)
    ]


def graph_gradient_norms(model, x, y, groups, training=False):
    """Graph code: the norm of the gradients of each group of trainable variables."""
    squares = [tf.reduce_sum(tf.square(g)) for g in graph_gradients(model, x, y, training)]
    return tf.stack(
        [tf.sqrt(tf.add_n([squares[i] for i in group] or [tf.constant(0.0)])) for group in groups]
    )


def graph_batched_gradient_norms(model, batches, groups, training=False):
    """Graph code: `graph_gradient_norms` over several `(x, y)` batches taken as one set: each
    batch's gradient weighted by its share of the rows (the mean loss over all of them)."""
    counts = [tf.cast(tf.shape(keras.tree.flatten(y)[0])[0], tf.float32) for _, y in batches]
    total = tf.add_n(counts)
    summed = None
    for (x, y), count in zip(batches, counts, strict=True):
        weighted = [g * (count / total) for g in graph_gradients(model, x, y, training)]
        summed = (
            weighted if summed is None else [a + b for a, b in zip(summed, weighted, strict=True)]
        )
    squares = [tf.reduce_sum(tf.square(g)) for g in summed]
    return tf.stack(
        [tf.sqrt(tf.add_n([squares[i] for i in group] or [tf.constant(0.0)])) for group in groups]
    )


def _norms_function(model_ref, groups, training):
    def norms(x, y):
        return graph_gradient_norms(model_ref(), x, y, groups, training)

    return norms


def _gradients_function(model_ref, training, weighted):
    if weighted:

        def weighted_gradients(x, y, sample_weight):
            return graph_gradients(model_ref(), x, y, training, sample_weight)

        return weighted_gradients

    def gradients(x, y):
        return graph_gradients(model_ref(), x, y, training)

    return gradients


def _forward_function(model_ref):
    def run(*inputs):
        return tuple(model_ref()(x, training=False) for x in inputs)

    return run


@contextlib.contextmanager
def float64_scope():
    """TensorFlow computes in float64 whenever asked; inside the block, graphs first run are
    optimized without Grappler's remapper, whose oneDNN fusions skip float64 ops and log
    "Not handling type DT_DOUBLE" to stderr for each (dozens of lines a check).

    The remapper only fuses ops for speed; the option is process-wide, so a graph another
    thread first runs meanwhile is optimized without it too (as fast, or nearly).
    """
    options = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({**options, "remapping": False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options(
            {**options, "remapping": options.get("remapping", True)}
        )


def float64_demotions(cost, values, x, y) -> list[str]:
    """Where the traced cost casts float64 to float32: TensorFlow computes in the dtypes it
    is given, so a cast shows in the cost's and outputs' dtypes instead (checked there)."""
    return []


def value_and_gradients(cost, values, x, y, autograph=True):
    """`(J, y_pred, dJ/dvalue for each value)` with `(J, y_pred) = cost(values, x, y)`.

    Inside tf.function, as under fit: a custom gradient over a layer's weight (a
    `tf.custom_gradient` given the variable itself) works only in graph mode.
    """

    @tf.function(autograph=autograph)
    def run(values, x, y):
        with tf.GradientTape() as tape:
            tape.watch(values)
            value, y_pred = cost(values, x, y)
        return value, y_pred, tape.gradient(value, values)

    value, y_pred, grads = run(list(values), x, y)
    return value, y_pred, [None if g is None else to_numpy(g) for g in grads]


def costs_at_points(cost, shapes, x, y, dtype, autograph=True):
    """`costs(points)`: J at each row of `points` (flat parameter vectors), one compiled call.

    A loop of forward passes (`tf.map_fn`), not `vectorized_map`: batching passes that each
    use other weights batches the weights themselves, which turns a convolution into one
    per pass, with far more memory and no gain on CPU.
    """
    sizes = [int(np.prod(shape)) for shape in shapes]

    def at(point):
        parts = tf.split(point, sizes) if len(sizes) > 1 else [point]
        return cost([tf.reshape(p, s) for p, s in zip(parts, shapes, strict=True)], x, y)[0]

    @tf.function(input_signature=[tf.TensorSpec([None, sum(sizes)], dtype)], autograph=autograph)
    def run(points):
        return tf.map_fn(at, points, fn_output_signature=dtype, parallel_iterations=2)

    return lambda points: run(tf.constant(points, dtype)).numpy().astype(np.float64)


def costs_at_parameters(cost, shapes, x, y, dtype, autograph=True):
    """`costs(indices, steps)`: J with the parameter at each flat index moved by its step,
    one compiled call over all pairs, vectorized (`tf.vectorized_map`): the course's loop,
    where each pass perturbs one parameter, as batched matrix products."""
    sizes = [int(np.prod(shape)) for shape in shapes]
    n_params = sum(sizes)

    def at(index, step, theta):
        point = theta + step * tf.one_hot(index, n_params, dtype=dtype)
        parts = tf.split(point, sizes) if len(sizes) > 1 else [point]
        return cost([tf.reshape(p, s) for p, s in zip(parts, shapes, strict=True)], x, y)[0]

    @tf.function(
        input_signature=[
            tf.TensorSpec([n_params], dtype),
            tf.TensorSpec([None], tf.int64),
            tf.TensorSpec([None], dtype),
        ],
        autograph=autograph,
    )
    def run(theta, indices, steps):
        return tf.vectorized_map(lambda pair: at(*pair, theta), (indices, steps))

    def costs(theta, indices, steps):
        result = run(tf.constant(theta, dtype), tf.constant(indices), tf.constant(steps, dtype))
        return result.numpy().astype(np.float64)

    return costs


def interval_runner(model, full_batch: bool, probe_layout: tuple, jit_compile):
    """`run(x, y, steps | batch_indices, *probe_inputs) -> (logs, probe values)`: an
    interval's train steps and then its probes, one compiled call; NumPy results."""
    if jit_compile == "auto" and not prefers_xla(model):
        jit_compile = False
    key = ("train", full_batch, probe_layout)
    steps_function = compiled_for_model(model, key, _steps_function, jit_compile=jit_compile)

    def run(x, y, schedule, *probe_inputs):
        logs, probed = steps_function(x, y, tf.constant(schedule), *probe_inputs)
        return float_logs(logs), [tf.nest.map_structure(np.asarray, values) for values in probed]

    return run


def prefers_xla(model: keras.Model) -> bool:
    """`jit_compile="auto"`'s choice for `model`'s training loop: XLA unless, on a machine
    without a GPU, a layer is a convolution, attention or recurrent layer (a weight of rank 3
    or more, a `keras.layers.RNN` or `MultiHeadAttention`), or any layer has
    `supports_jit=False` (Keras's own LSTM and GRU on cuDNN say so)."""
    layers = list(_all_layers(model))
    if not all(getattr(layer, "supports_jit", True) for layer in layers):
        return False
    if tf.config.list_physical_devices("GPU"):
        return True
    heavy = (keras.layers.RNN, keras.layers.MultiHeadAttention)
    if any(isinstance(layer, heavy) for layer in layers):
        return False
    return all(len(variable.shape) < 3 for variable in model.weights)


def _all_layers(layer, seen=None):
    """The layer and every layer it holds, at any depth: a custom layer keeps its sublayers
    as plain attributes (or lists and dicts of them), which `model.layers` does not list."""
    seen = set() if seen is None else seen
    if id(layer) in seen:
        return
    seen.add(id(layer))
    yield layer
    pending = list(vars(layer).values())
    while pending:
        value = pending.pop()
        if isinstance(value, keras.layers.Layer):
            yield from _all_layers(value, seen)
        elif isinstance(value, (list, tuple)):
            pending.extend(value)
        elif isinstance(value, dict):
            pending.extend(value.values())


def evaluator(model):
    """`evaluate(x, y) -> logs`, as `model.evaluate` computes them; a plain graph: run once
    an interval, it would not repay XLA's seconds of compilation."""
    evaluate = compiled_for_model(model, ("evaluate",), _evaluate_function, jit_compile=False)
    return lambda x, y: float_logs(evaluate(x, y))


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

            def step(i):
                model.train_step((x, y))
                return i + 1

            tf.while_loop(lambda i: i < steps - 1, step, [tf.zeros_like(steps)])
            return last_step_logs(model, (x, y)), probe(model, probe_inputs)

    else:

        def run(x, y, batch_indices, *probe_inputs):
            model = model_ref()

            def step(i):
                model.train_step(gathered((x, y), batch_indices[i]))
                return i + 1

            last = tf.shape(batch_indices)[0] - 1
            tf.while_loop(lambda i: i < last, step, [tf.constant(0)])
            logs = last_step_logs(model, gathered((x, y), batch_indices[-1]))
            return logs, probe(model, probe_inputs)

    return run


def _evaluate_function(model_ref):
    def evaluate(x, y):
        model = model_ref()
        for metric in model.metrics:
            metric.reset_state()
        return model.test_step((x, y))

    return evaluate


def compiled_for_model(model: keras.Model, key: tuple, build, jit_compile="auto"):
    """`build(model_ref, *key[1:])` as a compiled function, traced once per architecture (or
    per model and compile, when its architecture cannot be told from its config). Calls run
    the XLA version with `counter_based_dropout`.

    Models of one architecture (`architecture_key`) share one traced function, compiled
    once, on a private copy of the model (`_Template`): each call copies the model's state
    (weights, optimizer state, learning rate, dropout seed state) into the copy's variables,
    runs, and copies it back, with the metrics of a training or evaluation call. A second
    config of a sweep then costs a few copies instead of tracing and XLA compilation.
    Metrics are built on one row before a function that updates them is first called
    (`_build_metrics`), so that each function is traced once.

    Args:
        model: The Keras model the function runs on.
        key: Names the function: `key[0]` a kind, the rest passed on to `build`.
        build: `build(model_ref, *key[1:]) -> python function` to compile.
        jit_compile: `True`, `False` or `"auto"` (XLA, falling back to a plain graph when
            a layer has no XLA kernel).
    """
    template = _template_for(model)
    # Keras's own layers are written for JAX too, so they need no AutoGraph, and converting
    # their code was most of a new architecture's tracing time (profiled). A subclassed
    # model's `call` may branch on a tensor in Python, as `fit` allows: it keeps AutoGraph.
    autograph = template is None
    updates_metrics = key[0] in _UPDATE_METRICS

    def make(model_ref):
        compiled = _with_xla_fallback(build(model_ref, *key[1:]), jit_compile, autograph)
        if not updates_metrics:
            return compiled

        def with_metrics_built(x, y, *rest):
            _build_metrics(model_ref(), x, y)
            return compiled(x, y, *rest)

        return with_metrics_built

    if template is None:
        return cached_for_model(model, (key, jit_compile), make)
    function = cached_for_model(template.model, (key, jit_compile), make)

    def bind(model_ref):
        return template.bind(model_ref, function, updates_metrics)

    return cached_for_model(model, ("on template", key, jit_compile), bind)


_UPDATE_METRICS = ("train", "evaluate")  # the functions that run `train_step` / `test_step`


def _build_metrics(model, x, y) -> None:
    """Build the model's compile metrics and losses on one row, eagerly, if not yet built.

    Keras builds them on their first update. Inside a trace that creates their variables,
    and `tf.function` then traces the whole function a second time, without creating them.
    A forward pass in inference mode draws no dropout seeds, so training is unchanged.
    """
    if all(getattr(metric, "built", True) for metric in model.metrics):  # most have no build
        return
    x, y = keras.tree.map_structure(lambda t: t[:1], (x, y))
    y_pred = model(x, training=False)
    model.compute_loss(x=x, y=y, y_pred=y_pred)
    model.compute_metrics(x, y, y_pred, sample_weight=None)
    for metric in model.metrics:
        metric.reset_state()


def architecture_key(model: keras.Model) -> str | None:
    """What the model's compiled functions depend on, as text; `None` if it cannot be told.

    The model's and its compile's configs, less what lives in variables the functions read
    at run time (initial weights and seeds, a float learning rate, the factor of a weight's
    L1 or L2 penalty) and names (a
    functional model's layers' stay: they wire its graph).
    Only for Sequential and functional models built of Keras's own layers, losses, metrics
    and optimizers, less `Lambda` and preprocessing layers: a subclassed model's `call`, or
    a custom layer's, may depend on more than its config and variables say.
    """
    kind = type(model)
    if kind.__name__ not in ("Sequential", "Functional") or not _is_keras(kind):
        return None
    if not model.built or not all(_state_in_variables(layer) for layer in _layers(model)):
        return None
    try:
        config = {
            "class": kind.__name__,
            "model": _without_state(model.get_config()),
            "compile": _without_names(_without_state(model.get_compile_config() or {})),
        }
    except (TypeError, ValueError, NotImplementedError):
        return None
    config["model"].pop("name", None)
    if kind.__name__ == "Sequential":  # its layers' names do not wire anything
        config["model"] = _without_names(config["model"])
    if not _only_keras_objects(config):
        return None
    try:
        return json.dumps(config, sort_keys=True)
    except (TypeError, ValueError):
        return None


_TEMPLATES: collections.OrderedDict = collections.OrderedDict()
_TEMPLATES_KEPT = 16  # architectures a process keeps compiled (a sweep grid's, with room)
_templates_lock = threading.Lock()


def _template_for(model):
    """The shared `_Template` of the model's architecture, made on first use; else `None`."""
    key = cached_for_model(model, ("architecture",), lambda ref: architecture_key(ref()))
    if key is None:
        return None
    with _templates_lock:
        template = _TEMPLATES.get(key)
        if template is None:
            template = _Template.of(model)
            _TEMPLATES[key] = template
            if len(_TEMPLATES) > _TEMPLATES_KEPT:
                _TEMPLATES.popitem(last=False)
        _TEMPLATES.move_to_end(key)
    return template if template.fits(model) else None


class _Template:
    """A private clone of a model (and its compile) that compiled functions are traced on.

    `bind` returns a function that runs on another model of the same architecture by
    copying that model's state in before the call and out after it, under a lock, so two
    threads never share the clone's variables at once. Metric variables are copied out only,
    after a function that updates them (every compiled function resets the metrics it
    reports first), so the model's metrics hold what `fit` would have left in them.
    """

    def __init__(self, model):
        self.model = model
        self.lock = threading.Lock()
        # Each weight penalty's factor as a variable the traced loss reads, set per call
        # from the model's own penalty: models differing only in λ share the template.
        self.penalties = []
        weights = model.trainable_variables
        for index, factor in _penalty_factors(model):
            penalty = weights[index].regularizer
            variable = keras.Variable(getattr(penalty, factor), trainable=False, name=factor)
            setattr(penalty, factor, variable)
            self.penalties.append((index, factor, variable))

    @classmethod
    def of(cls, model):
        clone = keras.models.clone_model(model)
        compile_config = model.get_compile_config()
        if compile_config is not None:
            clone.compile_from_config(compile_config)
        return cls(clone)

    def fits(self, model) -> bool:
        ours, theirs = _state(self.model), _state(model)
        return len(ours) == len(theirs) and all(
            (a.shape, a.dtype) == (b.shape, b.dtype) for a, b in zip(ours, theirs, strict=True)
        )

    def bind(self, model_ref, function, updates_metrics: bool):
        ours = _state(self.model)

        def on_template(*args):
            model = model_ref()
            theirs = _state(model)
            with self.lock:
                for mine, source in zip(ours, theirs, strict=True):
                    mine.assign(source.value)
                if self.penalties:  # trainable_variables walks the layers: only if needed
                    weights = model.trainable_variables
                    for index, factor, variable in self.penalties:
                        variable.assign(getattr(weights[index].regularizer, factor))
                try:
                    result = function(*args)
                finally:
                    for mine, target in zip(ours, theirs, strict=True):
                        target.assign(mine.value)
                if updates_metrics:
                    self._metrics_out(model, *args[:2])
            return result

        return on_template

    def _metrics_out(self, model, x, y) -> None:
        _build_metrics(model, x, y)
        ours, theirs = self.model.metrics_variables, model.metrics_variables
        if len(ours) == len(theirs):
            for mine, target in zip(ours, theirs, strict=True):
                target.assign(mine.value)


def _state(model) -> list:
    """The variables a compiled function of the model reads and writes, but for metrics."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return list(model.variables)
    if not optimizer.built:
        optimizer.build(model.trainable_variables)  # as its first `apply` would
    return [*model.variables, *optimizer.variables]


def _layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)


def _state_in_variables(layer) -> bool:
    """Keras's own layer, whose state is all in its variables: not a `Lambda` (any function)
    nor a preprocessing layer with `adapt` (`Normalization` keeps its adapted mean and
    variance as tensors that its graph captures)."""
    return (
        _is_keras(type(layer))
        and not hasattr(layer, "adapt")
        and not isinstance(layer, keras.layers.Lambda)
    )


def _is_keras(cls) -> bool:
    return cls.__module__.split(".")[0] == "keras"


def _without_state(config):
    """The config less initializers, seeds, a float learning rate and weight penalties'
    factors (they live in variables: the template's penalties read theirs from one)."""
    if isinstance(config, dict):
        return {
            key: _penalty_kind(value) if _is_weight_penalty(key, value) else _without_state(value)
            for key, value in config.items()
            if not key.endswith("_initializer")
            and key != "seed"
            and not (key == "learning_rate" and isinstance(value, (int, float)))
        }
    if isinstance(config, (list, tuple)):
        return [_without_state(value) for value in config]
    return config


# Keras's penalties whose factor can be a variable: each multiplies its one factor in. (L1L2
# branches on its factors in Python, so its values stay in the architecture's key.)
_PENALTY_FACTORS = {keras.regularizers.L1: "l1", keras.regularizers.L2: "l2"}


def _is_weight_penalty(key: str, value) -> bool:
    """A weight's L1 or L2 penalty in a layer's config (not an activity regularizer)."""
    return (
        key.endswith("_regularizer")
        and key != "activity_regularizer"
        and isinstance(value, dict)
        and value.get("module") == "keras.regularizers"
        and value.get("class_name") in {kind.__name__ for kind in _PENALTY_FACTORS}
    )


def _penalty_kind(config: dict) -> dict:
    return {key: value for key, value in config.items() if key != "config"}


def _penalty_factors(model) -> list:
    """`(index in trainable_variables, factor name)` of each variable's L1 or L2 penalty."""
    return [
        (index, _PENALTY_FACTORS[type(variable.regularizer)])
        for index, variable in enumerate(model.trainable_variables)
        if type(variable.regularizer) in _PENALTY_FACTORS
    ]


def _without_names(config):
    if isinstance(config, dict):
        return {key: _without_names(value) for key, value in config.items() if key != "name"}
    if isinstance(config, list):
        return [_without_names(value) for value in config]
    return config


def _only_keras_objects(config) -> bool:
    """Every serialized object in the config is Keras's own (not a user function or class)."""
    if isinstance(config, dict):
        module = config.get("module")
        if isinstance(module, str) and module.split(".")[0] != "keras":
            return False
        return all(_only_keras_objects(value) for value in config.values())
    if isinstance(config, list):
        return all(_only_keras_objects(value) for value in config)
    return True


def _with_xla_fallback(fn, jit_compile, autograph: bool):
    def traced(jit: bool):
        return _ByInputSpec(tf.function(fn, jit_compile=jit, autograph=autograph))

    if jit_compile != "auto" and not jit_compile:
        return traced(False)
    compiled = traced(True)

    def call_compiled(*args):
        # Active on every call, not only the first: a retrace (new shapes) must see it too.
        with counter_based_dropout():
            return compiled(*args)

    if jit_compile != "auto":
        return call_compiled
    plain = traced(False)
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


def counter_based_dropout():
    """Within the block, Keras dropout traced by this thread uses `threefry_dropout`.

    Scoped and reversible (`ScopedSwap`): other threads keep Keras's own dropout meanwhile.
    It matters only while a function is being traced; meant for XLA-compiled functions.
    """
    return _DROPOUT_SWAP()


# Keras's dropout, which `keras.layers.Dropout` (and `keras.random.dropout`) look up as
# `keras.src.backend.random.dropout` on every call.
_DROPOUT_SWAP = ScopedSwap(keras_tf_random, "dropout", threefry_dropout)
_KERAS_DROPOUT = _DROPOUT_SWAP.original
