"""Reliability: an unreachable tracking server, determinism, and what user input can reach."""

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from support import REPO


@pytest.mark.slow
def test_unreachable_tracking_server_is_a_bounded_one_line_error(tmp_path):
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.initialization",
            "--iterations",
            "10",
            "--tracking-uri",
            "http://127.0.0.1:9",
        ],  # port 9 (discard): nothing listens here
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1, result.stderr[-2000:]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "MLflow tracking store" in errors[0] and "127.0.0.1:9" in errors[0]
    assert time.monotonic() - started < 120


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_errors_twice():
    from experiments import initialization

    cfg = initialization.Config(init="he", iterations=2000)
    first, second = initialization.run(cfg), initialization.run(cfg)
    for key in ("train_error", "dev_error", "final_cost"):
        assert first[key] == second[key], key
    assert first["run_id"] != second["run_id"]


def python_sources():
    for folder in ("reg_callbacks", "experiments"):
        yield from sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"\byaml\.load\(", "use yaml.safe_load: yaml.load can build arbitrary objects"),
        (r"allow_pickle\s*=\s*True", "np.load must not unpickle user files"),
        (r"^\s*import pickle|^\s*from pickle|\bpickle\.loads?\(", "no pickle on user input"),
        (r"(?<![\w.])(eval|exec)\(", "no eval/exec"),
        (r"0\.0\.0\.0", "servers bind to 127.0.0.1 unless the user says otherwise"),
    ],
)
def test_sources_avoid_unsafe_calls(pattern, why):
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in python_sources()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(pattern, line) and not line.lstrip().startswith("#")
    ]
    assert not offenders, f"{why}: {offenders}"


# mkdir under /sys is refused by the kernel (EPERM, or EROFS where sysfs is read-only) even for
# root, for whom a chmod-ed directory would still be writable. The full disk is a 4 KiB tmpfs
# mounted over the artifact directory in a private mount namespace: nothing changes on the host.
PRIVATE_MOUNTS = ["unshare", "--user", "--map-root-user", "--mount"]
ARTIFACT_FAULTS = {
    "no permission": (
        "ln -s /sys {artifacts} && exec {command}",
        "Operation not permitted|Permission denied|Read-only file system",
    ),
    "disk full": (
        "mkdir {artifacts} && mount -t tmpfs -o size=4k tmpfs {artifacts} && exec {command}",
        "No space left on device",
    ),
}


