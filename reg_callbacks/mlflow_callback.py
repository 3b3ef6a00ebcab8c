"""`RecorderCallback`: every epoch's logs into the run of a `RunRecorder`, in batches.

Why not `mlflow.keras.MlflowCallback`: it writes to MLflow's global active run (wrong under
parallel workers and nested runs), one asynchronous call per epoch that swallows errors, so
a lost metric goes unnoticed. This one buffers epochs and writes them through the recorder
in `log_batch` calls, at the optimizer step the epoch ended on, on one background thread.

What a write costs decides when to write. A `log_batch` into a SQLite store takes ~7 ms of
CPU plus ~0.08 ms a metric (2-core CPU): ten epochs of the course's net with our callbacks
(90 metrics) take 15 ms, ~7 % of their 10 000 steps if written on the training thread. On a
background thread the write still needs a core, and when XLA spreads a step over both
cores it slows training as much. So writes are few: at most one every `flush_secs`, one as
the last epoch begins (it overlaps that epoch's training), and one of the last row that
`on_train_end` waits for. A 30-epoch run of 9 metrics a row then takes 34 ms of writer
CPU, against 41 ms written ten epochs at a time (`benchmarks/bench_training.py` measures
the effect on training). Writes stay in order, and none is lost silently: a failed write is
raised at the next epoch's end, and `on_train_end` waits for every write, so the run holds
all metrics when training returns.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from time import monotonic

import keras

from reg_callbacks.training import IntervalProbed


class RecorderCallback(IntervalProbed, keras.callbacks.Callback):
    """Logs numeric epoch logs to a `RunRecorder`'s run, in a few `log_batch` writes.

    The step of each row is the optimizer's iteration count at the end of the epoch, so a
    run trained with `reg_callbacks.train` shows the cost against iterations, as the course
    plots it. Put it after callbacks that add to `logs` (`BiasVarianceCallback`,
    `GradientNormLogger`).

    The buffered rows go to one `recorder.log_metrics` call on a background thread at the
    first epoch end `flush_secs` after the previous write, and as the last epoch begins;
    `flush()` (called by `on_train_end`) writes the rest and waits.

    Args:
        recorder: An entered `RunRecorder`.
        flush_secs: Seconds between writes, at least: how far the MLflow UI may lag
            behind training. 0 writes every epoch.

    Example:
        >>> with RunRecorder("demo") as recorder:
        ...     train(model, x, y, iterations=5000, callbacks=[recorder.keras_callback()])
    """

    def __init__(self, recorder, *, flush_secs: float = 5.0):
        super().__init__()
        if (
            isinstance(flush_secs, bool)
            or not isinstance(flush_secs, (int, float))
            or math.isnan(flush_secs)
            or flush_secs < 0
        ):
            raise ValueError(f"flush_secs must be a number of seconds >= 0; got {flush_secs!r}.")
        self.recorder = recorder
        self.flush_secs = flush_secs
        self._rows = []
        self._writes: list[Future] = []
        self._writer: ThreadPoolExecutor | None = None
        self._last_write = 0.0

    def on_train_begin(self, logs=None):
        self._rows = []
        self._writes = []
        self._probed = None
        self._last_write = monotonic()

    def interval_probe(self, epoch):
        """For `train`: the step count, read inside the interval's compiled call.

        Reading a variable on its own is a TensorFlow call, ~0.5 ms on a 2-core CPU: 2 % of
        an interval of 1000 steps of the course's net.
        """
        return (optimizer_iterations, ()) if self.model.optimizer else None

    def on_epoch_begin(self, epoch, logs=None):
        # Written while the last epoch trains, the rows so far do not wait for the end:
        # `on_train_end` waits for one row, ~7 ms into SQLite instead of up to ~30 ms.
        if epoch == (self.params or {}).get("epochs", 0) - 1:
            self._submit()

    def on_epoch_end(self, epoch, logs=None):
        step = self.take_probe_values(epoch)
        if step is None:
            optimizer = self.model.optimizer
            step = keras.ops.convert_to_numpy(optimizer.iterations) if optimizer else epoch
        step = int(step)
        self._rows.append((step, dict(logs or {})))
        self._raise_failed_write()
        if monotonic() - self._last_write >= self.flush_secs:
            self._submit()

    def on_train_end(self, logs=None):
        self.flush()

    def flush(self) -> None:
        """Write the buffered rows and wait for every write; raise the first that failed."""
        self._submit()
        writes, self._writes = self._writes, []
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        for write in writes:
            write.result()

    def _submit(self) -> None:
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        self._last_write = monotonic()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-writer")
        self._writes.append(self._writer.submit(self.recorder.log_metrics, rows))

    def _raise_failed_write(self) -> None:
        for write in self._writes:
            if write.done() and write.exception() is not None:
                self._writes.remove(write)
                raise write.exception()
        self._writes = [write for write in self._writes if not write.done()]


def optimizer_iterations(model):
    """Graph code: the optimizer's step count (`RecorderCallback`'s interval probe)."""
    return keras.ops.convert_to_tensor(model.optimizer.iterations)
