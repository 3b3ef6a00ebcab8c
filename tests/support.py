"""Servers that slow tests start on 127.0.0.1: PostgreSQL, an MLflow tracking server, a Ray head.

Each is a context manager that yields what a client needs (a DSN, a URL, an address) and, on
leaving the block, also when the block raises, stops every process it started. Each process
started here carries `REG_CALLBACKS_TEST_SERVER=<pid of this process>:<kind>:<token>` in its
environment; the daemons and workers it forks inherit that, even after they re-parent to
init, so `leftover_processes()` finds whatever is still alive. Each exit ends with that check,
SIGKILLs what a graceful stop left behind, and raises if anything survives.

Linux only (reads /proc). PostgreSQL's server binaries come from Debian's `postgresql` package
(`apt-get install -y postgresql`, binaries in /usr/lib/postgresql/<version>/bin; set
`PG_BINDIR` to use others). PostgreSQL refuses to run as root, so as root the server runs as
the `postgres` user that package creates. Ray and psycopg2 come with `pip install -e
".[ray,postgres]"`.

Example:
    >>> with postgres(tmp_path) as dsn, mlflow_server(dsn, tmp_path / "artifacts") as url:
    ...     with RunRecorder("demo", tracking_uri=url) as recorder:
    ...         recorder.log_final({"dev_error": 0.1})
    >>> with ray_head(num_cpus=2) as address:
    ...     ray.init(address=address)
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the checkout; subprocess tests put it on PYTHONPATH


def run_module(
    module: str, *args: str, cwd=None, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`python -m module args...` as a user runs it, with this checkout on PYTHONPATH."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


MARKER_ENV = "REG_CALLBACKS_TEST_SERVER"
# For a head started here and its drivers (`ray_head` sets these for its block).
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read at `import ray`, makes Ray on Linux take 127.0.0.1
# as the node address instead of the machine's first network address: everything stays on
# loopback. RAY_AUTH_MODE is explicit because, unset, a head turns token authentication on
# as soon as ~/.ray/auth_token exists (any in-process `ray.init()` writes one), and drivers
# without the token are then refused.
RAY_LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
# Process titles of a Ray node's own daemons; every other `ray::` process is a worker.
_RAY_DAEMON_TITLES = {"ray::DashboardAgent", "ray::RuntimeEnvAgent"}
_ray_heads: dict[str, str] = {}  # address -> marker of the head's processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bindir() -> Path:
    """Where initdb/pg_ctl/createdb live: `PG_BINDIR`, then PATH, then Debian's layout."""
    candidates = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    if shutil.which("pg_ctl"):
        candidates.append(Path(shutil.which("pg_ctl")).resolve().parent)
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(Path(path).parent.name)
    )
    candidates.extend(Path(path) for path in reversed(debian))
    for bindir in candidates:
        if all((bindir / tool).exists() for tool in ("initdb", "pg_ctl", "createdb")):
            return bindir
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in PG_BINDIR, on PATH or in "
        "/usr/lib/postgresql/*/bin; install them with `apt-get install -y postgresql`."
    )


def _process_table() -> dict[int, tuple[int, str | None]]:
    """Every live process: {pid: (parent pid, its marker or None)}; exited ones left out."""
    prefix = f"{MARKER_ENV}=".encode()
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as file:
                fields = file.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry.name}/environ", "rb") as file:
                environ = file.read()
        except OSError:  # gone, or not ours to read
            continue
        if fields[0] in (b"Z", b"X"):  # exited, waiting to be reaped: nothing left to stop
            continue
        marker = next(
            (
                item[len(prefix) :].decode()
                for item in environ.split(b"\0")
                if item.startswith(prefix)
            ),
            None,
        )
        table[int(entry.name)] = (int(fields[1]), marker)
    return table


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _processes_marked(matches) -> dict[int, str]:
    """{pid: command} of processes whose marker `matches`, and their descendants.

    Descendants count too because PostgreSQL's backends overwrite their environment with
    their process title.
    """
    table = _process_table()
    found = {pid for pid, (_, marker) in table.items() if marker is not None and matches(marker)}
    grown = True
    while grown:
        children = {pid for pid, (parent, _) in table.items() if parent in found} - found
        found |= children
        grown = bool(children)
    return {pid: _command_line(pid) for pid in sorted(found)}


