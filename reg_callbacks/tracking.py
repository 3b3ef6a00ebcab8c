"""The one place that talks to MLflow for a run: start/end, params, metrics, tags, artifacts.

`RunRecorder` writes through `MlflowClient` with an explicit run id instead of MLflow's
fluent "active run" state, so parallel workers, nested child runs and a sweep's parent run
never mix up which run they are writing to. Metrics go in `log_batch` calls, not one call
per number. No TensorFlow import here: the sweep's planner reads the store through it.
"""

from __future__ import annotations

import contextlib
import contextvars
import getpass
import hashlib
import importlib.metadata
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import (
    MLFLOW_LOGGED_IMAGES,
    MLFLOW_PARENT_RUN_ID,
    MLFLOW_RUN_NOTE,
    MLFLOW_SOURCE_NAME,
    MLFLOW_USER,
)

from reg_callbacks.diagnosis import NUMBERS as DIAGNOSIS_NUMBERS

# MLflow's limits per log_batch call.
_MAX_METRICS, _MAX_PARAMS, _MAX_TAGS = 1000, 100, 100
_MAX_PARAM_LENGTH = 6000
# Lines of `activation_std_by_depth.png` (one a measurement would crowd the legend past
# reading) and layers of `activation_histograms.png` (drawing a panel for each of the 31
# layers of the gradients topic's net took longer than training it): the first, the last
# and evenly spaced ones between.
ACTIVATION_LINES = 6
ACTIVATION_PANELS = 8
# The longer side of the thumbnail MLflow's image card shows of a step image (its
# `mlflow.tracking.multimedia.COMPRESSED_IMAGE_SIZE`).
THUMBNAIL_SIZE = 256
# Seconds between system-metric samples (MLflow's default, 10, is longer than most course
# runs); MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it.
SYSTEM_METRICS_INTERVAL = 1.0
# The kind of experiment MLflow 3's UI offers to open in its model-training view rather than
# its GenAI one. MLflow 3.18's own UI decides the view from the `workflowType` the user
# chose (its selector, or `?workflowType=machine_learning` in the address), not from this
# tag; the tag is what it writes when a user picks a kind, and what builds that read it use.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
_VERSIONED_PACKAGES = ("tensorflow", "keras", "jax", "mlflow", "numpy", "scikit-learn")
_CHILD_TAGS: contextvars.ContextVar[tuple[str, dict[str, str]] | None] = contextvars.ContextVar(
    "child_tags", default=None
)


@contextlib.contextmanager
def tags_for_children_of(parent_run_id: str, tags: Mapping[str, str]) -> Iterator[None]:
    """Runs that a `RunRecorder` creates inside the block directly under `parent_run_id`
    carry `tags` from the call that creates them.

    A sweep stamps each config's run with its config hash this way: tags written in a later
    call would be missing from a run whose process was killed in between, and the sweep could
    not tell which config that run was.
    """
    token = _CHILD_TAGS.set((parent_run_id, {key: str(value) for key, value in tags.items()}))
    try:
        yield
    finally:
        _CHILD_TAGS.reset(token)


def flatten(params: Mapping, prefix: str = "") -> dict[str, str]:
    """Nested params as MLflow param strings: `{"opt": {"lr": 0.1}}` -> `{"opt.lr": "0.1"}`.

    Sequences are joined with commas (`hidden=(20, 3)` -> `"20,3"`, as the CLI takes them).
    """
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(str(item) for item in value)
        else:
            flat[name] = str(value)
    return {key: value[:_MAX_PARAM_LENGTH] for key, value in flat.items()}


