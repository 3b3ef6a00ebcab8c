"""experiments.recipe: the remedy ladder and up-front refusals (tier 1), the CLI, and the
recipe reaching "low bias & low variance" from both bad starts, read back from MLflow (slow)."""

import dataclasses

import pytest
from mlflow.tracking import MlflowClient
from support import run_module

from experiments.recipe import (
    FIRST_L2,
    MAX_DEPTH,
    MAX_ITERATIONS,
    MAX_L2,
    MAX_WIDTH,
    Config,
    next_step,
    run,
    starting_point,
)
from reg_callbacks.diagnosis import HIGH_BIAS, LOW_BOTH, diagnose

P = 0.1
HIGH_BIAS_ONLY = diagnose(0.30, 0.31, P)
HIGH_VARIANCE_ONLY = diagnose(0.05, 0.25, P)
HIGH_BOTH = diagnose(0.30, 0.45, P)


def config(**values):
    return starting_point(Config(**values))


def test_starting_point_fills_the_preset_and_keeps_overrides():
    assert (config().width, config().n_train) == (1, 1024)
    start = config(start="overfit", n_train=128, l2=0.01)
    assert (start.width, start.depth, start.n_train, start.l2) == (64, 3, 128, 0.01)


def test_bias_first_bigger_then_deeper_then_longer():
    cfg = config()
    assert next_step(cfg, HIGH_BIAS_ONLY)[1:] == ("bigger network", "width 1→4")
    assert next_step(cfg, HIGH_BOTH)[1:] == ("bigger network", "width 1→4")  # bias first
    wide = dataclasses.replace(cfg, width=MAX_WIDTH)
    assert next_step(wide, HIGH_BIAS_ONLY)[0].depth == 2
    deep = dataclasses.replace(wide, depth=MAX_DEPTH)
    assert next_step(deep, HIGH_BIAS_ONLY)[1:] == ("train longer", "iterations 1000→2000")
    assert next_step(dataclasses.replace(deep, iterations=MAX_ITERATIONS), HIGH_BIAS_ONLY) is None


def test_variance_more_data_then_regularization():
    cfg = config(start="overfit", max_n_train=1000)
    steps = []
    while (step := next_step(cfg, HIGH_VARIANCE_ONLY)) is not None:
        cfg, remedy, change = step
        steps.append(change)
    assert steps[:3] == ["m 64→256", "m 256→1000", f"L2 λ 0→{FIRST_L2:g}"]
    assert cfg.l2 == MAX_L2 and len(steps) < 12  # the ladder ends
    dropout = config(start="overfit", n_train=1024, regularizer="dropout")
    assert next_step(dropout, HIGH_VARIANCE_ONLY)[2] == "dropout 0→0.1"
    assert next_step(config(), diagnose(0.11, 0.12, P)) is None  # nothing to fix


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"start": "great"}, "start must be one of underfit, overfit; got 'great'."),
        ({"width": 0}, "width must be >= 1 (or None); got 0."),
        ({"width": 1000}, f"width must be <= {MAX_WIDTH}"),
        ({"target_bias": 0}, "target_bias must be in (0, 1]; got 0."),
        ({"target_bias": 0.005, "target_variance": 0.005}, "below the dev-error noise"),
        ({"n_train": 5000}, "n_train must be <= max_n_train (1024)"),
    ],
)
def test_bad_start_or_unreachable_target_is_refused_up_front(values, message):
    with pytest.raises(ValueError) as error:
        config(**values)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_tight_target_is_allowed_when_the_bayes_error_is_zero():
    assert config(flip_prob=0.0, target_bias=0.001, target_variance=0.001).target_bias == 0.001


def cli(*args, cwd):
    return run_module("experiments.recipe", *args, cwd=cwd, timeout=120)


def stored_runs(store, tmp_path):
    if not (tmp_path / "mlflow.db").exists():
        return []
    client = MlflowClient(store)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_cli_help_and_refusals_create_no_run(tmp_path, mlflow_store):
    shown = cli("--help", cwd=tmp_path)
    assert shown.returncode == 0
    assert "--target-bias" in shown.stdout and "--max-rounds" in shown.stdout

    for args in (["--target-bias", "0.001", "--target-variance", "0.001"], ["--n-train", "5000"]):
        refused = cli(*args, cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), refused.stderr
    assert stored_runs(mlflow_store, tmp_path) == []


def children_of(client, parent):
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    return sorted(runs, key=lambda child: int(child.data.tags["round"]))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("start", "max_changes", "remedy"),
    [("underfit", 2, "width "), ("overfit", 4, "m 64→256")],
)
def test_recipe_reaches_low_bias_and_low_variance(mlflow_store, start, max_changes, remedy):
    summary = run(Config(start=start), tracking_uri=mlflow_store)

    assert summary["outcome"] == "reached target", summary["message"]
    assert summary["label"] == LOW_BOTH
    assert 2 <= summary["rounds"] <= max_changes + 1
    assert summary["path"][0].startswith(remedy)
    client = MlflowClient(mlflow_store)
    parent = client.get_run(summary["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["outcome"] == "reached target"
    assert parent.data.tags["bias_variance"] == LOW_BOTH
    assert parent.data.params["final.width"] == str(summary["final"]["width"])
    children = children_of(client, parent)
    assert len(children) == summary["rounds"]
    assert children[-1].data.tags["bias_variance"] == LOW_BOTH
    assert all(child.data.tags["bias_variance"] != LOW_BOTH for child in children[:-1])
    assert [child.data.tags["change"] for child in children[1:]] == summary["path"]
    files = {f.path for f in client.list_artifacts(summary["run_id"])}
    assert {"path.md", "path.json", "path.png", "summary.json"} <= files
    bias = client.get_metric_history(summary["run_id"], "avoidable_bias")
    assert sorted(m.step for m in bias if m.step >= 1) == list(range(1, summary["rounds"] + 1))


@pytest.mark.slow
def test_spent_budget_ends_with_a_clear_outcome(mlflow_store):
    summary = run(Config(start="underfit", max_rounds=1), tracking_uri=mlflow_store)

    assert summary["outcome"] == "budget spent"
    assert summary["message"].startswith("budget spent: 1 round(s) used, still high bias")
    assert "width 1→4" in summary["message"] and "--max-rounds" in summary["message"]
    client = MlflowClient(mlflow_store)
    parent = client.get_run(summary["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["outcome"] == "budget spent"
    assert parent.data.tags["bias_variance"] == summary["label"] == HIGH_BIAS
    assert len(children_of(client, parent)) == 1


def test_round_bars_show_both_gaps_and_both_targets():
    from reg_callbacks.plots import recipe_rounds

    figure = recipe_rounds(
        ["1\nstart", "2\nwidth 1→4"],
        [0.29, 0.0],
        [0.03, 0.02],
        target_bias=0.05,
        target_variance=0.04,
    )
    ax = figure.axes[0]
    assert len(ax.patches) == 4  # two bars a round
    assert [p.get_height() for p in ax.patches] == [0.29, 0.0, 0.03, 0.02]
    assert {line.get_ydata()[0] for line in ax.get_lines()} == {0.05, 0.04, 0}
