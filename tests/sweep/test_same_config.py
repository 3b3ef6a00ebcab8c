"""A config's numbers do not depend on what its worker ran before it.

Workers share one compiled training loop among the configs of an architecture
(`reg_callbacks.backends.tensorflow.compiled_for_model`), copying each config's weights,
optimizer state and dropout seed state in and out. A config must then train exactly as it
does alone in a fresh worker: same train/dev error and the same final cost. Run through the
sweep as a user runs it, one worker, so the second grid's config reuses the first one's loop.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ITERATIONS = 2000


def sweep_rows(tmp_path: Path, name: str, runs: list[dict]) -> list[dict]:
    grid = tmp_path / f"{name}.yaml"
    grid.write_text(yaml.safe_dump({"name": name, "runs": runs}), encoding="utf-8")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "experiments.sweep", "--grid", str(grid)]
    result = subprocess.run(
        [*command, "--workers", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr
    with open(out / f"{name}.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["status"] for row in rows] == ["FINISHED"] * len(runs)
    return rows


def final_cost(run_id: str) -> float:
    from mlflow.tracking import MlflowClient

    return MlflowClient().get_run(run_id).data.metrics["loss"]


def config(init: str, seed: int, **params) -> dict:
    return {
        "experiment": "initialization",
        "params": {"init": init, "seed": seed, "iterations": ITERATIONS, **params},
    }


def test_a_config_trains_the_same_alone_and_after_another_config_in_its_worker(tmp_path):
    (alone,) = sweep_rows(tmp_path, "alone", [config("random", 2)])
    first, after = sweep_rows(
        tmp_path, "after", [config("he", 1, learning_rate=0.05), config("random", 2)]
    )
    assert first["train_error"] != after["train_error"] or first["dev_error"] != after["dev_error"]
    for key in ("train_error", "dev_error"):
        assert after[key] == alone[key]
    # The same XLA program on the same inputs: bit-identical, not only to float32 round-off.
    assert final_cost(after["run_id"]) == final_cost(alone["run_id"])
