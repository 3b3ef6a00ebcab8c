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
import warnings
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from time import monotonic

import keras

from reg_callbacks.step_images import IMAGES_PER_RUN as IMAGES
from reg_callbacks.step_images import boundary_grid, boundary_image, heatmap_image, image_epochs
from reg_callbacks.training import IntervalProbed

MODEL_EXAMPLE_ROWS = 5  # rows a logged model's signature is inferred from


class RecorderCallback(IntervalProbed, keras.callbacks.Callback):
    """Logs numeric epoch logs to a `RunRecorder`'s run, and on request what the run's
    other callbacks measured, its figures, data and model: what an experiment's run records.

    The step of each row is the optimizer's iteration count at the end of the epoch, so a
    run trained with `reg_callbacks.train` shows the cost against iterations, as the course
    plots it. Put it last: after callbacks that add to `logs` (`BiasVarianceCallback`,
    `GradientNormLogger`, `ActivationStatsLogger`) and after an `EarlyStopping` that
    restores the best weights (the model is logged as training ends).

    The buffered rows go to one `recorder.log_metrics` call on a background thread at the
    first epoch end `flush_secs` after the previous write, and as the last epoch begins;
    `flush()` (called by `on_train_end`) writes the rest and waits.

    By default only the epoch logs are recorded. The rest, each under the same keys as an
    experiment's run (the README's MLflow table):

    - `measured` `BiasVarianceCallback`: as training ends, its diagnosis (final
      `train_error`, `dev_error`, `avoidable_bias`, `variance`; tags `bias_variance`,
      `bayes_error`, `remedies`) and, with `figures`, `errors.png`.
    - `measured` `GradientNormLogger`: tags `gradient_health`, `gradient_health_at_start`
      and, with `figures`, `gradient_norms.png`.
    - `measured` `ActivationStatsLogger`: its measurement before the first step (the
      initialization, which no epoch's logs hold) under its `logs` keys at the step training
      began; tags `activation_health`, `activation_health_at_start` and, with `figures`,
      `activation_std_by_depth.png` and `activation_histograms.png`.
    - `datasets`: as training begins, MLflow dataset inputs `<dataset_name>/<context>` and the
      `data_hash` tag.
    - `log_model`: the trained model as the run's MLflow model `model`, unless the last
      loss is NaN or infinite (a diverged model), and `model_summary.txt`, which
      `model_summary` records alone.
    - `step_images`: MLflow step images as training begins and at epochs spread over
      training (the last included; `IMAGES_PER_RUN` in all, at most), at the step their
      metrics are logged at:
      `gradient_norms`, the heatmap of a measured `GradientNormLogger` so far, and
      `decision_boundary`, the regions the model predicts around `boundary_data`. They are
      drawn from arrays (`reg_callbacks.step_images`) and written with the metrics.

    Args:
        recorder: An entered `RunRecorder`.
        *measured: `BiasVarianceCallback`, `GradientNormLogger` and `ActivationStatsLogger`
            instances (one of each at most) trained in the same `fit`, whose results to record.
        flush_secs: Seconds between writes, at least: how far the MLflow UI may lag
            behind training. 0 writes every epoch.
        figures: Draw the figures of `measured` callbacks.
        datasets: `{"training": (x, y), "validation": (x_dev, y_dev)}` of arrays (or dicts
            of arrays for named inputs), logged as the run's dataset inputs.
        dataset_name: What the runs table calls the data.
        model_summary: Log Keras's `model.summary()` as `model_summary.txt` (`log_model`
            does too).
        log_model: Log the trained model (Keras's `.keras` format, signature inferred from
            `input_example`) and its summary.
        input_example: Input rows for the model's signature; defaults to the first rows
            of `datasets["training"]`.
        step_images: Log the step images (off: only the end-of-run figures).
        boundary_data: `(x, y)`, points with two features (x of shape (m, 2)) and their
            class labels, for the `decision_boundary` step images of a classifier that
            takes them; without it, no such images.

    Raises:
        ValueError: a bad argument; the message names it.

    Example:
        >>> with RunRecorder("demo") as recorder:
        ...     splits = {"training": (x, y), "validation": (x_dev, y_dev)}
        ...     recording = recorder.keras_callback(bias_variance, gradients, datasets=splits)
        ...     model.fit(x, y, epochs=20, callbacks=[bias_variance, gradients, recording])
    """

    def __init__(
        self,
        recorder,
        *measured,
        flush_secs: float = 5.0,
        figures: bool = True,
        datasets: Mapping[str, tuple] | None = None,
        dataset_name: str = "data",
        model_summary: bool = False,
        log_model: bool = False,
        input_example=None,
        step_images: bool = False,
        boundary_data: tuple | None = None,
    ):
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
        self.bias_variance, self.gradients, self.activations = _measured_callbacks(measured)
        self.figures = figures
        self.datasets = _checked_datasets(datasets)
        self.dataset_name = dataset_name
        self.model_summary = model_summary
        self.log_model = log_model
        if log_model and input_example is None:
            if "training" not in self.datasets:
                raise ValueError(
                    "log_model needs input rows for the model's signature: pass "
                    "input_example=x[:5] or datasets={'training': (x, y)}."
                )
            input_example = _first_rows(self.datasets["training"][0], MODEL_EXAMPLE_ROWS)
        self.input_example = input_example
        if not isinstance(step_images, bool):
            raise ValueError(f"step_images must be True or False; got {step_images!r}.")
        self.step_images = step_images
        self.boundary_data = None
        if boundary_data is not None:
            if not (isinstance(boundary_data, tuple) and len(boundary_data) == 2):
                raise ValueError(
                    "boundary_data must be an (x, y) tuple of points with two features and "
                    f"their labels; got {type(boundary_data).__name__}."
                )
            grid, extent = boundary_grid(boundary_data[0])
            self.boundary_data = (*boundary_data, grid, extent)
        self._grid_tensor = None
        self._image_epochs = frozenset()
        self._datasets_logged = False
        self._rows = []
        self._images = []
        self._writes: list[Future] = []
        self._writer: ThreadPoolExecutor | None = None
        self._last_write = 0.0
        self._start_step = 0

    def on_train_begin(self, logs=None):
        self._rows = []
        self._images = []
        self._writes = []
        self._probed = None
        self._last_write = monotonic()
        self._start_step = _iterations(self.model)
        self._image_epochs = frozenset()
        if self.step_images:
            # The first images show the model before training, at the step MLflow's image
            # card opens on when training starts from scratch (0); the rest are spread.
            self._image_epochs = image_epochs((self.params or {}).get("epochs", 0), IMAGES - 1)
            self._log_step_images(self._start_step, None)
        if self.datasets and not self._datasets_logged:  # once a run, not once a fit
            splits = self.datasets
            self.recorder.log_datasets(splits, name=self.dataset_name)
            self.recorder.log_data(*(array for split in splits.values() for array in split))
            self._datasets_logged = True

    def interval_probe(self, epoch):
        """For `train`: the step count, read inside the interval's compiled call, and with
        `decision_boundary` images the model's outputs on their grid.

        Reading a variable on its own is a TensorFlow call, ~0.5 ms on a 2-core CPU: 2 % of
        an interval of 1000 steps of the course's net. The grid is evaluated at every
        interval, not only those drawn: an interval asking for other probes would compile
        a loop of its own, and the course's nets evaluate the grid in well under that.
        """
        if not self.model.optimizer:
            return None
        if not (self._image_epochs and self.boundary_data is not None):
            return optimizer_iterations, ()
        if self._grid_tensor is None:
            self._grid_tensor = keras.ops.convert_to_tensor(self.boundary_data[2])
        return iterations_and_outputs, (self._grid_tensor,)

    def on_epoch_begin(self, epoch, logs=None):
        # Written while the last epoch trains, the rows so far do not wait for the end:
        # `on_train_end` waits for one row, ~7 ms into SQLite instead of up to ~30 ms.
        if epoch == (self.params or {}).get("epochs", 0) - 1:
            self._submit()

    def on_epoch_end(self, epoch, logs=None):
        probed = self.take_probe_values(epoch)
        step, grid_outputs = probed if isinstance(probed, tuple) else (probed, None)
        if step is None:
            step = _iterations(self.model, otherwise=epoch)
        step = int(step)
        self._rows.append((step, dict(logs or {})))
        self._raise_failed_write()
        if epoch in self._image_epochs:
            self._log_step_images(step, grid_outputs)
        if monotonic() - self._last_write >= self.flush_secs:
            self._submit()

    def _log_step_images(self, step: int, grid_outputs) -> None:
        """Draw this epoch's step images (the model's weights change next epoch); they are
        written with the metrics."""
        images = {}
        # A `GradientNormLogger` placed after this callback has not measured yet as
        # training begins: its heatmap starts with the first interval.
        if self.gradients is not None and getattr(self.gradients, "history", None):
            every = self.gradients.every
            # Under "auto" the measured epochs are not known ahead: the heatmap grows.
            columns = 1 + (self.params or {}).get("epochs", 0) // every if every != "auto" else 0
            images["gradient_norms"] = heatmap_image(
                self.gradients.history,
                columns,
                caption=f"Gradient norm per layer, iteration {step}",
            )
        if self.boundary_data is not None:
            x, y, grid, extent = self.boundary_data
            if grid_outputs is None:  # before training, `fit`, or `train` on JAX
                # Eagerly: a compiled forward pass would be traced for this one shape.
                grid_outputs = keras.tree.map_structure(
                    keras.ops.convert_to_numpy, self.model(grid, training=False)
                )
            first_output = keras.tree.flatten(grid_outputs)[0]
            images["decision_boundary"] = boundary_image(first_output, x, y, extent)
        self._images.extend((key, step, image) for key, image in images.items())

    def on_train_end(self, logs=None):
        self.flush()
        if any(c is not None for c in (self.bias_variance, self.gradients, self.activations)):
            self.recorder.log_training(
                bias_variance=self.bias_variance,
                gradients=self.gradients,
                activations=self.activations,
                figures=self.figures,
                iterations_per_epoch=(self.params or {}).get("steps"),
                start_step=self._start_step,
            )
        if self.model_summary or self.log_model:
            self.recorder.log_model_summary(self.model)
        if not self.log_model:
            return
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            # Its weights are no model; `train` raises `TrainingDiverged` next, `fit` does not.
            warnings.warn(f"the loss is {loss}: the diverged model is not logged.", stacklevel=2)
            return
        self.recorder.log_keras_model(self.model, self.input_example)

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
        if not self._rows and not self._images:
            return
        rows, self._rows = self._rows, []
        images, self._images = self._images, []
        self._last_write = monotonic()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-writer")
        self._writes.append(self._writer.submit(self._write, rows, images))

    def _write(self, rows, images) -> None:
        if rows:
            self.recorder.log_metrics(rows)
        if images:
            self.recorder.log_step_images(images)

    def _raise_failed_write(self) -> None:
        for write in self._writes:
            if write.done() and write.exception() is not None:
                self._writes.remove(write)
                raise write.exception()
        self._writes = [write for write in self._writes if not write.done()]


