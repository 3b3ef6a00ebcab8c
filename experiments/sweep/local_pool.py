"""Worker processes for the sweep: long-lived, one config at a time, safe to kill.

A fresh Python process that imports TensorFlow costs ~6.5 s against 0.2-1 s of training for
a course config, so each worker imports TensorFlow and MLflow once and then runs configs
until the queue is empty. The pool is a few lines over `multiprocessing` (spawn) with one
pipe per worker rather than `ProcessPoolExecutor` or joblib's loky: those mark the whole
pool broken when one worker dies (an out-of-memory kill, `kill -9`) and terminate the
others mid-run, and neither says which config a worker was running. Here the sweep knows
each worker's config, so a dead worker costs only its own config (marked FAILED in the
store and retried once), a replacement is started, and Ctrl-C reaches each running config
once so its run ends KILLED. The throughput is the same (measured in
benchmarks/bench_sweep.py).

Workers die with the sweep (`PR_SET_PDEATHSIG` on Linux, a watchdog elsewhere): a killed
sweep leaves no orphan still writing runs that a resumed sweep would run a second time.
"""

from __future__ import annotations

import contextlib
import inspect
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from experiments.sweep.plan import PlannedConfig

SUMMARY_KEYS = (
    "run_id",
    "train_error",
    "dev_error",
    "avoidable_bias",
    "variance",
    "label",
    "gradient_health",
)
MAX_ATTEMPTS = 2  # a config whose worker dies is run once more, then left FAILED
GRACE_SECONDS = 60.0  # after Ctrl-C, how long running configs get to end KILLED on their own


@dataclass(frozen=True)
class WorkerSettings:
    tracking_uri: str | None
    parent_run_id: str
    sweep_name: str
    sweep_experiment: str  # MLflow experiment of the sweep, "sweep-<name>"
    sweep_experiment_id: str
    threads: int
    log_file: str | None = None


