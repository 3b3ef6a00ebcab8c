"""What recording costs a course run: its datasets in MLflow, `--log-model`, step images.

Runs one experiment's `run(Config())` (the course's settings) in this process against a
fresh SQLite store, in three ways per round, the order rotating from round to round:

- `bare`: dataset logging replaced by a no-op (what a run cost before it logged inputs);
- `datasets`: as every run records now, train and dev sets as MLflow dataset inputs;
- `datasets+model`: the same with `log_model=True`, the default (`--no-log-model` is `datasets`);
- `no step images`: the default but for `step_images=False` (`--no-step-images`).

Every mode but the last logs the step images (the gradient heatmap and, for topics that draw
one, the decision boundary at ~10 intervals): `step images/none` is the median over rounds of
`datasets+model` over `no step images` in the same round.

Each run's wall time is measured around the `run` call; one unmeasured run first pays the
imports and compilation. On a busy machine the runs' own spread (seconds) swamps a cost of a
few percent, so the two recording calls are also timed inside the runs that make them
(`RunRecorder.log_datasets`, `RunRecorder.log_keras_model`, and `RunRecorder.log_training`:
the diagnosis, gradient-health tags and the two figures every run records as training
ends), and their medians are given as a fraction of the median `datasets` run: the cost the
~5 % rule for `--log-model` is decided on. So are the step images' drawing (on the training
thread, `RecorderCallback._log_step_images`) and writing (`RunRecorder.log_step_images`, on the
writer thread), summed over each run. Prints the medians, the ratios and the load
average the machine had (the ratios hold under load better than the seconds do); `--json
PATH` writes them.

Run: `python benchmarks/bench_recording.py [--experiment regularization] [--rounds 5]`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_report import finish, machine  # noqa: E402

from experiments.harness.registry import EXPERIMENTS  # noqa: E402

MODES = ("bare", "datasets", "datasets+model", "no step images")
STEP_IMAGE_CALLS = ("step images drawn", "step images written")  # summed over a run


@contextlib.contextmanager
def timing(method: str, seconds: list[float], owner=None):
    """Time every call of `owner.<method>` (`RunRecorder`'s by default) into `seconds`."""
    from reg_callbacks.tracking import RunRecorder

    owner = owner or RunRecorder
    original = getattr(owner, method)

    def timed(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    setattr(owner, method, timed)
    try:
        yield
    finally:
        setattr(owner, method, original)


@contextlib.contextmanager
def without_datasets():
    from reg_callbacks.tracking import RunRecorder

    logged = RunRecorder.log_datasets
    RunRecorder.log_datasets = lambda self, *args, **kwargs: None
    try:
        yield
    finally:
        RunRecorder.log_datasets = logged


def timed_run(module, cfg, mode: str, tracking_uri: str, calls: dict[str, list[float]]) -> float:
    import keras

    from reg_callbacks.mlflow_callback import RecorderCallback

    keras.utils.clear_session(free_memory=False)  # as a sweep worker does between configs
    where = {
        "tracking_uri": tracking_uri,
        "log_model": mode in ("datasets+model", "no step images"),
        "step_images": mode != "no step images",
    }
    drawn, written = [], []
    with contextlib.ExitStack() as stack:
        stack.enter_context(timing("log_training", calls["log_training"]))
        stack.enter_context(timing("_log_step_images", drawn, owner=RecorderCallback))
        stack.enter_context(timing("log_step_images", written))
        if mode == "bare":
            stack.enter_context(without_datasets())
        else:
            stack.enter_context(timing("log_datasets", calls["log_datasets"]))
            stack.enter_context(timing("log_keras_model", calls["log_keras_model"]))
        started = time.perf_counter()
        module.run(cfg, **where)
        seconds = time.perf_counter() - started
    if where["step_images"]:
        calls["step images drawn"].append(sum(drawn))
        calls["step images written"].append(sum(written))
    return seconds


MEASURES = {
    "datasets/bare": "ratio of the medians",
    "model/datasets": "ratio of the medians",
    "step images/none": "median of the rounds' ratios",
}


def per(name: str) -> str:
    return "a run" if name in STEP_IMAGE_CALLS else "a call"


def called(name: str) -> str:
    return name if name in STEP_IMAGE_CALLS else f"`RunRecorder.{name}`"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="regularization", choices=sorted(EXPERIMENTS))
    parser.add_argument("--rounds", type=int, default=5, help="runs of each mode")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be a positive integer")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from experiments.harness.quiet import quiet_logs
    from experiments.sweep.plan import load_experiment

    quiet_logs()
    module = load_experiment(args.experiment)
    cfg = module.Config()
    load_before = os.getloadavg()
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    calls: dict[str, list[float]] = {
        "log_datasets": [],
        "log_keras_model": [],
        "log_training": [],
        **{name: [] for name in STEP_IMAGE_CALLS},
    }
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        os.chdir(folder)  # the runs' artifacts go to <folder>/mlruns
        first = {name: [] for name in calls}  # the warm-up's: a fresh process's imports too
        timed_run(module, cfg, "datasets+model", uri, first)
        for round_ in range(args.rounds):
            shift = round_ % len(MODES)
            for mode in MODES[shift:] + MODES[:shift]:
                seconds[mode].append(timed_run(module, cfg, mode, uri, calls))
                print(f"round {round_ + 1} {mode:15} {seconds[mode][-1]:6.2f} s", flush=True)
        os.chdir(ROOT)
    median = {mode: statistics.median(values) for mode, values in seconds.items()}
    ratios = {
        "datasets/bare": median["datasets"] / median["bare"],
        "model/datasets": median["datasets+model"] / median["datasets"],
        "step images/none": statistics.median(
            with_images / without
            for with_images, without in zip(
                seconds["datasets+model"], seconds["no step images"], strict=True
            )
        ),
    }
    call_median = {name: statistics.median(values) for name, values in calls.items() if values}
    share = {name: value / median["datasets"] for name, value in call_median.items()}
    for mode in MODES:
        print(f"{mode:15} median {median[mode]:6.2f} s over {args.rounds} runs")
    for name, ratio in ratios.items():
        print(f"{name:16} {ratio:.3f} ({MEASURES[name]})")
    for name, value in call_median.items():
        print(f"{name:19} median {value:6.3f} s {per(name)}, {share[name]:.1%} of a run")
    for name, values in first.items():
        print(f"{name:19} first {per(name)} in the process {values[0]:6.3f} s")
    command = f"python benchmarks/bench_recording.py --experiment {args.experiment}"
    rows = [[mode, f"{median[mode]:.2f} s a run", "median"] for mode in MODES]
    rows += [[name, f"{ratio:.3f}", MEASURES[name]] for name, ratio in ratios.items()]
    rows += [
        [called(name), f"{value:.3f} s {per(name)}", f"{share[name]:.1%} of a run"]
        for name, value in call_median.items()
    ]
    rows += [
        [f"{called(name)}, first {per(name)}", f"{values[0]:.3f} s", "imports included"]
        for name, values in first.items()
        if values
    ]
    title = (
        f"`{args.experiment}` on its defaults, {args.rounds} runs of each kind in rotating "
        "order; the calls timed inside the runs that make them, against the median "
        "`datasets` run"
    )
    report = {
        "command": f"{command} --rounds {args.rounds}",
        "experiment": args.experiment,
        "rounds": args.rounds,
        "seconds": seconds,
        "median_s": median,
        "ratios": ratios,
        "call_seconds": calls,
        "call_median_s": call_median,
        "call_share_of_run": share,
        "first_call_s": {name: values[0] for name, values in first.items() if values},
        "table": {"title": title, "headers": ["what", "time", "measure"], "rows": rows},
        "machine": machine(load_before),
    }
    return finish(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
