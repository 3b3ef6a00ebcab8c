"""experiments.tradeoff: validation and the curve's reading (tier 1), the CLI, and the
capacity sweep end to end on data with a known Bayes error (slow)."""

import subprocess
import sys

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from support import REPO, run_module

from experiments.harness.datasets import boundary_labels
from experiments.tradeoff import Config, make_data, read_curve, run
from reg_callbacks.diagnosis import HIGH_BIAS


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"widths": (0, 4)}, "widths must be positive layer widths like 1,4,16; got (0, 4)."),
        ({"rounds": 1}, "rounds must be >= 2; got 1."),
        ({"tolerance": 0.0}, "tolerance must be > 0 (or None); got 0.0."),
        ({"resample": "jackknife"}, "resample must be one of bootstrap, seed, both"),
        ({"flip_prob": 0.7}, "flip_prob must be in [0, 0.5]; got 0.7."),
    ],
)
def test_bad_config_names_the_field(values, message):
    with pytest.raises(ValueError) as error:
        Config(**values)
    assert message in str(error.value)


def curve(train_error, expected_loss, se=0.01):
    widths = [1, 4, 16, 64, 256][: len(train_error)]
    return {
        "width": widths,
        "train_error": train_error,
        "expected_loss": expected_loss,
        "se_expected_loss": [se] * len(widths),
    }


def test_the_curve_reads_its_trade_off_point_and_a_second_descent():
    # Train error reaches 0 at width 16 (1/100 rounds to 0 examples: < 0.5 of one), and the
    # dev loss falls from 0.30 there to 0.22 at 256: more than 2 standard errors.
    reading = read_curve(
        curve([0.3, 0.1, 0.0, 0.0, 0.0], [0.35, 0.2, 0.3, 0.25, 0.22]), n_train=100
    )
    assert reading["best_width"] == 4 and reading["best_expected_loss"] == 0.2
    assert reading["interpolation_width"] == 16
    assert reading["double_descent"].startswith("yes: the dev-set loss falls from 0.300")
    assert "to 0.220 at width 256" in reading["double_descent"]


def test_the_curve_says_no_when_the_loss_does_not_fall_again_or_nothing_interpolates():
    flat = read_curve(curve([0.3, 0.1, 0.0, 0.0], [0.35, 0.2, 0.3, 0.285], se=0.01), n_train=100)
    assert flat["double_descent"].startswith("no: past the interpolation threshold (width 16)")
    never = read_curve(curve([0.3, 0.1, 0.02], [0.35, 0.2, 0.3]), n_train=100)
    assert never["interpolation_width"] is None
    assert never["double_descent"].startswith("not measured: no width fits")
    last = read_curve(curve([0.3, 0.1, 0.0], [0.35, 0.2, 0.3]), n_train=100)
    assert last["double_descent"].startswith("not measured: the interpolation threshold is the")


def cli(*args, cwd):
    return run_module("experiments.tradeoff", *args, cwd=cwd, timeout=120)


def test_cli_help_and_bad_values_are_one_line_and_create_no_run(tmp_path, mlflow_store):
    shown = cli("--help", cwd=tmp_path)
    assert shown.returncode == 0
    assert "--widths" in shown.stdout and "--tolerance" in shown.stdout
    for args, message in [
        (("--rounds", "1"), "error: rounds must be >= 2; got 1."),
        (("--widths", "0,4"), "error: widths must be positive layer widths like 1,4,16"),
        (("--resample", "jackknife"), "error: resample must be one of 'bootstrap', 'seed'"),
    ]:
        bad = cli(*args, cwd=tmp_path)
        assert bad.returncode == 2, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
        assert bad.stderr.startswith(message), bad.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_module_import_stays_tensorflow_free():
    code = "import sys, experiments.tradeoff; print('tensorflow' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.slow
def test_capacity_sweep_end_to_end_on_known_bayes_data(mlflow_store):
    cfg = Config(widths=(1, 16), n_dev=400, iterations=1500, rounds=12, tolerance=None)
    summary = run(cfg, tracking_uri=mlflow_store, log_model=False)

    data, _ = make_data(cfg)
    flipped = np.mean(data.y_dev.reshape(-1) != boundary_labels(data.x_dev))  # independent
    for width in cfg.widths:
        child = summary[f"{width}x1"]
        parts = child["decomposition"]
        assert parts["rounds"] == 12
        assert parts["noise"] == pytest.approx(flipped)
        # Domingos's identity, on the sample.
        total = parts["noise_term"] + parts["bias"] + parts["variance"]
        assert parts["expected_loss"] == pytest.approx(total, abs=1e-9)
        # The rounds' mean dev loss and the one trained net's dev error are draws of the same
        # kind (the rounds train on bootstrap samples): within 0.1 of each other.
        assert abs(parts["expected_loss"] - child["dev_error"]) < 0.1
    # The claim, with a stated margin: a 1-unit net cannot draw a circle (bias ≥ 0.25, with
    # 0.40 measured on the defaults), 16 units can (bias ≤ 0.15, 0.09 measured); so the
    # trade-off point is not the smallest net, and the smallest is labelled high bias.
    assert summary["1x1"]["decomposition"]["bias"] >= 0.25
    assert summary["16x1"]["decomposition"]["bias"] <= 0.15
    assert summary["best_width"] == 16
    assert summary["1x1"]["label"] == HIGH_BIAS

    client = MlflowClient(mlflow_store)
    parent = client.get_run(summary["run_id"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"tradeoff.png", "tradeoff.json", "summary.json"} <= artifacts
    assert parent.data.tags["tradeoff/best_width"] == "16"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(int(c.data.tags["width"]) for c in children) == [1, 16]
    for child in children:
        assert {"decomposition/bias", "decomposition/variance", "train_error"} <= set(
            child.data.metrics
        )
    history = client.get_metric_history(parent.info.run_id, "tradeoff/bias")
    assert sorted(m.step for m in history) == [1, 16]
