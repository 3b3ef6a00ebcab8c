"""What a run records besides its numbers, driven through the command line as a user would:
its train and dev sets as MLflow datasets, `model_summary.txt`, its model (unless
`--no-log-model`) and, with `--system-metrics`, MLflow's system metrics.
"""

import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from support import run_module

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
