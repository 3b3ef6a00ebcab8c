"""The gradients experiment: the gain^L law exactly (tier 1), bad vs good init end to end with
the health labels and the activations in MLflow (tier 4), and the CLI.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from support import REPO, run_module

from experiments.gradients import (
    Config,
    build_model,
    first_broken_depth,
    law_depths,
    law_results,
    linear_probe,
    make_data,
    predicted_law,
    run,
)


@pytest.mark.parametrize("gain", [1.5, 0.5])
def test_deep_linear_net_follows_the_gain_power_law_exactly(gain):
    x = np.random.default_rng(0).normal(size=(16, 3))
    depth = 40
    activation, gradient_norms = linear_probe(x, gain, depth)
    rms = np.sqrt(np.mean(np.sum(x**2, axis=1)))
    # Activations: a_L = gain^L x.
    np.testing.assert_allclose(activation / rms, gain ** np.arange(1, depth + 1), rtol=1e-13)
    # Gradients of J = mean(a_L²): every layer gets gain^(2L-1) times its gain-1 value.
    at_gain_1 = 2 / x.size * np.linalg.norm(x.T @ x)
    for L in (1, 2, 13, depth):
        np.testing.assert_allclose(gradient_norms(L), gain ** (2 * L - 1) * at_gain_1, rtol=1e-13)
    predicted = predicted_law(x, gain, [depth])
    assert predicted["activation"][0] == pytest.approx(gain**depth * rms, rel=1e-15)
    assert predicted["gradient"][0] == pytest.approx(gain ** (2 * depth - 1) * at_gain_1)


def test_float32_breaks_where_float64_still_follows_the_law():
    x = np.random.default_rng(0).normal(size=(8, 2))
    result = law_results(x, 1.5, 120)
    summary = result["summary"]
    assert summary["gradient_max_rel_deviation"] < 1e-13
    assert summary["gradient_layer_spread"] < 1e-13
    # float32 overflows at ~3.4e38: the gradient (~1.5^(2L-1)) somewhere past L = 100.
    predicted = result["predicted"]["gradient"]
    breaks = summary["gradient_float32_breaks_at"]
    assert 100 < breaks <= 120
    assert predicted[breaks - 2] < 3.5e38 * 3 and predicted[breaks - 1] > 3.4e38 / 3
    assert summary["activation_float32_breaks_at"] == 0  # 1.5^120 ≈ 1e21 still fits


def test_trained_net_is_built_again_and_again_with_its_own_names():
    """Layer names do not depend on Keras's global counter (a sweep worker builds many nets)."""
    import keras

    for _ in range(15):
        keras.layers.Dense(1)  # advance the counter past "dense_12"
    cfg = Config(depth=12)
    names = [layer.name for layer in build_model(cfg, "he", 2).layers]
    assert names == [f"hidden_{i:02d}" for i in range(1, 13)] + ["output"]
    assert [layer.name for layer in build_model(cfg, "small", 2).layers] == names


def test_bisection_and_depth_grid():
    assert first_broken_depth(lambda depth: depth >= 37, 30, 40) == 37
    assert first_broken_depth(lambda depth: depth >= 1, 0, 1) == 1
    assert law_depths(150) == [1, 2, 3, 5, *range(10, 160, 10)]
    assert law_depths(3) == [1, 2, 3]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"inits": ("tiny",)}, "inits must be a list of small, large, xavier, he; got ('tiny',)."),
        ({"inits": ("he", "he")}, "inits must not repeat an init"),
        ({"activation": "sigmoid"}, "activation must be one of relu, tanh, linear; got 'sigmoid'."),
        ({"gains": (1.5, 0.0)}, "gains must be finite numbers > 0"),
        ({"depth": 0}, "depth must be in [1, 200]; got 0."),
        ({"part": "both"}, "part must be one of all, law, training; got 'both'."),
    ],
)
def test_config_names_the_bad_field(values, message):
    with pytest.raises(ValueError) as error:
        Config(**values)
    assert str(error.value).startswith(message)


