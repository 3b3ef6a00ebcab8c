"""Tier 2: what RunRecorder writes to a real (temporary) MLflow store, read back."""

import json
import os
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from support import REPO

from reg_callbacks import (
    BiasVarianceCallback,
    GradientNormLogger,
    RunRecorder,
    TrainingDiverged,
    diagnose,
    train,
)
from reg_callbacks.tracking import (
    BUSY,
    DATASET_RACE,
    SYSTEM_METRICS_INTERVAL,
    data_fingerprint,
    flatten,
    git_commit,
    tags_for_children_of,
    with_retries,
)

pytestmark = pytest.mark.backends


def test_flatten_nested_params_and_sequences():
    assert flatten({"hidden": (20, 3), "opt": {"lr": 0.1, "name": "sgd"}, "data": None}) == {
        "hidden": "20,3",
        "opt.lr": "0.1",
        "opt.name": "sgd",
        "data": "None",
    }


def test_data_fingerprint_changes_with_the_data():
    a = np.arange(6.0).reshape(3, 2)
    assert data_fingerprint(a) == data_fingerprint(a.copy())
    assert data_fingerprint(a) != data_fingerprint(a + 1e-9)
    assert data_fingerprint(a) != data_fingerprint(a.reshape(2, 3))


def test_finished_run_has_params_tags_metrics_and_diagnosis():
    with RunRecorder(
        "demo",
        run_name="l2 λ=0.7",
        params={"lambd": 0.7, "hidden": (20, 3), "seed": 3},
        description="L2 closes the gap.",
    ) as recorder:
        recorder.log_metrics([(1000, {"loss": 0.5, "label": "skipped"}), (2000, {"loss": 0.4})])
        recorder.log_diagnosis(diagnose(0.02, 0.12))
        recorder.log_data(np.zeros(3))
    run = MlflowClient().get_run(recorder.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "l2 λ=0.7"
    assert run.data.params == {"lambd": "0.7", "hidden": "20,3", "seed": "3"}
    tags = run.data.tags
    assert tags["bias_variance"] == "high variance"
    assert tags["seed"] == "3" and tags["mlflow.note.content"] == "L2 closes the gap."
    assert tags["git_commit"] and tags["version.tensorflow"] and len(tags["data_hash"]) == 16
    assert tags["keras_backend"] == os.environ.get("KERAS_BACKEND", "tensorflow")
    assert tags["mlflow.user"] and tags["mlflow.source.name"]
    assert run.data.metrics["train_error"] == pytest.approx(0.02)
    assert run.data.metrics["variance"] == pytest.approx(0.10)
    assert "label" not in run.data.metrics
    loss = MlflowClient().get_metric_history(recorder.run_id, "loss")
    assert [(m.step, m.value) for m in loss] == [(1000, 0.5), (2000, 0.4)]
    final = MlflowClient().get_metric_history(recorder.run_id, "dev_error")
    assert [m.step for m in final] == [2000]  # logged at the last step, so it is "latest"


def test_exception_marks_run_failed_with_reason_and_propagates():
    with pytest.raises(FloatingPointError), RunRecorder("demo") as recorder:
        raise FloatingPointError("loss became nan by iteration 3000")
    run = MlflowClient().get_run(recorder.run_id)
    assert run.info.status == "FAILED"
    assert (
        run.data.tags["failure_reason"] == "FloatingPointError: loss became nan by iteration 3000"
    )


def test_keyboard_interrupt_marks_run_killed():
    with pytest.raises(KeyboardInterrupt), RunRecorder("demo") as recorder:
        raise KeyboardInterrupt
    assert MlflowClient().get_run(recorder.run_id).info.status == "KILLED"


def test_experiment_created_by_a_run_gets_its_description_and_kind():
    with RunRecorder("described", experiment_description="He beats zeros."):
        pass
    experiment = MlflowClient().get_experiment_by_name("described")
    assert experiment.tags["mlflow.note.content"] == "He beats zeros."
    # The value MLflow's UI bundle names CUSTOM_MODEL_DEVELOPMENT, the model-training kind.
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    MlflowClient().create_experiment("the user's own")
    with RunRecorder("the user's own"):
        pass
    assert (
        "mlflow.experimentKind" not in MlflowClient().get_experiment_by_name("the user's own").tags
    )


def test_child_runs_nest_under_parent():
    with RunRecorder("sweep", run_name="parent") as parent:
        with RunRecorder("sweep", run_name="child", parent_run_id=parent.run_id) as child:
            pass
    tags = MlflowClient().get_run(child.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.run_id


def test_children_of_a_parent_carry_its_tags_from_creation():
    with RunRecorder("sweep", run_name="parent") as parent:
        with tags_for_children_of(parent.run_id, {"config_hash": "abc"}):
            child = RunRecorder("sweep", parent_run_id=parent.run_id)
            # Read before `__exit__`: the tag must be there while the run is RUNNING.
            with child:
                running = MlflowClient().get_run(child.run_id)
                with RunRecorder("sweep", parent_run_id=child.run_id) as grandchild:
                    pass
        with RunRecorder("sweep", parent_run_id=parent.run_id) as after:
            pass

    def tags(recorder):
        return MlflowClient().get_run(recorder.run_id).data.tags

    assert running.info.status == "RUNNING" and running.data.tags["config_hash"] == "abc"
    assert "config_hash" not in tags(grandchild) and "config_hash" not in tags(after)
    assert "config_hash" not in tags(parent)


def test_more_than_one_batch_of_params_and_metrics():
    params = {f"p{i}": i for i in range(250)}
    rows = [(step, {f"m{i}": float(i) for i in range(30)}) for step in range(50)]  # 1500
    with RunRecorder("demo", params=params) as recorder:
        recorder.log_metrics(rows)
    run = MlflowClient().get_run(recorder.run_id)
    assert len(run.data.params) == 250
    assert len(MlflowClient().get_metric_history(recorder.run_id, "m29")) == 50


def test_keras_callback_logs_every_interval_at_its_iteration():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 2)).astype("float32"), rng.integers(0, 2, (64, 1)).astype("float32")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, "sigmoid")])
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    bias_variance = BiasVarianceCallback((x, y), (x, y))
    with RunRecorder("demo") as recorder:
        train(
            model,
            x,
            y,
            iterations=250,
            log_every=50,
            callbacks=[bias_variance, recorder.keras_callback(flush_secs=0)],
        )
        recorder.log_diagnosis(bias_variance.diagnosis)
    client = MlflowClient()
    loss = client.get_metric_history(recorder.run_id, "loss")
    assert [m.step for m in loss] == [50, 100, 150, 200, 250]
    train_error = client.get_metric_history(recorder.run_id, "train_error")
    assert [m.step for m in train_error] == [50, 100, 150, 200, 250, 250]
    assert train_error[-1].value == pytest.approx(bias_variance.diagnosis.train_error)