@dataclass
class Result:
    config: PlannedConfig
    status: str  # FINISHED, FAILED or KILLED
    seconds: float = 0.0
    reason: str = ""
    summary: dict = field(default_factory=dict)

    @property
    def run_id(self) -> str | None:
        return self.summary.get("run_id")


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    return max(1, (cores or cpu_count()) // max(1, workers))


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_workers(bytes_per_worker: float = 1.5e9) -> int:
    """min(CPU count, available memory / 1.5 GB), at least 1."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        memory = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        try:
            memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return cpu_count()
    return max(1, min(cpu_count(), int(memory // bytes_per_worker)))


def accepts_experiment(run_fn: Callable) -> bool:
    """Whether an experiment's `run` takes `experiment=` (so children land in the sweep's)."""
    try:
        parameters = inspect.signature(run_fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name == "experiment" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters
    )


# ---------------------------------------------------------------------------------------------
# Inside a worker


def worker_main(connection, settings: WorkerSettings) -> None:
    """A worker's whole life: set threads, import TensorFlow once, run configs until told."""
    for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[variable] = str(settings.threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _die_with_parent()
    _redirect_output(settings.log_file)
    _interrupt_once()
    try:
        _warm_up(settings.threads)
        while True:
            config = connection.recv()
            if config is None:
                return
            result = run_config(config, settings)
            _send_uninterrupted(connection, result)
            if result.status == "KILLED":
                return
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return


def run_config(config: PlannedConfig, settings: WorkerSettings) -> Result:
    """Run one config through its experiment's `run`; never raises (but for bugs here)."""
    from experiments.harness.cli import config_from_dict
    from experiments.sweep.plan import load_experiment
    from experiments.sweep.store import child_tags
    from reg_callbacks.tracking import tags_for_children_of

    started = time.perf_counter()
    status, reason, summary = "FINISHED", "", {}
    module = load_experiment(config.experiment)
    kwargs = {"tracking_uri": settings.tracking_uri, "parent_run_id": settings.parent_run_id}
    if accepts_experiment(module.run):
        kwargs["experiment"] = settings.sweep_experiment
    error: BaseException | None = None
    if "keras" in sys.modules:
        # Keras numbers auto-named layers per process; restart the count so that every run
        # of a topic logs the same grad_norm/<layer> keys, whichever worker ran it before.
        sys.modules["keras"].utils.clear_session()
    try:
        cfg = config_from_dict(module.Config, config.params, name=config.experiment)
        with tags_for_children_of(settings.parent_run_id, child_tags(settings.sweep_name, config)):
            summary = dict(module.run(cfg, **kwargs) or {})
    except KeyboardInterrupt as exc:
        status, reason, error = "KILLED", "interrupted (Ctrl-C)", exc
    except Exception as exc:
        status, reason, error = "FAILED", f"{type(exc).__name__}: {exc}", exc
        traceback.print_exc()
    seconds = time.perf_counter() - started
    summary = table_values(summary)
    try:
        summary["run_id"] = _record(config, settings, summary.get("run_id"), error)
    except Exception:  # the store is down: the result still reaches the table and the CSV
        traceback.print_exc()
    return Result(config, status, round(seconds, 3), " ".join(reason.split()), summary)


def table_values(summary: Mapping) -> dict:
    """The summary's numbers for the sweep's table.

    An experiment that trains one nested child per config (e.g. `gradients` with one init)
    reports it under a key; its numbers stand for the config's.
    """
    values = {key: summary[key] for key in SUMMARY_KEYS if key in summary}
    if "train_error" not in values:
        nested = [v for v in summary.values() if isinstance(v, Mapping) and "train_error" in v]
        if len(nested) == 1:
            values.update({k: nested[0][k] for k in SUMMARY_KEYS[1:] if k in nested[0]})
    return values


def _record(config, settings, run_id, error) -> str | None:
    """The config's run id; a FAILED run is created for a config that failed before its run."""
    from experiments.sweep import store

    if run_id is not None:
        return run_id
    client = store.client_for(settings.tracking_uri)
    found = store.find_child(
        client, _experiment_ids(client, settings, config), settings.parent_run_id, config
    )
    if found is not None:
        return found.run_id
    if error is None or isinstance(error, KeyboardInterrupt):
        return None
    from reg_callbacks.tracking import RunRecorder

    recorder = RunRecorder(
        settings.sweep_experiment,
        run_name=f"{config.experiment} {config.label}".strip(),
        params=config.params,
        tags=store.child_tags(settings.sweep_name, config),
        tracking_uri=settings.tracking_uri,
        parent_run_id=settings.parent_run_id,
    )
    recorder.__enter__()
    recorder.__exit__(type(error), error, None)  # FAILED with failure_reason
    return recorder.run_id


def _experiment_ids(client, settings: WorkerSettings, config: PlannedConfig) -> list[str]:
    from reg_callbacks.tracking import with_retries

    ids = [settings.sweep_experiment_id]
    topic = with_retries(client.get_experiment_by_name, config.experiment)
    if topic is not None:
        ids.append(topic.experiment_id)
    return ids


def _warm_up(threads: int) -> None:
    import mlflow.tracking  # noqa: F401
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # already initialized: the env vars did it
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _interrupt_once() -> None:
    """The first SIGINT raises KeyboardInterrupt (the run ends KILLED); later ones are ignored.

    Ctrl-C in a terminal reaches the sweep and its workers, and the sweep forwards it to
    running workers too: a second interrupt must not break the first one's clean-up.
    """

    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)


def _send_uninterrupted(connection, result: Result) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        connection.send(result)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _redirect_output(log_file: str | None) -> None:
    """TensorFlow's and MLflow's chatter goes to the log file, not over the progress bar."""
    if not log_file:
        return
    descriptor = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)


def _die_with_parent() -> None:
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the sweep died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


# ---------------------------------------------------------------------------------------------
# In the sweep process


class _Worker:
    def __init__(self, context, settings: WorkerSettings, number: int):
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=worker_main, args=(child, settings), name=f"sweep-worker-{number}", daemon=True
        )
        self.process.start()
        child.close()
        self.config: PlannedConfig | None = None
        self.started = 0.0

    def send(self, config: PlannedConfig | None) -> None:
        self.connection.send(config)
        self.config = config
        self.started = time.perf_counter()


def settle_lost(config, status, reason, retry, started, queue, attempts, on_result) -> None:
    """A config whose worker was lost: queued again if `retry` and it has attempts left
    (`MAX_ATTEMPTS` in all), else reported with `status` and `reason`."""
    attempts[config.index] = attempts.get(config.index, 0) + 1
    if retry and attempts[config.index] < MAX_ATTEMPTS:
        queue.appendleft(config)
    else:
        on_result(Result(config, status, round(time.perf_counter() - started, 3), reason))


