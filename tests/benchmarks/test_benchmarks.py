"""The benchmark script runs end to end and reports what its README promises (no timing)."""

import importlib.util
import json
import math
import subprocess
import sys

import pytest
from support import REPO

SCRIPT = REPO / "benchmarks" / "bench_training.py"
VARIANTS = {"numpy", "fit", "train", "train+cb"}


@pytest.mark.slow
def test_benchmark_smoke_run_writes_finite_ratios(tmp_path):
    report_path = tmp_path / "bench.json"
    cases = "2-20-3-1 dropout,64-64-32-32-16-10 digits mb64"
    command = [sys.executable, str(SCRIPT), "--iterations", "40", "--log-every", "20"]
    command += ["--repeats", "1", "--fit-iterations", "2", "--cases", cases]
    command += ["--json", str(report_path)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train/NumPy" in done.stdout
    report = json.loads(report_path.read_text())
    assert {"machine", "iterations", "repeats", "log_every", "results"} <= set(report)
    assert [r["case"] for r in report["results"]] == cases.split(",")
    for result in report["results"]:
        assert set(result["ms_per_step"]) == VARIANTS
        assert {"train/numpy", "train+cb/train", "fit/numpy"} <= set(result["ratios"])
        numbers = [*result["ms_per_step"].values(), *result["ratios"].values()]
        numbers += [*result["trace_s"].values(), *result["final_cost"].values()]
        assert all(math.isfinite(value) and value >= 0 for value in numbers), result
    # The temporary MLflow store was used, not one in the working directory.
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_benchmark_refuses_an_unknown_case(capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_training", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses look their module up
    spec.loader.exec_module(bench)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--cases", "no-such-net"])
    assert exit_info.value.code == 2
    assert "unknown case" in capsys.readouterr().err