# Creates a run the way a user's script does and prints its id; the test reads the tag back.
RECORDING_SCRIPT = """
from reg_callbacks import RunRecorder

with RunRecorder("user code") as recorder:
    pass
print(recorder.run_id)
"""


def _git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
    done = subprocess.run(
        ["git", *identity, "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        env=_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _environment(*pythonpath: Path) -> dict[str, str]:
    """This process's environment (the test's MLflow store) without git's repository
    overrides, and with this project (and `pythonpath`) importable from anywhere."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    paths = [*map(str, pythonpath), str(REPO), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    return env


def _user_repo(path: Path) -> Path:
    """A git repository with one commit: a script that records a run, and a package module."""
    path.mkdir()
    _git(path, "init", "-q")
    (path / "run.py").write_text(RECORDING_SCRIPT)
    (path / "userpkg").mkdir()
    (path / "userpkg" / "__init__.py").write_text("")
    (path / "userpkg" / "experiment.py").write_text(RECORDING_SCRIPT)
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "user code")
    return path


def _recorded_commit(*python_args: str, cwd: Path, pythonpath: Path | None = None) -> str:
    """The `git_commit` tag of the run that `python *python_args` records."""
    done = subprocess.run(
        [sys.executable, *python_args],
        cwd=cwd,
        env=_environment(*filter(None, [pythonpath])),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.strip().splitlines()[-1]
    return MlflowClient().get_run(run_id).data.tags["git_commit"]


@pytest.fixture
def outside(tmp_path) -> Path:
    """A working directory in no git repository."""
    path = tmp_path / "outside"
    path.mkdir()
    return path


def test_git_commit_is_the_head_of_the_running_scripts_repository(tmp_path, outside):
    repo = _user_repo(tmp_path / "user")
    head = _git(repo, "rev-parse", "HEAD")
    # Started from a directory outside the repository: the script's location decides.
    assert _recorded_commit(str(repo / "run.py"), cwd=outside) == head


def test_git_commit_of_python_dash_m_is_the_modules_repository(tmp_path, outside):
    repo = _user_repo(tmp_path / "user")
    head = _git(repo, "rev-parse", "HEAD")
    module = ("-m", "userpkg.experiment")
    assert _recorded_commit(*module, cwd=outside, pythonpath=repo) == head


def test_git_commit_is_none_outside_a_repository_wherever_this_package_is(outside):
    (outside / "run.py").write_text(RECORDING_SCRIPT)
    assert _recorded_commit(str(outside / "run.py"), cwd=outside) == "none"


def _git_commit_as_run_from(monkeypatch, main_file: str | None, cwd: Path) -> str:
    """`git_commit()` in this process, as if `__main__` had been loaded from `main_file`."""
    main = types.ModuleType("__main__")
    if main_file is not None:
        main.__file__ = main_file
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.chdir(cwd)
    for name in [name for name in os.environ if name.startswith("GIT_")]:
        monkeypatch.delenv(name)
    return git_commit()


def test_git_commit_of_an_interactive_session_is_the_working_directorys(
    tmp_path, outside, monkeypatch
):
    repo = _user_repo(tmp_path / "user")
    head = _git(repo, "rev-parse", "HEAD")
    # A REPL, a notebook, `python -c` have no `__file__`; stdin's is not a file.
    for main_file in (None, "<stdin>"):
        assert _git_commit_as_run_from(monkeypatch, main_file, cwd=repo) == head
        assert _git_commit_as_run_from(monkeypatch, main_file, cwd=outside) == "none"


def test_git_commit_of_a_source_file_is_its_repositorys_whatever_runs(
    tmp_path, outside, monkeypatch
):
    # A Ray worker's script is Ray's own: the sweep names the file of the code it runs.
    repo = _user_repo(tmp_path / "user")
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    monkeypatch.chdir(outside)
    for name in [name for name in os.environ if name.startswith("GIT_")]:
        monkeypatch.delenv(name)
    assert git_commit(repo / "userpkg" / "experiment.py") == _git(repo, "rev-parse", "HEAD")
    assert git_commit() == "none"


def test_git_commit_is_none_in_a_repository_without_commits(outside, monkeypatch):
    _git(outside, "init", "-q")
    (outside / "run.py").write_text(RECORDING_SCRIPT)
    assert _git_commit_as_run_from(monkeypatch, str(outside / "run.py"), cwd=outside) == "none"


def test_git_commit_is_dirty_when_tracked_files_changed_or_the_script_is_not_committed(
    tmp_path, outside, monkeypatch
):
    repo = _user_repo(tmp_path / "user")
    head = _git(repo, "rev-parse", "HEAD")

    def commit_of(script: str) -> str:
        return _git_commit_as_run_from(monkeypatch, str(repo / script), cwd=outside)

    (repo / "new_script.py").write_text(RECORDING_SCRIPT)  # untracked: not in the commit
    assert commit_of("new_script.py") == head + "+dirty"
    assert commit_of("run.py") == head  # an untracked file elsewhere leaves run.py's commit
    (repo / ".gitignore").write_text("scratch_*.py\n")
    (repo / "scratch_1.py").write_text(RECORDING_SCRIPT)  # ignored: not in the commit either
    assert commit_of("scratch_1.py") == head + "+dirty"
    (repo / "userpkg" / "experiment.py").write_text("# edited\n")
    assert commit_of("run.py") == head + "+dirty"  # any tracked file changed
    _git(repo, "commit", "-q", "-am", "edited")
    assert commit_of("run.py") == _git(repo, "rev-parse", "HEAD") != head


# ---------------------------------------------------------------------------------------------
# Datasets, models and system metrics: what MLflow's UI reads from a run


def test_train_and_dev_sets_are_the_runs_dataset_inputs(tmp_path):
    rng = np.random.default_rng(0)
    x_train, y_train = rng.normal(size=(30, 2)), rng.integers(0, 2, (30, 1))
    x_dev, y_dev = rng.normal(size=(10, 2)), rng.integers(0, 2, (10, 1))
    (tmp_path / "train.csv").write_text("x\n")
    (tmp_path / "dev.csv").write_text("x\n")
    splits = {"training": (x_train, y_train), "validation": (x_dev, y_dev)}
    with RunRecorder("demo") as generated:
        generated.log_datasets(splits, name="moons", source="noisy_moons(seed=1)")
    with RunRecorder("demo") as from_files:
        from_files.log_datasets(splits, name="train", source="train.csv + dev.csv")

    def inputs(recorder):
        run = MlflowClient().get_run(recorder.run_id)
        return {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}

    logged = inputs(generated)
    assert set(logged) == {"training", "validation"}
    train, dev = logged["training"], logged["validation"]
    assert (train.name, dev.name) == ("moons/training", "moons/validation")
    assert train.digest == data_fingerprint(x_train, y_train) != dev.digest
    assert json.loads(train.profile)["features_shape"] == [30, 2]
    assert json.loads(dev.profile)["targets_shape"] == [10, 1]
    assert train.source_type == "code" and "noisy_moons(seed=1)" in train.source
    files = inputs(from_files)
    assert files["training"].source_type == files["validation"].source_type == "local"
    assert json.loads(files["training"].source)["uri"].endswith("train.csv")
    assert json.loads(files["validation"].source)["uri"].endswith("dev.csv")


MODEL_KINDS = ("sequential", "functional", "subclassed", "nested")


@pytest.mark.slow  # ~7 s a kind: saving, reading back and loading a .keras file
@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_logged_keras_model_loads_back_with_the_same_predictions(kind):
    import mlflow.keras
    import model_zoo

    case = getattr(model_zoo, kind)()
    case.model.fit(case.x, case.y, epochs=2, verbose=0)
    expected = np.asarray(case.model.predict(case.x, verbose=0))
    with RunRecorder("demo") as recorder:
        recorder.log_metrics([(2, {"loss": 0.5})])
        recorder.log_model_summary(case.model)
        uri = recorder.log_keras_model(case.model, case.x[:5])

    loaded = mlflow.keras.load_model(f"runs:/{recorder.run_id}/model")
    assert loaded is not case.model
    np.testing.assert_allclose(loaded.predict(case.x, verbose=0), expected, rtol=1e-6)
    client = MlflowClient()
    (model,) = client.search_logged_models([client.get_run(recorder.run_id).info.experiment_id])
    assert (model.model_uri, model.source_run_id, model.name) == (uri, recorder.run_id, "model")
    assert model.status.name == "READY"
    outputs = client.get_run(recorder.run_id).outputs.model_outputs
    assert [(o.model_id, o.step) for o in outputs] == [(model.model_id, 2)]
    signature = mlflow.models.get_model_info(uri).signature
    assert signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, *case.x.shape[1:])
    summary = Path(client.download_artifacts(recorder.run_id, "model_summary.txt")).read_text()
    assert "Total params" in summary
    assert all(name.split("/")[-1] in summary for name in case.layers if "/" not in name)


def test_system_metrics_are_sampled_while_the_run_is_open():
    with RunRecorder("demo", system_metrics=True) as recorder:
        time.sleep(2.5 * SYSTEM_METRICS_INTERVAL)
    metrics = MlflowClient().get_run(recorder.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics
    assert 0 < metrics["system/system_memory_usage_megabytes"]
    with RunRecorder("demo") as without:
        time.sleep(1.5 * SYSTEM_METRICS_INTERVAL)
    metrics = MlflowClient().get_run(without.run_id).data.metrics
    assert not any(key.startswith("system/") for key in metrics)


def test_with_retries_passes_the_dataset_race_only_where_asked():
    """Two runs logging one dataset at once: the loser trips the unique key, then finds it."""
    race = "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, ..."
    calls = []

    def log_inputs():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(race)
        return "linked"

    assert with_retries(log_inputs, transient=BUSY + DATASET_RACE) == "linked"
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(RuntimeError, match="UNIQUE constraint failed"):
        with_retries(log_inputs)  # elsewhere a unique key is no race: raised at once
    assert len(calls) == 1


# ---------------------------------------------------------------------------------------------
# The recorder's callback: what it records on request (the comparison with an experiment's run
# is in tests/experiments/test_recording.py)


def _moons(rows=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2)).astype("float32")
    return x, (x[:, :1] * x[:, 1:] > 0).astype("float32")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"log_model": True}, "log_model needs input rows for the model's signature"),
        ({"datasets": [(1, 2)]}, "datasets must map a context"),
        ({"datasets": {"training": np.zeros(3)}}, "datasets must map a context"),
    ],
)
def test_recorder_callback_refuses_bad_options(options, message):
    with RunRecorder("demo") as recorder, pytest.raises(ValueError, match=message):
        recorder.keras_callback(**options)


def test_recorder_callback_records_only_the_callbacks_it_knows():
    logger = keras.callbacks.History()
    with RunRecorder("demo") as recorder, pytest.raises(ValueError, match="one BiasVariance"):
        recorder.keras_callback(logger)
    bias_variance = BiasVarianceCallback(_moons(), _moons(seed=1))
    with RunRecorder("demo") as recorder, pytest.raises(ValueError, match="one BiasVariance"):
        recorder.keras_callback(bias_variance, bias_variance)


def test_a_diverged_run_ends_failed_with_its_reason_and_no_model():
    x, y = _moons()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(1e6), "mean_squared_error")
    bias_variance = BiasVarianceCallback((x, y), (x, y))
    with (
        pytest.raises(TrainingDiverged),
        warnings.catch_warnings(record=True) as caught,
        RunRecorder("demo") as recorder,
    ):
        warnings.simplefilter("always")
        recording = recorder.keras_callback(
            bias_variance, datasets={"training": (x, y)}, log_model=True, model_summary=True
        )
        train(model, x, y, iterations=300, log_every=100, callbacks=[bias_variance, recording])
    client = MlflowClient()
    run = client.get_run(recorder.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"].startswith("TrainingDiverged: loss became")
    assert not np.isfinite(run.data.metrics["loss"])  # the divergence is on record
    # Nothing half-logged: no model, not even a pending one; what was recorded is whole.
    assert client.search_logged_models([run.info.experiment_id]) == []
    assert run.outputs.model_outputs == []
    assert {"errors.png", "model_summary.txt"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)
    }
    assert run.data.tags["bias_variance"] == bias_variance.diagnosis.label
    assert any("the diverged model is not logged" in str(w.message) for w in caught)


# ---------------------------------------------------------------------------------------------
# The tools users already run: MLflow's autolog and Keras's TensorBoard see the callbacks' keys


def _net():
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(4, "tanh"), keras.layers.Dense(1, "sigmoid")]
    )
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    return model


@pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="mlflow.keras.autolog patches Keras's fit on every backend, but is tested on TF",
)
def test_mlflow_autolog_records_the_callbacks_keys():
    import mlflow

    x, y = _moons()
    # every=1: a measurement at every epoch (the default skips epochs it cannot afford).
    bias_variance = BiasVarianceCallback((x, y), (x, y), every=1)
    gradients = GradientNormLogger((x, y), every=1)
    mlflow.keras.autolog(log_models=False, log_datasets=False, silent=True)
    try:
        with mlflow.start_run() as run:
            _net().fit(x, y, epochs=3, verbose=0, callbacks=[bias_variance, gradients])
    finally:
        mlflow.keras.autolog(disable=True)
    client = MlflowClient()
    keys = [*gradients.history, "train_error", "dev_error", "avoidable_bias", "variance"]
    for key in keys:
        logged = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in logged] == [0, 1, 2], key
    dev_errors = [m.value for m in client.get_metric_history(run.info.run_id, "dev_error")]
    assert dev_errors == pytest.approx(bias_variance.history["dev_error"])


def test_tensorboard_writes_the_callbacks_keys_as_scalars(tmp_path):
    import tensorboard  # noqa: F401  a dev dependency: this test runs, never skips
    import tensorflow as tf

    x, y = _moons()
    gradients = GradientNormLogger((x, y))
    board = keras.callbacks.TensorBoard(str(tmp_path / "logs"))
    callbacks = [BiasVarianceCallback((x, y), (x, y)), gradients, board]
    _net().fit(x, y, epochs=2, verbose=0, callbacks=callbacks)
    tags = {
        value.tag
        for path in (tmp_path / "logs").rglob("events.out.tfevents*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    }
    expected = {f"epoch_{key}" for key in [*gradients.history, "train_error", "dev_error"]}
    assert expected <= tags


@pytest.mark.slow  # logs a model
def test_a_dict_input_model_logs_its_datasets_and_model_under_fit():
    """A structured-data model as Keras's examples write it: one named input a feature."""
    import mlflow.keras

    rng = np.random.default_rng(0)
    features = {"age": rng.normal(size=(48, 1)), "fare": rng.normal(size=(48, 1))}
    features = {key: value.astype("float32") for key, value in features.items()}
    target = (features["age"] + features["fare"] > 0).astype("float32")
    inputs = {key: keras.Input((1,), name=key) for key in features}
    hidden = keras.layers.Dense(4, activation="relu")(
        keras.layers.concatenate(list(inputs.values()))
    )
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    with RunRecorder("demo") as recorder:
        recording = recorder.keras_callback(
            datasets={"training": (features, target)}, dataset_name="passengers", log_model=True
        )
        model.fit(features, target, epochs=2, batch_size=16, verbose=0, callbacks=[recording])
    run = MlflowClient().get_run(recorder.run_id)
    (logged,) = run.inputs.dataset_inputs
    assert logged.dataset.name == "passengers/training"
    assert logged.dataset.digest == data_fingerprint(features, target) == run.data.tags["data_hash"]
    assert json.loads(logged.dataset.profile)["features_shape"] == {"age": [48, 1], "fare": [48, 1]}
    assert data_fingerprint({"fare": features["fare"], "age": features["age"]}, target) == (
        logged.dataset.digest  # the order of the dict's keys does not matter
    )
    loaded = mlflow.keras.load_model(f"runs:/{recorder.run_id}/model")
    np.testing.assert_allclose(
        loaded.predict(features, verbose=0), model.predict(features, verbose=0), rtol=1e-6
    )
