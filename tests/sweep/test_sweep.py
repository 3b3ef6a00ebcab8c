"""experiments.sweep: plan, validation, dry run, resume, faults and load, driven as a user would.

Tier 1 checks the pure pieces (grid expansion against scikit-learn's ParameterGrid, hashes,
MLflow param strings, resume bookkeeping). The CLI tests run `python -m experiments.sweep`
in a subprocess against the per-test store that conftest.py points MLFLOW_TRACKING_URI at.
The slow ones train the `toy` experiment for real in worker processes.
"""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from experiments.sweep import plan as sweep_plan
from experiments.sweep import store as sweep_store
from experiments.sweep.cli import output_file
from experiments.sweep.plan import (
    build_plan,
    config_hash,
    parameter_grid,
    parse_set,
    preset_names,
)
from experiments.sweep.store import StoredRun, liveness, read_runs_light, reconcile

SWEEP = [sys.executable, "-m", "experiments.sweep"]
DRY_RUN_BUDGET_SECONDS = 2.0


def write_grid(path: Path, name: str, runs: list[dict], **extra) -> Path:
    path.write_text(yaml.safe_dump({"name": name, "runs": runs, **extra}), encoding="utf-8")
    return path


def sweep(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SWEEP, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
    )


def store_path() -> Path:
    return Path(sweep_store.sqlite_path(os.environ["MLFLOW_TRACKING_URI"]))


