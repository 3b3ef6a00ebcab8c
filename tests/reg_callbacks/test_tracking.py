"""Tier 2: what RunRecorder writes to a real (temporary) MLflow store, read back."""

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from reg_callbacks import BiasVarianceCallback, RunRecorder, diagnose, train
from reg_callbacks.tracking import data_fingerprint, flatten, tags_for_children_of


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


def test_experiment_created_by_a_run_gets_its_description():
    with RunRecorder("described", experiment_description="He beats zeros."):
        pass
    experiment = MlflowClient().get_experiment_by_name("described")
    assert experiment.tags["mlflow.note.content"] == "He beats zeros."


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
