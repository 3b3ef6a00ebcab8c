"""`bias_variance_decomposition` against mlxtend's `bias_variance_decomp`, side by side.

The same Keras net (built by one `build_model`), the same flipped-label data with a known
Bayes error and the same number of bootstrap rounds, each round a fresh model trained for
the same number of full-batch Adam steps:

- ours: `reg_callbacks.bias_variance_decomposition(..., resample="both")` (a new bootstrap
  sample and a new initialization every round, as mlxtend draws them), steps run by
  `reg_callbacks.train`;
- mlxtend: `bias_variance_decomp(estimator, ..., loss="0-1_loss", num_rounds=R)`. Its own
  Keras branch resets a `Sequential`'s weights in place (not its optimizer state) and casts
  `predict`'s sigmoid probabilities to int64, which makes every 0-1 prediction 0; so the
  estimator here is what a scikit-learn-style Keras wrapper does (scikeras's
  `KerasClassifier` too): `fit` builds a fresh model and runs `model.fit(x, y,
  epochs=steps, batch_size=len(x))`, `predict` thresholds at 0.5.

Definitions differ, so the numbers are shown side by side, not compared: mlxtend has no
noise term; its bias counts a main prediction that differs from the *observed* label (so
the label noise is inside it) and its variance is the mean disagreement with the main
prediction, always >= 0, so its loss is not bias + variance (mlxtend issue #964). Ours
measures bias against the Bayes-optimal labels, reports the noise, and its variance is
Domingos's net variance (expected loss = noise term + bias + variance, exactly); our
`unsigned_variance` is mlxtend's variance.

Each timed pair runs both tools once, the order alternating from pair to pair; the speed-up
is the median of the pairs' ratios. One untimed call of each first pays the imports and our
loop's compilation for the architecture (what a second call in a process, or a sweep's
next config, skips; its time is the `first call` column). Then ours runs once more with
`tolerance=0.01` (at most 40 rounds): the rounds it took and the standard errors reached.

Run: `python benchmarks/bench_decomposition.py [--rounds 10] [--iterations 200] [--pairs 2]
[--cases "underfit 1x1 m=1000,overfit 64x3 m=60"]`
(needs `pip install -e ".[benchmarks]"` for mlxtend).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The bias/variance topic's underfit and overfit presets (width, depth, training examples).
CASES = {
    "underfit 1x1 m=1000": (1, 1, 1000),
    "overfit 64x3 m=60": (64, 3, 60),
}
FLIP_PROB = 0.1
N_TEST = 1000
TOLERANCE = 0.01
TOLERANCE_ROUNDS = 40


def build_model_for(width: int, depth: int):
    import keras

    def build_model():
        layers = [keras.Input((2,))]
        layers += [keras.layers.Dense(width, "relu") for _ in range(depth)]
        model = keras.Sequential([*layers, keras.layers.Dense(1, "sigmoid")])
        model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
        return model

    return build_model


class FitEachRound:
    """The estimator mlxtend gets: a fresh Keras model per `fit`, trained by `model.fit`."""

    def __init__(self, build_model, iterations: int):
        self.build_model, self.iterations, self.model = build_model, iterations, None

    def fit(self, x, y):
        self.model = self.build_model()
        self.model.fit(x, y, epochs=self.iterations, batch_size=len(x), verbose=0)
        return self

    def predict(self, x):
        return (self.model.predict(x, verbose=0)[:, 0] > 0.5).astype("int64")


def run_ours(build_model, data, bayes, rounds: int, iterations: int, tolerance=None):
    from reg_callbacks import bias_variance_decomposition

    started = time.perf_counter()
    result = bias_variance_decomposition(
        build_model,
        (data.x_train, data.y_train),
        (data.x_dev, data.y_dev),
        rounds=rounds,
        iterations=iterations,
        bayes_pred=bayes,
        resample="both",
        tolerance=tolerance,
    )
    return time.perf_counter() - started, result


def run_mlxtend(build_model, data, rounds: int, iterations: int):
    from mlxtend.evaluate import bias_variance_decomp

    started = time.perf_counter()
    loss, bias, variance = bias_variance_decomp(
        FitEachRound(build_model, iterations),
        data.x_train,
        data.y_train.reshape(-1),
        data.x_dev,
        data.y_dev.reshape(-1),  # a (n, 1) column would broadcast against its (n,) predictions
        loss="0-1_loss",
        num_rounds=rounds,
        random_seed=0,
    )
    return time.perf_counter() - started, (float(loss), float(bias), float(variance))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds of both tools (10)")
    parser.add_argument("--iterations", type=int, default=200, help="Adam steps a round (200)")
    parser.add_argument("--pairs", type=int, default=2, help="timed pairs, alternating (2)")
    parser.add_argument(
        "--cases", default="overfit 64x3 m=60", help=f"comma-separated, of: {', '.join(CASES)}"
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    cases = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = [name for name in cases if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    if args.rounds < 2 or args.iterations < 1 or args.pairs < 1:
        parser.error("--rounds must be >= 2, --iterations and --pairs >= 1")
    try:
        import mlxtend  # noqa: F401
    except ImportError:
        print(
            "error: mlxtend is not installed: this benchmark compares against it; "
            'pip install -e ".[benchmarks]"',
            file=sys.stderr,
        )
        return 2

    from bench_report import finish, machine, rich_table

    from experiments.harness.datasets import boundary_labels, flipped_boundary

    load_before = os.getloadavg()
    results = []
    for case in cases:
        width, depth, n_train = CASES[case]
        data = flipped_boundary(n_train, N_TEST, FLIP_PROB, 0)
        bayes = boundary_labels(data.x_dev)
        build_model = build_model_for(width, depth)
        first_call, _ = run_ours(build_model, data, bayes, 2, args.iterations)
        run_mlxtend(build_model, data, 2, 1)
        ours_s, mlxtend_s = [], []
        for pair in range(args.pairs):
            order = ("ours", "mlxtend") if pair % 2 == 0 else ("mlxtend", "ours")
            for tool in order:
                if tool == "ours":
                    seconds, ours = run_ours(build_model, data, bayes, args.rounds, args.iterations)
                    ours_s.append(seconds)
                else:
                    seconds, theirs = run_mlxtend(build_model, data, args.rounds, args.iterations)
                    mlxtend_s.append(seconds)
        ratios = [m / o for m, o in zip(mlxtend_s, ours_s, strict=True)]
        tolerance_s, stopped = run_ours(
            build_model, data, bayes, TOLERANCE_ROUNDS, args.iterations, tolerance=TOLERANCE
        )
        results.append(
            {
                "case": case,
                "ours_s": ours_s,
                "mlxtend_s": mlxtend_s,
                "first_call_s": first_call,
                "speedup": statistics.median(ratios),
                "speedups": ratios,
                "ours": ours.as_dict(),
                "mlxtend": dict(zip(("expected_loss", "bias", "variance"), theirs, strict=True)),
                "tolerance_run": {"seconds": tolerance_s, **stopped.as_dict()},
            }
        )
        print(f"{case}: mlxtend/ours {statistics.median(ratios):.1f}x", flush=True)

    rows = []
    for r in results:
        ours, theirs, stop = r["ours"], r["mlxtend"], r["tolerance_run"]
        rows.append(
            [
                r["case"],
                f"{statistics.median(r['ours_s']):.1f}",
                f"{statistics.median(r['mlxtend_s']):.1f}",
                f"{r['speedup']:.1f}× ({min(r['speedups']):.1f}–{max(r['speedups']):.1f})",
                f"{r['first_call_s']:.1f}",
                f"{ours['expected_loss']:.3f} / {theirs['expected_loss']:.3f}",
                f"{ours['bias']:.3f} / {theirs['bias']:.3f}",
                f"{ours['variance']:.3f} ({ours['unsigned_variance']:.3f}) / "
                f"{theirs['variance']:.3f}",
                f"{ours['noise']:.3f} / —",
                f"{stop['rounds']} rounds, {stop['seconds']:.1f} s: SE bias "
                f"{stop['standard_errors']['bias']:.4f}, variance "
                f"{stop['standard_errors']['variance']:.4f}",
            ]
        )
    title = (
        f"{args.rounds} bootstrap rounds of {args.iterations} full-batch Adam steps each, "
        f"{N_TEST} test points, Bayes error {FLIP_PROB}; seconds are medians of {args.pairs} "
        "alternating pairs after one untimed call of each; the speed-up is the median of the "
        "pairs' ratios (range); ours / mlxtend; our variance is Domingos's net variance "
        "(unsigned in brackets: mlxtend's definition); mlxtend has no noise term; the last "
        f"column is ours with tolerance={TOLERANCE} (at most {TOLERANCE_ROUNDS} rounds)"
    )
    headers = [
        "case",
        "ours s",
        "mlxtend s",
        "mlxtend / ours",
        "ours first call s",
        "expected loss",
        "bias",
        "variance",
        "noise",
        f"tolerance {TOLERANCE}",
    ]
    table = rich_table(title, headers, rows, width=220)
    report = {
        "command": "python benchmarks/bench_decomposition.py "
        f"--rounds {args.rounds} --iterations {args.iterations} --pairs {args.pairs}",
        "results": results,
        "table": table,
        "machine": machine(load_before),
    }
    return finish(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
