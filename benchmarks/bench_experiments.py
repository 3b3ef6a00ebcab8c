"""Every experiment on its defaults, one after another: the experiments issue's "<= 2 minutes".

Runs `python -m experiments.<name>` for each experiment of the registry, exactly as a
user would (a fresh process each, so each pays Python start-up and the TensorFlow and MLflow
imports, ~6.5 s here), against one fresh SQLite store created before timing. Prints each
command's wall time, its exit code and the total; `--json PATH` writes the same.

Run: `python benchmarks/bench_experiments.py [--only name,name] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments.harness.registry import EXPERIMENTS  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated experiments (default: all)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(EXPERIMENTS)
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{Path(folder) / 'mlflow.db'}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
        create = "from mlflow.tracking import MlflowClient; MlflowClient().search_experiments()"
        subprocess.run([sys.executable, "-c", create], env=env, cwd=folder, capture_output=True)
        results = []
        for name in names:
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", f"experiments.{name}"],
                env=env,
                cwd=folder,
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - started
            results.append(
                {"experiment": name, "seconds": round(seconds, 1), "exit": done.returncode}
            )
            print(f"{name:16} {seconds:6.1f} s  exit {done.returncode}", flush=True)
            if done.returncode:
                print(done.stderr[-1500:], file=sys.stderr)
    total = sum(r["seconds"] for r in results)
    print(
        f"{'total':16} {total:6.1f} s  ({len(results)} experiments, load {os.getloadavg()[0]:.1f})"
    )
    if args.json:
        rows = [[r["experiment"], f"{r['seconds']:.1f}", str(r["exit"])] for r in results]
        rows.append(["total", f"{total:.1f}", ""])
        title = f"`python -m experiments.<name>`, each a fresh process ({len(results)} experiments)"
        table = {"title": title, "headers": ["experiment", "seconds", "exit code"], "rows": rows}
        report = {"results": results, "total_s": total, "table": table}
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if all(r["exit"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
