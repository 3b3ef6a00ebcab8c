"""Scale-out plumbing end to end (slow): PostgreSQL + `mlflow server` take 200 runs from 8
processes, Ray tasks record runs into that server, and a Ray worker killed mid-task is retried
(or reported, without retries). Each fixture checks that nothing it started is left running.

Needs `pip install -e ".[ray,postgres]"` and PostgreSQL's server binaries (Debian:
`apt-get install -y postgresql`); without them the module is skipped, saying what is missing.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest
from support import (
    kill_ray_worker,
    leftover_processes,
    mlflow_server,
    postgres,
    postgres_bindir,
    ray_head,
    run_tags,
    search_runs,
)


def _missing() -> list[str]:
    missing = [
        f"{module} (pip install -e '.[{extra}]')"
        for module, extra in (("ray", "ray"), ("psycopg2", "postgres"))
        if importlib.util.find_spec(module) is None
    ]
    try:
        postgres_bindir()
    except RuntimeError:
        missing.append("PostgreSQL server binaries (apt-get install -y postgresql)")
    return missing


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(_missing()), reason=f"needs {', '.join(_missing())}"),
]

TESTS_DIR = str(Path(__file__).resolve().parent)


def record_runs(tracking_uri: str, experiment: str, writer: int, count: int) -> list[str]:
    """One writer process: `count` short runs (params, 3 steps of metrics, a tag)."""
    from reg_callbacks.tracking import RunRecorder

    run_ids = []
    for index in range(count):
        with RunRecorder(
            experiment,
            run_name=f"writer {writer} run {index}",
            params={"writer": writer, "index": index},
            tags={"config_hash": f"{writer}-{index}"},
            tracking_uri=tracking_uri,
        ) as recorder:
            recorder.log_metrics(
                [(step, {"train_error": 0.3 / (step + 1), "dev_error": 0.4}) for step in range(3)]
            )
        run_ids.append(recorder.run_id)
    return run_ids


def record_slowly(tracking_uri: str, experiment: str, name: str, seconds: float) -> int:
    """A Ray task: one run that stays RUNNING for `seconds`; returns the worker's pid."""
    from reg_callbacks.tracking import RunRecorder

    with RunRecorder(
        experiment, run_name=name, tags={"config_hash": name}, tracking_uri=tracking_uri
    ) as recorder:
        time.sleep(seconds)
        recorder.log_final({"dev_error": 0.1})
    return os.getpid()


def _wait_for_run(url: str, experiment: str, name: str, timeout: float = 60.0) -> None:
    """Until `name`'s run is RUNNING, i.e. the task got past creating it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = search_runs(url, experiment)  # [] until the experiment exists
        running = [run_tags(r).get("config_hash") for r in runs if r["info"]["status"] == "RUNNING"]
        if name in running:
            return
        time.sleep(0.1)
    raise TimeoutError(f"no RUNNING run {name!r} in {experiment!r} after {timeout:.0f} s")


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """`mlflow server` on a fresh PostgreSQL, both on 127.0.0.1."""
    root = tmp_path_factory.mktemp("tracking")
    with postgres(root) as dsn, mlflow_server(dsn, root / "artifacts", workers=2) as url:
        yield url
    assert leftover_processes("postgres") == {}
    assert leftover_processes("mlflow") == {}


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray head with 2 CPUs, and this process connected to it as the driver."""
    import ray
    from ray.job_config import JobConfig

    with ray_head(num_cpus=2) as address:
        # Workers import the task functions from this module by name.
        ray.init(
            address=address, log_to_driver=False, job_config=JobConfig(code_search_path=[TESTS_DIR])
        )
        try:
            yield address
        finally:
            ray.shutdown()
    assert leftover_processes("ray") == {}


def test_postgres_is_stopped_even_when_the_block_raises(tmp_path):
    with pytest.raises(KeyError), postgres(tmp_path):
        assert leftover_processes("postgres")
        raise KeyError("the test body failed")
    assert leftover_processes("postgres") == {}
    assert "database system is shut down" in (tmp_path / "postgres.log").read_text()


def test_200_runs_from_8_processes_land_finished_exactly_once(tracking_server):
    experiment = "eight-writers"
    writers, runs_each = 8, 25
    # Forked writers inherit this process's MLflow import (~2-6 s each when spawned); no Ray
    # driver is connected yet, so forking is safe here.
    with ProcessPoolExecutor(writers, mp_context=get_context("fork")) as pool:
        batches = list(
            pool.map(
                record_runs,
                [tracking_server] * writers,
                [experiment] * writers,
                range(writers),
                [runs_each] * writers,
            )
        )

    runs = search_runs(tracking_server, experiment)
    statuses = Counter(run["info"]["status"] for run in runs)
    per_config = Counter(run_tags(run).get("config_hash") for run in runs)
    duplicated = {config: count for config, count in per_config.items() if count > 1}
    assert (len(per_config), duplicated, statuses) == (200, {}, {"FINISHED": 200})
    assert sorted(run["info"]["run_id"] for run in runs) == sorted(
        run_id for batch in batches for run_id in batch
    )


def test_ray_tasks_record_runs_into_the_server(tracking_server, ray_cluster):
    import ray

    experiment = "ray-tasks"
    task = ray.remote(num_cpus=1)(record_slowly)
    pids = ray.get(
        [task.remote(tracking_server, experiment, f"task {index}", 0.0) for index in range(8)]
    )

    assert ray.cluster_resources()["CPU"] == 2
    assert len(set(pids)) >= 1
    runs = search_runs(tracking_server, experiment)
    assert Counter(run["info"]["status"] for run in runs) == {"FINISHED": 8}
    assert sorted(run_tags(run).get("config_hash") for run in runs) == sorted(
        f"task {index}" for index in range(8)
    )


def test_a_killed_ray_worker_is_retried_or_reported(tracking_server, ray_cluster):
    """With retries, Ray re-runs the task on a fresh worker and the driver sees only the
    success; without, `ray.get` raises WorkerCrashedError. Either way the killed attempt's
    MLflow run stays RUNNING: nothing in the worker got to end it."""
    import ray
    from ray.exceptions import WorkerCrashedError

    experiment = "ray-killed-worker"
    task = ray.remote(num_cpus=1)(record_slowly)

    retried = task.options(max_retries=1).remote(tracking_server, experiment, "retried", 3.0)
    _wait_for_run(tracking_server, experiment, "retried")
    killed = kill_ray_worker(ray_cluster, "record_slowly")
    assert ray.get(retried, timeout=120) != killed

    reported = task.options(max_retries=0).remote(tracking_server, experiment, "reported", 3.0)
    _wait_for_run(tracking_server, experiment, "reported")
    kill_ray_worker(ray_cluster, "record_slowly")
    with pytest.raises(WorkerCrashedError):
        ray.get(reported, timeout=120)

    statuses = Counter(
        (run_tags(run).get("config_hash"), run["info"]["status"])
        for run in search_runs(tracking_server, experiment)
    )
    assert statuses == {
        ("retried", "RUNNING"): 1,  # the killed attempt
        ("retried", "FINISHED"): 1,
        ("reported", "RUNNING"): 1,
    }