def data_fingerprint(*arrays) -> str:
    """A short sha256 of arrays' shapes, dtypes and bytes: equal data, equal fingerprint.

    An argument may be a dict (or list) of arrays, the named inputs of a model.
    """
    digest = hashlib.sha256()
    for array in _flat_arrays(arrays):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _flat_arrays(structure) -> Iterator:
    """The arrays of nested dicts (in key order, keys included) and lists, depth first."""
    if isinstance(structure, Mapping):
        for key in sorted(structure, key=str):
            yield np.asarray(str(key))
            yield from _flat_arrays(structure[key])
    elif isinstance(structure, (list, tuple)):
        for item in structure:
            yield from _flat_arrays(item)
    else:
        yield structure


def git_commit(source: Path | None = None) -> str:
    """The commit the user's code is at: HEAD of the git repository holding the running script
    (or `source`, a file of that code, where the running script is someone else's, as in a
    Ray worker).

    The script is the file `__main__` was loaded from: `python script.py`, the module's file
    for `python -m package.module`, and the parent's in multiprocessing's spawned workers.
    That is the repository MLflow's `mlflow.source.git.commit` names (it looks at
    `sys.argv[0]`, the same file for both). An interactive session or a notebook has no
    such file (a notebook's `sys.argv[0]` is its kernel's launcher): there it is the working
    directory. Never where this package is installed: a user's run gets the user's commit.

    Returns:
        The commit's hash, with `+dirty` appended when tracked files differ from it or the
        script itself is not in it (untracked or ignored); "none" outside a git repository
        (or in one with no commit yet); "unknown" if git cannot be run.
    """
    script = _main_file() if source is None else Path(source).resolve()
    where = script.parent if script is not None else Path.cwd()
    try:
        head = _git(where, "rev-parse", "--verify", "HEAD")
        if head.returncode != 0:
            return "none"
        changed = _git(where, "status", "--porcelain", "--untracked-files=no").stdout.strip()
        if script is not None and not changed:
            changed = _git(where, "ls-files", "--error-unmatch", "--", script.name).returncode
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if changed else "")


def _main_file() -> Path | None:
    """The file `__main__` was loaded from, or `None` (interactive, `-c`, stdin, notebook)."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path or not Path(path).is_file():
        return None
    return Path(path).resolve()


def _git(where: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args], cwd=where, capture_output=True, text=True, timeout=5, check=False
    )


def library_versions() -> dict[str, str]:
    """`version.<package>` of each installed package, and `keras_backend` once Keras is in
    use (it is not imported here: recording needs no TensorFlow)."""
    keras = sys.modules.get("keras")
    versions = {"keras_backend": keras.backend.backend()} if keras is not None else {}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[f"version.{package}"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _model_requirements() -> list[str]:
    """The pip requirements of a logged Keras model: the installed Keras and its backend.

    Given explicitly because MLflow's own inference loads the model again in a fresh Python
    process that imports the framework: a hundred times the rest of the `log_model` call.
    """
    keras = sys.modules.get("keras")
    packages = ["keras", keras.backend.backend() if keras is not None else "tensorflow"]
    requirements = []
    for package in packages:
        try:
            requirements.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            requirements.append(package)
    return requirements


BUSY = ("database is locked", "database table is locked")
# Two runs logging the same dataset at once: the store looks the dataset up, then inserts it,
# and the loser of that race trips the unique key; on a retry it finds the dataset and links it.
DATASET_RACE = ("unique constraint failed: datasets.", "duplicate key value violates unique")


def with_retries(call, *args, attempts: int = 8, transient: tuple[str, ...] = BUSY, **kwargs):
    """Run an MLflow call, retrying with jittered backoff while the store is busy.

    SQLite raises "database is locked" when several processes write at once; that passes
    (`transient` names the errors that do, by their message). Anything else is raised at
    once: an unreachable tracking server has already been retried by MLflow's HTTP client
    (`MLFLOW_HTTP_REQUEST_MAX_RETRIES`, with backoff).
    """
    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except Exception as error:  # MLflow wraps SQLAlchemy and HTTP errors differently
            message = str(error).lower()
            passes = any(marker in message for marker in transient)
            if not passes or attempt == attempts - 1:
                raise
            time.sleep(min(5.0, 0.05 * 2**attempt) * (0.5 + random.random()))


def get_or_create_experiment(
    client: MlflowClient, name: str, description: str | None = None
) -> str:
    """The id of experiment `name`, created if missing: with `description` for the UI, and
    marked as model training (`EXPERIMENT_KIND`); an existing experiment is left as it is."""
    experiment = with_retries(client.get_experiment_by_name, name)
    if experiment is not None:
        return experiment.experiment_id
    tags = dict([EXPERIMENT_KIND])
    if description:
        tags[MLFLOW_RUN_NOTE] = description
    try:
        return with_retries(
            client.create_experiment,
            name,
            artifact_location=_artifact_location(client.tracking_uri),
            tags=tags,
        )
    except MlflowException:
        # Another process may have created it between our lookup and our create; if not,
        # the create's own error (a full disk, a read-only store) is the one to report.
        experiment = with_retries(client.get_experiment_by_name, name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment of a local SQLite store keeps its artifacts, when MLflow's
    own choice would be wrong; else None (MLflow or the server chooses).

    MLflow stores `./mlruns` as a plain path and later reads it as a URI, so a `%` in the
    working folder's name is decoded (`pct%41` becomes `pctA`): the artifacts would land in
    another folder. A `file:` URI names the folder itself; the experiment gets a folder of
    its own under `mlruns/`, since its id is not known before it is created.
    """
    local_root = Path.cwd() / "mlruns"
    if not str(tracking_uri).startswith("sqlite:") or "%" not in str(local_root):
        return None
    return (local_root / uuid.uuid4().hex).as_uri()


