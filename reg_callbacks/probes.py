"""Fixed probe data, evaluated in batches by functions compiled once per model.

The callbacks measure the model on data they hold for the whole run (the train and dev sets,
a gradient probe batch). What that costs decides whether users keep them on, so every
measurement goes through here:

- `ProbeData` holds the rows once, as tensors (optionally a fixed random subsample of a
  large training set, drawn once) or as a `tf.data.Dataset` read through one iterator
  made once, so its pipeline is not rebuilt at every measurement.
- `batches()` hands them out `batch_size` rows at a time: memory is bounded by a batch, not
  by the set, whatever the set's size.
- `predict(model, probe)` and `gradient_norms(model, probe, groups)` evaluate those batches
  with the backend's compiled functions (`reg_callbacks.backends`), traced once per model
  and input shape and reused at every epoch.
- `evaluate_batches(model, probe, key, function)`: any graph code over the batches (the
  activation statistics' reductions), compiled the same way.
- `in_loop_chunks(*probes)` and `in_loop_batches(probe)`: for `train`, a small probe is
  split into at most `MAX_IN_LOOP_CHUNKS` batches that its interval call evaluates right
  after its last step (one model call per batch there too).
- `Schedule`: when a callback measures under `fit`. A measurement over a fixed probe costs
  the same whatever the epoch's size, so on epochs of a few thousand rows measuring every
  epoch costs a large share of `fit` (`benchmarks/bench_callbacks.py --every 1` measures
  it). `every="auto"` (the callbacks' default) measures as often as `MEASUREMENT_BUDGET`
  of the training time allows, and always at the last epoch.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np

from reg_callbacks import backends
from reg_callbacks.examples import Examples, as_tensor, rows

DEFAULT_BATCH_SIZE = 256  # rows a forward pass evaluates at once: bounds the probe's memory
# Rows of one gradient computation: it keeps every activation for the backward pass, ~4x a
# forward pass's memory (256 rows of keras.io's transformer example took 1.4x fit's peak).
GRADIENT_BATCH_SIZE = 64
# A probe of at most this many batches is evaluated inside `train`'s interval call, where a
# separate call per batch would cost more than the batch itself on the course's small nets.
MAX_IN_LOOP_CHUNKS = 4
# Share of the training time one callback's measurements may take under `every="auto"`:
# the two callbacks together then stay within 5 % of `fit` once training has run long
# enough to pay for the measurements that always happen (see `Schedule`).
MEASUREMENT_BUDGET = 0.02


def measurement_due(spent: float, trained: float, cost: float, budget: float) -> bool:
    """Whether a callback that spent `spent` seconds measuring while training took
    `trained` seconds may spend `cost` more: `spent + cost <= budget * trained`."""
    return spent + cost <= budget * trained


class Schedule:
    """The epochs a callback measures at: every `every` epochs, or, for `every="auto"`, at the
    last epoch and at any other whose measurement keeps the callback's measuring time within
    `MEASUREMENT_BUDGET` of the time training has taken so far.

    Under `"auto"` the cost of a measurement is the duration of the callback's latest one
    (or an `estimate` given at `start`); a measurement in between is due when it and the
    last epoch's, which is always made, both fit in the budget (`measurement_due`). Before
    any cost is known, the next epoch is measured. So a fit long enough to pay for its
    always-made measurements (the last epoch's, and whatever the callback measures before
    training) costs at most the budget, and a short one those measurements alone. The
    epochs measured depend on the machine's speed; `every=1` measures every epoch.

    Args:
        every: A positive integer, or `"auto"`.
    """

    clock = staticmethod(time.perf_counter)

    def __init__(self, every: int | str):
        if not (
            (isinstance(every, str) and every == "auto")
            or (isinstance(every, int) and not isinstance(every, bool) and every >= 1)
        ):
            raise ValueError(f'every must be a positive integer or "auto"; got {every!r}.')
        self.every = every
        self.start()

    @property
    def auto(self) -> bool:
        return self.every == "auto"

    def start(self, estimate: float | None = None) -> None:
        """Training begins: nothing spent yet; `estimate`, a measurement's expected seconds."""
        self._began, self.spent, self.cost = self.clock(), 0.0, estimate

    def due(self, epoch: int, last: bool = False, every_interval: bool = False) -> bool:
        """Whether to measure at the end of `epoch` (`last`: the fit's last epoch;
        `every_interval`: under `train` with a probe small enough for its interval call,
        where `"auto"` measures every interval on either backend)."""
        if not self.auto:
            return (epoch + 1) % self.every == 0
        if last or every_interval or self.cost is None:
            return True
        trained = self.clock() - self._began - self.spent
        return measurement_due(self.spent, trained, 2 * self.cost, MEASUREMENT_BUDGET)

    def timed(self, measure, *args):
        """`measure(*args)`, its duration counted as spent and as the next one's cost."""
        began = self.clock()
        try:
            return measure(*args)
        finally:
            self.cost = self.clock() - began
            self.spent += self.cost


