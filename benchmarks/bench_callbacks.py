"""What `GradientNormLogger` and `BiasVarianceCallback` add to plain `model.fit` on users' models.

The callbacks are the library users put on their own models, trained with `model.fit`. This
measures them there, on models of keras.io's public examples as their authors wrote them
(`tests/public_examples.py`: the MNIST convnet, the Conv1D timeseries classifier, the
transformer text classifier, the structured-data model fed `tf.data` dict batches), on
synthetic data at epoch sizes a user runs (thousands of rows; `--scale` multiplies them),
fits of several epochs (`--epochs`, default 10), with the callbacks at their default settings,
as their docstrings show them:

- `fit`  `model.fit(train, epochs=E, batch_size=B)`, no callbacks;
- `+cb`  the same with `BiasVarianceCallback(train, dev)` (the whole training set handed
         over, as users do) and `GradientNormLogger` on the first 256 training rows, both
         made for each fit, as a user makes them. Their default `every="auto"` measures
         within a share of the training time (`reg_callbacks.probes.Schedule`); `--every 1`
         measures every epoch instead, which shows what one measurement an epoch costs.

`--logger activations` measures `ActivationStatsLogger(first --probe-rows train rows)` alone
as `+cb` instead (every epoch, its default), on the same models and on `mobilenet`
(`keras.applications.MobileNet`, alpha 0.25, 32x32 images, 10 classes, trained from scratch,
batch 64); `--epochs 1` gives the one-epoch fits its earlier numbers were measured on.

Each kind runs in its own process. Per kind, `+cb/fit` is the median, over `--repeats`
pairs, of fits run back to back in alternating order (fit, +cb, then +cb, fit): a
shared machine's speed drifts by more than the effect, and a steady drift cancels in a pair.
The CPU ratio uses the process's CPU time (all threads), which does not count waiting for a
core. The first fits (tracing) are not timed. Peak memory is the maximum resident set
(`resource.getrusage`) of two more processes per kind, one fitting two epochs without the
callbacks and one with them.

Run: `python benchmarks/bench_callbacks.py [--repeats R] [--kinds a,b] [--scale S] [--epochs E]
[--every auto|N] [--json PATH] [--logger activations --probe-rows N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import public_examples as examples  # noqa: E402
from bench_report import finish, machine, rich_table  # noqa: E402

from reg_callbacks import (  # noqa: E402
    ActivationStatsLogger,
    BiasVarianceCallback,
    GradientNormLogger,
)

PROBE_ROWS = 256  # GradientNormLogger's probe batch: "a few hundred rows", as documented


def mnist(scale):
    x, y = examples.mnist_like(int(4000 * scale) + 1000)
    return examples.mnist_convnet(), (x[1000:], y[1000:]), (x[:1000], y[:1000]), 128


def timeseries(scale):
    x, y = examples.timeseries_like(int(2000 * scale) + 500)
    return examples.timeseries_conv1d(), (x[500:], y[500:]), (x[:500], y[:500]), 32


def transformer(scale):
    x, y = examples.reviews_like(int(2000 * scale) + 500)
    return examples.transformer_classifier(), (x[500:], y[500:]), (x[:500], y[:500]), 32


def structured(scale):
    train = examples.structured_dataset(int(4000 * scale), seed=0)
    dev = examples.structured_dataset(1000, seed=1)
    return examples.structured_data_model(train), train, dev, None


def mobilenet(scale):
    rng = np.random.default_rng(0)
    rows = int(4000 * scale) + 1000
    y = rng.integers(0, 10, rows)
    # Learnable: each class brightens its own colour channel and image quarter.
    x = rng.normal(0, 1, (rows, 32, 32, 3)).astype("float32")
    for label in range(10):
        rows_of = y == label
        x[rows_of, (label // 3) % 2 * 16 : (label // 3) % 2 * 16 + 16, :, label % 3] += 1.0
    model = keras.applications.MobileNet(
        input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=10
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, (x[1000:], y[1000:]), (x[:1000], y[:1000]), 64


KINDS = {
    "mnist convnet": mnist,
    "conv1d timeseries": timeseries,
    "transformer text": transformer,
    "structured tf.data": structured,
    "mobilenet": mobilenet,
}
DEFAULT_KINDS = [kind for kind in KINDS if kind != "mobilenet"]  # the results page's set


def setup(
    kind: str,
    scale: float,
    logger: str = "default",
    probe_rows: int = PROBE_ROWS,
    every: int | str = "auto",
):
    keras.utils.set_random_seed(0)
    model, train, dev, batch_size = KINDS[kind](scale)
    if isinstance(train, tuple):
        probe = (train[0][:probe_rows], train[1][:probe_rows])
        rows = len(train[0])
    else:
        probe = train.take(probe_rows // 32)
        rows = sum(int(keras.tree.flatten(batch)[0].shape[0]) for batch in train)
    probe_x = probe[0] if isinstance(probe, tuple) else probe.map(lambda x, y: x)
    activations = ActivationStatsLogger(probe_x)  # one instance, reused by every fit

    def fit(with_callbacks: bool, epochs: int = 1):
        callbacks = None
        if with_callbacks and logger == "activations":
            callbacks = [activations]
        elif with_callbacks:
            callbacks = [
                BiasVarianceCallback(train, dev, every=every),
                GradientNormLogger(probe, every=every),
            ]
        if isinstance(train, tuple):
            return model.fit(
                *train, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=callbacks
            )
        return model.fit(train, epochs=epochs, verbose=0, callbacks=callbacks)

    return model, fit, rows


def child_pairs(kind: str, args) -> dict:
    model, fit, rows = setup(kind, args.scale, args.logger, args.probe_rows, args.every)
    fit(False)
    history = fit(True)  # tracing, untimed
    pairs = []
    for repeat in range(args.repeats):
        order = (False, True) if repeat % 2 == 0 else (True, False)
        pair = {}
        for with_callbacks in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            fitted = fit(with_callbacks, args.epochs)
            pair["+cb" if with_callbacks else "fit"] = {
                "wall": time.perf_counter() - start,
                "cpu": time.process_time() - start_cpu,
            }
            if with_callbacks:
                history = fitted  # what the callbacks logged, whichever order the pair ran in
        pairs.append(pair)
    logged = history.history
    return {
        "parameters": model.count_params(),
        "rows": rows,
        "pairs": pairs,
        "dev_error_logged": "dev_error" in logged,
        "epochs_measured": len(logged.get("dev_error", [])),
        "grad_norm_keys": sum(key.startswith("grad_norm/") for key in logged),
        "act_std_keys": sum(key.startswith("act_std/") for key in logged),
    }


def child_memory(kind: str, args, with_callbacks: bool) -> dict:
    _, fit, _ = setup(kind, args.scale, args.logger, args.probe_rows, args.every)
    fit(with_callbacks, epochs=2)
    return {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def in_child(kind: str, mode: str, args, folder: str) -> dict:
    path = os.path.join(folder, "child.json")
    command = [sys.executable, os.path.abspath(__file__), "--child", mode, "--kinds", kind]
    command += ["--repeats", str(args.repeats), "--scale", str(args.scale), "--json", path]
    command += ["--logger", args.logger, "--probe-rows", str(args.probe_rows)]
    command += ["--epochs", str(args.epochs), "--every", str(args.every)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the {mode} process failed on {kind!r}:\n{done.stderr[-3000:]}")
    with open(path) as file:
        return json.load(file)


def run_benchmark(kinds, args) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-callbacks-") as folder:
        for kind in kinds:
            timing = in_child(kind, "pairs", args, folder)
            memory = {
                variant: in_child(kind, variant, args, folder)["peak_mb"]
                for variant in ("fit", "+cb")
            }
            pairs = timing["pairs"]
            ratios = [pair["+cb"]["wall"] / pair["fit"]["wall"] for pair in pairs]
            results.append(
                {
                    "kind": kind,
                    **{key: timing[key] for key in ("parameters", "rows")},
                    "fit_s_per_epoch": statistics.median(p["fit"]["wall"] for p in pairs)
                    / args.epochs,
                    "cb_s_per_epoch": statistics.median(p["+cb"]["wall"] for p in pairs)
                    / args.epochs,
                    "epochs_measured": timing["epochs_measured"],
                    "ratio": statistics.median(ratios),
                    "ratio_min": min(ratios),
                    "ratio_max": max(ratios),
                    "cpu_ratio": statistics.median(
                        p["+cb"]["cpu"] / p["fit"]["cpu"] for p in pairs
                    ),
                    "peak_mb": memory,
                    "logged": timing["act_std_keys"] > 0
                    if args.logger == "activations"
                    else timing["dev_error_logged"] and timing["grad_norm_keys"] > 0,
                    "pairs": pairs,
                }
            )
            print(f"done: {kind}", file=sys.stderr, flush=True)
    return results


def print_table(results: list[dict], args) -> dict:
    headers = [
        "model",
        "parameters",
        "train rows",
        "fit s/epoch",
        "+cb s/epoch",
        "+cb/fit",
        "pair range",
        "+cb/fit CPU",
        "peak MB fit",
        "peak MB +cb",
        "peak +cb/fit",
        "dev_error epochs",
    ]
    rows = [
        [
            r["kind"],
            str(r["parameters"]),
            str(r["rows"]),
            f"{r['fit_s_per_epoch']:.2f}",
            f"{r['cb_s_per_epoch']:.2f}",
            f"{r['ratio']:.3f}",
            f"{r['ratio_min']:.3f}-{r['ratio_max']:.3f}",
            f"{r['cpu_ratio']:.3f}",
            f"{r['peak_mb']['fit']:.0f}",
            f"{r['peak_mb']['+cb']:.0f}",
            f"{r['peak_mb']['+cb'] / r['peak_mb']['fit']:.2f}",
            f"{r['epochs_measured']}/{args.epochs}",
        ]
        for r in results
    ]
    callbacks = (
        f"ActivationStatsLogger(first {args.probe_rows} train rows) at its defaults"
        if args.logger == "activations"
        else f"BiasVarianceCallback(train, dev) and GradientNormLogger(first {args.probe_rows} "
        f"train rows), every={args.every!r}"
    )
    title = (
        f"keras.io example models on synthetic data, {args.epochs}-epoch fits with and "
        f"without {callbacks}; +cb/fit: median of {args.repeats} back-to-back pairs; "
        "dev_error epochs: epochs the +cb fit measured; peak: maximum resident set of a "
        "process fitting 2 epochs"
    )
    return rich_table(title, headers, rows, width=180)


def every_setting(text: str) -> int | str:
    """`--every`: "auto" or a positive integer."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f'must be "auto" or a positive integer; got {text!r}')
    return int(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="back-to-back pairs per kind")
    parser.add_argument("--kinds", help=f"comma-separated subset of: {', '.join(KINDS)}")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the train rows")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--logger",
        choices=("default", "activations"),
        default="default",
        help="+cb: the default callbacks, or ActivationStatsLogger alone",
    )
    parser.add_argument("--probe-rows", type=int, default=PROBE_ROWS, help="probe rows")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of each timed fit")
    parser.add_argument(
        "--every",
        type=every_setting,
        default="auto",
        help='the callbacks\' every: "auto" (their default) or a positive integer',
    )
    parser.add_argument("--child", choices=("pairs", "fit", "+cb"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.scale <= 0 or args.probe_rows < 1 or args.epochs < 1:
        parser.error(
            "--repeats, --probe-rows and --epochs must be positive integers and --scale positive"
        )
    kinds = DEFAULT_KINDS
    if args.kinds:
        kinds = [name.strip() for name in args.kinds.split(",")]
        unknown = [name for name in kinds if name not in KINDS]
        if unknown:
            parser.error(f"unknown kind(s) {unknown}; choose from {list(KINDS)}")
    if args.child:
        if args.child == "pairs":
            report = child_pairs(kinds[0], args)
        else:
            report = child_memory(kinds[0], args, args.child == "+cb")
        with open(args.json, "w") as file:
            json.dump(report, file)
        return 0

    load_before = os.getloadavg()
    results = run_benchmark(kinds, args)
    report = {
        "command": " ".join([os.path.basename(sys.argv[0]), *(argv or sys.argv[1:])]),
        "settings": vars(args),
        "machine": machine(
            load_before,
            python=platform.python_version(),
            keras=keras.__version__,
            numpy=np.__version__,
        ),
        "results": results,
    }
    report["table"] = print_table(results, args)
    return finish(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
