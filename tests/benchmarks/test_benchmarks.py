"""The benchmark scripts run end to end and report what they promise (no timing)."""

import importlib.util
import json
import math
import re
import subprocess
import sys

import pytest
from support import REPO

SCRIPT = REPO / "benchmarks" / "bench_training.py"
CALLBACKS_SCRIPT = SCRIPT.parent / "bench_callbacks.py"
VARIANTS = {"numpy", "fit", "train", "train+cb"}


@pytest.mark.slow
def test_benchmark_smoke_run_writes_finite_ratios(tmp_path):
    report_path = tmp_path / "bench.json"
    cases = "2-20-3-1 dropout,64-64-32-32-16-10 digits mb64"
    command = [sys.executable, str(SCRIPT), "--iterations", "40", "--log-every", "20"]
    command += ["--repeats", "1", "--fit-iterations", "2", "--cases", cases]
    # JAX's rows come from a child process of that backend, merged into this run's table.
    backends = ["tensorflow", "jax"] if importlib.util.find_spec("jax") else ["tensorflow"]
    command += ["--json", str(report_path), "--backends", ",".join(backends)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train/NumPy" in done.stdout and "train/fit" in done.stdout
    report = json.loads(report_path.read_text())
    assert {"machine", "iterations", "repeats", "log_every", "results"} <= set(report)
    rows = [(r["case"], r["backend"]) for r in report["results"]]
    assert rows == [(case, backend) for case in cases.split(",") for backend in backends]
    for result in report["results"]:
        assert set(result["ms_per_step"]) == VARIANTS
        assert {"train/numpy", "train+cb/train", "fit/numpy"} <= set(result["ratios"])
        numbers = [*result["ms_per_step"].values(), *result["ratios"].values()]
        numbers += [*result["trace_s"].values(), *result["final_cost"].values()]
        assert all(math.isfinite(value) and value >= 0 for value in numbers), result
    # The temporary MLflow store was used, not one in the working directory.
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_benchmark_refuses_an_unknown_case(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # it imports bench_report
    spec = importlib.util.spec_from_file_location("bench_training", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses look their module up
    spec.loader.exec_module(bench)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--cases", "no-such-net"])
    assert exit_info.value.code == 2
    assert "unknown case" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--backends", "tensorflow,torch"])
    assert exit_info.value.code == 2
    assert "--backends takes distinct names from ['tensorflow', 'jax']" in capsys.readouterr().err


def _table_rows(stdout: str) -> dict[str, list[str]]:
    """The printed table's rows by their first cell (rich's box drawing or plain `|`)."""
    rows = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│|┃]", line) if cell.strip()]
        if cells:
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
def test_callbacks_benchmark_smoke_run_prints_sane_ratios(tmp_path):
    report_path = tmp_path / "bench.json"
    kinds = ["structured tf.data", "conv1d timeseries"]
    command = [sys.executable, str(CALLBACKS_SCRIPT), "--repeats", "2", "--scale", "0.05"]
    command += ["--epochs", "2", "--kinds", ",".join(kinds), "--json", str(report_path)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _table_rows(done.stdout)
    assert rows["model"][2:5] == ["fit s/epoch", "+cb s/epoch", "+cb/fit"]
    for name in kinds:
        cells = rows[name]
        low, high = map(float, cells[5].split("-"))
        numbers = [float(cells[i]) for i in (2, 3, 4, 6, 7, 8, 9)] + [low, high]
        assert all(math.isfinite(value) and value > 0 for value in numbers), cells
        assert low <= float(cells[4]) <= high  # a median of the pairs lies within their range
    report = json.loads(report_path.read_text())
    assert [r["kind"] for r in report["results"]] == kinds
    for result in report["results"]:
        # The callbacks did their work: errors and gradient norms in the +cb fits' logs.
        assert result["logged"] and len(result["pairs"]) == 2
        # By default the callbacks measure the last epoch and, within their budget, others.
        assert 1 <= result["epochs_measured"] <= 2
        assert result["peak_mb"]["fit"] > 100 and result["peak_mb"]["+cb"] > 100


def test_callbacks_benchmark_refuses_an_unknown_model_kind(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(CALLBACKS_SCRIPT.parent))  # it imports bench_report
    spec = importlib.util.spec_from_file_location("bench_callbacks", CALLBACKS_SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)
    spec.loader.exec_module(bench)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--kinds", "resnet50"])
    assert exit_info.value.code == 2
    assert "unknown kind(s) ['resnet50']" in capsys.readouterr().err


@pytest.mark.slow
def test_recording_benchmark_times_the_recording_calls_inside_real_runs(tmp_path):
    report_path = tmp_path / "recording.json"
    script = SCRIPT.parent / "bench_recording.py"
    command = [sys.executable, str(script), "--experiment", "toy", "--rounds", "2"]
    done = subprocess.run(
        [*command, "--json", str(report_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert {mode: len(s) for mode, s in report["seconds"].items()} == {
        "bare": 2,
        "datasets": 2,
        "datasets+model": 2,
        "no step images": 2,
    }
    # Datasets are logged by the 6 runs that do not stub them out; models by the 4 that ask.
    assert len(report["call_seconds"]["log_datasets"]) == 6
    assert len(report["call_seconds"]["log_keras_model"]) == 4
    assert len(report["call_seconds"]["log_training"]) == 8  # every run records its training
    # Step images, summed a run, by the 6 runs that do not turn them off.
    assert len(report["call_seconds"]["step images drawn"]) == 6
    assert len(report["call_seconds"]["step images written"]) == 6
    shares = report["call_share_of_run"].values()
    assert all(0 < share < 1 for share in shares), report["call_share_of_run"]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


DECOMPOSITION_SCRIPT = SCRIPT.parent / "bench_decomposition.py"


def test_decomposition_benchmark_says_when_mlxtend_is_missing(tmp_path):
    # mlxtend made unimportable, as in an install without the [benchmarks] extra.
    code = (
        "import runpy, sys; sys.modules['mlxtend'] = None; "
        f"sys.argv = [{str(DECOMPOSITION_SCRIPT)!r}]; "
        f"runpy.run_path({str(DECOMPOSITION_SCRIPT)!r}, run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: mlxtend is not installed: this benchmark compares against it; "
        'pip install -e ".[benchmarks]"'
    ]


@pytest.mark.slow
def test_decomposition_benchmark_smoke_run_reports_both_tools(tmp_path):
    pytest.importorskip("mlxtend", reason="the [benchmarks] extra is not installed")
    report_path = tmp_path / "decomposition.json"
    command = [sys.executable, str(DECOMPOSITION_SCRIPT), "--rounds", "2", "--iterations", "5"]
    command += ["--pairs", "1", "--cases", "overfit 64x3 m=60", "--json", str(report_path)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads(report_path.read_text())["results"]
    ours, theirs = result["ours"], result["mlxtend"]
    assert ours["rounds"] == 2 and math.isfinite(result["speedup"]) and result["speedup"] > 0
    assert ours["expected_loss"] == pytest.approx(
        ours["noise_term"] + ours["bias"] + ours["variance"]
    )
    # mlxtend's terms are fractions of the 1000 test points (a shape slip makes them > 1).
    assert all(0 <= theirs[key] <= 1 for key in ("expected_loss", "bias", "variance"))
    assert 2 <= result["tolerance_run"]["rounds"] <= 40


BENCHMARKS = ["callbacks", "decomposition", "gradient_check", "recording", "sweep", "training"]


def test_every_benchmark_reports_its_machine_through_one_helper(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import bench_report

    monkeypatch.setattr(bench_report.os, "getloadavg", lambda: (3.0, 2.0, 1.0))
    machine = bench_report.machine((1.0, 1.5, 2.0), python="3.11")
    assert machine == {
        "cpus": bench_report.os.cpu_count(),
        "load_average_before": [1.0, 1.5, 2.0],
        "load_average_after": [3.0, 2.0, 1.0],
        "python": "3.11",
    }
    path = tmp_path / "report.json"
    assert bench_report.finish({"machine": machine}, str(path)) == 0
    assert "before/after: 1.00 / 3.00" in capsys.readouterr().out
    assert json.loads(path.read_text())["machine"] == machine
    for name in BENCHMARKS:  # none builds the dict by hand again
        source = (SCRIPT.parent / f"bench_{name}.py").read_text()
        assert '"machine": machine(' in source and "load_average_before" not in source, name