class ProbeData:
    """Examples a callback measures the model on at every measurement, in batches.

    Args:
        name: The argument's name, for error messages.
        data: `(x, y)` (arrays, or dicts/lists of arrays) or a finite `tf.data.Dataset` of
            `(x, y)` or `(x, y, sample_weight)` batches.
        batch_size: Most rows evaluated in one model call.
        max_rows: Evaluate at most this many rows (`None`: all): for arrays, a random
            subsample drawn once (seeded by `seed`) and kept for the whole run; for a
            dataset, its first batches up to that many rows, read once and kept in memory
            (their `x` and `y`; sample weights are dropped).
        seed: Seed of the subsample.
    """

    def __init__(
        self,
        name: str,
        data,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_rows: int | None = None,
        seed: int = 0,
    ):
        for arg, value, optional in (
            ("batch_size", batch_size, False),
            ("max_rows", max_rows, True),
        ):
            if optional and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                allowed = "None or a positive integer" if optional else "a positive integer"
                raise ValueError(f"{arg} must be {allowed}; got {value!r}.")
        self.name, self.batch_size, self.max_rows = name, int(batch_size), max_rows
        examples = Examples(name, data)
        self.dataset = examples.dataset
        self.tensors = examples.tensors
        self._iterator = None
        self._batches_per_pass = None
        if self.dataset is not None and max_rows is not None:
            self.tensors, self.dataset = self._first_rows(max_rows), None
        elif self.tensors is not None and max_rows is not None and rows(self.tensors[1]) > max_rows:
            chosen = np.sort(
                np.random.default_rng(seed).choice(rows(self.tensors[1]), max_rows, replace=False)
            )
            self.tensors = keras.tree.map_structure(
                lambda t: keras.ops.take(t, chosen, axis=0), self.tensors
            )

    @property
    def n_rows(self) -> int | None:
        """Rows held in memory; `None` for a dataset."""
        return None if self.tensors is None else rows(self.tensors[1])

    def build(self, model: keras.Model) -> None:
        """Build a model not built yet, as `fit` does before its first step."""
        if model.built:
            return
        if self.tensors is not None:
            Examples(self.name, self.tensors).build(model)
        else:
            Examples(self.name, self.dataset).build(model)

    def batches(self):
        """`(x, y, sample_weight)` for each batch of at most `batch_size` rows."""
        if self.tensors is not None:
            x, y = self.tensors
            for start in range(0, rows(y), self.batch_size):
                yield (*_rows_of((x, y), start, start + self.batch_size), None)
            return
        # A dataset's batches (often 32 rows) are merged up to `batch_size` rows: a call's
        # fixed cost would otherwise dominate a small model's evaluation.
        pending, pending_rows = [], 0
        for batch in self._one_pass():
            pending.append(_unpacked(batch))
            pending_rows += rows(pending[-1][1])
            while pending_rows >= self.batch_size:
                merged = _merged(pending)
                yield _rows_of(merged, 0, self.batch_size)
                pending = [_rows_of(merged, self.batch_size, None)]
                pending_rows -= self.batch_size
        if pending_rows:
            yield _merged(pending)

    def _first_rows(self, max_rows: int):
        """`(x, y)` of the dataset's first batches, up to `max_rows` rows, read once."""
        taken, count = [], 0
        for batch in self.dataset:
            taken.append(_unpacked(batch)[:2])
            count += rows(taken[-1][1])
            if count >= max_rows:
                break
        if not taken:
            raise ValueError(f"{self.name} is an empty dataset; it needs examples.")
        return _rows_of(_merged(taken), 0, max_rows)

    def _one_pass(self):
        """One pass over the dataset through one iterator made once (over the dataset
        repeated), so its pipeline is built once for the whole run."""
        if self._batches_per_pass is None:
            cardinality = int(self.dataset.cardinality())
            if cardinality < 0:  # unknown: count the batches of a first, ordinary pass
                count = 0
                for batch in self.dataset:
                    count += 1
                    yield batch
                self._batches_per_pass = count
                return
            self._batches_per_pass = cardinality
        if self._iterator is None:
            self._iterator = iter(self.dataset.repeat())
        for _ in range(self._batches_per_pass):
            yield next(self._iterator)


def in_loop_chunks(probe: ProbeData, *others: ProbeData):
    """The probes' inputs as batches for `train`'s interval call: `(chunks, sizes)` with
    `sizes` each probe's rows; `None` when a probe is a dataset or they need more than
    `MAX_IN_LOOP_CHUNKS` batches (the callback then evaluates them itself, batch by batch)."""
    probes = (probe, *others)
    if any(p.tensors is None for p in probes):
        return None
    inputs = [p.tensors[0] for p in probes]
    try:
        for x in inputs[1:]:
            keras.tree.assert_same_structure(inputs[0], x)
    except (TypeError, ValueError):
        return None
    flat = [keras.tree.flatten(x) for x in inputs]
    if any(
        a.shape[1:] != b.shape[1:] or a.dtype != b.dtype
        for other in flat[1:]
        for a, b in zip(flat[0], other, strict=True)
    ):
        return None
    sizes = [p.n_rows for p in probes]
    if math.ceil(sum(sizes) / probe.batch_size) > MAX_IN_LOOP_CHUNKS:
        return None
    stacked = inputs[0]
    if len(inputs) > 1:
        stacked = keras.tree.map_structure(lambda *parts: keras.ops.concatenate(parts), *inputs)
    total = sum(sizes)
    chunks = tuple(
        _rows_of(stacked, start, start + probe.batch_size)
        for start in range(0, total, probe.batch_size)
    )
    return chunks, sizes