def leftover_processes(kind: str | None = None) -> dict[int, str]:
    """Live processes that this Python process started through this module: {pid: command}.

    Args:
        kind: Only those of "postgres", "mlflow" or "ray"; default: all.
    """
    prefix = f"{os.getpid()}:{kind}:" if kind else f"{os.getpid()}:"
    return _processes_marked(lambda marker: marker.startswith(prefix))


def _marked_env(kind: str, extra: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    marker = f"{os.getpid()}:{kind}:{secrets.token_hex(4)}"
    return marker, {**os.environ, **(extra or {}), MARKER_ENV: marker}


def _reap(marker: str, timeout: float = 15.0) -> None:
    """SIGKILL whatever still carries `marker`; raise if anything outlives `timeout` s."""
    deadline = time.monotonic() + timeout
    while alive := _processes_marked(lambda found: found == marker):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes survived SIGKILL: {alive}")
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _stop_group(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM a process started with `start_new_session`, and its group; SIGKILL after timeout."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _run(command: list, env: dict[str, str], what: str, timeout: float = 120.0) -> None:
    result = subprocess.run(
        [str(part) for part in command],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} failed with exit code {result.returncode}:\n{result.stdout}{result.stderr}"
        )


def _wait_until(ready, *, timeout: float, what: str, process=None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while not ready():
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"{what} exited with code {process.returncode} before it was ready; "
                f"its log ends:\n{_tail(log) if log else ''}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{what} not ready after {timeout:.0f} s; its log ends:\n"
                f"{_tail(log) if log else ''}"
            )
        time.sleep(0.2)


@contextlib.contextmanager
def postgres(tmp_path: Path, *, database: str = "mlflow", timeout: float = 60.0) -> Iterator[str]:
    """A PostgreSQL server on 127.0.0.1 with an empty `database`; yields its DSN.

    The DSN, `postgresql+psycopg2://mlflow:<random password>@127.0.0.1:<port>/<database>`, is
    what `mlflow server --backend-store-uri` takes; the driver is named because SQLAlchemy 2.1
    reads a bare `postgresql://` as psycopg 3, which `.[postgres]` doesn't install. It listens
    on TCP only (no Unix socket), with password authentication, and trades durability for
    speed (fsync off): a server for tests, not a template for production. As root, its data
    lives in a private directory owned by `postgres` (pytest's tmp_path is root-only), removed
    at exit; either way the server's log ends up in `tmp_path/postgres.log`.

    Args:
        tmp_path: Where the data (or, as root, the log) goes.
        database: Name of the database to create.
        timeout: Seconds to wait for the server to accept connections.
    """
    bindir = postgres_bindir()
    tmp_path = Path(tmp_path)
    as_root = os.geteuid() == 0
    if as_root:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError(
                "PostgreSQL won't run as root, and there is no `postgres` user to run it as; "
                "`apt-get install -y postgresql` creates one."
            ) from None
        home = Path(tempfile.mkdtemp(prefix="reg-callbacks-pg-"))
        os.chown(home, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    else:
        home = Path(tempfile.mkdtemp(prefix="postgres-", dir=tmp_path))
        as_user = []
    data, log, password_file = home / "data", home / "postgres.log", home / "password"
    password = secrets.token_urlsafe(16)
    password_file.write_text(password + "\n")
    if as_root:
        os.chown(password_file, owner.pw_uid, owner.pw_gid)
    port = free_port()
    marker, env = _marked_env("postgres")
    pg_ctl = [*as_user, bindir / "pg_ctl", "-D", data]
    try:
        _run(
            [
                *as_user,
                bindir / "initdb",
                "-D",
                data,
                "--username=mlflow",
                "--auth=scram-sha-256",
                f"--pwfile={password_file}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            env,
            "initdb",
        )
        options = (
            f"-h 127.0.0.1 -p {port} -k '' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        _run([*pg_ctl, "start", "-w", "-t", int(timeout), "-l", log, "-o", options], env, "pg_ctl")
        _run(
            [bindir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "mlflow", database],
            {**env, "PGPASSWORD": password},
            "createdb",
        )
        yield f"postgresql+psycopg2://mlflow:{password}@127.0.0.1:{port}/{database}"
    finally:
        try:
            if (data / "postmaster.pid").exists():
                subprocess.run(
                    [str(part) for part in [*pg_ctl, "stop", "-m", "fast", "-w", "-t", "30"]],
                    env=env,
                    capture_output=True,
                    timeout=60,
                )
            _reap(marker)
        finally:
            if log.exists():
                shutil.copy(log, tmp_path / "postgres.log")
            if as_root:
                shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(
    backend_uri: str, artifacts_dir: Path, *, workers: int = 2, timeout: float = 240.0
) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 and a free port; yields its URL once `/health` answers.

    Artifacts are proxied by the server (`--serve-artifacts`) into `artifacts_dir`, so
    clients need no access to the artifact store. MLflow's job runner (an extra process for
    its GenAI jobs) is turned off. The server's log is `<artifacts_dir>.log`. On exit the
    server's process group gets SIGTERM, then SIGKILL after 20 s.

    Args:
        backend_uri: e.g. `postgres(...)`'s DSN, or `sqlite:///path/mlflow.db`.
        artifacts_dir: Created if missing.
        workers: uvicorn worker processes; each costs ~1.5 s of CPU to start.
        timeout: Seconds to wait for `/health`; the first start on an empty PostgreSQL
            database also creates MLflow's tables.
    """
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    log = artifacts_dir.with_name(artifacts_dir.name + ".log")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    marker, env = _marked_env("mlflow", {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        backend_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts_dir),
        "--workers",
        str(workers),
    ]

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=artifacts_dir.parent,
            start_new_session=True,
        )
    try:
        _wait_until(healthy, timeout=timeout, what="mlflow server", process=process, log=log)
        yield url
    finally:
        try:
            _stop_group(process, timeout=20)
        finally:
            _reap(marker)


@contextlib.contextmanager
def _local_ray_env() -> Iterator[None]:
    """Within the block, Ray drivers here and in subprocesses started here get RAY_LOCAL_ENV."""
    saved = {name: os.environ.get(name) for name in RAY_LOCAL_ENV}
    os.environ.update(RAY_LOCAL_ENV)
    constants = sys.modules.get("ray._private.ray_constants")
    saved_flag = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    if constants is not None:  # Ray already imported: it read the variable at import time
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if constants is not None:
            constants.ENABLE_RAY_CLUSTER = saved_flag


@contextlib.contextmanager
def ray_head(num_cpus: int = 2, *, timeout: float = 120.0) -> Iterator[str]:
    """A one-node Ray cluster on 127.0.0.1; yields its address `127.0.0.1:PORT`.

    `num_cpus` is both the CPUs Ray schedules on and the number of worker processes it
    keeps for `num_cpus=1` tasks. The head runs as `ray start --head --block` in its own
    session, with its own temp dir (removed at exit) and free ports, so it coexists with
    other Ray clusters on the machine. At exit it gets SIGTERM (Ray stops its daemons and
    workers at once, without draining), then the rest is SIGKILLed; never `ray stop`, which
    would stop every Ray cluster of the user on this machine. Disconnect drivers
    (`ray.shutdown()`) first.

    Inside the block, drivers connect with `ray.init(address=address)` or, in a subprocess
    started inside the block, `--ray-address address`: the block sets `RAY_LOCAL_ENV`.

    Args:
        num_cpus: CPUs of the node.
        timeout: Seconds to wait for `ray start` to report the node running.
    """
    ray_executable = Path(sys.executable).with_name("ray")
    if not ray_executable.exists():
        raise RuntimeError(f"`ray` not found next to {sys.executable}: pip install -e '.[ray]'")
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's socket paths live in it
    log = temp_dir / "ray-start.log"
    port = free_port()
    address = f"127.0.0.1:{port}"
    # No draining on SIGTERM: it waits up to 30 s for leases a test has no use for.
    marker, env = _marked_env(
        "ray", {**RAY_LOCAL_ENV, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    )
    command = [
        str(ray_executable),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--num-cpus={num_cpus}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        f"--object-store-memory={200 * 1024 * 1024}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
    ]
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=temp_dir,
            start_new_session=True,
        )
    try:
        _wait_until(
            lambda: "Ray runtime started" in log.read_text(errors="replace"),
            timeout=timeout,
            what="ray start --head",
            process=process,
            log=log,
        )
        _ray_heads[address] = marker
        with _local_ray_env():
            yield address
    finally:
        _ray_heads.pop(address, None)
        try:
            _stop_group(process, timeout=20)
        finally:
            try:
                _reap(marker)
            finally:
                shutil.rmtree(temp_dir, ignore_errors=True)


def ray_workers(address: str) -> dict[int, str]:
    """Worker processes of a head started by `ray_head`: {pid: title}.

    A worker's title is `ray::IDLE` between tasks and `ray::<task function>` while it runs one.
    """
    try:
        marker = _ray_heads[address]
    except KeyError:
        raise ValueError(f"no head started by ray_head() at {address!r}") from None
    workers = {}
    for pid, command in _processes_marked(lambda found: found == marker).items():
        title = command.split(" ", 1)[0]
        if title.startswith("ray::") and title not in _RAY_DAEMON_TITLES:
            workers[pid] = title
    return workers


def kill_ray_worker(address: str, task: str | None = None, *, timeout: float = 60.0) -> int:
    """SIGKILL one worker of the head at `address`, as a crash or the OOM killer would.

    Args:
        address: A head started by `ray_head`.
        task: Kill a worker while it runs this task function (waiting until one does);
            default: any busy worker, else an idle one.
        timeout: Seconds to wait for a matching worker.

    Returns:
        The pid that was killed.
    """

    def pick() -> int | None:
        workers = ray_workers(address)
        if task is not None:
            return next((pid for pid, title in workers.items() if title == f"ray::{task}"), None)
        busy = [pid for pid, title in workers.items() if title != "ray::IDLE"]
        return (busy or list(workers) or [None])[0]

    deadline = time.monotonic() + timeout
    while (pid := pick()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"no Ray worker running {task or 'anything'} after {timeout:.0f} s; "
                f"workers: {ray_workers(address)}"
            )
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return pid


# ---------------------------------------------------------------------------------------------
# The MLflow REST API, as any external client uses it


def mlflow_api(url: str, endpoint: str, payload: dict | None = None) -> dict:
    """GET `endpoint` of the server at `url` (POST `payload` as JSON if given)."""
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{endpoint}",
        data=None if payload is None else json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if payload is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def search_runs(url: str, experiment: str, page_size: int = 50) -> list[dict]:
    """Every run of `experiment` through `runs/search`, page by page; [] if it doesn't exist."""
    query = urllib.parse.urlencode({"experiment_name": experiment})
    try:
        found = mlflow_api(url, f"experiments/get-by-name?{query}")
    except urllib.error.HTTPError:
        return []
    runs, token = [], None
    while True:
        payload = {"experiment_ids": [found["experiment"]["experiment_id"]]}
        payload["max_results"] = page_size
        if token:
            payload["page_token"] = token
        page = mlflow_api(url, "runs/search", payload)
        runs.extend(page.get("runs", []))
        token = page.get("next_page_token")
        if not token:
            return runs


def run_tags(run: dict) -> dict[str, str]:
    """A REST run's tags as a dict."""
    return {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}