def _private_mounts_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run([*PRIVATE_MOUNTS, "true"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("fault", ARTIFACT_FAULTS)
def test_a_failed_artifact_upload_is_one_line_and_a_failed_run(tmp_path, fault):
    from mlflow.tracking import MlflowClient

    if fault == "disk full" and not _private_mounts_work():
        pytest.skip("needs util-linux's unshare and user namespaces to mount a small tmpfs")
    artifacts = tmp_path / "artifacts"
    client = MlflowClient()
    experiment_id = client.create_experiment("toy", artifact_location=str(artifacts))
    script, error = ARTIFACT_FAULTS[fault]
    command = f"{sys.executable} -m experiments.toy --iterations 10"
    prefix = PRIVATE_MOUNTS if fault == "disk full" else []
    result = subprocess.run(
        [*prefix, "sh", "-c", script.format(artifacts=artifacts, command=command)],
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("run FAILED:")]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(lines) == 1 and "cannot store artifact" in lines[0], result.stderr[-2000:]
    assert re.search(error, lines[0]), lines[0]
    (run,) = client.search_runs([experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "ArtifactStoreError: " + lines[0].split(": ", 1)[1]


# ---------------------------------------------------------------------------------------------
# The tracking store is the user's: no input, fault or neighbour loses its runs or breaks it.

TOY = ["experiments.toy", "--model", "centroid"]  # a real recorded run, no TensorFlow
CENTROID_GRID = "name: {name}\n{extra}runs:\n  - experiment: toy\n    params: {{model: centroid}}\n"


def _command(*args, cwd, env=None, timeout=300, encoding="utf-8"):
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        encoding=encoding,
        timeout=timeout,
    )


def _one_error_line(result, code: int) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == code, result.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


def _finished_runs(store) -> int:
    with sqlite3.connect(store) as db:
        return db.execute("select count(*) from runs where status = 'FINISHED'").fetchone()[0]


@pytest.mark.parametrize("target", ["mlflow.db", "x-workers.log", "data.csv"])
def test_a_grid_summary_never_writes_over_the_store_its_log_or_a_users_file(tmp_path, target):
    store = tmp_path / "mlflow.db"
    assert _command(*TOY, cwd=tmp_path).returncode == 0
    (tmp_path / "x-workers.log").write_text("earlier sweep output\n")
    (tmp_path / "data.csv").write_text("x1,x2,y\n1,2,0\n")
    (tmp_path / "grid.yaml").write_text(
        CENTROID_GRID.format(name="x", extra=f"summary: {target}\n")
    )
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    result = _command("experiments.sweep", "--grid", "grid.yaml", "--out", ".", cwd=tmp_path)
    line = _one_error_line(result, 2)
    assert target in line, line
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before
    assert _finished_runs(store) == 1


@pytest.mark.slow
def test_concurrent_first_users_create_one_store_and_every_run_lands(tmp_path):
    store = tmp_path / "new" / "mlflow.db"
    store.parent.mkdir()
    uri = f"sqlite:///{store}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": uri}
    commands = [[sys.executable, "-m", *TOY, "--seed", str(seed)] for seed in range(6)]
    processes = [
        subprocess.Popen(c, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c in commands
    ]
    outcomes = [(p.wait(timeout=300), p.stderr.read().decode()) for p in processes]
    for code, stderr in outcomes:
        assert code == 0 and "Traceback" not in stderr, stderr[-3000:]
    assert _finished_runs(store) == len(commands)
    with sqlite3.connect(store) as db:
        tables = [row[0] for row in db.execute("select name from sqlite_master")]
    assert not [t for t in tables if t.startswith("_alembic_tmp_")]
    assert _command(*TOY, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri}).returncode == 0
    assert sorted(p.name for p in store.parent.iterdir()) == ["mlflow.db", "mlflow.db.lock"]


@pytest.mark.slow
def test_a_store_left_mid_migration_is_one_line_with_the_fix(tmp_path):
    store = tmp_path / "mlflow.db"
    assert _command(*TOY, cwd=tmp_path).returncode == 0
    with sqlite3.connect(store) as db:  # what an interrupted alembic batch migration leaves
        db.execute("create table _alembic_tmp_experiments (experiment_id integer)")
    for command in (TOY, ["experiments.sweep", "--grid", "grid.yaml"]):
        (tmp_path / "grid.yaml").write_text(CENTROID_GRID.format(name="x", extra=""))
        line = _one_error_line(_command(*command, cwd=tmp_path), 1)
        assert "mid-migration" in line and "mlflow db upgrade" in line, line
    with sqlite3.connect(store) as db:
        assert db.execute("select count(*) from runs").fetchone()[0] == 1


KILLED_MID_WRITE = """
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size = 8")  # spills into the file mid-transaction, as a big write does
db.execute("BEGIN")
db.execute("UPDATE runs SET status = 'KILLED'")
db.execute("CREATE TABLE filler AS SELECT randomblob(100000) FROM runs")
os.kill(os.getpid(), 9)
"""


@pytest.mark.slow
def test_a_writer_killed_mid_transaction_is_rolled_back_and_the_store_works(tmp_path):
    store = tmp_path / "mlflow.db"
    assert _command(*TOY, cwd=tmp_path).returncode == 0
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(store)])
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "mlflow.db-journal").exists()  # the hot journal a SIGKILL leaves
    for command in (TOY, ["experiments.sweep", "--grid", "grid.yaml"]):
        (tmp_path / "grid.yaml").write_text(CENTROID_GRID.format(name="x", extra=""))
        result = _command(*command, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    assert set(_statuses(store)) == {"FINISHED"}


@pytest.mark.parametrize("command", [TOY, ["experiments.sweep", "--grid", "grid.yaml"]])
@pytest.mark.parametrize("uri", ["sqlite:///", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_store_is_refused(tmp_path, command, uri):
    (tmp_path / "grid.yaml").write_text(CENTROID_GRID.format(name="x", extra=""))
    line = _one_error_line(_command(*command, "--tracking-uri", uri, cwd=tmp_path), 2)
    assert "names no database file" in line and "sqlite:///PATH" in line, line


@pytest.mark.parametrize("planted", ["x.csv.partial", "x-workers.log"])
def test_links_planted_in_the_output_folder_are_not_followed(tmp_path, planted):
    outside = tmp_path / "outside.txt"
    outside.write_text("not the sweep's\n")
    out = tmp_path / "shared"
    out.mkdir()
    (out / planted).symlink_to(outside)
    (tmp_path / "grid.yaml").write_text(CENTROID_GRID.format(name="x", extra=""))
    result = _command("experiments.sweep", "--grid", "grid.yaml", "--out", "shared", cwd=tmp_path)
    line = _one_error_line(result, 2)
    assert planted in line and "symbolic link" in line, line
    assert outside.read_text() == "not the sweep's\n"


def test_a_partial_summary_link_is_replaced_not_followed(tmp_path):
    from experiments.sweep.report import write_csv

    outside = tmp_path / "outside.txt"
    outside.write_text("not the sweep's\n")
    (tmp_path / "x.csv.partial").symlink_to(outside)
    write_csv(tmp_path / "x.csv", [])
    assert outside.read_text() == "not the sweep's\n"
    assert (tmp_path / "x.csv").read_text().startswith("index,experiment")
    assert not (tmp_path / "x.csv.partial").exists()


@pytest.mark.parametrize("folder", ["pct%41dir", "what?dir", "hash#dir"])
def test_the_default_store_is_in_the_working_folder_whatever_its_name(tmp_path, folder):
    work = tmp_path / folder
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI")
    (work / "grid.yaml").write_text(CENTROID_GRID.format(name="x", extra=""))
    for command in (TOY, ["experiments.sweep", "--grid", "grid.yaml", "--workers", "1"]):
        result = subprocess.run(
            [sys.executable, "-m", *command],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    databases = [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes()[:6] == b"SQLite"]
    assert databases == [work / "mlflow.db"]
    assert _finished_runs(work / "mlflow.db") == 3  # the toy's run, the sweep's parent and child
    artifacts = [p.relative_to(tmp_path) for p in tmp_path.rglob("summary.json")]
    assert artifacts and all(p.parts[:2] == (folder, "mlruns") for p in artifacts), artifacts


def _in_private_mounts(script: str, cwd, env=None, timeout=600):
    """`script` (sh) in a private mount namespace: its mounts vanish with it."""
    return subprocess.run(
        [*PRIVATE_MOUNTS, "sh", "-c", script],
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _statuses(store) -> list[str]:
    with sqlite3.connect(store) as db:
        return [row[0] for row in db.execute("select status from runs")]


TOY_COMMAND = f"{sys.executable} -m experiments.toy --model centroid"
SWEEP_COMMAND = f"{sys.executable} -m experiments.sweep --grid grid.yaml --workers 1"
# Each step prints its exit code and its stderr between markers for the test to read.
STEP = 'echo "== {name}"; {command} >/dev/null 2>step.err; echo "rc=$?"; cat step.err'


def _steps(stdout: str) -> dict[str, tuple[int, str]]:
    steps = {}
    for chunk in stdout.split("== ")[1:]:
        name, _, rest = chunk.partition("\n")
        code, _, stderr = rest.partition("\n")
        steps[name] = (int(code.removeprefix("rc=")), stderr)
    return steps


def _assert_one_line(step, code: int, *words: str) -> None:
    returncode, stderr = step
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert returncode == code, stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr[-3000:]
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.slow
def test_a_full_disk_under_the_store_is_one_line_and_loses_nothing(tmp_path):
    if not _private_mounts_work():
        pytest.skip("needs util-linux's unshare and user namespaces to mount a small tmpfs")
    store = tmp_path / "disk" / "mlflow.db"
    (tmp_path / "disk").mkdir()
    (tmp_path / "grid.yaml").write_text(CENTROID_GRID.format(name="x", extra=""))
    steps = [
        "mount -t tmpfs -o size=4m tmpfs disk",
        STEP.format(name="toy", command=TOY_COMMAND),
        "dd if=/dev/zero of=disk/fill bs=4k 2>/dev/null",
        STEP.format(name="toy on a full disk", command=TOY_COMMAND),
        STEP.format(name="sweep on a full disk", command=SWEEP_COMMAND),
        "rm disk/fill",
        STEP.format(name="toy after", command=TOY_COMMAND),
        STEP.format(name="sweep after", command=SWEEP_COMMAND),
        "cp disk/mlflow.db kept.db",
        # A new store that does not fit: nothing is left, and it is made once space is freed.
        "umount disk && mount -t tmpfs -o size=96k tmpfs disk",
        STEP.format(name="new store, no room", command=TOY_COMMAND),
        "ls -A disk > listing.txt",
        "mount -o remount,size=4m disk",
        STEP.format(name="new store, room", command=TOY_COMMAND),
        "cp disk/mlflow.db new.db",
    ]
    result = _in_private_mounts(
        " && ".join(steps[:1]) + "; " + "; ".join(steps[1:]),
        tmp_path,
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}"},
    )
    done = _steps(result.stdout)
    assert done["toy"][0] == 0, done
    _assert_one_line(done["toy on a full disk"], 1, "full")
    _assert_one_line(done["sweep on a full disk"], 1, "full")
    assert done["toy after"][0] == 0 and done["sweep after"][0] == 0, done
    assert sorted(_statuses(tmp_path / "kept.db")) == ["FINISHED"] * 4  # 2 toys, parent, child
    _assert_one_line(done["new store, no room"], 1, "cannot create the tracking store")
    assert "mlflow.db" not in (tmp_path / "listing.txt").read_text().split()
    assert done["new store, room"][0] == 0, done
    assert _statuses(tmp_path / "new.db") == ["FINISHED"]


@pytest.mark.slow
def test_a_read_only_store_or_folder_is_one_line_at_once(tmp_path):
    if not _private_mounts_work():
        pytest.skip("needs util-linux's unshare and user namespaces to mount read-only")
    (tmp_path / "ro").mkdir()
    (tmp_path / "grid.yaml").write_text(CENTROID_GRID.format(name="x", extra=""))
    existing = f"--tracking-uri sqlite:///{tmp_path / 'ro' / 'mlflow.db'}"
    new = f"--tracking-uri sqlite:///{tmp_path / 'ro' / 'new.db'}"
    steps = [
        STEP.format(name="toy", command=f"{TOY_COMMAND} {existing}"),
        "mount --bind ro ro && mount -o remount,bind,ro ro",
        STEP.format(name="read-only store", command=f"{TOY_COMMAND} {existing}"),
        STEP.format(name="read-only store, sweep", command=f"{SWEEP_COMMAND} {existing}"),
        STEP.format(name="new store, read-only folder", command=f"{TOY_COMMAND} {new}"),
        STEP.format(name="new store, read-only folder, sweep", command=f"{SWEEP_COMMAND} {new}"),
    ]
    started = time.monotonic()
    result = _in_private_mounts("; ".join(steps), tmp_path)
    done = _steps(result.stdout)
    assert done["toy"][0] == 0, done
    for name in ("read-only store", "read-only store, sweep"):
        _assert_one_line(done[name], 1, "Read-only file system")
    for name in ("new store, read-only folder", "new store, read-only folder, sweep"):
        _assert_one_line(done[name], 1, "cannot write in the folder")
    assert time.monotonic() - started < 4 * 30 + 60  # each under 30 s (MLflow retried 105 s)
    assert _statuses(tmp_path / "ro" / "mlflow.db") == ["FINISHED"]
    assert sorted(p.name for p in (tmp_path / "ro").iterdir()) == ["mlflow.db", "mlflow.db.lock"]


def _runs(store) -> list[tuple[str, str, str]]:
    """(status, sweep.role, config_hash) of every run; missing tags are ''."""
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30) as db:
            rows = db.execute(
                "select r.status, "
                "coalesce((select value from tags t where t.run_uuid = r.run_uuid "
                "and t.key = 'sweep.role'), ''), "
                "coalesce((select value from tags t where t.run_uuid = r.run_uuid "
                "and t.key = 'config_hash'), '') from runs r"
            ).fetchall()
    except sqlite3.Error:
        return []
    return rows


def _start_sweep(tmp_path, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.sweep", "--grid", "grid.yaml", *args],
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _rerun_completes(tmp_path, configs: int) -> None:
    """A re-run finishes every config, closes every run and logs the parent's report."""
    result = _command("experiments.sweep", "--grid", "grid.yaml", "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    runs = _runs(tmp_path / "mlflow.db")
    assert "RUNNING" not in [status for status, _, _ in runs], runs
    finished = {digest for status, role, digest in runs if role == "child" and status == "FINISHED"}
    assert len(finished) == configs
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("sweep-x").experiment_id],
        "tags.`sweep.role` = 'parent'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    assert parent.info.status == "FINISHED"
    assert "x.csv" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    assert (tmp_path / "sweep_results" / "x.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize("when", ["right after the parent run opens", "in the report"])
def test_sigterm_outside_the_run_loop_leaves_nothing_running(tmp_path, when):
    (tmp_path / "grid.yaml").write_text(CENTROID_GRID.format(name="x", extra=""))
    store = tmp_path / "mlflow.db"
    if when == "in the report":
        # Every config FINISHED, the parent stopped before its report: as a SIGTERM in the
        # report leaves it (KILLED, or RUNNING and then closed KILLED by the next run).
        assert _command("experiments.sweep", "--grid", "grid.yaml", cwd=tmp_path).returncode == 0
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        (parent,) = client.search_runs(
            [client.get_experiment_by_name("sweep-x").experiment_id],
            "tags.`sweep.role` = 'parent'",
        )
        client.set_terminated(parent.info.run_id, "KILLED")
        _rerun_completes(tmp_path, configs=1)
        return
    sweep = _start_sweep(tmp_path, "--workers", "1")
    _wait_for(lambda: any(role == "parent" for _, role, _ in _runs(store)))
    sweep.send_signal(signal.SIGTERM)
    stdout, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert "interrupted" in stderr
    assert "RUNNING" not in [status for status, _, _ in _runs(store)]
    _rerun_completes(tmp_path, configs=1)


SLOW_TOY_GRID = (
    "name: x\nruns:\n  - experiment: toy\n    params: {iterations: 4000}\n"
    "    grid: {seed: [1, 2, 3, 4]}\n"
)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["deleted", "replaced"])
def test_a_store_deleted_or_replaced_during_a_sweep_is_one_line_and_a_rerun_completes(
    tmp_path, fault
):
    (tmp_path / "grid.yaml").write_text(SLOW_TOY_GRID)
    store = tmp_path / "mlflow.db"
    sweep = _start_sweep(tmp_path, "--workers", "1")
    _wait_for(lambda: any(role == "parent" for _, role, _ in _runs(store)))
    shutil.copy(store, tmp_path / "copy.db")  # the parent RUNNING, no child yet
    _wait_for(lambda: any(s == "FINISHED" and r == "child" for s, r, _ in _runs(store)))
    if fault == "deleted":
        store.unlink()
    else:
        os.replace(tmp_path / "copy.db", store)
    stdout, stderr = sweep.communicate(timeout=300)
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert sweep.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 1 and "MLflow tracking store" in lines[0], stderr[-3000:]
    assert "x.csv" in stdout  # the table and the CSV came before the store's writes
    _rerun_completes(tmp_path, configs=4)


@pytest.mark.slow
def test_a_full_output_folder_runs_each_config_once_and_is_one_line(tmp_path):
    if not _private_mounts_work():
        pytest.skip("needs util-linux's unshare and user namespaces to mount a small tmpfs")
    grid = "name: x\nruns:\n  - experiment: toy\n    grid: {diverge: [false, true]}\n"
    (tmp_path / "grid.yaml").write_text(grid)
    (tmp_path / "sweep_results").mkdir()
    steps = [
        "mount -t tmpfs -o size=64k tmpfs sweep_results",
        "dd if=/dev/zero of=sweep_results/fill bs=4k 2>/dev/null",
        STEP.format(name="full", command=SWEEP_COMMAND),
    ]
    result = _in_private_mounts("; ".join(steps), tmp_path)
    returncode, stderr = _steps(result.stdout)["full"]
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 1 and "cannot write the summary" in lines[0], stderr[-3000:]
    children = [digest for _, role, digest in _runs(tmp_path / "mlflow.db") if role == "child"]
    assert len(children) == len(set(children)) == 2  # the diverging one ran once, not twice
    runs = _runs(tmp_path / "mlflow.db")
    assert "RUNNING" not in [status for status, _, _ in runs]
    result = _command("experiments.sweep", "--grid", "grid.yaml", "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]  # the diverging config fails again
    assert (tmp_path / "sweep_results" / "x.csv").exists()


def _limited_memory():
    import resource

    two_gb = 2 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (two_gb, two_gb))


def _alias_bomb(levels: int = 9) -> str:
    """~400 bytes whose `name` expands to 9**9 strings (anchors in the description)."""
    lines = [
        "description:",
        '  - &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
    ]
    for level in range(1, levels):
        lines.append(f"  - &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]")
    return "\n".join(lines) + f"\nname: *a{levels - 1}\nruns:\n  - experiment: toy\n"


@pytest.mark.parametrize("grid", ["alias bomb", "a billion configs"])
def test_a_resource_bomb_grid_is_one_bounded_line_in_bounded_time_and_memory(tmp_path, grid):
    if grid == "alias bomb":
        text = _alias_bomb()
        (tmp_path / "grid.yaml").write_text(text)
        words = "aliases"
    else:
        values = ", ".join(str(v) for v in range(1, 1001))
        text = (
            "name: x\nruns:\n  - experiment: toy\n    grid:\n"
            f"      seed: [{values}]\n      iterations: [{values}]\n      hidden: [{values}]\n"
        )
        (tmp_path / "grid.yaml").write_text(text)
        words = "1000000000 configs"
    assert len(text) < 15_000
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", "--grid", "grid.yaml", "--dry-run"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limited_memory,
    )
    line = _one_error_line(result, 2)
    assert words in line and len(line) < 2000, line[:3000]
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_a_latin1_terminal_gets_the_report_and_every_help(tmp_path):
    from experiments.harness.registry import EXPERIMENTS

    env = {"PYTHONIOENCODING": "latin-1", "LC_ALL": "C"}
    (tmp_path / "grid.yaml").write_text(CENTROID_GRID.format(name="x", extra=""))
    result = _command(
        "experiments.sweep", "--grid", "grid.yaml", cwd=tmp_path, env=env, encoding="latin-1"
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "1 configs: 1 finished" in result.stdout
    assert _statuses(tmp_path / "mlflow.db") == ["FINISHED", "FINISHED"]
    for experiment in [*EXPERIMENTS, "sweep"]:
        result = _command(
            f"experiments.{experiment}", "--help", cwd=tmp_path, env=env, encoding="latin-1"
        )
        assert result.returncode == 0 and "usage:" in result.stdout, (experiment, result.stderr)