def runs_of(sweep_name: str):
    """Every run in the sweep's MLflow experiment, through MlflowClient.search_runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(f"sweep-{sweep_name}")
    if experiment is None:
        return []
    return list(client.search_runs([experiment.experiment_id], max_results=5000))


def children(runs):
    return [r for r in runs if r.data.tags.get("sweep.role") != "parent"]


def parents(runs):
    return [r for r in runs if r.data.tags.get("sweep.role") == "parent"]


def assert_each_config_finished_once(runs, expected_configs: int) -> None:
    finished = [r for r in children(runs) if r.info.status == "FINISHED"]
    hashes = [r.data.tags.get("config_hash") for r in finished]
    assert None not in hashes, "a FINISHED child has no config_hash tag"
    assert len(hashes) == len(set(hashes)), "a config FINISHED twice"
    assert len(hashes) == expected_configs, f"{len(hashes)} of {expected_configs} FINISHED"
    assert not [r for r in runs if r.info.status == "RUNNING"], "a run was left RUNNING"


# ---------------------------------------------------------------------------------------------
# Tier 1: pure pieces


def test_parameter_grid_matches_scikit_learn():
    from sklearn.model_selection import ParameterGrid

    grids = [
        {"init": ["zeros", "he"], "seed": [1, 2, 3]},
        [{"variant": ["none"]}, {"variant": ["l2"], "lambd": [0.1, 0.7]}, {}],
        {"b": [1], "a": [[20, 3], [5]]},
    ]
    for grid in grids:
        assert list(parameter_grid(grid)) == list(ParameterGrid(grid))


def test_config_hash_is_canonical_and_stable():
    a = config_hash("toy", {"lr": 0.5, "seed": 1, "hidden": (4,)})
    assert a == config_hash("toy", {"hidden": [4], "seed": 1, "lr": 0.5})  # order, tuple/list
    assert a != config_hash("toy", {"lr": 0.5, "seed": 2, "hidden": (4,)})
    assert a != config_hash("initialization", {"lr": 0.5, "seed": 1, "hidden": (4,)})
    canonical = b'{"experiment":"toy","params":{"seed":1}}'  # documented, so it never drifts
    assert config_hash("toy", {"seed": 1}) == hashlib.sha256(canonical).hexdigest()[:16]


def test_equal_values_in_different_spellings_give_one_config(tmp_path):
    document = {
        "name": "t",
        "runs": [
            {"experiment": "toy", "grid": {"seed": [1, "1", 1.0], "lr": ["0.5", 0.5]}},
        ],
    }
    plan = build_plan(document, source="t", base_dir=tmp_path)
    assert len(plan.configs) == 1 and plan.duplicates == 5


def test_parse_set():
    assert parse_set(["seed=1,2,3", "hidden=20,3;40,6", "learning-rate=0.1"]) == {
        "seed": ["1", "2", "3"],
        "hidden": ["20,3", "40,6"],
        "learning_rate": ["0.1"],
    }
    for bad in ("seed", "=1", "seed=1,,2"):
        with pytest.raises(ValueError, match="--set"):
            parse_set([bad])


def test_set_replaces_the_grid_axis_only_where_the_key_exists(tmp_path):
    document = {
        "name": "t",
        "runs": [
            {"experiment": "toy", "params": {"seed": 9}, "grid": {"lr": [0.1, 0.2]}},
            {"experiment": "initialization", "grid": {"init": ["zeros", "he"]}},
        ],
    }
    plan = build_plan(document, source="t", base_dir=tmp_path, overrides={"lr": ["0.3"]})
    toy = [c for c in plan.configs if c.experiment == "toy"]
    assert [c.params["lr"] for c in toy] == [0.3]
    assert len([c for c in plan.configs if c.experiment == "initialization"]) == 2
    with pytest.raises(ValueError, match="did you mean 'lr'"):
        build_plan(document, source="t", base_dir=tmp_path, overrides={"lrr": ["1"]})


def test_output_file_cannot_escape_the_output_directory(tmp_path):
    assert output_file(str(tmp_path / "out"), "a.csv") == (tmp_path / "out" / "a.csv").resolve()
    for name in ("../a.csv", "/etc/passwd", "sub/../../a.csv", "."):
        with pytest.raises(ValueError, match="inside the output directory"):
            output_file(str(tmp_path / "out"), name)


def _run(run_id, status, *, role=None, parent=None, digest=None, pid=None, params=None, t=0):
    tags = {"sweep": "s"} if role else {}
    if role:
        tags["sweep.role"] = role
    if parent:
        tags["mlflow.parentRunId"] = parent
    if digest:
        tags["config_hash"] = digest
    if pid is not None:
        tags.update({"sweep.host": os.uname().nodename, "sweep.pid": str(pid)})
    return StoredRun(run_id, "1", status, t, tags, params or {}, {})


def test_reconcile_sorts_runs_for_resume(tmp_path):
    document = {"name": "s", "runs": [{"experiment": "toy", "grid": {"seed": [1, 2, 3, 4]}}]}
    plan = build_plan(document, source="s", base_dir=tmp_path)
    c1, c2, c3, c4 = plan.configs
    runs = [
        _run("old", "KILLED", role="parent", t=1),
        _run("a", "FINISHED", role="child", parent="old", digest=c1.config_hash, t=2),
        _run("dead", "RUNNING", role="parent", pid=11, t=3),
        _run("b", "FAILED", role="child", parent="dead", digest=c2.config_hash, t=4),
        _run("c", "RUNNING", role="child", parent="dead", digest=c3.config_hash, t=5),
        _run("d", "FINISHED", role="child", parent="dead", digest=c4.config_hash, t=6),
        _run("x", "FINISHED", t=7),  # a run of someone else's, ignored
    ]
    state = reconcile(plan, runs, alive=lambda tags: sweep_store.DEAD)
    assert set(state.finished) == {c1.config_hash, c4.config_hash}
    assert [p.run_id for p in state.stale_parents] == ["dead"]
    assert [r.run_id for r in state.orphans] == ["c"]
    assert state.last_status[c2.config_hash] == "FAILED"
    alive = reconcile(plan, runs, alive=lambda tags: sweep_store.ALIVE)
    assert [p.run_id for p in alive.live_parents] == ["dead"] and not alive.orphans
    assert list(alive.running) == [c3.config_hash]


def test_liveness_tells_dead_zombie_and_foreign_processes():
    me = sweep_store.process_identity()
    assert liveness(me) == sweep_store.ALIVE
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while not Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1].startswith("Z"):
        time.sleep(0.01)  # exited, not yet reaped: a zombie, like a SIGKILLed sweep
    tags = {"sweep.host": me["sweep.host"], "sweep.pid": str(child.pid)}
    assert liveness(tags) == sweep_store.DEAD
    child.wait()
    assert liveness(tags) == sweep_store.DEAD
    assert liveness({**me, "sweep.pid_start": "1"}) == sweep_store.DEAD  # pid reused
    assert liveness({**me, "sweep.host": "elsewhere"}) == sweep_store.UNKNOWN


# ---------------------------------------------------------------------------------------------
# --dry-run and bad input (no TensorFlow, nothing written)


def test_dry_run_is_fast_and_imports_neither_tensorflow_nor_mlflow(tmp_path, record_property):
    grid = write_grid(
        tmp_path / "g.yaml",
        "dry",
        [{"experiment": "toy", "grid": {"lr": [0.1, 0.5], "seed": [1, 2, 3]}}],
    )
    probe = (
        "import sys; from experiments.sweep.cli import main; code = main(sys.argv[1:]); "
        "print('LOADED', sorted(m for m in ('tensorflow', 'keras', 'mlflow', 'sklearn') "
        "if m in sys.modules)); sys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, "--grid", str(grid), "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
    assert "6 configs, 0 already FINISHED, 6 to run" in result.stdout
    assert "lr=0.5 seed=3" in result.stdout
    walls = []
    for _ in range(3):
        started = time.perf_counter()
        assert sweep("--grid", str(grid), "--dry-run").returncode == 0
        walls.append(time.perf_counter() - started)
    record_property("dry_run_seconds", min(walls))
    print(f"dry-run wall time, best of 3: {min(walls):.2f} s (all: {walls})")
    assert min(walls) <= DRY_RUN_BUDGET_SECONDS
    assert not store_path().exists(), "--dry-run created the store"


@pytest.mark.parametrize("preset", preset_names())
def test_dry_run_of_every_shipped_preset(preset):
    document = yaml.safe_load(sweep_plan.preset_path(preset).read_text())
    missing = [
        block["experiment"]
        for block in document["runs"]
        if not (Path(sweep_plan.__file__).parents[1] / f"{block['experiment']}.py").exists()
    ]
    if missing:
        pytest.skip(f"experiments not written yet: {missing}")
    args = [] if preset == "course" else ["--preset", preset]
    result = sweep(*args, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"sweep {preset!r} (preset {preset})" in result.stdout
    assert "0 already FINISHED" in result.stdout


BAD_GRIDS = {
    "unknown experiment": (
        [{"experiment": "initialisation"}],
        "unknown experiment 'initialisation'; choose from",
    ),
    "unknown param with suggestion": (
        [{"experiment": "toy", "grid": {"lrr": [0.1]}}],
        "unknown parameter 'lrr' for toy; allowed: diverge, hidden, iterations, lr, model, seed; "
        "did you mean 'lr'?",
    ),
    "bad value": (
        [{"experiment": "toy", "grid": {"lr": [0.1, -1]}}],
        "runs[0] (toy): lr must be > 0; got -1.0.",
    ),
    "wrong type": (
        [{"experiment": "toy", "params": {"iterations": "many"}}],
        "iterations must be an integer; got 'many'.",
    ),
    "bad choice": (
        [{"experiment": "toy", "params": {"model": "tree"}}],
        "model must be one of 'net', 'centroid'; got 'tree'.",
    ),
    "scalar grid value": (
        [{"experiment": "toy", "grid": {"seed": 3}}],
        "grid values are non-empty lists of alternatives; got seed: 3",
    ),
    "unknown block key": (
        [{"experiment": "toy", "grids": {"seed": [1]}}],
        "unknown key 'grids' in a block; allowed: experiment, params, grid; did you mean 'grid'?",
    ),
    "missing data file": (
        [{"experiment": "initialization", "params": {"data": "nowhere.npz"}}],
        "data file not found:",
    ),
}


@pytest.mark.parametrize("case", list(BAD_GRIDS))
def test_bad_grid_file_exits_2_with_one_line_and_writes_nothing(tmp_path, case):
    runs, message = BAD_GRIDS[case]
    grid = write_grid(tmp_path / "bad.yaml", "bad", runs)
    result = sweep("--grid", str(grid))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not store_path().exists() and not (tmp_path / "sweep_results").exists()


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        (
            "name: x\nruns:\n  - experiment: !!python/object/apply:os.system ['touch pwned']\n",
            [],
            "not a plain YAML grid file: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object/apply:os.system'",
        ),
        ("name: [unclosed\n", [], "(line 2): not a plain YAML grid file"),
        ("- just a list\n", [], "a grid file is a mapping with 'name' and 'runs'; got list."),
        ("name: ../../etc\nruns: [{experiment: toy}]\n", [], "'name' must be letters"),
        ("name: x\nsummary: ../x.csv\nruns: [{experiment: toy}]\n", [], "must stay inside"),
        ("name: x\nruns: [{experiment: toy}]\n", ["--set", "sed=1"], "did you mean 'seed'?"),
        ("name: x\nruns: [{experiment: toy}]\n", ["--experiment", "gradients"], "has no block"),
        ("name: x\nruns: [{experiment: toy}]\n", ["--workers", "0"], "--workers must be >= 1"),
        ("name: x\nruns: [{experiment: toy}]\n", ["--wokers", "2"], "did you mean --workers?"),
    ],
    ids=[
        "python tag",
        "broken yaml",
        "not a mapping",
        "name escapes",
        "summary escapes",
        "unknown --set key",
        "--experiment not in grid",
        "zero workers",
        "misspelt flag",
    ],
)
def test_bad_file_or_flags_exit_2_with_one_line(tmp_path, text, args, message):
    grid = tmp_path / "bad.yaml"
    grid.write_text(text, encoding="utf-8")
    result = sweep("--grid", str(grid), *args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert not store_path().exists() and not (tmp_path / "pwned").exists()


def test_missing_grid_file_and_unknown_preset_exit_2():
    for args, message in (
        (["--grid", "nowhere.yaml"], "grid file not found: nowhere.yaml"),
        (["--preset", "corse"], "unknown preset 'corse'; choose from"),
    ):
        result = sweep(*args, "--dry-run")
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1


def test_data_paths_in_a_grid_file_are_relative_to_it(tmp_path, monkeypatch):
    folder = tmp_path / "grids"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.npz").write_bytes(b"")
    grid = write_grid(
        folder / "g.yaml",
        "paths",
        [{"experiment": "initialization", "params": {"data": "data/train.npz"}}],
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = sweep("--grid", str(grid), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"data={folder / 'data' / 'train.npz'}" in result.stdout


def test_set_and_experiment_flags_shape_the_plan(tmp_path):
    grid = write_grid(
        tmp_path / "g.yaml",
        "flags",
        [
            {"experiment": "toy", "grid": {"seed": [1, 2]}},
            {"experiment": "initialization", "grid": {"init": ["zeros", "he"]}},
        ],
    )
    result = sweep("--grid", str(grid), "--set", "seed=5,6,7", "--experiment", "toy", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "3 configs" in result.stdout and "initialization" not in result.stdout
    assert "seed=7" in result.stdout


# ---------------------------------------------------------------------------------------------
# Real sweeps (slow: worker processes import TensorFlow and train the toy net)


def toy_grid(tmp_path: Path, name: str, seeds, *, iterations: int = 20, **blocks) -> Path:
    runs = [{"experiment": "toy", "params": {"iterations": iterations}, "grid": {"seed": seeds}}]
    if blocks.get("diverge"):
        runs.append({"experiment": "toy", "params": {"iterations": iterations, "diverge": True}})
    return write_grid(tmp_path / f"{name}.yaml", name, runs)


@pytest.mark.slow
def test_sweep_end_to_end_then_resume_skips_what_finished(tmp_path):
    from mlflow.tracking import MlflowClient

    grid = toy_grid(tmp_path, "e2e", [1, 2], diverge=True)
    result = sweep("--grid", str(grid), "--workers", "2")
    assert result.returncode == 0, result.stderr
    for column in ("experiment", "config", "train err", "dev err", "label", "status", "time"):
        assert column in result.stdout
    assert "FAILED #3 toy seed=0 diverge=True: TrainingDiverged: loss became nan" in result.stdout

    runs = runs_of("e2e")
    (parent,) = parents(runs)
    assert parent.info.status == "FINISHED"
    kids = children(runs)
    assert {r.data.tags["mlflow.parentRunId"] for r in kids} == {parent.info.run_id}
    assert sorted(r.info.status for r in kids) == ["FAILED", "FINISHED", "FINISHED"]
    (failed,) = [r for r in kids if r.info.status == "FAILED"]
    assert failed.data.tags["failure_reason"].startswith("TrainingDiverged: loss became nan")
    assert all(
        r.data.tags["sweep"] == "e2e" and len(r.data.tags["config_hash"]) == 16 for r in kids
    )
    artifacts = {a.path for a in MlflowClient().list_artifacts(parent.info.run_id)}
    assert {"e2e.csv", "bias_variance.png", "dev_error_by_param.png", "summary.txt"} <= artifacts
    # The same summary as a table MLflow's UI renders: one row a config, its child's numbers.
    table = MlflowClient().load_table(
        parent.info.experiment_id, "summary_table.json", [parent.info.run_id]
    )
    assert sorted(table["status"]) == ["FAILED", "FINISHED", "FINISHED"]
    dev_errors = {
        r.info.run_id: r.data.metrics["dev_error"] for r in kids if r.info.status == "FINISHED"
    }
    finished = table[table["status"] == "FINISHED"]
    assert dict(zip(finished["run_id"], finished["dev_error"], strict=True)) == dev_errors

    with open(tmp_path / "sweep_results" / "e2e.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [r["status"] for r in rows] == ["FINISHED", "FINISHED", "FAILED"]
    assert all(0 <= float(r["dev_error"]) <= 1 for r in rows[:2])
    assert rows[0]["param.seed"] == "1" and rows[2]["param.diverge"] == "True"

    # The store read without MLflow (--dry-run's path) agrees with MlflowClient.
    light = {
        r.run_id: (r.status, r.tags)
        for r in read_runs_light(os.environ["MLFLOW_TRACKING_URI"], ["sweep-e2e"])
    }
    assert light == {r.info.run_id: (r.info.status, r.data.tags) for r in runs}

    again = sweep("--grid", str(grid), "--workers", "2")
    assert again.returncode == 0, again.stderr  # the diverging one failed again; 2 of 3 are fine
    assert again.stdout.count("skipped") >= 2
    runs = runs_of("e2e")
    assert len(parents(runs)) == 2
    assert_each_config_finished_once(runs, expected_configs=2)
    assert len([r for r in children(runs) if r.info.status == "FAILED"]) == 2

    grid = toy_grid(tmp_path, "e2e", [1, 2])
    done = sweep("--grid", str(grid))
    assert done.returncode == 0 and "already FINISHED" in done.stderr
    assert len(parents(runs_of("e2e"))) == 2  # nothing to run: no new parent run


def start_sweep(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*SWEEP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_store(sweep_name: str, condition, timeout: float = 600) -> None:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = read_runs_light(uri, [f"sweep-{sweep_name}"]) or []
        if condition([r for r in runs if r.tags.get("sweep.role") != "parent"]):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the store never reached the state the test waits for ({sweep_name})")


def one_finished_one_running(kids) -> bool:
    statuses = [r.status for r in kids]
    return "FINISHED" in statuses and "RUNNING" in statuses


def child_pids(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_sigkill_of_the_sweep_then_resume_finishes_every_config_once(tmp_path):
    grid = toy_grid(tmp_path, "killed", [1, 2, 3, 4, 5], iterations=300)
    process = start_sweep("--grid", str(grid), "--workers", "2")
    wait_for_store("killed", one_finished_one_running)
    workers = child_pids(process.pid)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "orphan workers"

    result = sweep("--grid", str(grid), "--workers", "2")
    assert result.returncode == 0, result.stderr
    runs = runs_of("killed")
    assert_each_config_finished_once(runs, expected_configs=5)
    old, new = sorted(parents(runs), key=lambda r: r.info.start_time)
    assert old.info.status == "KILLED" and new.info.status == "FINISHED"
    assert "ended without closing this run" in old.data.tags["failure_reason"]
    killed = [r for r in children(runs) if r.info.status == "KILLED"]
    assert killed and all("sweep process ended" in r.data.tags["failure_reason"] for r in killed)


@pytest.mark.slow
def test_ctrl_c_marks_running_configs_killed_and_exits_130_then_resumes(tmp_path):
    grid = toy_grid(tmp_path, "ctrlc", [1, 2, 3, 4, 5], iterations=300)
    process = start_sweep("--grid", str(grid), "--workers", "2")
    wait_for_store("ctrlc", one_finished_one_running)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    assert "interrupted: re-run the same command to resume" in stderr
    assert "FINISHED" in stdout and "not run" in stdout  # the partial table
    runs = runs_of("ctrlc")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert parents(runs)[0].info.status == "KILLED"

    result = sweep("--grid", str(grid), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert_each_config_finished_once(runs_of("ctrlc"), expected_configs=5)


@pytest.mark.slow
def test_a_killed_worker_costs_only_its_config_which_is_retried(tmp_path):
    grid = toy_grid(tmp_path, "worker", [1, 2, 3], iterations=300)
    process = start_sweep("--grid", str(grid), "--workers", "1")
    wait_for_store("worker", lambda kids: any(r.status == "RUNNING" for r in kids))
    (worker,) = [
        pid
        for pid in child_pids(process.pid)
        if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    os.kill(worker, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    runs = runs_of("worker")
    assert_each_config_finished_once(runs, expected_configs=3)
    (lost,) = [r for r in children(runs) if r.info.status == "FAILED"]
    assert lost.data.tags["failure_reason"] == "worker process died (killed by SIGKILL)"


@pytest.mark.slow
def test_200_runs_from_8_workers_all_land_in_sqlite_once(tmp_path):
    grid = write_grid(
        tmp_path / "load.yaml",
        "load",
        [
            {
                "experiment": "toy",
                "params": {"model": "centroid"},
                "grid": {"seed": list(range(200))},
            }
        ],
    )
    started = time.perf_counter()
    result = sweep("--grid", str(grid), "--workers", "8", timeout=1800)
    print(f"200 runs with 8 workers: {time.perf_counter() - started:.0f} s")
    assert result.returncode == 0, result.stderr
    assert "200 configs: 200 finished" in result.stdout
    runs = runs_of("load")
    assert len(parents(runs)) == 1
    assert len(children(runs)) == 200
    assert_each_config_finished_once(runs, expected_configs=200)
    seeds = sorted(int(r.data.params["seed"]) for r in children(runs))
    assert seeds == list(range(200))


@pytest.mark.slow
def test_exit_code_is_1_only_when_every_config_failed_or_fail_fast_stopped(tmp_path):
    grid = write_grid(
        tmp_path / "bad.yaml",
        "failing",
        [
            {
                "experiment": "toy",
                "params": {"iterations": 20, "diverge": True},
                "grid": {"seed": [1, 2, 3]},
            }
        ],
    )
    result = sweep("--grid", str(grid), "--workers", "1", "--fail-fast")
    assert result.returncode == 1
    assert "error: --fail-fast: config #1 (toy seed=1) failed: TrainingDiverged" in result.stderr
    assert "3 configs: 1 failed, 2 not run" in result.stdout
    (parent,) = parents(runs_of("failing"))
    assert parent.info.status == "FAILED"

    result = sweep("--grid", str(grid), "--workers", "2")
    assert result.returncode == 1
    assert "error: every config failed (3 of them)" in result.stderr
    assert len([r for r in children(runs_of("failing")) if r.info.status == "FAILED"]) == 4


@pytest.mark.slow
def test_every_configs_model_and_step_images_are_logged_unless_turned_off(tmp_path):
    import mlflow.keras
    from mlflow.tracking import MlflowClient

    grid = toy_grid(tmp_path, "no-models", [1])
    off = sweep("--grid", str(grid), "--no-log-model", "--no-step-images")
    assert off.returncode == 0, off.stderr
    (kid,) = children(runs_of("no-models"))
    assert kid.info.status == "FINISHED" and kid.outputs.model_outputs == []
    assert MlflowClient().list_artifacts(kid.info.run_id, "images") == []

    grid = toy_grid(tmp_path, "models", [1, 2])
    result = sweep("--grid", str(grid), "--workers", "1")
    assert result.returncode == 0, result.stderr
    runs = runs_of("models")
    (parent,) = parents(runs)
    assert parent.data.params["log_model"] == "True"
    kids = children(runs)
    assert len(kids) == 2 and all(len(r.outputs.model_outputs) == 1 for r in kids)
    client = MlflowClient()
    # The toy trains 20 iterations, one interval: its gradient heatmap before and after.
    images = [a.path for a in client.list_artifacts(kids[0].info.run_id, "images")]
    steps = sorted(int(p.split("+step+")[1].split("+")[0]) for p in images if p.endswith(".png"))
    assert steps == [0, 20]
    models = client.search_logged_models([parent.info.experiment_id])
    assert {m.source_run_id for m in models} == {r.info.run_id for r in kids}
    model = mlflow.keras.load_model(f"runs:/{kids[0].info.run_id}/model")
    assert model.count_params() > 0
