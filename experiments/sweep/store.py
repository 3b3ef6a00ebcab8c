"""What the sweep reads from and writes to the MLflow store: run status, resume, stale runs.

Reading is split in two so that `--dry-run` stays under two seconds: importing `mlflow`
costs 3-4 s here, so for a `sqlite:` store `read_runs_light` reads MLflow's tables with
the standard library's `sqlite3`, read-only; every other store (a tracking server, a file
store) and every write go through `MlflowClient`. Both return the same `StoredRun`s, and a
test checks they agree.

Tags the sweep writes (documented in the README's MLflow table):

| key                | on     | value                                                 |
|--------------------|--------|-------------------------------------------------------|
| `sweep`            | both   | the sweep's name, e.g. `course`                       |
| `sweep.role`       | both   | `parent` or `child`                                   |
| `config_hash`      | child  | sha256 of experiment name + canonical params (16 hex) |
| `sweep.experiment` | child  | the experiment module, e.g. `initialization`          |
| `sweep.params`     | child  | the params varied in the sweep, `init=he seed=1`      |
| `sweep.worker`     | child  | `host:pid` of the process (or Ray worker) that ran it  |
| `sweep.host`       | parent | host, pid and process start time of the sweep, to     |
| `sweep.pid`        | parent | tell a dead sweep's RUNNING runs from a live one's    |
| `sweep.pid_start`  | parent |                                                       |
| `failure_reason`   | child  | why a run is FAILED or KILLED                         |
"""

from __future__ import annotations

import os
import socket
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from experiments.harness.tracking_store import prepare_store, sqlite_path
from experiments.sweep.plan import Plan, PlannedConfig

PARENT_TAG = "mlflow.parentRunId"
DEAD, ALIVE, UNKNOWN = "dead", "alive", "unknown"


@dataclass(frozen=True)
class StoredRun:
    run_id: str
    experiment_id: str
    status: str
    start_time: int
    tags: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    @property
    def parent_id(self) -> str | None:
        return self.tags.get(PARENT_TAG)


# ---------------------------------------------------------------------------------------------
# Reading


def read_runs_light(uri: str | None, experiment_names: Sequence[str]) -> list[StoredRun] | None:
    """The active runs of the named experiments, read with `sqlite3` (no MLflow import).

    Returns [] when the database file does not exist yet (nothing is created), and None
    when this path does not apply (not a sqlite URI, an unexpected schema, a busy lock):
    the caller then reads through `MlflowClient`.
    """
    path = sqlite_path(uri)
    if path is None:
        return None
    if not os.path.exists(path):
        return []
    try:
        connection = sqlite3.connect(
            f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro", uri=True, timeout=5
        )
    except sqlite3.Error:
        return None
    try:
        return _read_tables(connection, experiment_names)
    except sqlite3.Error:
        return None
    finally:
        connection.close()


def _read_tables(connection: sqlite3.Connection, names: Sequence[str]) -> list[StoredRun] | None:
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    if not {"experiments", "runs", "tags", "params", "latest_metrics"} <= tables:
        return [] if "experiments" not in tables else None
    marks = ",".join("?" * len(names))
    rows = connection.execute(
        f"SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active' "
        f"AND name IN ({marks})",
        list(names),
    ).fetchall()
    if len({name for _, name in rows}) != len(rows):
        return None  # the same name in several workspaces: let MLflow resolve it
    ids = [row[0] for row in rows]
    if not ids:
        return []
    id_marks = ",".join("?" * len(ids))
    selected = (
        "SELECT run_uuid FROM runs WHERE lifecycle_stage = 'active' "
        f"AND experiment_id IN ({id_marks})"
    )
    runs = {
        run_id: {"experiment_id": str(exp), "status": status, "start_time": start or 0}
        for run_id, exp, status, start in connection.execute(
            "SELECT run_uuid, experiment_id, status, start_time FROM runs "
            f"WHERE lifecycle_stage = 'active' AND experiment_id IN ({id_marks})",
            ids,
        )
    }
    extras: dict[str, dict[str, dict]] = {
        run_id: {"tags": {}, "params": {}, "metrics": {}} for run_id in runs
    }
    for table, slot in (("tags", "tags"), ("params", "params"), ("latest_metrics", "metrics")):
        for run_id, key, value in connection.execute(
            f"SELECT run_uuid, key, value FROM {table} WHERE run_uuid IN ({selected})", ids
        ):
            if run_id in extras:
                extras[run_id][slot][key] = value
    return [StoredRun(run_id=run_id, **info, **extras[run_id]) for run_id, info in runs.items()]


