"""Per-step cost of training the course's small nets, four ways, side by side in one run.

For each net, from the same initial weights, data, iteration count and seed:

(a) `numpy`     the course's loop: forward, cost, backward, update, in NumPy (float64),
                inverted dropout and the L2 term where the net has them;
(b) `fit`       naive `model.fit(epochs=iterations, batch_size=m)`, fewer steps, per step;
(c) `train`     `reg_callbacks.train`, one compiled loop per logging interval;
(d) `train+cb`  (c) with `GradientNormLogger`, `BiasVarianceCallback` and MLflow recording
                (`RunRecorder.keras_callback()`) at the default cadence: every interval.

Times are steady state: the first call of each path (tracing, XLA compilation) is timed
apart and reported as `trace s`. Each repeat runs every variant once, in turn, and the
table keeps each variant's fastest repeat, so a burst of load elsewhere on a shared machine
does not decide a ratio. The callbacks' overhead, a few per cent, is finer than a shared
machine's drift between runs (its speed can halve for seconds), so (d)/(c) is not a ratio
of fastest repeats but the median over repeats of (d) / (c) run back to back, in
alternating order (c, d, then d, c) so that a steady drift cancels. (d)'s time stops when
`on_train_end` starts; the end-of-run MLflow write is timed apart (`end write ms`) and
added in `+cb/train with end`. MLflow writes go to a temporary SQLite store.

The users' cases (`USER_CASES`: keras.io's MNIST convnet and Conv1D timeseries classifier,
`tests/public_examples.py`) compare only `fit` and `train` on one epoch of mini-batches
(`train(iterations=steps, log_every=steps, batch_size=B)` against `fit(epochs=1,
batch_size=B)`): `train/fit` is the median of back-to-back pairs in alternating order;
`trace s` is the first `train` call less a steady one. They run on TensorFlow only: on
JAX both `fit` and `train` compile with XLA, whose CPU convolutions take that long.

Every Keras backend in `--backends` (default: TensorFlow, and JAX when installed) gets its
rows, case by case: Keras runs one backend per process, so the script times its own
backend itself and each other one in a child process (`KERAS_BACKEND=<name>`, same
arguments, one case), alternating which goes first from case to case, and merges the
child's rows; each row names its `backend`, and `vs TF` is its `train` time over
TensorFlow's for the same case.

Run: `python benchmarks/bench_training.py [--json PATH] [--iterations N] [--repeats R]
[--backends tensorflow,jax]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from bench_report import finish, machine, rich_table  # noqa: E402
from sklearn.datasets import load_digits, make_circles, make_moons  # noqa: E402

from reg_callbacks import BiasVarianceCallback, GradientNormLogger, RunRecorder, train  # noqa: E402
from reg_callbacks.training import DEFAULT_LOG_EVERY, _BatchOrder  # noqa: E402

VARIANTS = ("numpy", "fit", "train", "train+cb")
BACKENDS = ("tensorflow", "jax")


@dataclass(frozen=True)
class Case:
    name: str
    hidden: tuple[int, ...]
    learning_rate: float
    keep_prob: float = 1.0
    lambd: float = 0.0  # course's L2 strength: cost += lambd / (2 m) * sum ||W||^2
    batch_size: int | None = None  # None: full batch
    data: str = "moons"


CASES = (
    Case("2-20-3-1", (20, 3), 0.3),
    Case("2-20-3-1 L2", (20, 3), 0.3, lambd=0.7),
    Case("2-20-3-1 dropout", (20, 3), 0.3, keep_prob=0.86),
    Case("2-10-5-1 circles", (10, 5), 0.01, data="circles"),
    Case("64-64-32-32-16-10 digits mb64", (64, 32, 32, 16), 0.05, batch_size=64, data="digits"),
)


@dataclass(frozen=True)
class UserCase:
    name: str
    rows: int
    batch_size: int


USER_CASES = (
    UserCase("mnist convnet mb128", 2048, 128),
    UserCase("conv1d timeseries mb32", 512, 32),
)


def make_user_case(case: UserCase):
    """A keras.io example model and synthetic data for it: `(model, x, y)`."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    import public_examples as examples

    keras.utils.set_random_seed(0)
    if case.name.startswith("mnist"):
        return examples.mnist_convnet(), *examples.mnist_like(case.rows)
    return examples.timeseries_conv1d(), *examples.timeseries_like(case.rows)


