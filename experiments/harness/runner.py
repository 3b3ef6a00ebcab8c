"""One tracked training run: the plumbing every topic shares.

A topic loads its data and builds its model, then:

    def run(cfg: Config, **where) -> dict:
        data = make_data(cfg)
        model = build_model(cfg, data.n_features)
        with tracked_run(cfg, data, run_name=f"regularization {cfg.variant}", **where) as run:
            run.train(model, iterations=cfg.iterations)
            run.log_figure(decision_boundary(...), "decision_boundary.png")
            return run.summary()

`where` is where the run goes and what it records besides the standard: `experiment`
(default: the topic's name), `tracking_uri`, `parent_run_id`, `log_model` (the trained Keras
model as the run's MLflow model; default True), `step_images` (the gradient heatmap and, where
a topic draws one, the decision boundary as MLflow step images during training; default True)
and `system_metrics` (MLflow's CPU/memory/disk samples; default False); the command line and
the sweep pass them, a topic only hands them on. The run's description is the first
paragraph of the topic's docstring, its params the config. Every run logs its train and dev
sets as MLflow dataset inputs (`training`, `validation`) as it opens.

`run.train` adds the standard callbacks (train/dev error with `BiasVarianceCallback`,
per-layer gradient norms with `GradientNormLogger`) and trains through the fast path; the
recorder's Keras callback records the diagnosis, gradient health, learning curve, gradient
heatmap, `model_summary.txt` and the model as training ends: the code a library user's run
records through, asked for everything; `run.train(..., activations=True)` adds an
`ActivationStatsLogger` (for deep nets), recorded the same way. When an
`EarlyStopping(restore_best_weights=True)` among the callbacks has put the best weights back,
the diagnosis and the final cost are measured again on those weights before they are
recorded.
Load and validate data *before* entering `tracked_run`, so bad input leaves no run behind;
a tracking store that cannot work is refused before the run opens, too.
TensorFlow is imported only when a run starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.harness.tracking_store import check_tracking_uri, prepare_store
from reg_callbacks.diagnosis import NUMBERS as DIAGNOSIS_NUMBERS

if TYPE_CHECKING:
    from experiments.harness.datasets import DataSplit

PROBE_ROWS = 256  # rows of the training set the gradient norms and activations are measured on
# What the sweep reads from a topic's summary for its table.
SUMMARY_KEYS = ("run_id", *DIAGNOSIS_NUMBERS, "label", "gradient_health")


class TrackedRun:
    """A run in progress; see `tracked_run`."""

    def __init__(
        self,
        recorder,
        data: DataSplit,
        bayes_error: float,
        log_model: bool = True,
        step_images: bool = True,
    ):
        self.recorder = recorder
        self.log_model = log_model
        self.step_images = step_images
        self.data = data
        self.bayes_error = bayes_error
        self.bias_variance = None
        self.gradients = None
        self.activations = None
        self.history = None
        self.early_stopping: dict = {}  # stopped/best interval and iteration, restored cost
        self._started = time.perf_counter()

    @property
    def run_id(self) -> str:
        return self.recorder.run_id

    def train(
        self,
        model,
        *,
        iterations: int,
        log_every: int | None = None,
        batch_size: int | None = None,
        callbacks=(),
        seed: int = 0,
        jit_compile: bool | str = "auto",
        activations: bool = False,
        decision_boundary: bool = False,
    ):
        """Train `model` on the run's data with the standard callbacks, then record it.

        `callbacks` run after the error and gradient callbacks (so `EarlyStopping` can
        monitor `dev_error`) and before MLflow recording. `jit_compile` is passed to
        `reg_callbacks.train`: `False` skips XLA for layers without an XLA kernel (random
        image augmentation) or runs too short to repay the compile. `activations` adds an
        `ActivationStatsLogger` on the probe rows, measuring every interval.
        `decision_boundary`: the topic draws one, so the run's step images show it over the
        training set too.
        """
        import keras

        from reg_callbacks import (
            ActivationStatsLogger,
            BiasVarianceCallback,
            GradientNormLogger,
            train,
        )
        from reg_callbacks.mlflow_callback import MODEL_EXAMPLE_ROWS
        from reg_callbacks.training import DEFAULT_LOG_EVERY

        data = self.data
        log_every = log_every or min(DEFAULT_LOG_EVERY, iterations)
        # Every interval, as the course's curves and diagnoses were recorded (the default
        # "auto" schedule would skip intervals whose probes `train` cannot compute in-loop).
        self.bias_variance = BiasVarianceCallback(
            (data.x_train, data.y_train),
            (data.x_dev, data.y_dev),
            bayes_error=self.bayes_error,
            every=1,
        )
        self.gradients = GradientNormLogger(
            (data.x_train[:PROBE_ROWS], data.y_train[:PROBE_ROWS]), every=1
        )
        measured = [self.bias_variance, self.gradients]
        if activations:
            self.activations = ActivationStatsLogger(data.x_train[:PROBE_ROWS])
            measured.append(self.activations)
        # Between the user's callbacks (an `EarlyStopping` restores its best weights as
        # training ends) and the recording of the diagnosis and model that follows.
        rediagnose = keras.callbacks.LambdaCallback(
            on_train_end=lambda logs: self._rediagnose_restored(model, callbacks, log_every)
        )
        recording = self.recorder.keras_callback(
            *measured,
            model_summary=True,
            log_model=self.log_model,
            input_example=data.x_train[:MODEL_EXAMPLE_ROWS],
            step_images=self.step_images,
            boundary_data=(data.x_train, data.y_train) if decision_boundary else None,
        )
        self.history = train(
            model,
            data.x_train,
            data.y_train,
            iterations=iterations,
            log_every=log_every,
            batch_size=batch_size,
            callbacks=[*measured, *callbacks, rediagnose, recording],
            shuffle_seed=seed,
            jit_compile=jit_compile,
        )
        if self.early_stopping:
            self.recorder.log_final(self.early_stopping)
            stopped = "stopped" if self.early_stopping["stopped_epoch"] else "ran to the end"
            self.recorder.set_tags({"early_stopping": stopped})
        return self.history

    def _rediagnose_restored(self, model, callbacks, log_every: int) -> None:
        """After Keras put an `EarlyStopping`'s best weights back, measure those weights."""
        restored = restored_best(model, callbacks, self.data, self.bayes_error, log_every)
        if restored is not None:
            self.bias_variance.diagnosis, self.early_stopping = restored

    def log_figure(self, figure, name: str) -> None:
        self.recorder.log_figure(figure, name)

    def summary(self, **extra) -> dict:
        """The numbers the CLI prints and the sweep tabulates; also stored as summary.json."""
        diagnosis = self.bias_variance.diagnosis if self.bias_variance else None
        summary = {"run_id": self.run_id}
        if diagnosis is not None:
            summary.update(
                train_error=diagnosis.train_error,
                dev_error=diagnosis.dev_error,
                train_accuracy=1 - diagnosis.train_error,
                dev_accuracy=1 - diagnosis.dev_error,
                avoidable_bias=diagnosis.avoidable_bias,
                variance=diagnosis.variance,
                label=diagnosis.label,
            )
        if self.history is not None and self.history.history.get("loss"):
            summary["final_cost"] = self.history.history["loss"][-1]
        if self.gradients is not None and self.gradients.health is not None:
            summary["gradient_health"] = self.gradients.health
        if self.activations is not None and self.activations.health is not None:
            summary["activation_health"] = self.activations.health
        summary.update(self.early_stopping)
        summary.update(extra)
        summary["seconds"] = round(time.perf_counter() - self._started, 3)
        self.recorder.log_dict(summary, "summary.json")
        return summary


