"""experiments.bias_variance: presets and validation (tier 1), the CLI, and the four labels
from real training on data with a known Bayes error (slow)."""

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient
from support import REPO, run_module

from experiments.bias_variance import PRESETS, REGIMES, Config, run, settings
from reg_callbacks.diagnosis import HIGH_BIAS, HIGH_BOTH, HIGH_VARIANCE, LOW_BOTH


def test_settings_fill_the_preset_and_keep_overrides():
    underfit = settings(Config(), "underfit")
    assert (underfit.regime, underfit.width, underfit.n_train) == ("underfit", 1, 1000)
    overfit = settings(Config(regime="overfit", n_train=200, flip_prob=0.2), "overfit")
    assert (overfit.width, overfit.n_train, overfit.flip_prob) == (64, 200, 0.2)
    assert set(PRESETS) == set(REGIMES)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"regime": "great"}, "regime must be one of all, underfit"),
        ({"flip_prob": 0.6}, "flip_prob must be in [0, 0.5]; got 0.6."),
        ({"regime": "good", "dropout": 1.0}, "dropout must be in [0, 1)"),
        ({"curve_sizes": (1, 10)}, "curve_sizes must be training-set sizes >= 2"),
        ({"width": 8}, "model settings (width) apply to one regime; add --regime"),
    ],
)
def test_bad_config_names_the_field(values, message):
    with pytest.raises(ValueError) as error:
        Config(**values)
    assert message in str(error.value)


def cli(*args, cwd):
    return run_module("experiments.bias_variance", *args, cwd=cwd, timeout=120)


def test_cli_help_and_a_bad_value_create_no_run(tmp_path, mlflow_store):
    shown = cli("--help", cwd=tmp_path)
    assert shown.returncode == 0
    assert "--flip-prob" in shown.stdout and "--regime" in shown.stdout

    bad = cli("--regime", "overfit", "--flip-prob", "0.7", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: flip_prob must be in [0, 0.5]; got 0.7."]
    assert stored_runs(mlflow_store, tmp_path) == []


def stored_runs(store, tmp_path):
    if not (tmp_path / "mlflow.db").exists():
        return []
    client = MlflowClient(store)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_module_import_stays_tensorflow_free():
    code = "import sys, experiments.bias_variance; print('tensorflow' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.slow
def test_all_four_labels_against_the_known_bayes_error(mlflow_store):
    p = 0.1
    # One learning-curve point at m = 60 (the overfit run's own, so it is not retrained).
    summary = run(Config(flip_prob=p, curve_sizes=(60,)), tracking_uri=mlflow_store)

    labels = {regime: summary[regime]["label"] for regime in REGIMES}
    assert labels == {
        "underfit": HIGH_BIAS,
        "overfit": HIGH_VARIANCE,
        "both": HIGH_BOTH,
        "good": LOW_BOTH,
    }
    for regime in REGIMES:
        s = summary[regime]
        assert s["avoidable_bias"] == pytest.approx(s["train_error"] - p)
        assert s["variance"] == pytest.approx(s["dev_error"] - s["train_error"])
    assert summary["underfit"]["avoidable_bias"] > 0.15  # a 1-unit net cannot draw a circle
    assert summary["overfit"]["train_error"] < 0.02  # memorizes its 60 noisy labels
    assert summary["overfit"]["variance"] > 0.15
    assert abs(summary["good"]["avoidable_bias"]) < 0.05 and summary["good"]["variance"] < 0.05
    # The blurry-image case: the good net's errors read "high bias" if Bayes were 0.
    assert summary["good"]["label_if_bayes_0"] == HIGH_BIAS

    client = MlflowClient(mlflow_store)
    parent = client.get_run(summary["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["all_four_labels"] == "True"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{summary['run_id']}'",
    )
    tags = {child.data.tags["regime"]: child.data.tags for child in children}
    assert {regime: tags[regime]["bias_variance"] for regime in REGIMES} == labels
    assert tags["good"]["bias_variance_if_bayes_0"] == HIGH_BIAS
    assert all(tag["bayes_error"] == str(p) for tag in tags.values())
    parent_files = {f.path for f in client.list_artifacts(summary["run_id"])}
    assert {"regimes.md", "regimes.json", "learning_curves.png"} <= parent_files
    curve = client.get_metric_history(summary["underfit"]["run_id"], "learning_curve/dev_error")
    assert [m.step for m in curve] == [60]
    child_files = {f.path for f in client.list_artifacts(summary["underfit"]["run_id"])}
    assert "learning_curve.png" in child_files


def test_learning_curve_figure_has_both_curves_and_the_bayes_line():
    from reg_callbacks.plots import error_vs_training_size

    figure = error_vs_training_size(
        [30, 100, 1000], [0.0, 0.05, 0.09], [0.3, 0.2, 0.12], bayes_error=0.1, mark=100
    )
    ax = figure.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["train error", "dev error", "Bayes error 0.1", "this run (m=100)"]
    assert ax.get_xscale() == "log"