def _measured_callbacks(measured) -> tuple:
    """`(bias_variance, gradients, activations)` among `measured`, each `None` if absent."""
    from reg_callbacks.activations import ActivationStatsLogger
    from reg_callbacks.bias_variance import BiasVarianceCallback
    from reg_callbacks.gradient_norms import GradientNormLogger

    found = {BiasVarianceCallback: None, GradientNormLogger: None, ActivationStatsLogger: None}
    for callback in measured:
        kind = next((kind for kind in found if isinstance(callback, kind)), None)
        if kind is None or found[kind] is not None:
            raise ValueError(
                "the callbacks to record must be one BiasVarianceCallback, one "
                f"GradientNormLogger and/or one ActivationStatsLogger; got {callback!r}."
            )
        found[kind] = callback
    return tuple(found.values())


def _iterations(model, otherwise: int = 0) -> int:
    """The optimizer's step count (`otherwise` for a model without an optimizer)."""
    optimizer = model.optimizer
    return int(keras.ops.convert_to_numpy(optimizer.iterations)) if optimizer else otherwise


def _checked_datasets(datasets) -> dict:
    if datasets is None:
        return {}
    if not isinstance(datasets, Mapping) or not all(
        isinstance(split, tuple) and len(split) == 2 for split in datasets.values()
    ):
        raise ValueError(
            "datasets must map a context ('training', 'validation') to an (x, y) tuple of "
            f"arrays; got {type(datasets).__name__}."
        )
    return dict(datasets)


def _first_rows(x, count: int):
    if isinstance(x, Mapping):
        return {key: value[:count] for key, value in x.items()}
    return x[:count]


def optimizer_iterations(model):
    """Graph code: the optimizer's step count (`RecorderCallback`'s interval probe)."""
    return keras.ops.convert_to_tensor(model.optimizer.iterations)


def iterations_and_outputs(model, grid):
    """Graph code: the optimizer's step count and the model's outputs on `grid` (the
    `decision_boundary` step images' probe)."""
    return optimizer_iterations(model), model(grid, training=False)
