"""Bias and variance against a known Bayes error: all four labels of the course's table.

Labels come from a circle boundary and each is flipped with probability p (`--flip-prob`), so
the Bayes error is exactly p and avoidable bias (train − p) and variance (dev − train) are
measured against the truth, not a human-level guess. Four nets (Adam 0.01, full batch,
1000 dev points) land in the four cells of the table; measured at p = 0.1, seed 0:

| regime   | net    | m    | iters | L2   | train | dev   | bias   | var.  | label              |
|----------|--------|------|-------|------|-------|-------|--------|-------|--------------------|
| underfit | 1 × 1  | 1000 | 1000  | 0    | 0.387 | 0.414 | 0.287  | 0.027 | high bias          |
| overfit  | 64 × 3 | 60   | 3000  | 0    | 0.000 | 0.262 | −0.100 | 0.262 | high variance      |
| both     | 2 × 1  | 30   | 150   | 0    | 0.200 | 0.387 | 0.100  | 0.187 | high bias & high v |
| good     | 32 × 2 | 1000 | 2000  | 1e-3 | 0.112 | 0.129 | 0.012  | 0.017 | low bias & low v   |

(bias = avoidable bias, train − p; var. / v = variance, dev − train.)

The blurry-image case: the "good" net's errors (0.112 / 0.129) are "low bias & low variance"
against the true Bayes error 0.1 but "high bias" (avoidable bias 0.112) if one assumed Bayes 0,
a perfect human; each run tags `bias_variance_if_bayes_0`, and the parent's `regimes.md`
table shows both labels side by side.

Learning curves (train/dev error of the same net retrained on nested training sets of
`--curve-sizes`, the Bayes error dashed; `learning_curve.png`, and all four in the parent's
`learning_curves.png`): the underfit net's curves meet near 0.4 from m = 100 on, far above
the line, so more data will not help; the overfit net's dev error falls from 0.31 (m = 30) to
0.16 (m = 1000) as its train error rises from 0 to 0.04: more data is closing the gap.

Run: `python -m experiments.bias_variance` (all four as child runs of one parent; ~60 s of
CPU, a third of it the learning curves), or `--regime overfit --flip-prob 0.2`; `--width`,
`--n-train` etc. override a regime's preset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from experiments.harness.checks import at_least, in_range, one_of, positive
from experiments.harness.cli import main
from experiments.harness.datasets import DataSplit, flipped_boundary
from experiments.harness.models import binary_mlp_for
from experiments.harness.runner import DIAGNOSIS_NUMBERS, parent_run, tracked_run

Regime = Literal["all", "underfit", "overfit", "both", "good"]
REGIMES = ("underfit", "overfit", "both", "good")
MODEL_FIELDS = ("width", "depth", "n_train", "iterations", "l2", "dropout")
PRESETS = {  # the table in the docstring
    "underfit": dict(width=1, depth=1, n_train=1000, iterations=1000, l2=0.0, dropout=0.0),
    "overfit": dict(width=64, depth=3, n_train=60, iterations=3000, l2=0.0, dropout=0.0),
    "both": dict(width=2, depth=1, n_train=30, iterations=150, l2=0.0, dropout=0.0),
    "good": dict(width=32, depth=2, n_train=1000, iterations=2000, l2=1e-3, dropout=0.0),
}


@dataclass(frozen=True)
class Config:
    regime: Regime = "all"  # "all" runs the four as child runs of one parent run
    flip_prob: float = 0.1  # label-flip probability p = the Bayes error
    width: int | None = None  # hidden units a layer; none = the regime's preset
    depth: int | None = None  # hidden layers; none = the regime's preset
    n_train: int | None = None  # training examples; none = the regime's preset
    iterations: int | None = None  # full-batch Adam steps; none = the regime's preset
    l2: float | None = None  # L2 strength λ on every kernel; none = the regime's preset
    dropout: float | None = None  # drop rate after each hidden layer; none = the preset
    n_dev: int = 1000
    learning_rate: float = 0.01
    boundary: Literal["circle", "sine"] = "circle"
    curve_sizes: tuple[int, ...] = (30, 100, 300, 1000)  # learning-curve m's; "" = none
    seed: int = 0

    def __post_init__(self):
        one_of(self, "regime", ("all", *REGIMES))
        in_range(self, "flip_prob", 0, 0.5)
        positive(self, "width", "depth", "n_train", "iterations", optional=True)
        at_least(self, 0, "l2", optional=True)
        in_range(self, "dropout", 0, 1, "[)", optional=True)
        positive(self, "n_dev", "learning_rate")
        one_of(self, "boundary", ("circle", "sine"))
        if any(size < 2 for size in self.curve_sizes):
            raise ValueError(
                f"curve_sizes must be training-set sizes >= 2 like 30,100,300 (or empty); "
                f"got {self.curve_sizes}."
            )
        given = [name for name in MODEL_FIELDS if getattr(self, name) is not None]
        if self.regime == "all" and given:
            raise ValueError(
                f"model settings ({', '.join(given)}) apply to one regime; add --regime "
                f"{'|'.join(REGIMES)}, or drop them to run all four presets."
            )


def settings(cfg: Config, regime: str) -> Config:
    """`cfg` for one regime, with every model field filled: the preset, then `cfg`'s own."""
    preset = {key: value for key, value in PRESETS[regime].items() if getattr(cfg, key) is None}
    return dataclasses.replace(cfg, regime=regime, **preset)


def make_data(cfg: Config, n_train: int | None = None) -> DataSplit:
    """The flipped-boundary data; a larger `n_train` extends a smaller one (nested sets)."""
    return flipped_boundary(
        n_train or cfg.n_train, cfg.n_dev, cfg.flip_prob, cfg.seed, boundary=cfg.boundary
    )