def run_user_case(case: UserCase, args) -> dict:
    """`fit` against `train` on one epoch of a user's model, in back-to-back pairs."""
    model, x, y = make_user_case(case)
    steps = math.ceil(case.rows / case.batch_size)

    def run_fit():
        return model.fit(x, y, batch_size=case.batch_size, epochs=1, verbose=0)

    def run_train():
        return train(model, x, y, iterations=steps, log_every=steps, batch_size=case.batch_size)

    first = {"fit": timed(run_fit)[0], "train": timed(run_train)[0]}
    pairs = []
    for repeat in range(args.repeats):
        order = (run_fit, run_train) if repeat % 2 == 0 else (run_train, run_fit)
        pair = {}
        for run in order:
            wall, cpu, _ = timed_with_cpu(run)
            pair["fit" if run is run_fit else "train"] = {"wall": wall, "cpu": cpu}
        pairs.append(pair)
    ms = {
        variant: 1e3 * statistics.median(pair[variant]["wall"] for pair in pairs) / steps
        for variant in ("fit", "train")
    }
    return {
        "case": case.name,
        "backend": keras.backend.backend(),
        "samples": case.rows,
        "batch_size": case.batch_size,
        "iterations": steps,
        "ms_per_step": ms,
        "ratios": {
            "train/fit": statistics.median(p["train"]["wall"] / p["fit"]["wall"] for p in pairs),
            "train/fit cpu": statistics.median(p["train"]["cpu"] / p["fit"]["cpu"] for p in pairs),
        },
        "trace_s": {
            variant: max(0.0, first[variant] - ms[variant] * steps / 1e3) for variant in first
        },
        "pairs": pairs,
    }


def make_data(case: Case):
    """(x_train, y_train, x_dev, y_dev): rows are samples, float32 x; y (m, 1) or int labels."""
    if case.data == "moons":
        x, y = make_moons(411, noise=0.3, random_state=0)
        x, y = x.astype("float32"), y.reshape(-1, 1).astype("float32")
        return x[:211], y[:211], x[211:], y[211:]
    if case.data == "circles":
        x, y = make_circles(400, noise=0.05, random_state=1)
        x, y = x.astype("float32"), y.reshape(-1, 1).astype("float32")
        return x[:300], y[:300], x[300:], y[300:]
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    x, y = (digits.data[order] / 16.0).astype("float32"), digits.target[order].astype("int64")
    return x, y, x[-300:], y[-300:]


def build_model(case: Case, n_inputs: int, n_train: int, seed: int = 0) -> keras.Model:
    """The Keras net: ReLU hidden layers, sigmoid or softmax output, SGD, the L2 and dropout."""
    regularizer = keras.regularizers.L2(case.lambd / (2 * n_train)) if case.lambd else None
    layers = [keras.Input((n_inputs,))]
    for i, units in enumerate(case.hidden):
        layers.append(
            keras.layers.Dense(
                units,
                "relu",
                kernel_initializer=keras.initializers.HeNormal(seed + i),
                kernel_regularizer=regularizer,
            )
        )
        if case.keep_prob < 1:
            layers.append(keras.layers.Dropout(1 - case.keep_prob, seed=seed + i))
    multiclass = case.data == "digits"
    layers.append(
        keras.layers.Dense(
            10 if multiclass else 1,
            "softmax" if multiclass else "sigmoid",
            kernel_initializer=keras.initializers.HeNormal(seed + 99),
            kernel_regularizer=regularizer,
        )
    )
    model = keras.Sequential(layers)
    loss = "sparse_categorical_crossentropy" if multiclass else "binary_crossentropy"
    model.compile(keras.optimizers.SGD(case.learning_rate), loss, metrics=["accuracy"])
    return model


# ----- (a) the course's loop, in NumPy -----


def to_parameters(weights) -> dict:
    """Keras Dense weights [kernel, bias, ...] as the course's {"W1": (n1, n0), "b1": (n1, 1)}."""
    parameters = {}
    for layer, (kernel, bias) in enumerate(zip(weights[::2], weights[1::2], strict=True), 1):
        parameters[f"W{layer}"] = kernel.T.astype(np.float64)
        parameters[f"b{layer}"] = bias.reshape(-1, 1).astype(np.float64)
    return parameters


