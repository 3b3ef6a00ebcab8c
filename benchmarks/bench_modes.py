"""Why `train(jit_compile="auto")` means XLA, and why Dropout draws with Threefry under it.

For each net of `bench_training.py`, times `train` as a plain `tf.function` and under XLA;
for the dropout net also under XLA with Keras's own mask generator, with Philox, and with
no dropout at all (the floor). Steady state per step (fastest of the repeats, variants
interleaved) and the first call (tracing + compilation + one interval), side by side.

Run: `python benchmarks/bench_modes.py [--iterations N] [--repeats R] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from bench_training import CASES, build_model, make_data  # noqa: E402

import reg_callbacks.training as training  # noqa: E402
from reg_callbacks.backends import tensorflow as tf_backend  # noqa: E402


def philox_dropout(inputs, rate, noise_shape=None, seed=None):
    """`threefry_dropout` with Philox bits (drawn flat too): TensorFlow's CPU generator."""
    random = tf_backend.keras_tf_random
    seed = random._cast_seed(random.draw_seed(seed))
    noise_shape = random._get_concrete_noise_shape(inputs, noise_shape)
    size = tf.reshape(tf.reduce_prod(noise_shape), [1])
    uniform = tf.random.stateless_uniform(size, seed, dtype=inputs.dtype, alg="philox")
    return inputs / (1 - rate) * tf.cast(tf.reshape(uniform, noise_shape) >= rate, inputs.dtype)


XLA_DROPOUT = {
    "threefry": tf_backend.threefry_dropout,
    "philox": philox_dropout,
    "keras default": tf_backend._KERAS_DROPOUT,
}


def variants():
    """(case name, variant label, case, jit_compile, dropout under XLA)."""
    for case in CASES:
        yield case.name, "plain graph", case, False, None
        if case.keep_prob < 1:
            for name, dropout in XLA_DROPOUT.items():
                yield case.name, f"XLA, {name} masks", case, True, dropout
            yield case.name, "XLA, no dropout", replace(case, keep_prob=1.0), True, None
        else:
            yield case.name, "XLA", case, True, None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    runs = []
    for case_name, label, case, jit_compile, dropout in variants():
        x, y, _, _ = make_data(case)
        model = build_model(case, x.shape[1], len(x))
        with _dropout_generator(dropout):
            start = time.perf_counter()
            training.train(
                model, x, y, iterations=1000, batch_size=case.batch_size, jit_compile=jit_compile
            )
            first = time.perf_counter() - start
        runs.append(
            {
                "case": case_name,
                "variant": label,
                "first_call_s": first,
                "ms_per_step": math.inf,
                "_run": (model, x, y, case, jit_compile, dropout),
            }
        )
        print(f"traced: {case_name} / {label}", file=sys.stderr, flush=True)
    for _ in range(args.repeats):
        for run in runs:
            model, x, y, case, jit_compile, dropout = run["_run"]
            with _dropout_generator(dropout):
                start = time.perf_counter()
                training.train(
                    model,
                    x,
                    y,
                    iterations=args.iterations,
                    batch_size=case.batch_size,
                    jit_compile=jit_compile,
                )
                seconds = time.perf_counter() - start
            run["ms_per_step"] = min(run["ms_per_step"], 1e3 * seconds / args.iterations)
    for run in runs:
        del run["_run"]
        print(
            f"{run['case']:32s} {run['variant']:28s} {run['ms_per_step']:8.4f} ms/step"
            f"   first call {run['first_call_s']:5.2f} s"
        )
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {"iterations": args.iterations, "repeats": args.repeats, "runs": runs},
                file,
                indent=2,
            )
    return 0


class _dropout_generator:
    """Makes `train`'s XLA loop draw dropout masks with `dropout` (None: Threefry, as shipped)."""

    def __init__(self, dropout):
        self.dropout = dropout

    def __enter__(self):
        self.shipped = tf_backend._DROPOUT_SWAP.replacement
        if self.dropout is not None:
            tf_backend._DROPOUT_SWAP.replacement = self.dropout
        # Models of one architecture share a compiled loop: trace this generator's afresh.
        tf_backend._TEMPLATES.clear()

    def __exit__(self, *exc):
        tf_backend._DROPOUT_SWAP.replacement = self.shipped
        tf_backend._TEMPLATES.clear()


if __name__ == "__main__":
    sys.exit(main())