class ArtifactStoreError(RuntimeError):
    """A run's artifact (plot, table, file) could not be stored: the disk is full, the
    artifact directory is not writable, or the server refused the upload.

    Raised inside a `RunRecorder` block, it ends the run FAILED with this message as its
    `failure_reason`, so a resumed sweep runs the config again once the store is fixed.
    """


class _TrainingRecords:
    """What a run records about a trained model besides its numbers: the diagnosis, gradient
    health, figures, data and model. Mixed into `RunRecorder`, whose methods these use.

    The harness and a library user's `RecorderCallback` both record through these methods,
    so a run holds the same keys whichever made it.
    """

    def log_diagnosis(self, diagnosis) -> None:
        """Final train/dev error, avoidable bias, variance, and the `bias_variance` tag."""
        self.log_final({key: getattr(diagnosis, key) for key in DIAGNOSIS_NUMBERS})
        self.set_tags(
            {
                "bias_variance": diagnosis.label,
                "bayes_error": diagnosis.bayes_error,
                "remedies": "; ".join(diagnosis.remedies) or "none",
            }
        )

    def log_training(
        self,
        *,
        bias_variance=None,
        gradients=None,
        activations=None,
        figures: bool = True,
        iterations_per_epoch: int | None = None,
        start_step: int = 0,
    ) -> None:
        """Record what a `BiasVarianceCallback`, a `GradientNormLogger` and an
        `ActivationStatsLogger` measured.

        `bias_variance`: its last diagnosis (`log_diagnosis`) and `errors.png`, train and dev
        error over training with the Bayes error dashed. `gradients`: the `gradient_health`
        and `gradient_health_at_start` tags and `gradient_norms.png`, the layer x interval
        heatmap. `activations`: its measurement before training (which no epoch's logs
        hold) at `start_step`, the step training began at, under its `logs` keys; the
        `activation_health` and `activation_health_at_start` tags; `activation_std_by_depth.png`
        (a line per measurement, at most `ACTIVATION_LINES`) and `activation_histograms.png`
        (a panel per layer, at most `ACTIVATION_PANELS`).
        Figures only with `figures`; their x axis is in iterations when
        `iterations_per_epoch` is given, else in epochs. A callback that has measured
        nothing yet records nothing.
        """
        from reg_callbacks import plots

        if bias_variance is not None and bias_variance.diagnosis is not None:
            self.log_diagnosis(bias_variance.diagnosis)
            history = bias_variance.history
            if figures and history["epoch"]:
                steps = None
                if iterations_per_epoch:
                    steps = [(epoch + 1) * iterations_per_epoch for epoch in history["epoch"]]
                figure = plots.learning_curve(
                    history,
                    ["train_error", "dev_error"],
                    steps=steps,
                    ylabel="error",
                    title="Train and dev error",
                    hline=(bias_variance.bayes_error, "Bayes error"),
                )
                self.log_figure(figure, "errors.png")
        if gradients is not None and gradients.health is not None:
            self.set_tags(
                {
                    "gradient_health": gradients.health,
                    "gradient_health_at_start": gradients.health_history[0],
                }
            )
            if figures:
                figure = plots.gradient_heatmap(
                    gradients.history, gradients.epochs, iterations_per_epoch=iterations_per_epoch
                )
                self.log_figure(figure, "gradient_norms.png")
        if activations is not None and activations.health is not None:
            self._log_activations(activations, figures, iterations_per_epoch, start_step)

    def _log_activations(self, logger, figures, iterations_per_epoch, start_step) -> None:
        # The logger measures first as training begins: its first values are the start's.
        start = {key: values[0] for key, values in logger.history.items()}
        self.log_metrics([(start_step, start)])
        self.set_tags(
            {
                "activation_health": logger.health,
                "activation_health_at_start": logger.health_history[0],
            }
        )
        if figures:
            for name, figure in _activation_figures(logger, iterations_per_epoch).items():
                self.log_figure(figure, name)

    def log_data(self, *arrays) -> str:
        """Tag the run with the fingerprint of its data; returns it."""
        fingerprint = data_fingerprint(*arrays)
        self.set_tags({"data_hash": fingerprint})
        return fingerprint

    def log_datasets(
        self, splits: Mapping[str, tuple], *, name: str, source: str | None = None
    ) -> None:
        """Log arrays as the run's MLflow dataset inputs: `splits` maps a context
        (`training`, `validation`) to `(x, y)`; `x` may be a dict of arrays (named inputs).

        Each dataset is named `<name>/<context>`, its digest is `data_fingerprint(x, y)` and
        MLflow profiles its shapes. `source` is a file path (an existing file) or what
        generated the data (`noisy_moons(seed=1)`); `"train.csv + dev.csv"` gives each split
        its own file, in the order of `splits`. Without it, MLflow names the code that ran
        (the script or notebook, from the run's context).
        """
        import mlflow.data
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.dataset_source_registry import get_dataset_source_from_json
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        files = source.split(" + ") if source else [None]
        inputs = []
        for index, (context, (x, y)) in enumerate(splits.items()):
            file = files[min(index, len(files) - 1)]
            if file is None:
                where = None  # MLflow's code source, from the run's context
            elif Path(file).is_file():
                location = json.dumps({"uri": str(Path(file).resolve())})
                where = get_dataset_source_from_json(location, "local")
            else:
                where = CodeDatasetSource({"generator": source})
            dataset = mlflow.data.from_numpy(
                _as_numpy(x),
                targets=_as_numpy(y),
                name=f"{name}/{context}",
                digest=data_fingerprint(x, y),
                source=where,
            )
            inputs.append(
                DatasetInput(
                    Dataset(**dataset.to_dict()), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)]
                )
            )
        with_retries(
            self.client.log_inputs, self.run_id, datasets=inputs, transient=BUSY + DATASET_RACE
        )

    def log_model_summary(self, model) -> None:
        """`model_summary.txt`: Keras's `model.summary()` of the trained model."""
        lines: list[str] = []
        model.summary(print_fn=lambda line, **_: lines.append(line))
        self.log_text("\n".join(lines), "model_summary.txt")

    def log_keras_model(self, model, x_example) -> str:
        """Log `model` as the run's MLflow model `model` (Keras's native `.keras` format),
        with a signature inferred from `x_example` (an array, or a dict of arrays for named
        inputs) and the model's predictions on it; returns its `models:/<model id>` URI.

        Load it back with `mlflow.keras.load_model(f"runs:/{run_id}/model")`.
        """
        import mlflow.keras
        from mlflow.entities import LoggedModelOutput
        from mlflow.models import infer_signature

        x_example = _as_numpy(x_example)
        predictions = _as_numpy(model.predict_on_batch(x_example))
        signature = infer_signature(x_example, predictions)
        # `log_model` would attach the model to MLflow's fluent active run (and its active
        # experiment); this class has neither, so the model is created here, in the run's
        # experiment, and linked to the run explicitly. It reads the global tracking URI.
        logged = with_retries(
            self.client.create_logged_model,
            self.experiment_id,
            name="model",
            source_run_id=self.run_id,
            params=self.params,
        )
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.client.tracking_uri)
        try:
            info = self._store(
                "model",
                mlflow.keras.log_model,
                model,
                name="model",
                model_id=logged.model_id,
                signature=signature,
                pip_requirements=_model_requirements(),
            )
        finally:
            mlflow.set_tracking_uri(previous)
        with_retries(
            self.client.log_outputs,
            self.run_id,
            [LoggedModelOutput(logged.model_id, step=self.last_step)],
        )
        return info.model_uri