def forward_propagation(X, parameters, keep_prob, rng):
    L = len(parameters) // 2
    A, caches = X, []
    for layer in range(1, L + 1):
        Z = parameters[f"W{layer}"] @ A + parameters[f"b{layer}"]
        if layer < L:
            A_next = np.maximum(0, Z)
            D = None
            if keep_prob < 1:
                D = rng.random(A_next.shape) < keep_prob
                A_next = A_next * D / keep_prob
        elif Z.shape[0] == 1:
            A_next, D = 1 / (1 + np.exp(-Z)), None
        else:
            E = np.exp(Z - Z.max(axis=0, keepdims=True))
            A_next, D = E / E.sum(axis=0, keepdims=True), None
        caches.append((A, Z, D))
        A = A_next
    return A, caches


def compute_cost(AL, Y, parameters, lambd):
    m = Y.shape[1]
    AL = np.clip(AL, 1e-7, 1 - 1e-7)  # as Keras's cross-entropy does: a saturated net stays finite
    if AL.shape[0] == 1:
        cost = -np.sum(Y * np.log(AL) + (1 - Y) * np.log(1 - AL)) / m
    else:
        cost = -np.sum(Y * np.log(AL)) / m
    if lambd:
        L = len(parameters) // 2
        squares = sum(np.sum(np.square(parameters[f"W{layer}"])) for layer in range(1, L + 1))
        cost += lambd / (2 * m) * squares
    return cost


def backward_propagation(AL, Y, caches, parameters, keep_prob, lambd):
    m, L = Y.shape[1], len(caches)
    grads, dZ = {}, AL - Y  # sigmoid + cross-entropy, and softmax + cross-entropy alike
    for layer in range(L, 0, -1):
        A_prev, _, _ = caches[layer - 1]
        W = parameters[f"W{layer}"]
        grads[f"dW{layer}"] = dZ @ A_prev.T / m + (lambd / m) * W
        grads[f"db{layer}"] = np.sum(dZ, axis=1, keepdims=True) / m
        if layer > 1:
            dA = W.T @ dZ
            _, Z_prev, D_prev = caches[layer - 2]
            if D_prev is not None:
                dA = dA * D_prev / keep_prob
            dZ = dA * (Z_prev > 0)
    return grads


