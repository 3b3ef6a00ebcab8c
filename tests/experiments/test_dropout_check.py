"""experiments.dropout_check: Keras's Dropout is inverted, fresh every call, and off at predict."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from support import run_module

from experiments import dropout_check
from experiments.dropout_check import Config


@pytest.mark.parametrize("keep_prob", [0.5, 0.7, 0.86])
def test_dropout_preserves_the_mean_and_is_identity_at_prediction(keep_prob):
    cfg = Config(keep_prob=keep_prob)
    model = dropout_check.build_model(cfg, 1000)
    values = dropout_check.measure(model, np.ones((1000, 1000), dtype=np.float32))
    assert values["train_mean_ratio"] == pytest.approx(1.0, abs=0.02)
    assert values["kept_fraction"] == pytest.approx(keep_prob, abs=0.01)
    assert values["kept_scale"] == pytest.approx(1 / keep_prob, rel=1e-6)
    changed = 2 * keep_prob * (1 - keep_prob)  # kept once and dropped once, or the reverse
    assert values["mask_changed_fraction"] == pytest.approx(changed, abs=0.01)
    assert values["inference_max_abs_change"] == 0.0
    assert values["predict_max_abs_change"] == 0.0


def test_mean_is_preserved_on_varied_inputs_too():
    x = np.random.default_rng(0).uniform(0.5, 1.5, size=(1000, 1000)).astype(np.float32)
    model = dropout_check.build_model(Config(keep_prob=0.6), 1000)
    assert dropout_check.measure(model, x)["train_mean_ratio"] == pytest.approx(1.0, abs=0.02)


def test_config_validation():
    with pytest.raises(ValueError, match=r"^keep_prob must be in \(0, 1\]; got 1.5.$"):
        Config(keep_prob=1.5)
    with pytest.raises(ValueError, match="^size must be >= 10"):
        Config(size=3)


def test_run_records_the_measurements_in_mlflow():
    summary = dropout_check.run(Config(size=400))
    assert summary["inverted"] and summary["off_at_prediction"] and summary["fresh_mask"]
    run = mlflow.MlflowClient().get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["inverted"] == "yes" and run.data.tags["off_at_prediction"] == "yes"
    assert run.data.metrics["kept_scale"] == pytest.approx(1 / 0.7, rel=1e-6)
    assert run.data.params["keep_prob"] == "0.7"


@pytest.mark.slow
def test_cli_help_and_bad_flag():
    shown = run_module("experiments.dropout_check", "--help")
    assert shown.returncode == 0 and "--keep-prob FLOAT" in shown.stdout
    bad = run_module("experiments.dropout_check", "--keep-prob", "0")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: keep_prob must be in (0, 1]; got 0.0."