def restored_best(model, callbacks, data: DataSplit, bayes_error: float, log_every: int):
    """(diagnosis, numbers) of the weights an `EarlyStopping(restore_best_weights=True)` in
    `callbacks` put back at the end of training; None if there is none.

    The numbers are its stopped and best interval (1-based; stopped 0 if it ran to the end),
    the same in iterations, and `final_cost`, the restored weights' training cost (the run's
    last logged cost is the stopped weights').
    """
    import keras

    from reg_callbacks import classification_error, diagnose

    stopper = next(
        (
            c
            for c in callbacks
            if isinstance(c, keras.callbacks.EarlyStopping)
            and c.restore_best_weights
            and c.best_weights is not None
        ),
        None,
    )
    if stopper is None:
        return None
    stopped = stopper.stopped_epoch > 0
    train_error, dev_error = (
        classification_error(y, model.predict_on_batch(x))
        for x, y in ((data.x_train, data.y_train), (data.x_dev, data.y_dev))
    )
    cost = model.evaluate(
        data.x_train, data.y_train, batch_size=len(data.x_train), verbose=0, return_dict=True
    )["loss"]
    numbers = {
        "stopped_epoch": stopper.stopped_epoch + 1 if stopped else 0,
        "best_epoch": stopper.best_epoch + 1,
        "stopped_iteration": (stopper.stopped_epoch + 1) * log_every if stopped else 0,
        "best_iteration": (stopper.best_epoch + 1) * log_every,
        "final_cost": float(cost),
    }
    return diagnose(train_error, dev_error, bayes_error), numbers


