"""Worker processes for the sweep: long-lived, one config at a time, safe to kill.

A fresh Python process that imports TensorFlow costs ~6.5 s against 0.2-1 s of training for
a course config, so each worker imports TensorFlow and MLflow once and then runs configs
until the queue is empty. The pool is a few lines over `multiprocessing` (spawn) with one
pipe per worker rather than `ProcessPoolExecutor` or loky: those mark the whole
pool broken when one worker dies (an out-of-memory kill, `kill -9`) and terminate the
others mid-run, and neither says which config a worker was running. Here the sweep knows
each worker's config, so a dead worker costs only its own config (marked FAILED in the
store and retried once), a replacement is started, and Ctrl-C reaches each running config
once so its run ends KILLED. Workers start importing before the sweep has opened the
store and its parent run (`start_workers`), and get their settings once it has.

Workers die with the sweep (`PR_SET_PDEATHSIG` on Linux, a watchdog elsewhere): a killed
sweep leaves no orphan still writing runs that a resumed sweep would run a second time.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time

from experiments.harness.cli import skip_final_collection
from experiments.sweep.plan import PlannedConfig
from experiments.sweep.pool import Pool
from experiments.sweep.worker import Result, WorkerSettings, run_config

# ---------------------------------------------------------------------------------------------
# Inside a worker


def worker_main(connection, threads: int, log_file: str | None) -> None:
    """A worker's whole life: set threads, import TensorFlow once, run configs until told.

    It imports while the sweep opens the store and its parent run, then takes the
    `WorkerSettings` (which name that run) as its first message.
    """
    for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[variable] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    skip_final_collection()
    _die_with_parent()
    _redirect_output(log_file)
    _interrupt_once()
    try:
        _warm_up(threads)
        settings = connection.recv()
        while settings is not None:
            config = connection.recv()
            if config is None:
                return
            result = run_config(config, settings)
            _send_uninterrupted(connection, result)
            if result.status == "KILLED":
                return
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return


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
    descriptor = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
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
    def __init__(self, context, threads: int, log_file: str | None, number: int):
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=worker_main,
            args=(child, threads, log_file),
            name=f"sweep-worker-{number}",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.threads = threads
        self.config: PlannedConfig | None = None
        self.started = 0.0

    def send(self, config: PlannedConfig | WorkerSettings | None) -> None:
        self.connection.send(config)
        self.config = config if isinstance(config, PlannedConfig) else None
        self.started = time.perf_counter()

    def discard(self) -> None:
        """Kill a worker that has run nothing (it may still be importing)."""
        self.process.kill()
        self.process.join(timeout=5)
        self.connection.close()


def start_workers(count: int, threads: int, log_file: str | None) -> list[_Worker]:
    """`count` workers that import TensorFlow until a `LocalPool(started=...)` takes them."""
    context = multiprocessing.get_context("spawn")
    return [_Worker(context, threads, log_file, number + 1) for number in range(count)]


class LocalPool(Pool):
    """`size` worker processes that run `PlannedConfig`s; see the module docstring and `Pool`.

    `started` are workers from `start_workers`, already importing; those with another
    thread count, or beyond `size`, are discarded. A worker that dies is replaced; one that
    keeps dying before it runs anything stops the sweep (RuntimeError) rather than being
    respawned forever.
    """

    def __init__(self, size, settings, *, started: list[_Worker] = (), **options):
        self._started = list(started)
        super().__init__(size, settings, **options)

    def _open(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._spawned = len(self._started)
        self._deaths_at_start = 0
        fitting = [w for w in self._started if w.threads == self.settings.threads]
        for worker in self._started:
            if worker not in fitting[: self.size]:
                worker.discard()
        self.workers = []
        for worker in fitting[: self.size]:
            with contextlib.suppress(OSError):  # a dead one is replaced at dispatch
                worker.send(self.settings)
            self.workers.append(worker)
        while len(self.workers) < self.size:
            self.workers.append(self._spawn())

    def _spawn(self) -> _Worker:
        self._spawned += 1
        worker = _Worker(
            self._context, self.settings.threads, self.settings.log_file, self._spawned
        )
        worker.send(self.settings)
        return worker

    def _busy(self) -> list[_Worker]:
        return [w for w in self.workers if w.config is not None]

    def _has_running(self) -> bool:
        return bool(self._busy())

    def _interrupt_running(self) -> None:
        for worker in self._busy():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.process.pid, signal.SIGINT)

    def _kill_running(self) -> None:
        for worker in self._busy():
            worker.process.kill()

    def _dispatch(self, queue) -> None:
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

    def _collect(self, poll_seconds: float, *, stopping: bool) -> None:
        busy = self._busy()
        waitables = [w.connection for w in busy] + [w.process.sentinel for w in busy]
        multiprocessing.connection.wait(waitables, timeout=poll_seconds)
        for worker in busy:
            self._collect_one(worker, stopping=stopping)

    def _collect_one(self, worker: _Worker, *, stopping: bool) -> None:
        result = None
        try:
            if worker.connection.poll():
                result = worker.connection.recv()
        except (EOFError, OSError):
            result = None
        if result is not None:
            worker.config = None
            self._on_result(result)
            return
        if worker.process.is_alive():
            return
        config = worker.config
        worker.config = None
        worker.process.join(timeout=1)
        status = "KILLED" if stopping else "FAILED"
        reason = f"worker process died ({_describe_exit(worker.process.exitcode)})"
        self._lost(config, status, reason, retry=not stopping, started=worker.started)
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