def learning_curve(cfg: Config, known: dict[int, tuple[float, float]]) -> dict[str, list]:
    """Train/dev error of `cfg`'s net trained afresh on nested prefixes of one training pool.

    `known` maps sizes already measured (the run itself) to (train, dev) error. The points
    skip the MLflow callbacks and XLA: for a few thousand steps of a small net, plain graph
    tracing costs less than an XLA compile.
    """
    from reg_callbacks import train

    sizes = sorted(set(cfg.curve_sizes))
    pool = make_data(cfg, n_train=sizes[-1])
    curve = {"size": sizes, "train_error": [], "dev_error": []}
    for size in sizes:
        if size in known:
            train_error, dev_error = known[size]
        else:
            x, y = pool.x_train[:size], pool.y_train[:size]
            model = binary_mlp_for(cfg)
            train(
                model, x, y, iterations=cfg.iterations, log_every=cfg.iterations, jit_compile=False
            )
            train_error, dev_error = _error(model, x, y), _error(model, pool.x_dev, pool.y_dev)
        curve["train_error"].append(train_error)
        curve["dev_error"].append(dev_error)
    return curve


def run_regime(cfg: Config, **where):
    """One regime as one MLflow run; returns (summary, learning curve or None)."""
    from reg_callbacks import diagnose, plots

    data = make_data(cfg)
    model = binary_mlp_for(cfg)
    with tracked_run(
        cfg,
        data,
        run_name=f"bias_variance {cfg.regime} p={cfg.flip_prob:g}",
        tags={"regime": cfg.regime},
        **where,
    ) as tracked:
        tracked.train(model, iterations=cfg.iterations, log_every=max(1, cfg.iterations // 10))
        measured = tracked.bias_variance.diagnosis
        # The blurry-image case: the same two errors, judged against a perfect-human Bayes 0.
        if_zero = diagnose(measured.train_error, measured.dev_error, 0.0)
        tracked.recorder.set_tags({"bias_variance_if_bayes_0": if_zero.label})
        curve = None
        if cfg.curve_sizes:
            curve = learning_curve(cfg, {cfg.n_train: (measured.train_error, measured.dev_error)})
            tracked.recorder.log_metrics(
                [
                    (size, {"learning_curve/train_error": tr, "learning_curve/dev_error": dv})
                    for size, tr, dv in zip(*curve.values(), strict=True)
                ]
            )
            tracked.log_figure(
                plots.error_vs_training_size(
                    curve["size"],
                    curve["train_error"],
                    curve["dev_error"],
                    bayes_error=cfg.flip_prob,
                    mark=cfg.n_train,
                    title=f"{cfg.regime}: {cfg.width}×{cfg.depth} net, {cfg.iterations} iterations",
                ),
                "learning_curve.png",
            )
        summary = tracked.summary(
            regime=cfg.regime,
            bayes_error=cfg.flip_prob,
            label_if_bayes_0=if_zero.label,
            avoidable_bias_if_bayes_0=if_zero.avoidable_bias,
        )
    return summary, curve


def run(cfg: Config, **where) -> dict:
    if cfg.regime != "all":
        return run_regime(settings(cfg, cfg.regime), **where)[0]
    from reg_callbacks import plots

    parent = parent_run(
        cfg,
        run_name=f"bias_variance all p={cfg.flip_prob:g}",
        tags={"bayes_error": cfg.flip_prob},
        **where,
    )
    with parent:
        children = {**where, "parent_run_id": parent.run_id}
        results = {regime: run_regime(settings(cfg, regime), **children) for regime in REGIMES}
        summaries = {regime: summary for regime, (summary, _) in results.items()}
        rows = [
            {"regime": regime, **_row(settings(cfg, regime), s)} for regime, s in summaries.items()
        ]
        parent.log_dict({"bayes_error": cfg.flip_prob, "regimes": rows}, "regimes.json")
        parent.log_text(_markdown(rows), "regimes.md")
        parent.log_final(
            {
                f"{regime}/{key}": s[key]
                for regime, s in summaries.items()
                for key in DIAGNOSIS_NUMBERS
            }
        )
        labels = {regime: s["label"] for regime, s in summaries.items()}
        parent.set_tags(
            {
                "labels": "; ".join(f"{regime}: {label}" for regime, label in labels.items()),
                "all_four_labels": len(set(labels.values())) == 4,
            }
        )
        if cfg.curve_sizes:
            figure, axes = plots.side_by_side(len(REGIMES))
            for ax, (regime, (summary, curve)) in zip(axes, results.items(), strict=True):
                plots.error_vs_training_size(
                    curve["size"],
                    curve["train_error"],
                    curve["dev_error"],
                    bayes_error=cfg.flip_prob,
                    mark=settings(cfg, regime).n_train,
                    title=f"{regime}: {summary['label']}",
                    ax=ax,
                )
            parent.log_figure(figure, "learning_curves.png")
        summary = {"run_id": parent.run_id, "bayes_error": cfg.flip_prob, **summaries}
        parent.log_dict(summary, "summary.json")
    return summary


def _error(model, x, y) -> float:
    import keras

    from reg_callbacks import classification_error

    return classification_error(y, keras.ops.convert_to_numpy(model(x, training=False)))


def _row(cfg: Config, summary: dict) -> dict:
    return {
        "net": f"{cfg.width}x{cfg.depth}",
        "n_train": cfg.n_train,
        "iterations": cfg.iterations,
        "l2": cfg.l2,
        **{key: round(summary[key], 4) for key in DIAGNOSIS_NUMBERS},
        "label": summary["label"],
        "label_if_bayes_0": summary["label_if_bayes_0"],
    }


def _markdown(rows: list[dict]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(Config, run)