@contextlib.contextmanager
def tracked_run(
    cfg,
    data: DataSplit,
    *,
    run_name: str,
    bayes_error: float | None = None,
    tags: Mapping[str, str] | None = None,
    log_model: bool = True,
    step_images: bool = True,
    **where,
) -> Iterator[TrackedRun]:
    """Open an MLflow run for `cfg` on `data`; FINISHED on success, FAILED if the block raises.

    Args:
        cfg: The topic's Config dataclass; every field becomes a param.
        data: Validated data (load it before calling this).
        run_name: What the run is, for the runs table ("regularization l2 λ=0.7").
        bayes_error: Defaults to the data's known Bayes error, else 0.
        tags: Extra tags (the topic's own).
        log_model: Log the model `run.train` trained as the run's MLflow model.
        step_images: Log MLflow step images while `run.train` trains.
        **where: `experiment`, `tracking_uri`, `parent_run_id`, `system_metrics`; see the
            module docstring.
    """
    bayes = bayes_error if bayes_error is not None else (data.bayes_error or 0.0)
    tags = {"data_source": data.source, "data_hash": data.fingerprint(), **(tags or {})}
    with parent_run(cfg, run_name=run_name, tags=tags, **where) as recorder:
        recorder.log_datasets(
            {"training": (data.x_train, data.y_train), "validation": (data.x_dev, data.y_dev)},
            name=dataset_name(data.source),
            source=data.source,
        )
        yield TrackedRun(recorder, data, bayes, log_model, step_images)


def dataset_name(source: str) -> str:
    """What the runs table calls a run's data: the generator (`noisy_moons`) or the file's
    name without its extension (`data` for `data.mat`; the train file's of a pair)."""
    first = source.split(" + ")[0]
    if "(" in first:
        return first.split("(")[0]
    return Path(first).stem or "data"


def parent_run(
    cfg,
    *,
    run_name: str,
    tags: Mapping[str, object] | None = None,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    parent_run_id: str | None = None,
    log_model: bool = True,
    step_images: bool = True,
    system_metrics: bool = False,
):
    """A `RunRecorder` for `cfg` without data: the parent of a topic's child runs.

    Same arguments as `tracked_run`; its children get `parent_run_id=recorder.run_id`.
    It trains no model of its own, so `log_model` and `step_images` are for its children:
    a topic hands `where` on to them whole.
    """
    import mlflow

    from reg_callbacks import RunRecorder

    uri = tracking_uri or mlflow.get_tracking_uri()
    check_tracking_uri(uri)
    prepare_store(uri)  # a new store is made by one process while others wait
    topic, description = topic_of(cfg)
    experiment = experiment or topic
    return RunRecorder(
        experiment,
        run_name=run_name,
        params=dataclasses.asdict(cfg),
        tags={"experiment": experiment, **(tags or {})},
        description=description,
        experiment_description=description,
        tracking_uri=tracking_uri,
        parent_run_id=parent_run_id,
        system_metrics=system_metrics,
    )


def topic_of(cfg) -> tuple[str, str | None]:
    """The topic that defines `cfg`'s class: its name and its claim (first paragraph)."""
    module = sys.modules.get(type(cfg).__module__)
    name = type(cfg).__module__
    if name == "__main__":
        spec = getattr(module, "__spec__", None)
        name = spec.name if spec is not None else name
    doc = inspect.cleandoc(getattr(module, "__doc__", None) or "")
    return name.rpartition(".")[2], doc.split("\n\n")[0] or None
