"""A sweep on Keras's JAX backend: its workers inherit `KERAS_BACKEND`, every run says which
backend it ran on, and the initialization claims hold there too (the course's numbers: zeros
stay at 0.50/0.50, high bias; He trains to ~0.99/0.96)."""

import csv
import importlib.util
import os
import subprocess
import sys

import pytest
import yaml
from mlflow.tracking import MlflowClient

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs the [jax] extra"),
]


def test_a_jax_sweep_reproduces_the_initialization_claims_and_tags_its_backend(
    tmp_path, mlflow_store
):
    grid = tmp_path / "init-jax.yaml"
    runs = [{"experiment": "initialization", "grid": {"init": ["zeros", "he"], "seed": [1]}}]
    grid.write_text(yaml.safe_dump({"name": "init-jax", "runs": runs}), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", "--grid", str(grid), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert done.returncode == 0, done.stderr[-3000:]

    with open(tmp_path / "sweep_results" / "init-jax.csv", newline="") as file:
        rows = {row["param.init"]: row for row in csv.DictReader(file)}
    zeros, he = rows["zeros"], rows["he"]
    assert float(zeros["train_error"]) == pytest.approx(0.50, abs=0.03)
    assert float(zeros["dev_error"]) == pytest.approx(0.50, abs=0.03)
    assert zeros["label"] == "high bias" and zeros["gradient_health"] == "vanishing"
    assert float(he["train_error"]) == pytest.approx(1 - 0.993, abs=0.03)
    assert float(he["dev_error"]) == pytest.approx(1 - 0.96, abs=0.03)
    assert he["gradient_health"] == "healthy"

    client = MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("sweep-init-jax")
    tags = sorted(
        (r.data.tags.get("sweep.role"), r.data.tags.get("keras_backend"))
        for r in client.search_runs([experiment.experiment_id])
    )
    # Each child's tag comes from its own Keras (the worker's backend), the parent's from
    # the environment the workers inherited.
    assert tags == [("child", "jax"), ("child", "jax"), ("parent", "jax")]
