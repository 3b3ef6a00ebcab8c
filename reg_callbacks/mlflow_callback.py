"""`RecorderCallback`: every epoch's logs into the run of a `RunRecorder`, in batches.

Why not `mlflow.keras.MlflowCallback`: it writes to MLflow's global active run (wrong under
parallel workers and nested runs), one asynchronous call per epoch that swallows errors, so
a lost metric goes unnoticed. This one buffers epochs and writes them through the recorder
in `log_batch` calls, at the optimizer step the epoch ended on, on one background thread:
a `log_batch` into a SQLite store takes 40-60 ms (two commits), longer than 1000 steps of
a small net, so writing on the training thread would slow training by a fifth. Writes stay
in order, and none is lost silently: a failed write is raised at the next epoch's end, and
`on_train_end` waits for every write, so the run holds all metrics when training returns.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import keras

from reg_callbacks.training import IntervalProbed


class RecorderCallback(IntervalProbed, keras.callbacks.Callback):
    """Logs numeric epoch logs to a `RunRecorder`'s run, `flush_every` epochs per call.

    The step of each row is the optimizer's iteration count at the end of the epoch, so a
    run trained with `reg_callbacks.train` shows the cost against iterations, as the course
    plots it. Put it after callbacks that add to `logs` (`BiasVarianceCallback`,
    `GradientNormLogger`).

    Every `flush_every` epochs the buffered rows go to one `recorder.log_metrics` call on a
    background thread; `flush()` (called by `on_train_end`) writes the rest and waits.

    Args:
        recorder: An entered `RunRecorder`.
        flush_every: Epochs per `log_batch` write.

    Example:
        >>> with RunRecorder("demo") as recorder:
        ...     train(model, x, y, iterations=5000, callbacks=[recorder.keras_callback()])
    """

    def __init__(self, recorder, *, flush_every: int = 10):
        super().__init__()
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"flush_every must be a positive integer; got {flush_every!r}.")
        self.recorder = recorder
        self.flush_every = flush_every
        self._rows = []
        self._writes: list[Future] = []
        self._writer: ThreadPoolExecutor | None = None

    def on_train_begin(self, logs=None):
        self._rows = []
        self._writes = []
        self._probed = None

    def interval_probe(self, epoch):
        """For `train`: the step count, read inside the interval's compiled call.

        Reading a variable on its own is a TensorFlow call, ~0.5 ms on a 2-core CPU: 2 % of
        an interval of 1000 steps of the course's net.
        """
        return (optimizer_iterations, ()) if self.model.optimizer else None

    def on_epoch_end(self, epoch, logs=None):
        step = self.take_probe_values(epoch)
        if step is None:
            step = self.model.optimizer.iterations.numpy() if self.model.optimizer else epoch
        step = int(step)
        self._rows.append((step, dict(logs or {})))
        self._raise_failed_write()
        if len(self._rows) >= self.flush_every:
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