class WorkerPool:
    """`size` worker processes that run `PlannedConfig`s; see the module docstring.

    Args:
        size: Number of workers.
        settings: What every worker needs (tracking URI, parent run, threads).
        on_lost: Called as `on_lost(config, status, reason)` when a worker dies (or is
            killed after the grace period) while running `config`, before any retry; the
            sweep uses it to close that config's run in the store.
    """

    def __init__(
        self,
        size: int,
        settings: WorkerSettings,
        *,
        on_lost: Callable[[PlannedConfig, str, str], None] = lambda *args: None,
        grace_seconds: float = GRACE_SECONDS,
    ):
        self.size = size
        self.settings = settings
        self.on_lost = on_lost
        self.grace_seconds = grace_seconds
        self._context = multiprocessing.get_context("spawn")
        self._spawned = 0
        self._deaths_at_start = 0
        self.workers = [self._spawn() for _ in range(size)]

    def _spawn(self) -> _Worker:
        self._spawned += 1
        return _Worker(self._context, self.settings, self._spawned)

    def run(
        self,
        configs: Iterable[PlannedConfig],
        *,
        on_result: Callable[[Result], None],
        stop_level: Callable[[], int] = lambda: 0,
        poll_seconds: float = 0.2,
    ) -> list[PlannedConfig]:
        """Run the configs; returns the ones never started (after a stop).

        `stop_level()` is polled: 0 goes on; 1 stops dispatching and interrupts running
        configs (they end KILLED); 2, or the grace period passing, kills their workers.
        """
        queue = deque(configs)
        attempts: dict[int, int] = {}
        interrupted_at = None
        while True:
            stop = stop_level()
            if stop and interrupted_at is None:
                interrupted_at = time.monotonic()
                for worker in self._busy():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.process.pid, signal.SIGINT)
            if stop and (stop >= 2 or time.monotonic() - interrupted_at > self.grace_seconds):
                for worker in self._busy():
                    worker.process.kill()
            if not stop:
                self._dispatch(queue)
            busy = self._busy()
            if not busy and (stop or not queue):
                return list(queue)
            waitables = [w.connection for w in busy] + [w.process.sentinel for w in busy]
            multiprocessing.connection.wait(waitables, timeout=poll_seconds)
            for worker in busy:
                self._collect(worker, queue, attempts, on_result, stopping=bool(stop))

    def _busy(self) -> list[_Worker]:
        return [w for w in self.workers if w.config is not None]

    def _dispatch(self, queue: deque) -> None:
        for i, worker in enumerate(self.workers):
            if not queue:
                return
            if worker.config is not None:
                continue
            if not worker.process.is_alive():
                self._replace(i, had_config=False)
                worker = self.workers[i]
            try:
                worker.send(queue[0])
            except (BrokenPipeError, EOFError, OSError):
                worker.config = None
                self._replace(i, had_config=False)
                continue
            queue.popleft()

    def _collect(self, worker, queue, attempts, on_result, *, stopping: bool) -> None:
        result = None
        try:
            if worker.connection.poll():
                result = worker.connection.recv()
        except (EOFError, OSError):
            result = None
        if result is not None:
            worker.config = None
            on_result(result)
            return
        if worker.process.is_alive():
            return
        config = worker.config
        worker.config = None
        worker.process.join(timeout=1)
        status = "KILLED" if stopping else "FAILED"
        reason = f"worker process died ({_describe_exit(worker.process.exitcode)})"
        self.on_lost(config, status, reason)
        retry = not stopping
        settle_lost(config, status, reason, retry, worker.started, queue, attempts, on_result)
        if not stopping:
            self._replace(self.workers.index(worker), had_config=True)

    def _replace(self, i: int, *, had_config: bool) -> None:
        if not had_config:
            self._deaths_at_start += 1
            if self._deaths_at_start > 2 * self.size:
                log = self.settings.log_file or "stderr"
                raise RuntimeError(f"sweep workers keep exiting before running a config; see {log}")
        self.workers[i] = self._spawn()

    def close(self, timeout: float = 10.0) -> None:
        """Ask idle workers to exit, wait, then kill what is left."""
        for worker in self.workers:
            if worker.config is None and worker.process.is_alive():
                with contextlib.suppress(OSError):
                    worker.connection.send(None)
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            worker.connection.close()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
