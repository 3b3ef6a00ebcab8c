"""Regenerate docs/results.md and the README's sweep table: measured numbers in one place.

Runs the default sweep (`python -m experiments.sweep`, the course preset) on a fresh MLflow
store in a temporary folder, and writes its table, next to the course's own numbers, into
`docs/results.md` and between the `results:sweep` markers of README.md.
`tests/sweep/test_results.py` fails when the README's table and the sweep disagree.
`--benchmarks` also runs `benchmarks/bench_training.py` (minutes) and adds its table;
`--recording` runs `benchmarks/bench_recording.py` (what dataset logging and `--log-model`
cost a course run; minutes) and adds its.

Run: `python benchmarks/results.py` (~2 min on 2 cores), or `--csv sweep_results/course.csv`
to use the summary of a sweep just run in which every config ran (none skipped).
"""

from __future__ import annotations

import argparse
import json
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


def run_sweep(folder: Path) -> tuple[Path, float]:
    """The course sweep on a fresh store in `folder`; its summary CSV and wall seconds."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "experiments.sweep", "--out", str(folder / "out")],
        cwd=folder,
        env=env,
        check=True,
    )
    return folder / "out" / "course.csv", time.perf_counter() - started


def sweep_section(records: list[dict], wall: float | None) -> str:
    ran = [r for r in records if r["status"] == "FINISHED"]
    if len(ran) != len(records):
        raise SystemExit(
            "every config must have run in this sweep (none skipped or failed); got "
            + ", ".join(sorted({r["status"] for r in records}))
        )
    timing = f", {wall:.0f} s for the whole command" if wall else ""
    course = [
        f"| {experiment} | {config} | {train:.3f} | {dev:.3f} |"
        for (experiment, config), (train, dev) in COURSE.items()
    ]
    return "\n".join(
        [
            "## The course sweep",
            "",
            f"`{SWEEP_COMMAND}` on a fresh store ({len(records)} configs{timing}). Errors are",
            "fractions; the bias/variance runs' Bayes error is 0.1 by construction.",
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


def benchmark_section(report: dict) -> str:
    rows = [
        "| net | NumPy ms/step | fit ms/step | train ms/step | train / NumPy "
        "| with callbacks / train |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for result in report["results"]:
        ms, ratios = result["ms_per_step"], result["ratios"]
        rows.append(
            f"| {result['case']} | {ms['numpy']:.3f} | {ms['fit']:.1f} | {ms['train']:.3f} | "
            f"{ratios['train/numpy']:.2f} | {ratios['train+cb/train']:.3f} |"
        )
    command = f"python benchmarks/bench_training.py --repeats {report['repeats']}"
    return "\n".join(["## Training speed", "", f"`{command}`:", "", *rows])


def recording_section(report: dict) -> str:
    median, share = report["median_s"], report["call_share_of_run"]
    load = report["machine"]["load_average_before"][0], report["machine"]["load_average_after"][0]
    rows = [
        "| call | median s a call | share of a run |",
        "|---|---:|---:|",
        *(
            f"| `RunRecorder.{name}` | {report['call_median_s'][name]:.3f} | {share[name]:.1%} |"
            for name in share
        ),
    ]
    runs = [
        "| runs | median s |",
        "|---|---:|",
        *(f"| {mode} | {seconds:.2f} |" for mode, seconds in median.items()),
    ]
    return "\n".join(
        [
            "## What recording costs a course run",
            "",
            f"`{report['command']}` (load average {load[0]:.1f} before, {load[1]:.1f} after): "
            f"`{report['experiment']}` on its defaults, {report['rounds']} runs of each kind "
            "in rotating order. The calls, timed inside the runs that make them, against the "
            "median run that logs its datasets:",
            "",
            *rows,
            "",
            "The first call in a process (as in every `python -m experiments.<name>` run) "
            "also pays its imports: "
            + ", ".join(f"`{name}` {value:.2f} s" for name, value in report["first_call_s"].items())
            + ".",
            "",
            "The runs themselves (`bare`: dataset logging stubbed out; their spread on a busy "
            "machine is larger than these costs):",
            "",
            *runs,
        ]
    )


def write_readme(records: list[dict]) -> None:
    readme = REPO / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = README_MARKERS
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {start} ... {end} block")
    block = f"{start}\n{markdown_table(records)}{end}"
    readme.write_text(pattern.sub(lambda _: block, text), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, help="the summary CSV of a sweep just run")
    parser.add_argument("--benchmarks", action="store_true", help="also run bench_training.py")
    parser.add_argument("--recording", action="store_true", help="also run bench_recording.py")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        wall = None
        csv_path = args.csv
        if csv_path is None:
            csv_path, wall = run_sweep(Path(folder))
        records = read_csv(csv_path)
        sections = [sweep_section(records, wall)]
        if args.benchmarks:
            json_path = Path(folder) / "bench.json"
            script = REPO / "benchmarks" / "bench_training.py"
            subprocess.run([sys.executable, str(script), "--json", str(json_path)], check=True)
            sections.append(benchmark_section(json.loads(json_path.read_text())))
        if args.recording:
            json_path = Path(folder) / "recording.json"
            script = REPO / "benchmarks" / "bench_recording.py"
            subprocess.run([sys.executable, str(script), "--json", str(json_path)], check=True)
            sections.append(recording_section(json.loads(json_path.read_text())))
    load = os.getloadavg()[0]  # other work on the machine slows the wall time, not the numbers
    machine = f"{os.cpu_count()} cores, load average {load:.1f}, Python {platform.python_version()}"
    page = "\n\n".join(
        [
            "# Measured results",
            "Generated by `python benchmarks/results.py` on "
            f"{time.strftime('%Y-%m-%d', time.gmtime())} ({machine}); do not edit by hand.",
            *sections,
        ]
    )
    (REPO / "docs" / "results.md").write_text(page + "\n", encoding="utf-8")
    write_readme(records)
    print(f"wrote docs/results.md and the README's sweep table ({len(records)} configs)")


if __name__ == "__main__":
    main()
