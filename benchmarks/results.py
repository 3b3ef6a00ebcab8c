"""Regenerate docs/results.md: every number this project measures, in one generated page.

The page has one section per source, each between `<!-- results:NAME -->` markers, each
with the command that measured it, the day and the machine's load:

- `sweep`: the course sweep (`python -m experiments.sweep` on a fresh MLflow store in a
  temporary folder) beside the course's own numbers. Its table is also written between the
  README's `results:sweep` markers; `tests/sweep/test_results.py` fails when the README's
  table and what the sweep prints disagree.
- `topics`: each topic's own numbers from the same sweep (every run's `summary.json`): the
  figures its docstring's claim is about, for its defaults.
- the benchmarks (`training`, `callbacks`, `sweep-throughput`, `recording`, `gradient-check`,
  `experiments`),
  each run only when named in `--benchmarks` (minutes each); a section not run again is
  kept as it was. A benchmark's `--json` report carries the `table` it printed, which is
  what lands here.

Run: `python benchmarks/results.py` (a couple of minutes on 2 cores), or
`python benchmarks/results.py --benchmarks training,callbacks` to measure those too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments.sweep.report import markdown_table, read_csv  # noqa: E402

PAGE = REPO / "docs" / "results.md"
README_MARKERS = ("<!-- results:sweep -->", "<!-- /results:sweep -->")
SWEEP_COMMAND = "python -m experiments.sweep"
# The course's train/dev error for a config, where the course reports one (its notebooks;
# each topic's docstring cites it). Regularization's are on the course's own 2-D file.
COURSE = {
    ("initialization", "init=zeros"): (0.50, 0.50),
    ("initialization", "init=random"): (0.17, 0.14),
    ("initialization", "init=he"): (0.007, 0.04),
    ("regularization", "variant=none"): (0.052, 0.085),
    ("regularization", "variant=l2"): (0.062, 0.070),
    ("regularization", "variant=dropout"): (0.071, 0.05),
}
# script, heading and what the section shows; `--benchmarks` names the keys.
BENCHMARKS = {
    "training": (
        "bench_training.py",
        "Training speed",
        "Per step: a course-style NumPy loop, naive `model.fit`, `train()` and `train()` with the "
        "standard callbacks and MLflow recording, side by side in one run; and `train()` against "
        "`fit` on one epoch of two keras.io example convnets.",
    ),
    "callbacks": (
        "bench_callbacks.py",
        "Callback overhead on a user's model",
        "What `GradientNormLogger` and `BiasVarianceCallback` at their defaults add to plain "
        "`model.fit` on keras.io example models: ten-epoch fits with and without them, back to "
        "back, the epochs the callbacks measured, and each process's peak memory.",
    ),
    "sweep-throughput": (
        "bench_sweep.py",
        "Sweep throughput",
        "Fresh processes one config each against the sweep's long-lived workers.",
    ),
    "recording": (
        "bench_recording.py",
        "What recording costs a course run",
        "A course run with and without its datasets, its model and its step images logged to "
        "MLflow (`bare` stubs dataset logging out); `--no-log-model` is the `datasets` row, "
        "`--no-step-images` the `no step images` row.",
    ),
    "gradient-check": (
        "bench_gradient_check.py",
        "Gradient checking: the default against the course's loop",
        "`gradient_check`'s default (every variable along random directions, then parameters "
        'one by one where it matters) against `mode="per_parameter"` (the course\'s loop) on '
        "models as people write them, back to back.",
    ),
    "experiments": (
        "bench_experiments.py",
        "Every experiment from the command line",
        "Each `python -m experiments.<name>` on its defaults, one after another.",
    ),
    "decomposition": (
        "bench_decomposition.py",
        "Bias-variance decomposition against mlxtend",
        "`reg_callbacks.bias_variance_decomposition` and mlxtend's `bias_variance_decomp` on the "
        "same Keras nets, data and bootstrap rounds, side by side (mlxtend from the "
        "`[benchmarks]` extra).",
    ),
}
# Topics outside the course sweep (minutes each), run on their defaults when named in
# `--benchmarks`: the numbers of their `summary.json`, a column for each nested child.
OWN_RUNS = ("tradeoff",)
SECTIONS = ("sweep", "topics", *OWN_RUNS, *BENCHMARKS)
# Summary keys that say nothing about the topic (at any depth), and what the sweep table shows.
NOT_MEASURED = {"run_id", "seconds"}
IN_SWEEP_TABLE = {"train_error", "dev_error", "label"}
# /proc/cpuinfo flags, widest vector instructions first, and the variables that cap them.
WIDEST_FIRST = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"))
ISA_CAPS = ("XLA_FLAGS", "ONEDNN_MAX_CPU_ISA")


def run_sweep(folder: Path) -> tuple[list[dict], str, str]:
    """The course sweep on a fresh store in `folder`: its records, store URI and timing."""
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": _pythonpath()}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "experiments.sweep", "--out", str(folder / "out")],
        cwd=folder,
        env=env,
        check=True,
    )
    wall = time.perf_counter() - started
    timing = f"{wall:.0f} s for the whole command, {_load(load_before)}"
    records = read_csv(folder / "out" / "course.csv")
    if any(r["status"] != "FINISHED" for r in records):
        raise SystemExit(
            "every config must have run in this sweep (none skipped or failed); got "
            + ", ".join(sorted({r["status"] for r in records}))
        )
    return records, tracking_uri, timing


def sweep_section(records: list[dict], timing: str) -> str:
    course = [
        f"| {experiment} | {config} | {train:.3f} | {dev:.3f} |"
        for (experiment, config), (train, dev) in COURSE.items()
    ]
    return "\n".join(
        [
            "## The course sweep",
            "",
            f"`{SWEEP_COMMAND}` on a fresh store ({len(records)} configs; {_measured(timing)}). "
            "Errors are fractions; the bias/variance runs' Bayes error is 0.1 by construction.",
            "",
            markdown_table(records).rstrip(),
            "",
            "The course's own numbers for the configs it reports (train / dev error = 1 −",
            "accuracy; regularization on the course's 2-D file, which is not bundled):",
            "",
            "| experiment | config | course train err | course dev err |",
            "|---|---|---:|---:|",
            *course,
        ]
    )


def topics_section(records: list[dict], tracking_uri: str) -> str:
    """Per topic, every number of its runs' summaries: a row a number, a column a config."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    by_topic: dict[str, list[tuple[str, dict]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for record in records:
            path = client.download_artifacts(record["run_id"], "summary.json", folder)
            summary = json.loads(Path(path).read_text(encoding="utf-8"))
            by_topic.setdefault(record["experiment"], []).append(
                (record["config"] or "(defaults)", _flat(summary))
            )
    parts = [
        "## What each topic measured",
        "",
        f"From the same sweep: every number in each run's `summary.json` ({_measured()}). "
        "`python -m experiments.<topic> --help` lists a topic's flags; its docstring states the "
        "claim and the course's number.",
    ]
    for topic, runs in by_topic.items():
        keys = [
            k
            for k in dict.fromkeys(k for _, s in runs for k in s)
            if k not in IN_SWEEP_TABLE and k.rsplit("/", 1)[-1] not in NOT_MEASURED
        ]
        parts += ["", f"### {topic}", "", _markdown(["", *(c for c, _ in runs)], [
            [key, *(_cell(summary.get(key)) for _, summary in runs)] for key in keys
        ])]  # fmt: skip
    return "\n".join(parts)


