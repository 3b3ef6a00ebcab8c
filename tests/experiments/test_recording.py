"""What a run records besides its numbers, driven through the command line as a user would:
its train and dev sets as MLflow datasets, `model_summary.txt`, its model (unless
`--no-log-model`) and, with `--system-metrics`, MLflow's system metrics.
"""

import json
import re
from dataclasses import dataclass

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from support import REPO, run_module

from experiments import toy
from reg_callbacks import classification_error


def only_run(tracking_uri: str, experiment: str):
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, run


@pytest.mark.slow
def test_the_model_and_system_metrics_from_the_command_line(tmp_path, mlflow_store):
    import mlflow.keras

    result = run_module("experiments.toy", "--iterations", "300", "--system-metrics", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    client, run = only_run(mlflow_store, "toy")
    assert run.info.status == "FINISHED"

    # The model MLflow hands back is the one that was diagnosed: its predictions on the dev
    # set give the run's logged dev error.
    data = toy.make_data(toy.Config())
    model = mlflow.keras.load_model(f"runs:/{run.info.run_id}/model")
    dev_error = classification_error(data.y_dev, model.predict(data.x_dev, verbose=0))
    assert dev_error == pytest.approx(run.data.metrics["dev_error"])
    assert [o.step for o in run.outputs.model_outputs] == [300]

    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation"}
    assert inputs["training"].name == "noisy_moons/training"
    assert json.loads(inputs["validation"].profile)["features_shape"] == list(data.x_dev.shape)
    assert run.data.tags["data_source"] in inputs["training"].source

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "model_summary.txt" in artifacts
    assert any(key.startswith("system/cpu") for key in run.data.metrics)


@pytest.mark.slow
def test_no_log_model_and_no_system_metrics(tmp_path, mlflow_store):
    result = run_module("experiments.toy", "--iterations", "100", "--no-log-model", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    client, run = only_run(mlflow_store, "toy")
    assert run.outputs.model_outputs == []
    assert not any(key.startswith("system/") for key in run.data.metrics)
    assert len(run.inputs.dataset_inputs) == 2  # datasets are always logged
    assert "model_summary.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}


@pytest.mark.slow
def test_a_loaded_file_is_the_datasets_source(tmp_path, mlflow_store):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 2)).astype("float32"), rng.integers(0, 2, 40)
    np.savez(tmp_path / "mine.npz", x_train=x[:30], y_train=y[:30], x_dev=x[30:], y_dev=y[30:])
    result = run_module(
        "experiments.initialization", "--data", "mine.npz", "--iterations", "20", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    _, run = only_run(mlflow_store, "initialization")
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert inputs["training"].name == "mine/training"
    assert inputs["training"].source_type == "local"
    assert json.loads(inputs["validation"].source)["uri"] == str(tmp_path / "mine.npz")
    assert json.loads(inputs["validation"].profile)["features_shape"] == [10, 2]


# ---------------------------------------------------------------------------------------------
# One recording path: a library user's `model.fit` with `RecorderCallback` against the harness


@dataclass(frozen=True)
class ConvConfig:
    """The config of the harness's side of the comparison (its fields become params)."""

    iterations: int = 4


def mnist_convnet(classes: int = 10):
    """Keras's "Simple MNIST convnet" example as its authors wrote it (fewer filters)."""
    import keras
    from keras import layers

    keras.utils.clear_session()  # the layers' names, as in a fresh script: conv2d, conv2d_1...
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(8, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(16, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(classes, activation="softmax"),
        ]
    )
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def digits(rows: int, seed: int):
    """Random 28×28 "images" with one-hot labels of 10 classes, as the example feeds them."""
    rng = np.random.default_rng(seed)
    x = rng.random((rows, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, rows)]
    return x, y


def recorded(run_id: str) -> dict:
    """What MLflow's client reads back of a run, as sets of names (MLflow's own tags aside)."""
    client = MlflowClient()
    run = client.get_run(run_id)
    return {
        "metrics": set(run.data.metrics),
        "tags": {key for key in run.data.tags if not key.startswith("mlflow.")},
        "artifacts": {a.path for a in client.list_artifacts(run_id)},
        "datasets": {
            (i.dataset.name.split("/")[-1], i.tags[0].value) for i in run.inputs.dataset_inputs
        },
        "model_steps": [o.step for o in run.outputs.model_outputs],
        "status": run.info.status,
    }


# What only the harness records: a topic's identity and where its data came from.
HARNESS_ONLY = {"tags": {"experiment", "data_source"}}


@pytest.mark.slow  # two runs that each log a convnet
def test_a_library_run_records_what_the_harness_records():
    from experiments.harness.datasets import DataSplit
    from experiments.harness.runner import tracked_run
    from reg_callbacks import (
        ActivationStatsLogger,
        BiasVarianceCallback,
        GradientNormLogger,
        RunRecorder,
    )

    (x, y), (x_dev, y_dev) = digits(64, seed=0), digits(32, seed=1)
    data = DataSplit(x, y, x_dev, y_dev, source="digits(seed=0)")
    with tracked_run(ConvConfig(), data, run_name="harness", experiment="compare") as tracked:
        tracked.train(
            mnist_convnet(),
            iterations=4,
            log_every=2,
            batch_size=32,
            jit_compile=False,
            activations=True,
        )
    harness = recorded(tracked.run_id)

    model = mnist_convnet()
    bias_variance = BiasVarianceCallback((x, y), (x_dev, y_dev))
    gradients = GradientNormLogger((x[:32], y[:32]))
    activations = ActivationStatsLogger(x[:32])
    with RunRecorder("compare", run_name="library") as recorder:
        recording = recorder.keras_callback(
            bias_variance,
            gradients,
            activations,
            datasets={"training": (x, y), "validation": (x_dev, y_dev)},
            dataset_name="digits",
            log_model=True,
            step_images=True,
        )
        model.fit(
            x,
            y,
            batch_size=32,
            epochs=2,
            verbose=0,
            callbacks=[bias_variance, gradients, activations, recording],
        )
    library = recorded(recorder.run_id)

    for kind in ("metrics", "tags", "artifacts", "datasets"):
        assert library[kind] == harness[kind] - HARNESS_ONLY.get(kind, set()), kind
    assert harness["status"] == library["status"] == "FINISHED"
    # Both ran 4 optimizer steps; the model is linked at the step it was trained to.
    assert harness["model_steps"] == library["model_steps"] == [4]
    assert {"errors.png", "gradient_norms.png", "model_summary.txt"} <= library["artifacts"]
    assert {"activation_std_by_depth.png", "activation_histograms.png"} <= library["artifacts"]
    assert {"bias_variance", "gradient_health", "gradient_health_at_start"} <= library["tags"]
    assert {"activation_health", "activation_health_at_start"} <= library["tags"]
    assert {"act_std/conv2d", "dead_fraction/conv2d_1", "z_std/dense"} <= library["metrics"]

    # The values are the callbacks' own, and the model loads back as trained.
    import mlflow.keras

    run = MlflowClient().get_run(recorder.run_id)
    assert run.data.metrics["dev_error"] == bias_variance.diagnosis.dev_error
    assert run.data.tags["gradient_health"] == gradients.health
    loaded = mlflow.keras.load_model(f"runs:/{recorder.run_id}/model")
    np.testing.assert_allclose(
        loaded.predict(x_dev, verbose=0), model.predict(x_dev, verbose=0), rtol=1e-5
    )

    # The README's table names every key of both runs, and who writes it.
    for key in library["metrics"] | library["tags"] | library["artifacts"]:
        assert "library" in who_writes(key), key
    for key in HARNESS_ONLY["tags"] | (harness["artifacts"] - library["artifacts"]):
        assert "experiments" in who_writes(key), key


def readme_keys_table() -> list[tuple[re.Pattern, str]]:
    """`(pattern of a key, who writes it)` for each key the README's MLflow table names:
    each backticked name of a row's first cell, `<...>` standing for any text."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## What each run stores in MLflow", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ")]
    header, *rows = rows
    assert [cell.strip("| ") for cell in header] == ["key", "kind", "from", "meaning"]
    table = []
    for key_cell, _, writer, _ in rows[1:]:
        for name in re.findall(r"`([^`]+)`", key_cell):
            parts = re.split(r"<[^>]+>", name.replace("*", "<any>"))
            table.append((re.compile(".+".join(map(re.escape, parts))), writer))
    return table


def who_writes(key: str) -> str:
    """The README's *from* cell of the row that names `key`; fails if none or several do."""
    writers = [writer for pattern, writer in readme_keys_table() if pattern.fullmatch(key)]
    assert len(writers) == 1, f"README's MLflow table names {key!r} {len(writers)} times"
    return writers[0]


def test_the_readme_keys_table_says_who_writes_each_key():
    assert who_writes("grad_norm/block/inner").startswith("library")
    assert who_writes("version.keras").startswith("library")
    assert who_writes("mlflow.runName") == "MLflow"
    assert who_writes("configs_finished") == who_writes("sweep.role") == "sweep"
    with pytest.raises(AssertionError, match="names 'no_such_key' 0 times"):
        who_writes("no_such_key")