def test_experiment_modules_import_without_tensorflow():
    code = textwrap.dedent(
        """
        import json, sys
        import experiments.gradients, experiments.gradient_check, experiments.initialization
        print(json.dumps([m for m in ("tensorflow", "keras") if m in sys.modules]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(result.stdout) == []


@pytest.mark.slow
def test_bad_init_vanishes_he_is_healthy_and_mlflow_has_it(mlflow_store):
    cfg = Config(max_depth=10, iterations=300)  # default nets (ReLU, depth 30), short training
    summary = run(cfg)
    small, he = summary["small"], summary["he"]
    print(
        {k: (v["gradient_health"], v["train_accuracy"]) for k, v in (("small", small), ("he", he))}
    )
    assert small["gradient_health_at_start"] == small["gradient_health"] == "vanishing"
    assert he["gradient_health_at_start"] == he["gradient_health"] == "healthy"
    assert small["first_layer_norm_at_start"] < 1e-7 < he["first_layer_norm_at_start"]
    assert he["train_accuracy"] > small["train_accuracy"] + 0.2
    law = summary["law/gain_1.5"]
    assert law["activation_max_rel_deviation"] < 1e-13
    assert law["gradient_max_rel_deviation"] < 1e-13

    client = MlflowClient(mlflow_store)
    parent = client.get_run(summary["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["gradient_health/small"] == "vanishing"
    assert parent.data.tags["gradient_health/he"] == "healthy"
    history = client.get_metric_history(summary["run_id"], "law/gain_0.5/activation")
    assert len(history) == 10
    assert {"depth_law.png", "gradient_heatmaps.png"} <= {
        a.path for a in client.list_artifacts(summary["run_id"])
    }
    for init, child in (("small", small), ("he", he)):
        run_ = client.get_run(child["run_id"])
        assert run_.info.status == "FINISHED"
        assert run_.data.tags["mlflow.parentRunId"] == summary["run_id"]
        assert run_.data.tags["gradient_health"] == child["gradient_health"]
        assert run_.data.tags["bias_variance"] == child["label"]
        assert run_.data.params["inits"] == init
        assert "gradient_norms.png" in {a.path for a in client.list_artifacts(child["run_id"])}

    # Each child run holds its activations: the initialization at step 0, then every interval.
    layers = [f"hidden_{i:02d}" for i in range(1, 31)] + ["output"]
    measurements = ("act_mean", "act_std", "dead_fraction", "saturated_fraction", "z_std")
    for child in (small, he):
        run_ = client.get_run(child["run_id"])
        keys = {key for key in run_.data.metrics if key.split("/")[0] in measurements}
        assert keys == {f"{m}/{layer}" for m in measurements for layer in layers}
        steps = [m.step for m in client.get_metric_history(child["run_id"], "act_std/hidden_01")]
        assert sorted(steps) == list(range(0, 301, 15))
        assert run_.data.tags["activation_health"] == child["activation_health"]
        assert run_.data.tags["activation_health_at_start"] == child["activation_health_at_start"]
        artifacts = {a.path for a in client.list_artifacts(child["run_id"])}
        assert {"activation_std_by_depth.png", "activation_histograms.png"} <= artifacts
    # N(0, 0.01²) shrinks the ReLU signal at every layer. He keeps its spread, but 16 units
    # on 2-D inputs are few: over half of some deep layer's units never fire on the probe.
    assert small["activation_health_at_start"] == "vanishing"
    assert he["activation_health_at_start"] == "dead units"
    # The recorded start is the initialization: a float64 NumPy forward pass of He's net.
    data = make_data(cfg)
    expected = numpy_relu_net(build_model(cfg, "he", 2).get_weights(), data.x_train[:256])
    for layer, (std, dead) in zip(layers, expected, strict=True):
        for key, value in ((f"act_std/{layer}", std), (f"dead_fraction/{layer}", dead)):
            (at_start,) = [
                m.value for m in client.get_metric_history(he["run_id"], key) if m.step == 0
            ]
            assert at_start == pytest.approx(value, rel=1e-4), key


def numpy_relu_net(weights, x) -> list[tuple[float, float]]:
    """`(std, dead fraction)` of each layer's output of `build_model`'s ReLU net (sigmoid
    output, whose dead fraction is 0: it is no ReLU)."""
    a, stats = np.asarray(x, np.float64), []
    pairs = list(zip(weights[::2], weights[1::2], strict=True))
    for i, (kernel, bias) in enumerate(pairs):
        z = a @ kernel.astype(np.float64) + bias
        last = i == len(pairs) - 1
        a = 1 / (1 + np.exp(-z)) if last else np.maximum(z, 0)
        stats.append((a.std(), 0.0 if last else np.mean(~(a > 0).any(axis=0))))
    return stats


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return run_module("experiments.gradients", *args, cwd=cwd, timeout=300)


def test_cli_help_and_bad_input(tmp_path):
    """Both fail or exit before TensorFlow is imported, so this is quick (no training)."""
    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in ("--depth INT", "--activation {relu,tanh,linear}", "--inits", "--gains"):
        assert flag in result.stdout, flag

    result = cli("--inits", "small,bogus", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: inits must be"), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
