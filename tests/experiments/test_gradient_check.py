"""The gradient_check experiment: the course's test case (tier 1), every case end to end with
its MLflow record (tiers 3-4: a planted bug is flagged and named), and the CLI.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from support import REPO

from experiments.gradient_check import COURSE, Config, course_test_case, numpy_cost, run


def test_course_test_case_is_the_courses():
    x, y, weights = course_test_case(1)
    np.random.seed(1)
    assert np.array_equal(x, np.random.randn(4, 3).T)  # the course's first draw, as rows
    assert y.ravel().tolist() == [1.0, 1.0, 0.0]
    assert np.array_equal(weights["kernel_1"], np.random.randn(5, 4).T)
    assert [weights[f"kernel_{i}"].shape for i in (1, 2, 3)] == [(4, 5), (5, 3), (3, 1)]
    assert [weights[f"bias_{i}"].shape for i in (1, 2, 3)] == [(5,), (3,), (1,)]


def test_numpy_cost_is_the_courses_cross_entropy():
    x, y, w = course_test_case(1)
    a = x
    for i in (1, 2):
        a = np.maximum(a @ w[f"kernel_{i}"] + w[f"bias_{i}"], 0)
    p = 1 / (1 + np.exp(-(a @ w["kernel_3"] + w["bias_3"])))
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert numpy_cost(w, x, y) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"case": "bogus"}, "case must be one of all, 1d, net, l2, broken, trained; got 'bogus'."),
        ({"epsilon": 0.5}, "epsilon must be in (0, 0.01); got 0.5."),
        ({"lambd": -1.0}, "lambd must be >= 0; got -1.0."),
    ],
)
def test_config_names_the_bad_field(values, message):
    with pytest.raises(ValueError) as error:
        Config(**values)
    assert str(error.value) == message


@pytest.mark.slow
def test_all_cases_reproduce_the_course_and_flag_the_planted_bug(mlflow_store):
    summary = run(Config())
    for case in ("1d", "net", "l2", "broken"):
        print(f"{case}: {summary[case]['relative_error']:.3g}")

    one_d, net, l2, broken = (summary[c] for c in ("1d", "net", "l2", "broken"))
    # J = θx: the same float64 arithmetic as the course, hence the same number.
    assert one_d["relative_error"] == pytest.approx(COURSE["1d"], rel=1e-6)
    assert one_d["cost"] == 8.0 and one_d["verdict"] == "fine"
    # The correct net: far below the course's 1.19e-7 with Keras's from-logit cost, the same
    # order with the course's cost formula (cancellation in log(1 - a) for a = 0.99887).
    assert net["relative_error"] < 1e-8 and net["verdict"] == "fine"
    assert 1e-8 < net["relative_error_course_cost"] < 1e-6
    x, y, weights = course_test_case(1)
    assert net["cost"] == pytest.approx(numpy_cost(weights, x, y), rel=1e-12)
    # L2 on: J is the cross-entropy plus λ/(2m)·Σ‖W‖², and backprop matches it. (Keras keeps
    # the L2 factor λ/(2m) = 0.7/6 as float32, 4.3e-9 off, even in a float64 model.)
    assert l2["cost"] == pytest.approx(l2["cost_without_penalty"] + l2["penalty"], rel=1e-8)
    assert l2["relative_error"] < 1e-8 and l2["suspect_layers"] == "none"
    # The course's planted bugs (dW2 * 2, db1 * 4): its number, flagged, both variables named.
    assert broken["relative_error"] == pytest.approx(COURSE["broken"], rel=1e-6)
    assert broken["verdict"] == "likely a bug"
    assert broken["suspect_layers"] == "layer_1/bias, layer_2/kernel"

    client = MlflowClient(mlflow_store)
    mlflow_run = client.get_run(summary["run_id"])
    assert mlflow_run.info.status == "FINISHED"
    tags, metrics = mlflow_run.data.tags, mlflow_run.data.metrics
    assert tags["verdict/net"] == "fine" and tags["verdict/broken"] == "likely a bug"
    assert tags["suspect_layers/broken"] == broken["suspect_layers"]
    assert tags["suspect_layers/l2"] == "none"
    assert metrics["relative_error/broken"] == pytest.approx(broken["relative_error"])
    assert metrics["relative_error/broken/layer_3/kernel"] < 1e-6  # not flagged
    assert {"gradient_check.txt", "relative_errors.png", "summary.json"} <= {
        a.path for a in client.list_artifacts(summary["run_id"])
    }
    report = client.download_artifacts(summary["run_id"], "gradient_check.txt")
    text = Path(report).read_text()
    assert "suspect: layer_2/kernel" in text and "[l2]" in text

    # The course's last advice: a bug hidden while the weights are small shows after training.
    trained = summary["trained"]
    assert trained["relative_error_at_init"] < 1e-6 and trained["verdict_at_init"] == "fine"
    assert trained["largest_weight"] > 1.0  # past the clip, where the backward pass is wrong
    assert trained["verdict"] == "likely a bug"
    assert trained["suspect_layers"] == "clipped/kernel"
    assert tags["verdict_at_init/trained"] == "fine" and tags["verdict/trained"] == "likely a bug"


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.gradient_check", *args],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_one_case_help_and_bad_input(tmp_path):
    result = cli("--case", "1d", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1d/relative_error" in result.stdout and "2.919e-10" in result.stdout

    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0 and "--case {all,1d,net,l2,broken,trained}" in result.stdout

    for args, fragment in (
        (("--case", "bogus"), "error: case must be one of"),
        (("--epsilon", "0.5"), "error: epsilon must be in (0, 0.01); got 0.5."),
    ):
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [result.stderr.strip()]
        assert result.stderr.startswith(fragment), result.stderr
        assert "Traceback" not in result.stderr + result.stdout