def read_runs_client(client, experiment_names: Sequence[str]) -> list[StoredRun]:
    """The active runs of the named experiments, through `MlflowClient.search_runs`."""
    from reg_callbacks.tracking import with_retries

    ids = []
    for name in experiment_names:
        experiment = with_retries(client.get_experiment_by_name, name)
        if experiment is not None and experiment.lifecycle_stage == "active":
            ids.append(experiment.experiment_id)
    if not ids:
        return []
    runs, token = [], None
    while True:
        page = with_retries(client.search_runs, ids, max_results=1000, page_token=token)
        runs.extend(_stored(run) for run in page)
        token = page.token
        if not token:
            return runs


def _stored(run) -> StoredRun:
    return StoredRun(
        run_id=run.info.run_id,
        experiment_id=str(run.info.experiment_id),
        status=run.info.status,
        start_time=run.info.start_time or 0,
        tags=dict(run.data.tags),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
    )


# ---------------------------------------------------------------------------------------------
# Which sweep processes are alive


def process_identity() -> dict[str, str]:
    """Tags that let a later sweep tell whether this process is still running."""
    return {
        "sweep.host": socket.gethostname(),
        "sweep.pid": str(os.getpid()),
        "sweep.pid_start": _start_ticks(os.getpid()) or "",
    }


def liveness(tags: Mapping[str, str]) -> str:
    """ALIVE, DEAD or UNKNOWN (another host, or no identity) for a parent run's tags."""
    if tags.get("sweep.host") != socket.gethostname():
        return UNKNOWN
    try:
        pid = int(tags.get("sweep.pid", ""))
    except ValueError:
        return UNKNOWN
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return DEAD
    except PermissionError:
        pass
    recorded = tags.get("sweep.pid_start")
    current = _start_ticks(pid)
    if current == "zombie" or (recorded and current and current != recorded):
        return DEAD  # exited and not yet reaped, or the pid now belongs to another process
    return ALIVE


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), "zombie", or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields and fields[0] in ("Z", "X"):
        return "zombie"
    return fields[19] if len(fields) > 19 else None


# ---------------------------------------------------------------------------------------------
# Resume


@dataclass
class SweepState:
    """What the store says about a plan's configs.

    Attributes:
        finished: config hash -> the latest FINISHED child run of any of the sweep's parents.
        running: config hash -> a RUNNING child of a live parent (another sweep process).
        live_parents: RUNNING parents whose process is alive (or on another host).
        stale_parents: RUNNING parents whose process is gone.
        orphans: RUNNING children whose parent is not running any more.
        last_status: config hash -> status of its newest child run.
    """

    finished: dict[str, StoredRun] = field(default_factory=dict)
    running: dict[str, StoredRun] = field(default_factory=dict)
    live_parents: list[StoredRun] = field(default_factory=list)
    stale_parents: list[StoredRun] = field(default_factory=list)
    orphans: list[StoredRun] = field(default_factory=list)
    last_status: dict[str, str] = field(default_factory=dict)
    reported: bool = True  # the newest parent ended FINISHED, its report logged (or none)


def reconcile(
    plan: Plan, runs: Iterable[StoredRun], *, alive: Callable[[Mapping], str] = liveness
) -> SweepState:
    """Sort the store's runs for `plan` into finished, running, stale and orphaned."""
    runs = list(runs)
    state = SweepState()
    parents = {
        run.run_id: run
        for run in runs
        if run.tags.get("sweep.role") == "parent" and run.tags.get("sweep") == plan.name
    }
    if parents:
        newest = max(parents.values(), key=lambda run: run.start_time)
        state.reported = newest.status == "FINISHED"
    running_parents = set()
    for parent in parents.values():
        if parent.status != "RUNNING":
            continue
        if alive(parent.tags) == DEAD:
            state.stale_parents.append(parent)
        else:
            state.live_parents.append(parent)
            running_parents.add(parent.run_id)
    for run in sorted(runs, key=lambda r: r.start_time):
        digest = run.tags.get("config_hash")
        if run.parent_id not in parents or digest is None:
            continue
        state.last_status[digest] = run.status
        if run.status == "FINISHED":
            state.finished[digest] = run
        elif run.status == "RUNNING":
            if run.parent_id in running_parents:
                state.running[digest] = run
            else:
                state.orphans.append(run)
    return state


