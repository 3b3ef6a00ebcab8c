"""What `GradientNormLogger` and `BiasVarianceCallback` add to plain `model.fit` on a MobileNet.

The callbacks are the library users put on their own models, trained with `model.fit`, not
with our `train`. This measures them there, on a small `keras.applications.MobileNet`
(32x32x3 inputs, `alpha=0.25`, 10 classes, `weights=None`: nothing is downloaded) trained on
synthetic images:

- `fit`      `model.fit(x, y, epochs=E, batch_size=B)`, no callbacks;
- `+cb`      the same with the callbacks of the row, at their default cadence (every epoch):
             `GradientNormLogger` on a fixed probe batch, `BiasVarianceCallback` on a
             train subset and a dev set, both predicted with `training=False` every epoch.

Each row's ratio `+cb/fit` is the median, over the repeats, of the two fits run back to back
in alternating order (fit, +cb, then +cb, fit): a shared machine's speed drifts by more
than the effect, and a steady drift cancels in a pair; each repeat runs every row's pair,
so a slow spell is shared between rows. The CPU ratio uses the process's CPU time (all
threads), which does not count waiting for a core. Every fit starts from the same weights
and optimizer state; the first fits (tracing) are timed apart. The overhead scales with the
rows the callbacks evaluate against the rows an epoch trains on (`--eval-rows`,
`--probe-batch` against `--samples`).

Run: `python benchmarks/bench_callbacks.py [--repeats R] [--epochs E] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from bench_training import finish, rich_table, timed, timed_with_cpu  # noqa: E402

from reg_callbacks import BiasVarianceCallback, GradientNormLogger  # noqa: E402
from reg_callbacks.gradient_norms import KEY_PREFIX  # noqa: E402

N_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
ROWS = ("GradientNormLogger + BiasVarianceCallback", "GradientNormLogger", "BiasVarianceCallback")


def make_data(n_train: int, n_dev: int, seed: int = 0):
    """Synthetic images whose class shifts the mean of one colour band: learnable, not trivial."""
    rng = np.random.default_rng(seed)
    n = n_train + n_dev
    labels = rng.integers(0, N_CLASSES, n)
    images = rng.normal(size=(n, *IMAGE_SHAPE)).astype("float32")
    rows = np.arange(n)
    band = labels * IMAGE_SHAPE[0] // N_CLASSES
    for offset in range(IMAGE_SHAPE[0] // N_CLASSES):
        images[rows, band + offset, :, labels % IMAGE_SHAPE[2]] += 1.0
    return images[:n_train], labels[:n_train], images[n_train:], labels[n_train:]


def build_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNet(
        input_shape=IMAGE_SHAPE, weights=None, alpha=0.25, classes=N_CLASSES
    )
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def make_callbacks(row: str, x, y, x_dev, y_dev, args) -> list[keras.callbacks.Callback]:
    callbacks = []
    if "BiasVarianceCallback" in row:
        rows = args.eval_rows
        callbacks.append(BiasVarianceCallback((x[:rows], y[:rows]), (x_dev, y_dev)))
    if "GradientNormLogger" in row:
        callbacks.append(GradientNormLogger((x[: args.probe_batch], y[: args.probe_batch])))
    return callbacks


def run_benchmark(args) -> dict:
    x, y, x_dev, y_dev = make_data(args.samples, args.eval_rows)
    model = build_model()
    initial_weights = model.get_weights()
    model.optimizer.build(model.trainable_variables)
    initial_optimizer = [variable.numpy() for variable in model.optimizer.variables]

    def reset():
        model.set_weights(initial_weights)
        for variable, value in zip(model.optimizer.variables, initial_optimizer, strict=True):
            variable.assign(value)

    def fit(callbacks=None, epochs=args.epochs):
        reset()
        return model.fit(
            x,
            y,
            batch_size=args.batch_size,
            epochs=epochs,
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
        )

    # Tracing: the first fit of each kind, one epoch, timed apart. The callbacks' compiled
    # functions are cached per model, so the first row's traces them for all rows.
    first_fit = {"without callbacks": timed(lambda: fit(epochs=1))[0]}
    both = make_callbacks(ROWS[0], x, y, x_dev, y_dev, args)
    first_fit["with both callbacks"], _ = timed(lambda: fit(both, epochs=1))
    pairs = {row: [] for row in ROWS}
    logged = {}  # the last fit's logs for each row, to show the callbacks did their work
    for repeat in range(args.repeats):
        order = ("fit", "+cb") if repeat % 2 == 0 else ("+cb", "fit")
        for row in ROWS:
            measured = {}
            for variant in order:
                callbacks = (
                    make_callbacks(row, x, y, x_dev, y_dev, args) if variant == "+cb" else None
                )
                wall, cpu, history = timed_with_cpu(lambda callbacks=callbacks: fit(callbacks))
                measured[variant] = {"wall": wall, "cpu": cpu}
                if variant == "+cb":
                    logged[row] = history.history
            pairs[row].append(measured)
        print(f"done: repeat {repeat + 1} of {args.repeats}", file=sys.stderr, flush=True)
    results = []
    for row in ROWS:
        ratios = [pair["+cb"]["wall"] / pair["fit"]["wall"] for pair in pairs[row]]
        results.append(
            {
                "callbacks": row,
                "fit_ms_per_epoch": 1e3 * _median(pairs[row], "fit", "wall") / args.epochs,
                "cb_ms_per_epoch": 1e3 * _median(pairs[row], "+cb", "wall") / args.epochs,
                "ratio": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "cpu_ratio": statistics.median(
                    pair["+cb"]["cpu"] / pair["fit"]["cpu"] for pair in pairs[row]
                ),
                "grad_norm_keys": sum(key.startswith(KEY_PREFIX) for key in logged[row]),
                "dev_error_epochs": len(logged[row].get("dev_error", [])),
                "pairs": pairs[row],
            }
        )
    return {
        "model": "MobileNet(input_shape=(32, 32, 3), alpha=0.25, classes=10, weights=None)",
        "parameters": model.count_params(),
        "weighted_layers": sum(1 for layer in model.layers if layer.trainable_weights),
        "first_fit_s": first_fit,
        "results": results,
    }


def _median(pairs, variant: str, measure: str) -> float:
    return statistics.median(pair[variant][measure] for pair in pairs)


def print_table(report: dict, args) -> dict:
    headers = [
        "callbacks",
        "fit ms/epoch",
        "+cb ms/epoch",
        "+cb/fit",
        "pair range",
        "+cb/fit CPU",
    ]
    rows = [
        [
            r["callbacks"],
            f"{r['fit_ms_per_epoch']:.0f}",
            f"{r['cb_ms_per_epoch']:.0f}",
            f"{r['ratio']:.3f}",
            f"{r['ratio_min']:.3f}-{r['ratio_max']:.3f}",
            f"{r['cpu_ratio']:.3f}",
        ]
        for r in report["results"]
    ]
    title = (
        f"{report['model']}, {report['parameters']} parameters; {args.samples} images, "
        f"batches of {args.batch_size}, {args.epochs} epochs a fit; callbacks every epoch on "
        f"{args.eval_rows} train + {args.eval_rows} dev rows and a probe batch of "
        f"{args.probe_batch}; +cb/fit: median of {args.repeats} back-to-back pairs"
    )
    return rich_table(title, headers, rows, width=160)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="back-to-back pairs per row")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per fit")
    parser.add_argument("--samples", type=int, default=512, help="training images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--eval-rows",
        type=int,
        default=256,
        help="BiasVarianceCallback's train subset and dev set, each",
    )
    parser.add_argument("--probe-batch", type=int, default=64, help="GradientNormLogger's batch")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    for name in ("repeats", "epochs", "samples", "batch_size", "eval_rows", "probe_batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    for name in ("eval_rows", "probe_batch"):
        if getattr(args, name) > args.samples:
            parser.error(f"--{name.replace('_', '-')} must be at most --samples ({args.samples})")

    load_before = os.getloadavg()
    report = run_benchmark(args)
    report["command"] = " ".join([os.path.basename(sys.argv[0]), *(argv or sys.argv[1:])])
    report["settings"] = vars(args)
    report["machine"] = {
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "numpy": np.__version__,
    }
    report["table"] = print_table(report, args)
    first_fit = ", ".join(f"{name} {s:.1f} s" for name, s in report["first_fit_s"].items())
    print(f"first fit (one epoch, tracing included): {first_fit}")
    return finish(report, load_before, args.json)


if __name__ == "__main__":
    sys.exit(main())
