"""One tracked training run: the plumbing every experiment shares.

An experiment builds its data and model, then:

    with tracked_run(cfg, data, experiment="regularization", run_name="regularization l2 λ=0.7",
                     description=__doc__, tracking_uri=tracking_uri) as run:
        run.train(model, iterations=cfg.iterations)
        run.log_figure(decision_boundary(...), "decision_boundary.png")
        return run.summary()

`run.train` adds the standard callbacks (train/dev error with `BiasVarianceCallback`,
per-layer gradient norms with `GradientNormLogger`, MLflow recording), trains through the
fast path, and records the diagnosis, gradient health, learning curve and gradient heatmap.
Load and validate data *before* entering `tracked_run`, so bad input leaves no run behind.
TensorFlow is imported only when a run starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Mapping

from experiments.harness.datasets import DataSplit

PROBE_ROWS = 256  # rows of the training set the gradient norms are measured on


class TrackedRun:
    """A run in progress; see `tracked_run`."""

    def __init__(self, recorder, data: DataSplit, bayes_error: float):
        self.recorder = recorder
        self.data = data
        self.bayes_error = bayes_error
        self.bias_variance = None
        self.gradients = None
        self.history = None
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
    ):
        """Train `model` on the run's data with the standard callbacks, then record it.

        `callbacks` run after the error and gradient callbacks (so `EarlyStopping` can
        monitor `dev_error`) and before MLflow recording. `jit_compile` is passed to
        `reg_callbacks.train`: `False` skips XLA for layers without an XLA kernel (random
        image augmentation) or runs too short to repay the compile.
        """
        from reg_callbacks import BiasVarianceCallback, GradientNormLogger, train
        from reg_callbacks.training import DEFAULT_LOG_EVERY

        data = self.data
        log_every = log_every or min(DEFAULT_LOG_EVERY, iterations)
        self.bias_variance = BiasVarianceCallback(
            (data.x_train, data.y_train), (data.x_dev, data.y_dev), bayes_error=self.bayes_error
        )
        self.gradients = GradientNormLogger((data.x_train[:PROBE_ROWS], data.y_train[:PROBE_ROWS]))
        try:
            self.history = train(
                model,
                data.x_train,
                data.y_train,
                iterations=iterations,
                log_every=log_every,
                batch_size=batch_size,
                callbacks=[
                    self.bias_variance,
                    self.gradients,
                    *callbacks,
                    self.recorder.keras_callback(),
                ],
                shuffle_seed=seed,
                jit_compile=jit_compile,
            )
        finally:
            self._record_training(log_every)
        return self.history

    def _record_training(self, log_every: int) -> None:
        from reg_callbacks import plots

        if self.bias_variance.diagnosis is not None:
            self.recorder.log_diagnosis(self.bias_variance.diagnosis)
        if self.gradients.health is not None:
            self.recorder.set_tags(
                {
                    "gradient_health": self.gradients.health,
                    "gradient_health_at_start": self.gradients.health_history[0],
                }
            )
            self.log_figure(
                plots.gradient_heatmap(
                    self.gradients.history, self.gradients.epochs, iterations_per_epoch=log_every
                ),
                "gradient_norms.png",
            )
        history = self.bias_variance.history
        if history["epoch"]:
            steps = [(epoch + 1) * log_every for epoch in history["epoch"]]
            self.log_figure(
                plots.learning_curve(
                    history,
                    ["train_error", "dev_error"],
                    steps=steps,
                    ylabel="error",
                    title="Train and dev error",
                    hline=(self.bayes_error, "Bayes error"),
                ),
                "errors.png",
            )

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
        summary.update(extra)
        summary["seconds"] = round(time.perf_counter() - self._started, 3)
        self.recorder.log_dict(summary, "summary.json")
        return summary


@contextlib.contextmanager
def tracked_run(
    cfg,
    data: DataSplit,
    *,
    experiment: str,
    run_name: str,
    description: str | None = None,
    tracking_uri: str | None = None,
    parent_run_id: str | None = None,
    bayes_error: float | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[TrackedRun]:
    """Open an MLflow run for `cfg` on `data`; FINISHED on success, FAILED if the block raises.

    Args:
        cfg: The experiment's Config dataclass; every field becomes a param.
        data: Validated data (load it before calling this).
        experiment: MLflow experiment name (one per topic).
        run_name: What the run is, for the runs table ("regularization l2 λ=0.7").
        description: The experiment's claim, shown on the run page.
        bayes_error: Defaults to the data's known Bayes error, else 0.
    """
    from reg_callbacks import RunRecorder

    bayes = bayes_error if bayes_error is not None else (data.bayes_error or 0.0)
    recorder = RunRecorder(
        experiment,
        run_name=run_name,
        params=dataclasses.asdict(cfg),
        tags={
            "experiment": experiment,
            "data_source": data.source,
            "data_hash": data.fingerprint(),
            **(tags or {}),
        },
        description=description,
        experiment_description=description,
        tracking_uri=tracking_uri,
        parent_run_id=parent_run_id,
    )
    with recorder:
        yield TrackedRun(recorder, data, bayes)