def own_run_section(name: str, folder: Path) -> str:
    """`python -m experiments.<name>` on a fresh store: its summary, a column per child."""
    from mlflow.tracking import MlflowClient

    tracking_uri = f"sqlite:///{folder / f'{name}.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": _pythonpath()}
    load_before = os.getloadavg()[0]
    command = [sys.executable, "-m", f"experiments.{name}", "--no-log-model"]
    subprocess.run(command, cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL)
    load = _load(load_before)
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    path = client.download_artifacts(parent.info.run_id, "summary.json", str(folder))
    summary = json.loads(Path(path).read_text(encoding="utf-8"))
    children = {key: _flat(value) for key, value in summary.items() if isinstance(value, dict)}
    overall = [
        f"{key}: {_cell(value)}"
        for key, value in summary.items()
        if key not in children and key not in NOT_MEASURED
    ]
    keys = [
        key
        for key in dict.fromkeys(key for child in children.values() for key in child)
        if key.rsplit("/", 1)[-1] not in NOT_MEASURED
    ]
    rows = [[key, *(_cell(child.get(key)) for child in children.values())] for key in keys]
    return "\n".join(
        [
            f"## {name}",
            "",
            f"`python -m experiments.{name} --no-log-model` on its defaults, a fresh store "
            f"({_measured(load)}). " + "; ".join(overall) + ".",
            "",
            _markdown(["", *children], rows),
        ]
    )


