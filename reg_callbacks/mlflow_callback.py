"""`RecorderCallback`: every epoch's logs into the run of a `RunRecorder`, in batches.

Why not `mlflow.keras.MlflowCallback`: it writes to MLflow's global active run (wrong under
parallel workers and nested runs), one asynchronous call per epoch that swallows errors, so
a lost metric goes unnoticed. This one buffers epochs and writes them through the recorder
in `log_batch` calls, synchronously, at the optimizer step the epoch ended on.
"""

from __future__ import annotations

import keras


class RecorderCallback(keras.callbacks.Callback):
    """Logs numeric epoch logs to a `RunRecorder`'s run, `flush_every` epochs per call.

    The step of each row is the optimizer's iteration count at the end of the epoch, so a
    run trained with `reg_callbacks.train` shows the cost against iterations, as the course
    plots it. Put it after callbacks that add to `logs` (`BiasVarianceCallback`,
    `GradientNormLogger`).
    """

    def __init__(self, recorder, *, flush_every: int = 10):
        super().__init__()
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"flush_every must be a positive integer; got {flush_every!r}.")
        self.recorder = recorder
        self.flush_every = flush_every

    def on_train_begin(self, logs=None):
        self._rows = []

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy()) if self.model.optimizer else epoch
        self._rows.append((step, dict(logs or {})))
        if len(self._rows) >= self.flush_every:
            self.flush()

    def on_train_end(self, logs=None):
        self.flush()

    def flush(self) -> None:
        rows, self._rows = self._rows, []
        self.recorder.log_metrics(rows)
