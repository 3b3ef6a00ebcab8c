"""Sweep throughput: the sweep against fresh processes, against `import tensorflow`, 2 workers vs 1.

Five walls, each timed end to end (process start to exit) against its own fresh SQLite store,
created before its timing starts:

- `import tensorflow`: `python -c "import tensorflow"`, the floor of any process that trains.
- `fresh processes`: the `initialization-seeds` preset's 12 configs as
  `python -m experiments.initialization --init I --seed S`, one process after another: every
  config pays Python start-up, the TensorFlow and MLflow imports, tracing and compilation.
- `seeds, 1 worker` / `seeds, 2 workers`: `python -m experiments.sweep --preset
  initialization-seeds --workers 1` (or 2).
- `course sweep`: `python -m experiments.sweep`, the default preset (every experiment's
  headline configs) with the default workers.

and the three ratios the sweep-throughput issue sets goals for, from the same run:
`fresh processes / seeds, 2 workers` (goal >= 10x), `course sweep / import tensorflow`
(goal <= 10x) and `seeds, 1 worker / seeds, 2 workers` (goal >= 1.8x). With `--repeats N` the
variants run N rounds, every other round in reverse order, and each wall is the median. As a
control it times two CPU-bound processes against one (`parallel ceiling`): on a shared machine
that, not 2.0, bounds "2 workers vs 1". Compare ratios from one run, not absolute numbers.

Run: `python benchmarks/bench_sweep.py [--repeats 3] [--only NAMES] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench_report import machine

REPO = Path(__file__).resolve().parents[1]
SEEDS_PRESET = "initialization-seeds"
RATIOS = {  # name: (numerator wall, denominator wall, goal)
    "fresh processes / sweep (2 workers)": ("fresh processes", "seeds, 2 workers", ">= 10"),
    "course sweep / import tensorflow": ("course sweep", "import tensorflow", "<= 10"),
    "2 workers vs 1": ("seeds, 1 worker", "seeds, 2 workers", ">= 1.8"),
}


def store_env(folder: Path) -> dict:
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "PYTHONPATH": pythonpath,
    }


def create_store(folder: Path) -> None:
    """Create the SQLite store before timing: every variant starts from an empty store."""
    code = "from mlflow.tracking import MlflowClient; MlflowClient().search_experiments()"
    subprocess.run(
        [sys.executable, "-c", code], env=store_env(folder), capture_output=True, check=True
    )


def timed(commands: list[list[str]], folder: Path) -> float:
    """Wall seconds of `commands` run one after another in `folder`; each must succeed."""
    started = time.perf_counter()
    for command in commands:
        done = subprocess.run(command, env=store_env(folder), cwd=folder, capture_output=True)
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"{' '.join(command[1:])} exited {done.returncode}: {tail}")
    return time.perf_counter() - started


def seeds_points() -> list[dict]:
    """The `initialization-seeds` preset's configs, read from the preset file itself."""
    preset = REPO / "experiments" / "sweep" / "presets" / f"{SEEDS_PRESET}.yaml"
    (block,) = yaml.safe_load(preset.read_text(encoding="utf-8"))["runs"]
    grid = block["grid"]
    return [{"init": init, "seed": seed} for init in grid["init"] for seed in grid["seed"]]


def sweep(*args: str) -> list[list[str]]:
    return [[sys.executable, "-m", "experiments.sweep", "--out", "out", *args]]


def variants() -> dict[str, list[list[str]]]:
    fresh = [
        [sys.executable, "-m", "experiments.initialization", "--init", p["init"]]
        + ["--seed", str(p["seed"])]
        for p in seeds_points()
    ]
    return {
        "import tensorflow": [[sys.executable, "-c", "import tensorflow"]],
        "fresh processes": fresh,
        "seeds, 1 worker": sweep("--preset", SEEDS_PRESET, "--workers", "1"),
        "seeds, 2 workers": sweep("--preset", SEEDS_PRESET, "--workers", "2"),
        "course sweep": sweep(),
    }


def _burn(count: int) -> None:
    total = 0
    for i in range(count):
        total += i * i