# ---------------------------------------------------------------------------------------------
# Writing (MLflow imported here, in the real sweep and in workers only)


def open_store(uri: str | None, experiment_name: str):
    """(client, experiment id), the experiment created if new.

    Raises:
        StoreFault: an SQLite store cannot be created or written (`prepare_store`);
            MLflow's own errors (a server down, a full disk) propagate as they are.
    """
    from reg_callbacks.tracking import get_or_create_experiment

    prepare_store(uri)
    client = client_for(uri)
    return client, get_or_create_experiment(client, experiment_name)


def client_for(uri: str | None):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri) if uri else MlflowClient()


def child_tags(plan_name: str, config: PlannedConfig) -> dict[str, str]:
    from reg_callbacks.tracking import git_commit

    return {
        "sweep": plan_name,
        "sweep.role": "child",
        "config_hash": config.config_hash,
        "sweep.experiment": config.experiment,
        "sweep.params": config.label or config.experiment,
        "sweep.worker": f"{socket.gethostname()}:{os.getpid()}",
        # The checkout this worker runs the topics from: a Ray worker's own script is Ray's.
        "git_commit": git_commit(Path(__file__)),
    }


def terminate(client, run_id: str, status: str, reason: str) -> None:
    from reg_callbacks.tracking import with_retries

    with_retries(client.set_tag, run_id, "failure_reason", reason[:5000])
    with_retries(client.set_terminated, run_id, status=status)


def find_child(
    client, experiment_ids: Sequence[str], parent_run_id: str, config: PlannedConfig
) -> StoredRun | None:
    """The newest child of `parent_run_id` that ran `config`."""
    from reg_callbacks.tracking import with_retries

    page = with_retries(
        client.search_runs,
        list(experiment_ids),
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' "
        f"AND tags.config_hash = '{config.config_hash}'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return _stored(page[0]) if page else None


def close_running_children(client, experiment_ids: Sequence[str], parent_run_id: str) -> None:
    """Children of `parent_run_id` still RUNNING (their worker was killed) end KILLED."""
    from reg_callbacks.tracking import with_retries

    runs = with_retries(
        client.search_runs,
        list(experiment_ids),
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' AND attributes.status = 'RUNNING'",
        max_results=1000,
    )
    for run in runs:
        terminate(client, run.info.run_id, "KILLED", "the sweep was interrupted")


def experiment_ids(client, names: Sequence[str]) -> list[str]:
    """The ids of the named MLflow experiments that exist."""
    from reg_callbacks.tracking import with_retries

    found = (with_retries(client.get_experiment_by_name, name) for name in names)
    return [experiment.experiment_id for experiment in found if experiment is not None]


def describe_live(plan: Plan, parents: Sequence[StoredRun]) -> str:
    parent = parents[0]
    return (
        f"sweep {plan.name!r} is already running: parent run {parent.run_id} (pid "
        f"{parent.tags.get('sweep.pid', '?')} on {parent.tags.get('sweep.host', '?')})"
    )


class SweepRefused(ValueError):
    """The store says this sweep cannot start (e.g. the same sweep is running elsewhere)."""


def resume(
    client, plan: Plan, experiment_names: Sequence[str], *, takeover: bool = False
) -> SweepState:
    """Close what dead sweep processes left RUNNING; returns the state before that
    (`finished`: config hash -> FINISHED run).

    Raises:
        SweepRefused: the same sweep is running (alive here, or on another host without
            `takeover`).
    """
    state = reconcile(plan, read_runs_client(client, experiment_names))
    if state.live_parents:
        if not takeover or any(liveness(p.tags) == ALIVE for p in state.live_parents):
            hint = "" if takeover else " If it ran on another host and is gone, add --takeover."
            raise SweepRefused(
                describe_live(plan, state.live_parents)
                + "; wait for it to end (or stop it), then run this again."
                + hint
            )
        state.stale_parents += state.live_parents
        state.orphans += list(state.running.values())
    for parent in state.stale_parents:
        pid = parent.tags.get("sweep.pid", "?")
        reason = f"the sweep process (pid {pid}) ended without closing this run; resumed later"
        terminate(client, parent.run_id, "KILLED", reason)
    for child in state.orphans:
        terminate(client, child.run_id, "KILLED", "its sweep process ended while it ran")
    return state