def _activation_figures(logger, iterations_per_epoch: int | None) -> dict:
    """`{artifact file: figure}` of an `ActivationStatsLogger`'s measurements."""
    from reg_callbacks import plots

    history, epochs = logger.history, logger.epochs
    std_keys = [key for key in history if key.startswith("act_std/")]
    shown = _spread(len(epochs), ACTIVATION_LINES)
    std = [[history[key][i] for key in std_keys] for i in shown]
    labels = [_measurement_label(epochs[i], iterations_per_epoch) for i in shown]
    paths = list(logger.histograms)
    histograms = {
        paths[i]: logger.histograms[paths[i]] for i in _spread(len(paths), ACTIVATION_PANELS)
    }
    return {
        "activation_std_by_depth.png": plots.activation_std_by_depth(std, labels),
        "activation_histograms.png": plots.activation_histograms(histograms, logger.ranges, epochs),
    }


def _spread(count: int, most: int) -> list[int]:
    """At most `most` indices of `count` items: the first, the last, evenly spaced between."""
    return sorted({int(i) for i in np.linspace(0, count - 1, min(count, most))})


def _measurement_label(epoch: int, iterations_per_epoch: int | None) -> str:
    """`"start"` for a measurement before training, else the epoch (or iteration) it ended."""
    if epoch < 0:
        return "start"
    if iterations_per_epoch:
        return f"iteration {(epoch + 1) * iterations_per_epoch}"
    return f"epoch {epoch + 1}"