def parallel_ceiling(processes: int = 2, count: int = 20_000_000) -> float:
    """How much faster `processes` CPU-bound processes finish than one doing their work."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        pool.map(_burn, [1000] * processes)  # start-up outside the timing
        started = time.perf_counter()
        pool.apply(_burn, (count * processes,))
        serial = time.perf_counter() - started
        started = time.perf_counter()
        pool.map(_burn, [count] * processes)
        parallel = time.perf_counter() - started
    return serial / parallel


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    walls = Table("variant", "median wall (s)", "all rounds (s)", title="Sweep walls")
    for name, wall in report["walls"].items():
        rounds = ", ".join(f"{s:.1f}" for s in report["rounds"][name])
        walls.add_row(name, f"{wall:.1f}", rounds)
    ratios = Table("ratio", "value", "goal", title="Sweep ratios (same run)")
    for name, ratio in report["ratios"].items():
        ratios.add_row(name, f"{ratio['value']:.2f}x", ratio["goal"])
    console = Console(width=100)
    console.print(walls)
    console.print(ratios)


def results_table(report: dict) -> dict:
    """The walls and ratios as one table, for `benchmarks/results.py`."""
    rows = [
        [name, f"{wall:.1f} s", ", ".join(f"{s:.1f}" for s in report["rounds"][name])]
        for name, wall in report["walls"].items()
    ]
    rows += [
        [name, f"{r['value']:.2f}x", f"goal {r['goal']}"] for name, r in report["ratios"].items()
    ]
    before, after = report["parallel_ceiling"]
    title = (
        f"median walls of {report['repeats']} round(s) and the ratios of those medians; two "
        f"CPU-bound processes ran {before:.2f}x one before and {after:.2f}x after"
    )
    return {"title": title, "headers": ["wall or ratio", "value", "rounds or goal"], "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds; walls are medians")
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated variants to time, e.g. 'seeds, 1 worker;seeds, 2 workers' "
        f"(';' separates); of: {'; '.join(variants())}",
    )
    parser.add_argument("--json", metavar="PATH", help="write the numbers here too")
    args = parser.parse_args(argv)
    chosen = variants()
    if args.only:
        wanted = {name.strip() for name in args.only.split(";")}
        unknown = wanted - set(chosen)
        if unknown:
            parser.error(f"unknown variants {sorted(unknown)}; choose from {sorted(chosen)}")
        chosen = {name: commands for name, commands in chosen.items() if name in wanted}
    load_before = os.getloadavg()
    print(f"cpus {os.cpu_count()}, load average before: {load_before}", flush=True)
    ceiling = parallel_ceiling()
    rounds: dict[str, list[float]] = {name: [] for name in chosen}
    for repeat in range(args.repeats):
        order = list(chosen) if repeat % 2 == 0 else list(reversed(chosen))
        for name in order:
            with tempfile.TemporaryDirectory() as folder:
                create_store(Path(folder))
                rounds[name].append(timed(chosen[name], Path(folder)))
            print(f"round {repeat + 1}: {name:<18} {rounds[name][-1]:7.1f} s", flush=True)
    walls = {name: statistics.median(seconds) for name, seconds in rounds.items()}
    ratios = {
        name: {"value": walls[a] / walls[b], "goal": goal}
        for name, (a, b, goal) in RATIOS.items()
        if a in walls and b in walls
    }
    report = {
        "command": " ".join(["bench_sweep.py", *(argv if argv is not None else sys.argv[1:])]),
        "repeats": args.repeats,
        "walls": walls,
        "rounds": rounds,
        "ratios": ratios,
        "parallel_ceiling": [ceiling, parallel_ceiling()],
        "machine": machine(load_before, python=platform.python_version()),
    }
    report["table"] = results_table(report)
    print_table(report)
    loads = report["machine"]
    print(
        f"parallel ceiling before/after: {ceiling:.2f}x / {report['parallel_ceiling'][1]:.2f}x; "
        f"load average (1 min) before/after: {load_before[0]:.2f} / "
        f"{loads['load_average_after'][0]:.2f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