def in_loop_batches(probe: ProbeData):
    """The probe's `(x, y)` batches flattened to `(x0, y0, x1, y1, ...)` for `train`'s
    interval call; `None` for a dataset or more than `MAX_IN_LOOP_CHUNKS` batches."""
    if probe.tensors is None or math.ceil(probe.n_rows / probe.batch_size) > MAX_IN_LOOP_CHUNKS:
        return None
    return tuple(part for x, y, _ in probe.batches() for part in (x, y))


def forward_chunks(model: keras.Model, *chunks) -> tuple:
    """Graph code for `train`'s interval call: `model(chunk, training=False)` per chunk."""
    return tuple(model(x, training=False) for x in chunks)


def predict(model: keras.Model, probe: ProbeData):
    """`(targets, predictions)` over the probe's rows, evaluated a batch at a time: NumPy
    nests, concatenated along rows (the predictions of a batch are small; its activations,
    which are not, are freed before the next)."""
    backend = backends.current()
    targets, predictions = [], []
    for x, y, _ in probe.batches():
        targets.append(keras.tree.map_structure(np.asarray, y))
        predictions.append(backend.forward(model, x)[0])
    if not targets:
        raise ValueError(f"{probe.name} is an empty dataset; it needs examples.")
    return concatenate(targets), concatenate(predictions)


def gradient_norms(model: keras.Model, probe: ProbeData, groups, training: bool = False):
    """The norm of the loss gradient over each group of trainable-variable indices, over the
    probe's rows: one compiled call when they fit in a batch, else each batch's gradient
    weighted by its rows (the mean loss over all rows, penalties counted once)."""
    backend = backends.current()
    if probe.tensors is not None and probe.n_rows <= probe.batch_size:
        return np.asarray(backend.gradient_norms(model, *probe.tensors, groups, training))
    total, count = None, 0
    for x, y, sample_weight in probe.batches():
        n = rows(x)
        grads = backend.loss_gradients(model, x, y, sample_weight, training)
        scaled = [g.astype(np.float64) * n for g in grads]
        total = scaled if total is None else [t + g for t, g in zip(total, scaled, strict=True)]
        count += n
    if not count:
        raise ValueError(f"{probe.name} must hold at least one example; the dataset is empty.")
    squares = [float(np.sum(np.square(t / count))) for t in total]
    return np.asarray([math.sqrt(sum(squares[i] for i in group)) for group in groups])


def evaluate_batches(model: keras.Model, probe: ProbeData, key: tuple, function, *args) -> list:
    """`function(model, forward, x, *args)` on each of the probe's batches, compiled once
    per model and `key` (`backends.graph_call`): graph code that runs `forward(x)` (the
    model at inference) and reduces what it sees to small NumPy nests, one a batch."""
    run = backends.current().graph_call(model, key, function)
    results = [run(x, *args) for x, _, _ in probe.batches()]
    if not results:
        raise ValueError(f"{probe.name} is an empty dataset; it needs examples.")
    return results


def concatenate(parts: list):
    """NumPy nests of the same structure, joined along rows."""
    return keras.tree.map_structure(lambda *arrays: np.concatenate(arrays), *parts)


def split_rows(values, sizes):
    """A NumPy nest cut along rows into consecutive pieces of `sizes` rows."""
    pieces, start = [], 0
    for size in sizes:
        pieces.append(keras.tree.map_structure(lambda a, s=start, n=size: a[s : s + n], values))
        start += size
    return pieces


def _unpacked(batch) -> tuple:
    """`(x, y, sample_weight)` of a dataset's batch, as backend tensors."""
    return tuple(
        None if part is None else keras.tree.map_structure(as_tensor, part)
        for part in keras.utils.unpack_x_y_sample_weight(batch)
    )


def _merged(parts: list):
    """`(x, y, sample_weight)` batches joined along rows (a missing weight stays `None`)."""
    if len(parts) == 1:
        return parts[0]
    return tuple(
        None
        if column[0] is None
        else keras.tree.map_structure(lambda *t: keras.ops.concatenate(t), *column)
        for column in zip(*parts, strict=True)
    )


def _rows_of(data, start: int, stop: int | None):
    """Rows `start:stop` of every tensor in a nest (a `None` part stays `None`)."""
    return keras.tree.map_structure(lambda t: None if t is None else t[start:stop], data)