def benchmark_section(name: str, folder: Path) -> str:
    script, heading, what = BENCHMARKS[name]
    report_path = folder / f"{name}.json"
    load_before = os.getloadavg()[0]
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--json", str(report_path)],
        env={**os.environ, "PYTHONPATH": _pythonpath()},
        check=True,
    )
    report = json.loads(report_path.read_text(encoding="utf-8"))
    if "table" not in report:
        raise SystemExit(f"benchmarks/{script} --json wrote no `table` to render")
    table = report["table"]
    load = _load(load_before)
    return "\n".join(
        [
            f"## {heading}",
            "",
            f"{what} `python benchmarks/{script}` ({_measured(load)}): {table['title']}.",
            "",
            _markdown(table["headers"], table["rows"]),
        ]
    )


def write_page(sections: dict[str, str]) -> None:
    """The page with `sections` replaced; sections not measured this time stay as they were."""
    old = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
    parts = [
        "# Measured results",
        "Generated by `python benchmarks/results.py`; do not edit by hand. Each section names "
        "the command that measured it.",
    ]
    for name in SECTIONS:
        start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
        kept = re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), old, re.S)
        body = sections.get(name) or (kept.group(1) if kept else None)
        if body is None:
            body = f"Not measured yet: `python benchmarks/results.py --benchmarks {name}`."
        parts.append(f"{start}\n{body}\n{end}")
    PAGE.write_text("\n\n".join(parts) + "\n", encoding="utf-8")


def write_readme(records: list[dict]) -> None:
    readme = REPO / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = README_MARKERS
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {start} ... {end} block")
    block = f"{start}\n{markdown_table(records)}{end}"
    readme.write_text(pattern.sub(lambda _: block, text), encoding="utf-8")


def _flat(summary: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value).replace("|", "\\|")


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _measured(extra: str = "") -> str:
    day = time.strftime("%Y-%m-%d", time.gmtime())
    machine = f"{_cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    return f"measured {day}, {machine}" + (f", {extra}" if extra else "")


def _cpu() -> str:
    """The CPU and the widest vector instructions it offers, and any cap on them: XLA and
    oneDNN choose kernels by instruction set, so a trained net's errors may differ in the
    last digit on another CPU."""
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text(encoding="utf-8").splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
    widest = next((isa for flag, isa in WIDEST_FIRST if flag in flags), None)
    caps = [f"{name}={os.environ[name]}" for name in ISA_CAPS if os.environ.get(name)]
    detail = ", ".join(filter(None, [widest, *caps]))
    return f"{model} ({detail})" if detail else model


def _load(before: float) -> str:
    """Other work on the machine slows wall times (not the paired ratios): say how much ran."""
    return f"load average {before:.1f} before, {os.getloadavg()[0]:.1f} after"


def _pythonpath() -> str:
    return os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--benchmarks",
        default="",
        metavar="NAMES",
        help=f"comma-separated benchmarks to run as well: {', '.join([*OWN_RUNS, *BENCHMARKS])}",
    )
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.benchmarks.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in (*OWN_RUNS, *BENCHMARKS)]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {[*OWN_RUNS, *BENCHMARKS]}")
    with tempfile.TemporaryDirectory() as folder:
        records, tracking_uri, timing = run_sweep(Path(folder))
        sections = {
            "sweep": sweep_section(records, timing),
            "topics": topics_section(records, tracking_uri),
        }
        for name in wanted:
            make = own_run_section if name in OWN_RUNS else benchmark_section
            sections[name] = make(name, Path(folder))
    write_page(sections)
    write_readme(records)
    print(f"wrote {PAGE.relative_to(REPO)} ({', '.join(sections)}) and the README's sweep table")


if __name__ == "__main__":
    main()
