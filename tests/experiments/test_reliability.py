"""Reliability: an unreachable tracking server, determinism, and what user input can reach."""

import os
import re
import shutil
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
