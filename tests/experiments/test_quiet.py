"""Quiet by default: the commands hide TensorFlow's and MLflow's INFO lines, keep the rest."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support import REPO

from experiments.harness import quiet


def test_start_up_notices_are_dropped_and_other_native_lines_written_back(capfd):
    with quiet._native_stderr_filtered():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called ...\n")
        os.write(2, b"I0000 00:00:1.0  1 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"E0000 00:00:1.0  1 cuda_platform.cc:52] failed call to cuInit: x\n")
        os.write(2, b"W0000 00:00:1.0  1 op_kernel.cc:1858] OP_REQUIRES failed\n")
        os.write(2, b"E0000 00:00:1.0  1 other.cc:7] a real error\n")
    assert capfd.readouterr().err.splitlines() == [
        "W0000 00:00:1.0  1 op_kernel.cc:1858] OP_REQUIRES failed",
        "E0000 00:00:1.0  1 other.cc:7] a real error",
    ]


def test_the_variable_asks_for_verbose_too(monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_VARIABLE, raising=False)
    assert not quiet.verbose_requested() and quiet.verbose_requested(True)
    monkeypatch.setenv(quiet.VERBOSE_VARIABLE, "1")
    assert quiet.verbose_requested()


def toy(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
    env.pop("MLFLOW_LOGGING_LEVEL", None)
    env.pop(quiet.VERBOSE_VARIABLE, None)
    env["PYTHONPATH"] = str(REPO)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{cwd / 'fresh.db'}"  # a new store: MLflow says so
    return subprocess.run(
        [sys.executable, "-m", "experiments.toy", "--iterations", "10", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_a_run_prints_its_table_only_and_verbose_brings_the_logs_back(tmp_path):
    quiet_run = toy(cwd=tmp_path)
    assert quiet_run.returncode == 0 and quiet_run.stderr == "", quiet_run.stderr
    assert "train_error" in quiet_run.stdout
    (tmp_path / "fresh.db").unlink()
    loud = toy("--verbose", cwd=tmp_path)
    assert loud.returncode == 0, loud.stderr
    assert "Creating initial MLflow database tables" in loud.stderr