def update_parameters(parameters, grads, learning_rate):
    for layer in range(1, len(parameters) // 2 + 1):
        parameters[f"W{layer}"] -= learning_rate * grads[f"dW{layer}"]
        parameters[f"b{layer}"] -= learning_rate * grads[f"db{layer}"]
    return parameters


def numpy_model(X, Y, parameters, case: Case, iterations: int, log_every: int, seed: int = 0):
    """The course's `model()`: X (n_x, m), Y (n_y, m); mini-batches in `train`'s order."""
    rng = np.random.default_rng(seed)
    order = _BatchOrder(X.shape[1], case.batch_size, seed) if case.batch_size else None
    for start in range(0, iterations, log_every):
        steps = min(log_every, iterations - start)
        rows = order.indices(start, steps) if order else [None] * steps
        for batch in rows:
            X_b, Y_b = (X, Y) if batch is None else (X[:, batch], Y[:, batch])
            AL, caches = forward_propagation(X_b, parameters, case.keep_prob, rng)
            cost = compute_cost(AL, Y_b, parameters, case.lambd)
            grads = backward_propagation(AL, Y_b, caches, parameters, case.keep_prob, case.lambd)
            parameters = update_parameters(parameters, grads, case.learning_rate)
    return parameters, cost


def numpy_model_quiet(*args, **kwargs):
    """`numpy_model` without overflow warnings: exp(-z) of a saturated sigmoid unit overflows
    to inf, and 1 / (1 + inf) is the right 0."""
    with np.errstate(over="ignore"):
        return numpy_model(*args, **kwargs)


def full_cost(parameters, X, Y, case: Case) -> float:
    """The training cost with dropout off, L2 term included: one yardstick for (a) and (c)."""
    with np.errstate(over="ignore"):
        AL, _ = forward_propagation(X, parameters, 1.0, None)
    return float(compute_cost(AL, Y, parameters, case.lambd))


# ----- timing -----


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def timed_with_cpu(fn):
    """Wall seconds and the process's CPU seconds (all threads, MLflow's writer included):
    CPU time does not count waiting for a core, so it tells the work added to training apart
    from the load of a shared machine."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - start, time.process_time() - start_cpu, result


class _EndOfRun(keras.callbacks.Callback):
    """Marks when `on_train_end` starts, to time the end-of-run MLflow write apart."""

    def on_train_end(self, logs=None):
        self.started, self.started_cpu = time.perf_counter(), time.process_time()


def run_case(case: Case, args, tracking_uri: str) -> dict:
    x, y, x_dev, y_dev = make_data(case)
    m = len(x)
    model = build_model(case, x.shape[1], m)
    initial = model.get_weights()
    X = x.T.astype(np.float64)
    Y = (np.eye(10)[y].T if y.ndim == 1 else y.T).astype(np.float64)
    n, log_every = args.iterations, args.log_every
    fit_batch = case.batch_size or m
    fit_steps_per_epoch = math.ceil(m / fit_batch)
    fit_epochs = max(1, min(n, args.fit_iterations) // fit_steps_per_epoch)

    def reset():
        model.set_weights(initial)
        model.optimizer.iterations.assign(0)

    def run_numpy():
        return numpy_model_quiet(X, Y, to_parameters(initial), case, n, log_every)

    def run_fit(epochs):
        return model.fit(x, y, batch_size=fit_batch, epochs=epochs, verbose=0)

    def run_train(callbacks=None, iterations=n):
        return train(
            model,
            x,
            y,
            iterations=iterations,
            log_every=log_every,
            batch_size=case.batch_size,
            callbacks=callbacks,
        )

    def run_with_callbacks(iterations=n):
        """Seconds in `train`, of which the end-of-run MLflow write, and the run's set-up."""
        end_of_run = _EndOfRun()
        callbacks = [
            BiasVarianceCallback((x, y), (x_dev, y_dev)),
            GradientNormLogger((x[:256], y[:256])),
        ]
        setup, recorder = timed(
            lambda: RunRecorder("bench", run_name=case.name, tracking_uri=tracking_uri).__enter__()
        )
        callbacks += [end_of_run, recorder.keras_callback()]
        start, start_cpu = time.perf_counter(), time.process_time()
        run_train(callbacks, iterations)
        stop = time.perf_counter()
        teardown, _ = timed(lambda: recorder.__exit__(None, None, None))
        before_end = end_of_run.started - start, end_of_run.started_cpu - start_cpu
        return before_end, stop - end_of_run.started, setup + teardown

    # First calls: tracing and compilation, timed apart.
    trace = {}
    trace["fit"], _ = timed(lambda: run_fit(1))
    reset()
    trace["train"], _ = timed(lambda: run_train(iterations=log_every))
    reset()
    (trace["train+cb"], _), end, _ = run_with_callbacks(log_every)
    trace["train+cb"] += end

    def run_plain():
        reset()
        seconds, cpu, _ = timed_with_cpu(run_train)
        return {"wall": seconds, "cpu": cpu, "weights": model.get_weights()}

    def run_recorded():
        reset()
        (seconds, cpu), end, setup = run_with_callbacks()
        return {"wall": seconds, "cpu": cpu, "end": end, "setup": setup}

    best = dict.fromkeys(VARIANTS, math.inf)
    best_cpu = dict.fromkeys(("train", "train+cb"), math.inf)
    pairs = []  # (c, d) run back to back
    for repeat in range(args.repeats):
        seconds, (numpy_parameters, _) = timed(run_numpy)
        best["numpy"] = min(best["numpy"], seconds / n)
        reset()
        seconds, _ = timed(lambda: run_fit(fit_epochs))
        best["fit"] = min(best["fit"], seconds / (fit_epochs * fit_steps_per_epoch))
        if repeat % 2 == 0:
            plain = run_plain()
            recorded = run_recorded()
        else:
            recorded = run_recorded()
            plain = run_plain()
        pairs.append((plain, recorded))
        for variant, result in (("train", plain), ("train+cb", recorded)):
            best[variant] = min(best[variant], result["wall"] / n)
            best_cpu[variant] = min(best_cpu[variant], result["cpu"] / n)
    reset()
    train_weights = pairs[-1][0]["weights"]

    def paired(ratio) -> float:
        return statistics.median(ratio(plain, recorded) for plain, recorded in pairs)

    ms = {variant: 1e3 * seconds for variant, seconds in best.items()}
    cpu_ms = {variant: 1e3 * seconds for variant, seconds in best_cpu.items()}
    end_write = statistics.median(recorded["end"] for _, recorded in pairs)
    run_overhead = statistics.median(recorded["setup"] for _, recorded in pairs)
    per_step_first = {"fit": ms["fit"], "train": ms["train"], "train+cb": ms["train+cb"]}
    steps_first = {"fit": fit_steps_per_epoch, "train": log_every, "train+cb": log_every}
    cost_numpy = full_cost(numpy_parameters, X, Y, case)
    cost_train = full_cost(to_parameters(train_weights), X, Y, case)
    return {
        "case": case.name,
        "backend": keras.backend.backend(),
        "samples": m,
        "batch_size": case.batch_size,
        "keep_prob": case.keep_prob,
        "lambd": case.lambd,
        "iterations": n,
        "fit_steps": fit_epochs * fit_steps_per_epoch,
        "ms_per_step": ms,
        "cpu_ms_per_step": cpu_ms,
        "ratios": {
            "train/numpy": ms["train"] / ms["numpy"],
            "train/fit": ms["train"] / ms["fit"],
            "fit/numpy": ms["fit"] / ms["numpy"],
            "train+cb/train": paired(lambda c, d: d["wall"] / c["wall"]),
            "train+cb/train cpu": paired(lambda c, d: d["cpu"] / c["cpu"]),
            "train+cb/train incl. end write": paired(
                lambda c, d: (d["wall"] + d["end"]) / c["wall"]
            ),
        },
        "trace_s": {
            variant: max(0.0, trace[variant] - per_step_first[variant] * steps_first[variant] / 1e3)
            for variant in trace
        },
        "end_write_ms": 1e3 * end_write,
        "mlflow_run_ms": 1e3 * run_overhead,
        "final_cost": {
            "numpy": cost_numpy,
            "train": cost_train,
            "abs_diff": abs(cost_numpy - cost_train),
        },
    }


ALL_CASES = (*CASES, *USER_CASES)


def print_table(results: list[dict]) -> dict:
    headers = [
        "net",
        "backend",
        "NumPy ms",
        "fit ms",
        "train ms",
        "+cb ms",
        "vs TF",
        "train/fit",
        "train/NumPy",
        "fit/NumPy",
        "+cb/train",
        "+cb/train CPU",
        "end write ms",
        "+cb/train with end",
        "trace s",
        "cost NumPy",
        "cost train",
    ]
    tf_train = {
        r["case"]: r["ms_per_step"]["train"] for r in results if r["backend"] == "tensorflow"
    }
    rows = []
    for r in results:
        ms, ratios = r["ms_per_step"], r["ratios"]
        versus = ms["train"] / tf_train[r["case"]] if r["case"] in tf_train else None
        cost = r.get("final_cost", {})
        rows.append(
            [
                r["case"],
                r["backend"],
                _cell(ms.get("numpy"), ".4f"),
                f"{ms['fit']:.2f}",
                f"{ms['train']:.4f}",
                _cell(ms.get("train+cb"), ".4f"),
                "-" if versus is None else f"{versus:.2f}",
                f"{ratios['train/fit']:.3f}",
                _cell(ratios.get("train/numpy"), ".2f"),
                _cell(ratios.get("fit/numpy"), ".0f"),
                _cell(ratios.get("train+cb/train"), ".3f"),
                _cell(ratios.get("train+cb/train cpu"), ".3f"),
                _cell(r.get("end_write_ms"), ".0f"),
                _cell(ratios.get("train+cb/train incl. end write"), ".3f"),
                f"{r['trace_s']['train']:.1f}",
                _cell(cost.get("numpy"), ".5f"),
                _cell(cost.get("train"), ".5f"),
            ]
        )
    title = (
        "ms per training step: fastest repeat (course nets) or median of back-to-back pairs "
        "(users' nets, one epoch); +cb/train and users' train/fit: median of back-to-back pairs"
    )
    return rich_table(title, headers, rows, width=210)


def _cell(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--iterations", type=int, default=30_000, help="steps per variant (the course's 30 000)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="the fastest repeat counts")
    parser.add_argument("--log-every", type=int, default=DEFAULT_LOG_EVERY)
    parser.add_argument(
        "--fit-iterations", type=int, default=100, help="steps of the naive fit (it is slow)"
    )
    parser.add_argument(
        "--cases",
        help=f"comma-separated subset of: {', '.join(c.name for c in ALL_CASES)}",
    )
    parser.add_argument(
        "--backends",
        help="comma-separated Keras backends, each timed in its own process: "
        f"{', '.join(BACKENDS)} (default: tensorflow, and jax when installed)",
    )
    args = parser.parse_args(argv)
    for name in ("iterations", "repeats", "log_every", "fit_iterations"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    cases = ALL_CASES
    if args.cases:
        wanted = [name.strip() for name in args.cases.split(",")]
        unknown = [name for name in wanted if name not in {c.name for c in ALL_CASES}]
        if unknown:
            parser.error(f"unknown case(s) {unknown}; choose from {[c.name for c in ALL_CASES]}")
        cases = [c for c in ALL_CASES if c.name in wanted]
    backends = _backends(parser, args.backends)

    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as store:
        tracking_uri = f"sqlite:///{os.path.join(store, 'mlflow.db')}"
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
        _create_experiment(tracking_uri, os.path.join(store, "artifacts"))
        for index, case in enumerate(cases):
            rows = {}
            order = backends if index % 2 == 0 else backends[::-1]
            if isinstance(case, UserCase):  # XLA's CPU convolutions make JAX's rows hours long
                order = [backend for backend in order if backend == "tensorflow"]
            for backend in order:
                if backend == keras.backend.backend():
                    if isinstance(case, UserCase):
                        rows[backend] = run_user_case(case, args)
                    else:
                        rows[backend] = run_case(case, args, tracking_uri)
                else:
                    rows[backend] = run_in_child(backend, case, args, store)
                print(f"done: {case.name} on {backend}", file=sys.stderr, flush=True)
            results += [rows[backend] for backend in backends if backend in rows]
    report = {
        "command": " ".join([os.path.basename(sys.argv[0]), *(argv or sys.argv[1:])]),
        "machine": machine(
            load_before,
            python=platform.python_version(),
            tensorflow=_version("tensorflow"),
            keras=keras.__version__,
            keras_backend=keras.backend.backend(),
            backends=list(backends),
            jax=_version("jax") if "jax" in backends else None,
            numpy=np.__version__,
        ),
        "iterations": args.iterations,
        "repeats": args.repeats,
        "log_every": args.log_every,
        "results": results,
    }
    report["table"] = print_table(results)
    return finish(report, args.json)


def _backends(parser, requested: str | None) -> list[str]:
    if requested is None:
        installed = importlib.util.find_spec("jax") is not None
        return ["tensorflow", "jax"] if installed else ["tensorflow"]
    backends = [name.strip() for name in requested.split(",") if name.strip()]
    unknown = [name for name in backends if name not in BACKENDS]
    if unknown or not backends or len(set(backends)) != len(backends):
        parser.error(f"--backends takes distinct names from {list(BACKENDS)}; got {requested!r}")
    if "jax" in backends and importlib.util.find_spec("jax") is None:
        parser.error("--backends jax needs JAX: pip install -e '.[jax]'")
    return backends


def run_in_child(backend: str, case: Case, args, folder: str) -> dict:
    """`case`'s row on `backend`, timed by this script in a process of that backend."""
    json_path = os.path.join(folder, f"{backend}.json")
    command = [sys.executable, os.path.abspath(__file__), "--backends", backend]
    command += ["--cases", case.name, "--json", json_path]
    for name in ("iterations", "repeats", "log_every", "fit_iterations"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    done = subprocess.run(
        command, env={**os.environ, "KERAS_BACKEND": backend}, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"the {backend} process failed on {case.name!r}:\n{done.stderr[-3000:]}")
    with open(json_path) as file:
        return json.load(file)["results"][0]


def _create_experiment(tracking_uri: str, artifact_root: str) -> None:
    """The bench's experiment, with its artifacts in the temporary store, not ./mlruns."""
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri).create_experiment("bench", artifact_location=artifact_root)


def _version(package: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(package)


if __name__ == "__main__":
    sys.exit(main())
