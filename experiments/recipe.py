"""The basic recipe, run automatically: fix bias first, then variance, until both are low.

Each round trains a fresh net on data with a known Bayes error p (labels of a circle
boundary flipped with probability p), diagnoses it against p and applies the course's next
remedy. High bias: a bigger network (width ×4 up to 256, then one more layer up to 4), then
training longer (iterations ×2). High variance: more data (m ×4 up to `--max-n-train`), then
regularization (L2 λ = 0.001, ×3 a round; or dropout +0.1 a round). It stops when avoidable
bias and variance are both within target, when no remedy is left, or after `--max-rounds`.

Measured at p = 0.1, seed 0, default targets 0.05 / 0.05 (train / dev error per round):

- from `underfit` (1 × 1 net, m = 1024, 1000 iterations), 2 rounds: 0.388 / 0.414 high bias
  → width 1→4 → 0.103 / 0.127, low bias & low variance.
- from `overfit` (64 × 3 net, m = 64, 3000 iterations), 4 rounds: 0.000 / 0.235 high variance
  → m 64→256 → 0.000 / 0.236 → m 256→1024 → 0.073 / 0.161 (variance 0.088, still high)
  → L2 λ 0→0.001 → 0.099 / 0.115, low bias & low variance.

Every round is an MLflow child run (tag `bias_variance`) under one parent run, which holds the
path (`path.md`, `path.json`, per-round bars `path.png`), the final config (`final.*` params,
`final_config` tag), the last round's errors and `bias_variance` label, and the `outcome`
tag: "reached target", "budget spent" or "no remedy left".

Run: `python -m experiments.recipe --start overfit` (or underfit, or give `--width`, `--depth`,
`--n-train`, `--iterations`, `--l2`, `--dropout` to start elsewhere); ~15 s of CPU from
underfit, ~35 s from overfit. A target tighter than the dev set can resolve at this Bayes
error, or a start outside the recipe's limits, is refused before any run starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Literal

from experiments.harness.checks import at_least, in_range, one_of, positive
from experiments.harness.cli import main
from experiments.harness.datasets import DataSplit, flipped_boundary
from experiments.harness.models import binary_mlp_for
from experiments.harness.runner import DIAGNOSIS_NUMBERS, parent_run, tracked_run
from reg_callbacks.diagnosis import DEFAULT_BIAS_THRESHOLD, DEFAULT_VARIANCE_THRESHOLD

MODEL_FIELDS = ("width", "depth", "n_train", "iterations", "l2", "dropout")
STARTS = {
    "underfit": dict(width=1, depth=1, n_train=1024, iterations=1000, l2=0.0, dropout=0.0),
    "overfit": dict(width=64, depth=3, n_train=64, iterations=3000, l2=0.0, dropout=0.0),
}
MAX_WIDTH, MAX_DEPTH, MAX_ITERATIONS = 256, 4, 16_000  # the bias remedies stop here
FIRST_L2, MAX_L2, MAX_DROPOUT = 1e-3, 0.1, 0.5  # and the regularizers here


@dataclass(frozen=True)
class Config:
    start: Literal["underfit", "overfit"] = "underfit"  # the preset the fields below override
    width: int | None = None  # hidden units a layer; none = the start's preset
    depth: int | None = None  # hidden layers; none = the start's preset
    n_train: int | None = None  # training examples; none = the start's preset
    iterations: int | None = None  # full-batch Adam steps; none = the start's preset
    l2: float | None = None  # L2 strength λ on every kernel; none = the start's preset
    dropout: float | None = None  # drop rate after each hidden layer; none = the preset
    target_bias: float = DEFAULT_BIAS_THRESHOLD  # stop when avoidable bias <= this ...
    target_variance: float = DEFAULT_VARIANCE_THRESHOLD  # ... and variance <= this
    max_rounds: int = 6  # trainings at most
    max_n_train: int = 1024  # the most data the "more data" remedy can get
    regularizer: Literal["l2", "dropout"] = "l2"  # the variance remedy once data runs out
    flip_prob: float = 0.1  # label-flip probability p = the Bayes error
    n_dev: int = 1000
    learning_rate: float = 0.01
    seed: int = 0

    def __post_init__(self):
        one_of(self, "start", tuple(STARTS))
        one_of(self, "regularizer", ("l2", "dropout"))
        positive(self, "width", "depth", "n_train", "iterations", optional=True)
        for name, value, cap in (
            ("width", self.width, MAX_WIDTH),
            ("depth", self.depth, MAX_DEPTH),
            ("iterations", self.iterations, MAX_ITERATIONS),
        ):
            if value is not None and value > cap:
                raise ValueError(f"{name} must be <= {cap}, where the recipe stops; got {value}.")
        in_range(self, "l2", 0, MAX_L2, optional=True)
        in_range(self, "dropout", 0, MAX_DROPOUT, optional=True)
        in_range(self, "target_bias", 0, 1, "(]")
        in_range(self, "target_variance", 0, 1, "(]")
        positive(self, "max_rounds", "n_dev", "learning_rate")
        at_least(self, 2, "max_n_train")
        in_range(self, "flip_prob", 0, 0.5)
        # Meeting both targets puts the dev error at most p + target_bias + target_variance,
        # but even the Bayes-optimal boundary's dev error scatters around p by this much.
        noise = 2 * math.sqrt(self.flip_prob * (1 - self.flip_prob) / self.n_dev)
        if self.target_bias + self.target_variance < noise:
            raise ValueError(
                f"target_bias + target_variance = {self.target_bias + self.target_variance:g} "
                f"is below the dev-error noise at Bayes error {self.flip_prob:g} "
                f"(2 standard errors of {self.n_dev} examples = {noise:.3f}), so no model can "
                "be shown to meet it; raise a target or n_dev."
            )


def starting_point(cfg: Config) -> Config:
    """`cfg` with every model field filled from its start preset; ValueError if inconsistent."""
    preset = {key: value for key, value in STARTS[cfg.start].items() if getattr(cfg, key) is None}
    first = dataclasses.replace(cfg, **preset)
    if first.n_train > cfg.max_n_train:
        raise ValueError(
            f"n_train must be <= max_n_train ({cfg.max_n_train}), the most data there is; "
            f"got {first.n_train} (raise --max-n-train or lower --n-train)."
        )
    return first


def next_step(cfg: Config, diagnosis) -> tuple[Config, str, str] | None:
    """The recipe's next config, the remedy's name and the change; None if none is left.

    Bias first: a bigger network, then a deeper one, then longer training. Variance second:
    more data while the data budget lasts, then stronger regularization.
    """
    change = dataclasses.replace
    if diagnosis.high_bias:
        if cfg.width < MAX_WIDTH:
            width = min(4 * cfg.width, MAX_WIDTH)
            return change(cfg, width=width), "bigger network", f"width {cfg.width}→{width}"
        if cfg.depth < MAX_DEPTH:
            return (
                change(cfg, depth=cfg.depth + 1),
                "bigger network",
                f"depth {cfg.depth}→{cfg.depth + 1}",
            )
        if cfg.iterations < MAX_ITERATIONS:
            steps = min(2 * cfg.iterations, MAX_ITERATIONS)
            return (
                change(cfg, iterations=steps),
                "train longer",
                f"iterations {cfg.iterations}→{steps}",
            )
        return None
    if diagnosis.high_variance:
        if cfg.n_train < cfg.max_n_train:
            m = min(4 * cfg.n_train, cfg.max_n_train)
            return change(cfg, n_train=m), "more data", f"m {cfg.n_train}→{m}"
        if cfg.regularizer == "l2" and cfg.l2 < MAX_L2:
            l2 = float(f"{min(3 * cfg.l2, MAX_L2):.2g}") if cfg.l2 else FIRST_L2
            return change(cfg, l2=l2), "regularization", f"L2 λ {cfg.l2:g}→{l2:g}"
        if cfg.regularizer == "dropout" and cfg.dropout < MAX_DROPOUT:
            rate = round(min(cfg.dropout + 0.1, MAX_DROPOUT), 2)
            return change(cfg, dropout=rate), "regularization", f"dropout {cfg.dropout:g}→{rate:g}"
    return None


def make_data(cfg: Config) -> DataSplit:
    """A larger n_train extends a smaller one and the dev set stays the same across rounds."""
    return flipped_boundary(cfg.n_train, cfg.n_dev, cfg.flip_prob, cfg.seed)


def train_round(cfg: Config, number: int, change: str, **where) -> dict:
    """One round as one MLflow child run; its summary plus the diagnosis against the targets."""
    from reg_callbacks import diagnose

    data = make_data(cfg)
    model = binary_mlp_for(cfg)
    with tracked_run(
        cfg,
        data,
        run_name=f"recipe {cfg.start} round {number}: {change}",
        tags={"round": number, "change": change},
        **where,
    ) as tracked:
        tracked.train(model, iterations=cfg.iterations, log_every=max(1, cfg.iterations // 10))
        measured = tracked.bias_variance.diagnosis
        verdict = diagnose(
            measured.train_error,
            measured.dev_error,
            cfg.flip_prob,
            bias_threshold=cfg.target_bias,
            variance_threshold=cfg.target_variance,
        )
        tracked.recorder.set_tags({"recipe_label": verdict.label})
        return {**tracked.summary(round=number, change=change), "verdict": verdict}


def run(cfg: Config, **where) -> dict:
    current = starting_point(cfg)  # before any import or run: a bad start leaves nothing behind
    from reg_callbacks import plots

    parent = parent_run(
        cfg,
        run_name=f"recipe from {cfg.start} p={cfg.flip_prob:g}",
        tags={"bayes_error": cfg.flip_prob},
        **where,
    )
    path, change, outcome = [], "start", "budget spent"
    with parent:
        for number in range(1, cfg.max_rounds + 1):
            result = train_round(
                current, number, change, **{**where, "parent_run_id": parent.run_id}
            )
            verdict = result.pop("verdict")
            # The label against the targets (`recipe_label`); the child's `bias_variance` tag
            # uses the default thresholds, the same when the targets are the defaults.
            row = {"round": number, "change": change, **_model(current), **_gaps(result)}
            path.append({**row, "label": verdict.label})
            parent.log_metrics([(number, _gaps(result))])
            if not (verdict.high_bias or verdict.high_variance):
                outcome = "reached target"
                break
            step = next_step(current, verdict)
            if step is None:
                outcome = "no remedy left"
                break
            following, remedy, change = step
            path[-1]["next"] = f"{remedy}: {change}"
            if number < cfg.max_rounds:
                current = following
        message = _message(outcome, cfg, path, verdict)
        parent.log_params({"final": _model(current)})
        parent.set_tags(
            {
                "outcome": outcome,
                "bias_variance": path[-1]["label"],  # the last round's, as the sweep reads it
                "final_config": json.dumps(_model(current)),
                "rounds": len(path),
                "path": "; ".join(row["change"] for row in path[1:]) or "none",
            }
        )
        parent.log_final({"rounds": len(path)})  # the gaps are logged a round each
        parent.log_dict({"outcome": outcome, "message": message, "rounds": path}, "path.json")
        parent.log_text(_markdown(path, message), "path.md")
        parent.log_figure(
            plots.recipe_rounds(
                [f"{row['round']}\n{row['change']}" for row in path],
                [row["avoidable_bias"] for row in path],
                [row["variance"] for row in path],
                target_bias=cfg.target_bias,
                target_variance=cfg.target_variance,
                title=f"Basic recipe from {cfg.start}: {outcome}",
            ),
            "path.png",
        )
        summary = {
            "run_id": parent.run_id,
            "outcome": outcome,
            "message": message,
            "rounds": len(path),
            "path": [row["change"] for row in path[1:]],
            **_gaps(result),
            "label": path[-1]["label"],
            "final": _model(current),
        }
        parent.log_dict(summary, "summary.json")
    return summary


def _model(cfg: Config) -> dict:
    return {key: getattr(cfg, key) for key in MODEL_FIELDS}


def _gaps(summary: dict) -> dict:
    return {key: round(summary[key], 4) for key in DIAGNOSIS_NUMBERS}


def _message(outcome: str, cfg: Config, path: list[dict], verdict) -> str:
    last = path[-1]
    gaps = f"avoidable bias {last['avoidable_bias']:.3f}, variance {last['variance']:.3f}"
    if outcome == "reached target":
        return (
            f"{verdict.label} after {len(path)} round(s): {gaps} "
            f"(targets {cfg.target_bias:g} / {cfg.target_variance:g})."
        )
    if outcome == "no remedy left":
        return (
            f"no remedy left after {len(path)} round(s): still {verdict.label} ({gaps}) with the "
            "recipe's knobs at their limits; try a different architecture."
        )
    return (
        f"budget spent: {len(path)} round(s) used, still {verdict.label} ({gaps}); the next "
        f"step would be {last['next']}; raise --max-rounds."
    )


def _markdown(path: list[dict], message: str) -> str:
    header = [key for key in path[0] if key != "next"] + ["next"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row.get(key, "")) for key in header) + " |" for row in path]
    return "\n".join(lines) + f"\n\n{message}\n"


if __name__ == "__main__":
    main(Config, run)
