"""experiments.regularization: the L2/L1 mapping (tier 1) and the claims end to end (tier 4)."""

from __future__ import annotations

import re

import mlflow
import numpy as np
import pytest
from support import run_module

from experiments import regularization
from experiments.regularization import Config


def course_cost(weights, x, y, lambd, penalty="l2"):
    """The course's cost, by hand: cross-entropy of the ReLU-ReLU-sigmoid net + its penalty."""
    kernels = weights[0::2]
    a = x.astype(np.float64)
    for i, (w, b) in enumerate(zip(weights[0::2], weights[1::2], strict=True)):
        z = a @ w + b
        a = 1 / (1 + np.exp(-z)) if i == len(kernels) - 1 else np.maximum(z, 0)
    m = len(y)
    cross_entropy = -np.mean(y * np.log(a) + (1 - y) * np.log(1 - a))
    if penalty == "l2":
        return cross_entropy + lambd / (2 * m) * sum(np.sum(w**2) for w in kernels)
    return cross_entropy + lambd / m * sum(np.sum(np.abs(w)) for w in kernels)


@pytest.mark.parametrize("variant", ["l2", "l1"])
def test_keras_penalty_equals_the_course_formula(variant):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 2)).astype(np.float32)
    y = (rng.random((37, 1)) < 0.5).astype(np.float32)
    model = regularization.build_model(Config(variant=variant, lambd=0.7), 2, m=len(x))
    weights = [rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()]
    model.set_weights(weights)
    keras_loss = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)["loss"]
    expected = course_cost([w.astype(np.float64) for w in weights], x, y, 0.7, variant)
    unregularized = course_cost([w.astype(np.float64) for w in weights], x, y, 0.0)
    assert keras_loss == pytest.approx(expected, rel=1e-5)
    assert expected - unregularized > 0.1  # the penalty is a real part of what was compared


def test_penalty_factors():
    assert regularization.l2_factor(0.7, 211) == pytest.approx(0.7 / 422)
    assert regularization.l1_factor(0.7, 211) == pytest.approx(0.7 / 211)


def test_moons_bayes_error():
    assert regularization.moons_bayes_error(0.0) == 0.0
    # Two Monte Carlo estimates with 20 000 samples each gave 0.0868 and 0.0861.
    assert regularization.moons_bayes_error(0.3) == pytest.approx(0.086, abs=0.003)
    errors = [regularization.moons_bayes_error(noise) for noise in (0.1, 0.2, 0.3, 0.4)]
    assert errors == sorted(errors) and errors[0] < 0.002


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"keep_prob": 1.5}, "keep_prob must be in (0, 1]; got 1.5."),
        ({"keep_prob": 0.0}, "keep_prob must be in (0, 1]; got 0.0."),
        ({"lambd": -1.0}, "lambd must be >= 0; got -1.0."),
        ({"patience": 0}, "patience must be >= 1"),
        ({"n_train": 0}, "n_train must be >= 1; got 0."),
        ({"hidden": ()}, "hidden must be positive layer widths"),
        ({"dev_data": "dev.npz"}, "dev_data needs data"),
    ],
)
def test_config_validation(values, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        Config(**values)


def test_dropout_variant_puts_dropout_after_each_hidden_layer():
    model = regularization.build_model(Config(variant="dropout", keep_prob=0.8), 2, m=100)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Dense", "Dropout", "Dense", "Dropout", "Dense"]
    assert all(layer.rate == pytest.approx(0.2) for layer in model.layers[1::2])


# ---------------------------------------------------------------------------------------------
# Tier 4: the claims, end to end (each full run is 30 000 full-batch steps).


def _finished_run(run_id):
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    return run, artifacts


@pytest.mark.slow
def test_unregularized_net_overfits_and_l2_and_dropout_close_the_gap():
    none = regularization.run(Config(variant="none"))
    l2 = regularization.run(Config(variant="l2"))
    dropout = regularization.run(Config(variant="dropout"))
    bayes = regularization.moons_bayes_error(Config().noise)
    decay = 1 - 0.3 * 0.7 / Config().n_train
    # The unregularized net fits noise: train error below the Bayes error, a gap over 5 points.
    assert none["train_error"] < bayes and none["variance"] > 0.05
    assert none["label"] == "high variance"
    assert l2["variance"] < none["variance"] - 0.05 and l2["dev_error"] < none["dev_error"]
    assert l2["weight_sq_norm"] < 0.2 * none["weight_sq_norm"]
    # Dropout is milder (measured: gap 5.6 against 11.4 points, dev error 0.096 against 0.114).
    assert dropout["variance"] < none["variance"] - 0.03
    assert dropout["dev_error"] < none["dev_error"]
    assert l2["weight_decay_factor"] == pytest.approx(decay)
    for summary in (none, l2, dropout):
        run, artifacts = _finished_run(summary["run_id"])
        assert run.data.tags["bias_variance"] == summary["label"]
        assert float(run.data.tags["bayes_error"]) == pytest.approx(bayes)
        assert {"decision_boundary.png", "errors.png", "summary.json"} <= artifacts
    l2_run, _ = _finished_run(l2["run_id"])
    assert l2_run.data.metrics["weight_decay_factor"] == pytest.approx(decay)


@pytest.mark.slow
def test_early_stopping_records_stopped_and_best_and_restores_best():
    summary = regularization.run(Config(variant="early_stopping"))
    assert 0 < summary["best_iteration"] < summary["stopped_iteration"] < 30_000
    assert summary["stopped_iteration"] - summary["best_iteration"] == 3 * 1000
    # Restored weights are the best ones: the dev error is the lowest one logged.
    run, artifacts = _finished_run(summary["run_id"])
    history = mlflow.MlflowClient().get_metric_history(summary["run_id"], "dev_error")
    assert summary["dev_error"] == pytest.approx(min(m.value for m in history))
    assert summary["dev_error"] <= 0.11
    assert run.data.metrics["best_iteration"] == summary["best_iteration"]
    assert run.data.tags["early_stopping"] == "stopped"
    assert run.data.tags["bias_variance"] == summary["label"]
    assert "decision_boundary.png" in artifacts


@pytest.mark.slow
def test_l1_makes_weights_sparse():
    l1 = regularization.run(Config(variant="l1", iterations=5000))
    # Measured 0.40 and -0.024; the unregularized net has 0-1 % of its weights below 1e-3.
    assert l1["sparsity"] > 0.3 and l1["variance"] < 0.05
    run, artifacts = _finished_run(l1["run_id"])
    assert "bias_variance" in run.data.tags and "decision_boundary.png" in artifacts


@pytest.mark.slow
def test_user_data_file(tmp_path):
    moons = regularization.make_data(Config())
    path = tmp_path / "data.npz"
    np.savez(path, X=moons.x_train, y=moons.y_train, Xval=moons.x_dev, yval=moons.y_dev)
    summary = regularization.run(Config(variant="l2", data=str(path), iterations=500))
    run, artifacts = _finished_run(summary["run_id"])
    assert run.data.tags["data_source"] == str(path)
    assert float(run.data.tags["bayes_error"]) == 0.0  # unknown for a user's file
    assert "decision_boundary.png" in artifacts


@pytest.mark.slow
def test_cli_help_and_bad_flag():
    shown = run_module("experiments.regularization", "--help")
    assert shown.returncode == 0
    for flag in ("--variant {none,l2,l1,dropout,early_stopping}", "--lambd", "--keep-prob"):
        assert flag in shown.stdout
    bad = run_module("experiments.regularization", "--keep-prob", "1.5")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: keep_prob must be in (0, 1]; got 1.5."