def _as_numpy(structure):
    """An array, or a dict of arrays (named inputs or outputs), as NumPy for MLflow."""
    if isinstance(structure, Mapping):
        return {key: np.asarray(value) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)) and all(hasattr(v, "shape") for v in structure):
        return {str(index): np.asarray(value) for index, value in enumerate(structure)}
    return np.asarray(structure)


def _thumbnail(image):
    """`image` scaled to fit `THUMBNAIL_SIZE` pixels, as MLflow's `log_image` scales it."""
    width, height = image.size
    scale = THUMBNAIL_SIZE / max(width, height)
    return image.resize((max(1, int(width * scale)), max(1, int(height * scale))))


class RunRecorder(_TrainingRecords):
    """Records one training run in MLflow; a context manager.

    On entry it creates the run (nested under `parent_run_id` if given) with its params,
    tags, description, git commit, seed and library versions. On a clean exit the run is
    FINISHED; if the block raises, the run is FAILED with a `failure_reason` tag (KILLED on
    Ctrl-C) and the exception propagates.

    Args:
        experiment: MLflow experiment name (created if missing).
        run_name: What the run is, e.g. "regularization l2 λ=0.7".
        params: Hyperparameters, flattened with `flatten`.
        tags: Extra tags.
        description: Shown as the run's description in the MLflow UI.
        experiment_description: Shown on the experiment's page if this run creates it.
        tracking_uri: Defaults to `MLFLOW_TRACKING_URI`, else MLflow's local default
            (`mlflow.db` in the working directory).
        parent_run_id: Makes this a child run.
        system_metrics: Sample CPU, memory, disk and network use into `system/*` metrics
            every `SYSTEM_METRICS_INTERVAL` seconds while the run is open (MLflow's system
            metrics; needs `psutil`).

    Example:
        >>> with RunRecorder("demo", run_name="l2", params={"lambd": 0.7}) as recorder:
        ...     recording = recorder.keras_callback(bias_variance, gradients)
        ...     model.fit(x, y, epochs=20, callbacks=[bias_variance, gradients, recording])
    """

    def __init__(
        self,
        experiment: str,
        *,
        run_name: str | None = None,
        params: Mapping | None = None,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
        experiment_description: str | None = None,
        tracking_uri: str | None = None,
        parent_run_id: str | None = None,
        system_metrics: bool = False,
    ):
        self.experiment_description = experiment_description
        self.client = MlflowClient(tracking_uri or mlflow.get_tracking_uri())
        self.experiment = experiment
        self.run_name = run_name
        self.params = flatten(params or {})
        self.tags = {key: str(value) for key, value in (tags or {}).items()}
        if description:
            self.tags[MLFLOW_RUN_NOTE] = description
        if parent_run_id:
            self.tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.last_step = 0
        self.system_metrics = system_metrics
        self._monitor = None

    def __enter__(self) -> RunRecorder:
        experiment_id = get_or_create_experiment(
            self.client, self.experiment, self.experiment_description
        )
        tags = {
            MLFLOW_USER: getpass.getuser(),
            MLFLOW_SOURCE_NAME: " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500],
            "git_commit": git_commit(),
            **library_versions(),
            **self.tags,
        }
        if "seed" in self.params:
            tags.setdefault("seed", self.params["seed"])
        inherited = _CHILD_TAGS.get()
        if inherited is not None and inherited[0] == self.tags.get(MLFLOW_PARENT_RUN_ID):
            tags.update(inherited[1])
        run = with_retries(self.client.create_run, experiment_id, run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        self.experiment_id = experiment_id
        self.log_params(self.params)
        if self.system_metrics:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            # The monitor takes an explicit run id; `mlflow.start_run(log_system_metrics=...)`
            # would need MLflow's fluent active run, which this class stays out of.
            self._monitor = SystemMetricsMonitor(
                self.run_id,
                sampling_interval=SYSTEM_METRICS_INTERVAL,
                tracking_uri=self.client.tracking_uri,
            )
            self._monitor.start()
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if self._monitor is not None:
            self._monitor.finish()  # logs its last samples, so before the run ends
            self._monitor = None
        if exc_type is None:
            status = "FINISHED"
        else:
            status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
            reason = f"{exc_type.__name__}: {exc}" if str(exc) else exc_type.__name__
            with_retries(self.client.set_tag, self.run_id, "failure_reason", reason[:5000])
        with_retries(self.client.set_terminated, self.run_id, status=status)
        return False

    def log_params(self, params: Mapping) -> None:
        items = [Param(key, value) for key, value in flatten(params).items()]
        for start in range(0, len(items), _MAX_PARAMS):
            with_retries(
                self.client.log_batch, self.run_id, params=items[start : start + _MAX_PARAMS]
            )

    def set_tags(self, tags: Mapping) -> None:
        items = [RunTag(key, str(value)) for key, value in tags.items()]
        for start in range(0, len(items), _MAX_TAGS):
            with_retries(self.client.log_batch, self.run_id, tags=items[start : start + _MAX_TAGS])

    def log_metrics(self, rows: list[tuple[int, Mapping[str, float]]]) -> None:
        """Log `[(step, {key: value}), ...]` in as few calls as MLflow allows.

        Non-numeric values are skipped; NaN and inf are stored as they are (MLflow keeps
        them), because a diverging loss is worth seeing.
        """
        timestamp = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), timestamp, int(step))
            for step, values in rows
            for key, value in values.items()
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        ]
        for start in range(0, len(metrics), _MAX_METRICS):
            with_retries(
                self.client.log_batch, self.run_id, metrics=metrics[start : start + _MAX_METRICS]
            )
        if rows:
            self.last_step = max(self.last_step, max(int(step) for step, _ in rows))

    def log_final(self, values: Mapping[str, float]) -> None:
        """Log end-of-run values at the last step, so they are what the runs table shows."""
        self.log_metrics([(self.last_step, values)])

    def log_figure(self, figure, artifact_file: str) -> None:
        self._store(artifact_file, self.client.log_figure, self.run_id, figure, artifact_file)

    def log_step_images(self, images: list[tuple[str, int, object]]) -> None:
        """Step images `[(key, step, PIL image), ...]`: what the run's image card steps
        through, stored as `MlflowClient.log_image(run_id, image, key=key, step=step)`
        stores them, in one upload.

        `log_image` writes each image in three calls (the PNG, a WebP thumbnail for the
        card, the `mlflow.loggedImages` tag) and encodes the thumbnail at WebP's slowest
        setting: ~20 images cost a course run ~10 % more. Here the files are MLflow's (in
        its layout, `images/<key>+step+<step>+timestamp+<ms>+<uuid>.png` and
        `...+compressed.webp`, read by its UI), encoded fast, and uploaded together.
        """
        if not images:
            return
        timestamp = int(time.time() * 1000)
        with tempfile.TemporaryDirectory() as folder:
            for key, step, image in images:
                name = f"{key.replace('/', '~')}+step+{int(step)}+timestamp+{timestamp}"
                name = f"{name}+{uuid.uuid4()}"
                image.save(Path(folder) / f"{name}.png", compress_level=1)
                _thumbnail(image).save(Path(folder) / f"{name}+compressed.webp", method=0)
            self._store("images", self.client.log_artifacts, self.run_id, folder, "images")
        self.set_tags({MLFLOW_LOGGED_IMAGES: True})

    def log_dict(self, dictionary: Mapping, artifact_file: str) -> None:
        self._store(
            artifact_file, self.client.log_dict, self.run_id, dict(dictionary), artifact_file
        )

    def log_text(self, text: str, artifact_file: str) -> None:
        self._store(artifact_file, self.client.log_text, self.run_id, text, artifact_file)

    def log_table(self, columns: Mapping[str, list], artifact_file: str) -> None:
        """`{column: [values]}` as a table MLflow's UI renders (`artifact_file` ends `.json`)."""
        self._store(artifact_file, self.client.log_table, self.run_id, dict(columns), artifact_file)

    def log_file(self, local_path: str | Path) -> None:
        """Store a local file as an artifact at the run's artifact root."""
        self._store(Path(local_path).name, self.client.log_artifact, self.run_id, str(local_path))

    def _store(self, artifact_file: str, log, *args, **kwargs):
        try:
            return with_retries(log, *args, **kwargs)
        except (OSError, MlflowException) as exc:  # requests' errors are OSErrors too
            raise ArtifactStoreError(
                f"cannot store artifact {artifact_file!r} of run {self.run_id}: {exc}"
            ) from exc

    def keras_callback(self, *measured, **options):
        """A `RecorderCallback` into this run: every epoch's numeric `logs`, batched, and on
        request what `measured` callbacks found, the figures, data and model; its arguments
        are the callback's (put it after every callback it records)."""
        from reg_callbacks.mlflow_callback import RecorderCallback

        return RecorderCallback(self, *measured, **options)
