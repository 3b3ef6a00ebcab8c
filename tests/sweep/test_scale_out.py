"""`python -m experiments.sweep --backend ray` end to end (slow): PostgreSQL, `mlflow server`
and a 2-CPU Ray head on 127.0.0.1; a 16-config toy sweep runs as Ray tasks into the server, one
Ray worker is SIGKILLed mid-config, and every config still ends FINISHED exactly once (the
killed attempt FAILED). Plus fast checks of the flags that need no cluster.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
from support import (
    REPO,
    leftover_processes,
    mlflow_api,
    mlflow_server,
    postgres,
    postgres_bindir,
    ray_head,
    run_tags,
    search_runs,
)

SWEEP = "ray-toy"
GRID = {
    "name": SWEEP,
    "runs": [
        {
            "experiment": "toy",
            "params": {"iterations": 400},  # seconds a config: long enough to be killed in
            "grid": {"seed": [1, 2, 3, 4, 5, 6, 7, 8], "lr": [0.1, 0.5]},
        }
    ],
}


def _missing() -> list[str]:
    missing = [m for m in ("ray", "psycopg2") if importlib.util.find_spec(m) is None]
    try:
        postgres_bindir()
    except RuntimeError:
        missing.append("PostgreSQL server binaries")
    return missing


def _grid_file(tmp_path: Path) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(json.dumps(GRID))  # JSON is YAML
    return path


def _sweep(tmp_path: Path, *args: str, env: dict | None = None, **kwargs):
    command = [sys.executable, "-m", "experiments.sweep", "--grid", str(_grid_file(tmp_path))]
    command += ["--out", str(tmp_path / "out"), *args]
    return subprocess.run(
        command, env={**os.environ, **(env or {})}, capture_output=True, text=True, **kwargs
    )


def _children(url: str) -> list[dict]:
    return [
        r
        for r in search_runs(url, f"sweep-{SWEEP}")
        if run_tags(r).get("sweep.role") != "parent" and "mlflow.parentRunId" in run_tags(r)
    ]


def _wait_for(probe, process, timeout: float, what: str):
    """`probe()`'s first truthy value, polled until `timeout` or the sweep's end."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if process.poll() is not None:
            raise AssertionError(f"the sweep ended ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)
    return value


def _kill_a_worker_mid_run(url: str, sweep, attempts: int = 3) -> None:
    """SIGKILL the Ray worker running a RUNNING child (its `sweep.worker` tag names the pid).

    A run seen RUNNING may finish before the kill lands; then another config's worker is
    tried (never one config twice: a config killed twice is left FAILED for good).
    """
    tried = set()
    for _ in range(attempts):
        run = _wait_for(partial(_running_child, url, tried), sweep, 60, "a config ran")
        tried.add(run_tags(run)["config_hash"])
        os.kill(int(run_tags(run)["sweep.worker"].rsplit(":", 1)[1]), signal.SIGKILL)
        closed = partial(_closed_status, url, run["info"]["run_id"])
        if _wait_for(closed, sweep, 120, "the killed run was closed") == "FAILED":
            return
    raise AssertionError(f"every run seen RUNNING finished before its worker was killed: {tried}")


def _running_child(url: str, skip: set) -> dict | None:
    return next(
        (
            r
            for r in _children(url)
            if r["info"]["status"] == "RUNNING" and run_tags(r)["config_hash"] not in skip
        ),
        None,
    )


def _closed_status(url: str, run_id: str) -> str | None:
    status = mlflow_api(url, f"runs/get?run_id={run_id}")["run"]["info"]["status"]
    return None if status == "RUNNING" else status


@pytest.mark.slow
@pytest.mark.skipif(bool(_missing()), reason=f"needs {', '.join(_missing())}")
def test_ray_sweep_survives_a_killed_worker_and_finishes_every_config_once(tmp_path):
    with (
        postgres(tmp_path) as dsn,
        mlflow_server(dsn, tmp_path / "artifacts") as url,
        ray_head(num_cpus=2) as address,
    ):
        command = [sys.executable, "-m", "experiments.sweep", "--grid", str(_grid_file(tmp_path))]
        command += ["--out", str(tmp_path / "out"), "--backend", "ray", "--ray-address", address]
        log = tmp_path / "sweep.log"
        with open(log, "wb") as output:
            sweep = subprocess.Popen(
                [*command, "--workers", "2"],
                env={**os.environ, "MLFLOW_TRACKING_URI": url},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            # Once one config FINISHED, both workers have TensorFlow loaded: kill one mid-run.
            _wait_for(
                lambda: any(r["info"]["status"] == "FINISHED" for r in _children(url)),
                sweep,
                150,
                "a config finished",
            )
            _kill_a_worker_mid_run(url, sweep)
            assert sweep.wait(timeout=180) == 0, log.read_text()
        finally:
            if sweep.poll() is None:
                sweep.kill()
                sweep.wait()

        children = _children(url)
        finished = Counter(
            run_tags(r)["config_hash"] for r in children if r["info"]["status"] == "FINISHED"
        )
        others = [(run_tags(r).get("config_hash"), r["info"]["status"]) for r in children]
        others = [(h, s) for h, s in others if s != "FINISHED"]
        assert len(finished) == 16 and set(finished.values()) == {1}, finished
        assert others and all(h in finished and s == "FAILED" for h, s in others), others
        assert "16 configs: 16 finished" in log.read_text(), log.read_text()

        resumed = subprocess.run(
            [*command, "--dry-run"],
            env={**os.environ, "MLFLOW_TRACKING_URI": url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "16 configs, 16 already FINISHED, 0 to run" in resumed.stdout, resumed
    assert leftover_processes() == {}


def test_ray_backend_refuses_a_local_store(tmp_path):
    result = _sweep(tmp_path, "--backend", "ray", "--tracking-uri", f"sqlite:///{tmp_path}/m.db")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--backend ray needs an MLflow tracking server" in result.stderr
    assert not (tmp_path / "m.db").exists()


def test_dry_run_with_the_ray_backend_does_not_import_ray(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        from experiments.sweep import cli as sweep, store as sweep_store
        sweep_store.client_for = lambda uri: None  # no server: an empty store
        sweep_store.read_runs_client = lambda client, names: []
        code = sweep.main(["--grid", {str(_grid_file(tmp_path))!r}, "--dry-run",
                           "--backend", "ray", "--tracking-uri", "http://127.0.0.1:9"])
        print("ray imported:", "ray" in sys.modules, "exit", code)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert "16 configs, 0 already FINISHED, 16 to run" in result.stdout, result
    assert "ray imported: False exit 0" in result.stdout, result
