"""experiments.normalization: train-only statistics, curvature, and the speed-up end to end."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from support import run_module

from experiments import normalization
from experiments.normalization import Config


def test_generated_features_have_the_stated_scales_and_bayes_error():
    data = normalization.make_data(Config())
    x = data.x_train
    assert 1 <= x[:, 0].min() and x[:, 0].max() <= 1000 and x[:, 0].max() > 900
    assert 0 <= x[:, 1].min() and x[:, 1].max() <= 1
    assert data.bayes_error == 0.05 and data.y_train.shape == (500, 1)


def test_curvature_and_iterations_to():
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    # ¼ X̃ᵀX̃/m = diag(1/8, 1/2, 1/4): L = 1/2, condition number 4.
    assert normalization.curvature(x) == pytest.approx((0.5, 4.0))
    assert normalization.iterations_to(0.4, [0.7, 0.5, 0.39, 0.3]) == 3
    assert normalization.iterations_to(0.4, [0.7, 0.5, 0.39], log_every=10) == 30
    assert normalization.iterations_to(0.1, [0.7, 0.5]) is None


def test_normalization_uses_training_statistics_for_dev_too():
    data = normalization.make_data(Config())
    model, info = normalization.build_model(Config(), data.x_train, normalize=True)
    norm, dense = model.layers
    mean, std = data.x_train.mean(axis=0), data.x_train.std(axis=0)
    np.testing.assert_allclose(norm.mean.numpy().ravel(), mean, rtol=1e-4)
    np.testing.assert_allclose(norm.variance.numpy().ravel(), std**2, rtol=1e-4)
    dense.set_weights([np.array([[2.0], [-2.0]]), np.array([0.5])])
    shifted = (data.x_dev * [0.5, 0.5] + [500, 0.5]).astype(np.float32)  # other μ and σ

    def logistic(scaled):
        return 1 / (1 + np.exp(-(scaled @ dense.kernel.numpy() + dense.bias.numpy())))

    predicted = model.predict_on_batch(shifted)
    np.testing.assert_allclose(predicted, logistic((shifted - mean) / std), atol=1e-4)
    own_statistics = logistic((shifted - shifted.mean(axis=0)) / shifted.std(axis=0))
    assert np.abs(predicted - own_statistics).max() > 0.1  # the check can tell them apart
    assert info["condition_number"] < 1.1 and info["learning_rate"] > 1


def test_config_validation():
    with pytest.raises(ValueError, match=r"^scale must be >= 1; got 0.5.$"):
        Config(scale=0.5)
    with pytest.raises(ValueError, match=r"^flip_prob must be in \[0, 0.5\); got 0.5.$"):
        Config(flip_prob=0.5)
    with pytest.raises(ValueError, match=r"^learning_rate must be > 0 \(or None\); got -1.0.$"):
        Config(learning_rate=-1.0)


@pytest.mark.slow
def test_normalized_inputs_reach_the_target_raw_ones_do_not():
    summary = normalization.run(Config())
    assert summary["iterations_to_target/normalized"] <= 5
    assert summary["iterations_to_target/raw"] is None
    assert summary["final_cost/raw"] > 0.6 > 0.4 > summary["final_cost/normalized"]
    assert summary["condition_number/raw"] > 1e6 and summary["condition_number/normalized"] < 1.1
    client = mlflow.MlflowClient()
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["bias_variance"] == summary["label"]
    assert run.data.tags["reached_target/raw"] == "no"
    assert "iterations_to_target/raw" not in run.data.metrics
    assert run.data.metrics["iterations_to_target/normalized"] <= 5
    assert run.data.metrics["input_mean/0"] == pytest.approx(summary["input_mean/0"])
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"])}
    assert {"cost_raw_vs_normalized.png", "cost_contours.png", "errors.png"} <= artifacts


@pytest.mark.slow
def test_milder_scale_raw_gets_there_hundreds_of_times_slower():
    summary = normalization.run(Config(scale=10, iterations=1500, log_every=30))
    raw, normalized = (summary[f"iterations_to_target/{k}"] for k in ("raw", "normalized"))
    assert normalized == 30 and 600 <= raw <= 1500  # measured 930 (κ ≈ 600)


@pytest.mark.slow
def test_cli_help_and_bad_flag():
    shown = run_module("experiments.normalization", "--help")
    assert shown.returncode == 0 and "--target-cost FLOAT" in shown.stdout
    bad = run_module("experiments.normalization", "--scale", "0")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: scale must be >= 1; got 0.0."
