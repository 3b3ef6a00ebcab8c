"""How long `gradient_check` takes: its default (every variable along random directions, then
parameters one by one where it matters) against the course's per-parameter loop.

Models as people write them (`tests/public_examples.py`): a 10k-parameter MLP (batch 64), a
~224k-parameter residual conv net (32x32x3, batch 8), `keras.applications.MobileNet` with
alpha 0.25 and `weights=None` (32x32x3, batch 8) and Keras's MNIST convnet example (batch
8). The per-parameter loop compares every parameter on the MLP; on the larger models it
compares `--sample` parameters drawn at random (`max_params`): all of them would take hours.

Every call traces its own functions, as each call of a user does; one untimed call per model
first warms what Keras builds once (its predict function). The two modes run back to back
in alternating order (default first, then per-parameter first, ...); the table gives each
mode's median and the median of the pairs' ratios. What each call compared is read from
its report.

Run: `python benchmarks/bench_gradient_check.py [--repeats R] [--sample N] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import public_examples  # noqa: E402
from bench_report import finish, machine, rich_table  # noqa: E402
from bench_training import timed  # noqa: E402

from reg_callbacks import gradient_check  # noqa: E402

MODELS = {
    "MLP 20-200-30-1, batch 64": public_examples.mlp_10k,
    "residual conv net, batch 8": public_examples.residual_convnet,
    "MobileNet alpha 0.25, batch 8": public_examples.mobilenet_small,
    "MNIST convnet, batch 8": public_examples.mnist_convnet_batch,
}
FULL_LOOP_UP_TO = 20_000  # parameters: the per-parameter loop compares all of them up to here


def describe(report) -> str:
    if report.mode == "directional":
        return (
            f"{report.n_variables} variables x {report.n_directions // report.n_variables} "
            f"directions + {report.n_checked} parameters"
        )
    return f"{report.n_checked} parameters"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of calls per model")
    parser.add_argument(
        "--sample", type=int, default=300, help="parameters the loop compares on large models"
    )
    parser.add_argument("--models", help="a ';'-separated subset of the model names")
    args = parser.parse_args(argv)
    names = list(MODELS) if not args.models else args.models.split(";")
    unknown = [name for name in names if name not in MODELS]
    if unknown or args.repeats < 1 or args.sample < 1:
        parser.error(
            f"--models must be among {'; '.join(MODELS)}, --repeats and --sample positive; "
            f"got {args.models!r}, {args.repeats}, {args.sample}"
        )
    load_before = os.getloadavg()
    rows, results = [], {}
    for name in names:
        model, x, y = MODELS[name]()
        n_params = sum(int(v.numpy().size) for v in model.trainable_variables)
        loop = {"mode": "per_parameter"}
        if n_params > FULL_LOOP_UP_TO:
            loop["max_params"] = args.sample
        modes = {"default": {}, "per-parameter": loop}
        gradient_check(model, x, y)  # untimed: Keras's predict function, TensorFlow's start-up
        seconds = {mode: [] for mode in modes}
        reports = {}
        for repeat in range(args.repeats):
            order = list(modes) if repeat % 2 == 0 else list(reversed(modes))
            for mode in order:
                elapsed, reports[mode] = timed(
                    functools.partial(gradient_check, model, x, y, **modes[mode])
                )
                seconds[mode].append(elapsed)
                print(f"{name}, {mode}: {elapsed:.2f} s ({describe(reports[mode])})", flush=True)
        ratios = [
            loop_s / default_s
            for default_s, loop_s in zip(seconds["default"], seconds["per-parameter"], strict=True)
        ]
        results[name] = {
            "params": n_params,
            "seconds": seconds,
            "ratio_per_parameter_over_default": statistics.median(ratios),
            "compared": {mode: describe(report) for mode, report in reports.items()},
            "verdicts": {mode: report.verdict for mode, report in reports.items()},
        }
        for mode in modes:
            rows.append(
                [
                    name,
                    f"{n_params:,}",
                    mode,
                    f"{statistics.median(seconds[mode]):.2f}",
                    describe(reports[mode]),
                    reports[mode].verdict,
                    f"{statistics.median(ratios):.1f}x" if mode == "per-parameter" else "",
                ]
            )
    table = rich_table(
        f"gradient_check, seconds a call (median of {args.repeats}), TensorFlow, "
        f"{os.cpu_count()} CPUs",
        ["model", "parameters", "mode", "seconds", "compared", "verdict", "loop / default"],
        rows,
        width=140,
    )
    report = {
        "results": results,
        "table": table,
        "machine": machine(load_before, platform=platform.platform()),
    }
    return finish(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
