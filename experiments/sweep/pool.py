"""What both pools share: how many workers, and the loop that runs configs and stops them.

`Pool.run` dispatches configs while workers are free, hands each `Result` to `on_result`,
and polls `stop_level()`: 0 goes on; 1 stops dispatching and interrupts the running
configs (they end KILLED); 2, or `grace_seconds` passing, kills their workers. A config
whose worker is lost (died, killed, its node gone) is handed to `on_lost` (the sweep closes
its run in the store) and queued again, up to `MAX_ATTEMPTS` runs in all. The local pool
(`local_pool`) and the Ray pool (`ray_pool`) say only how to start, wait for, interrupt
and kill a config; the sweep's `run.make_pool` picks one.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable

from experiments.sweep.plan import PlannedConfig
from experiments.sweep.worker import Result, WorkerSettings

MAX_ATTEMPTS = 2  # a config whose worker dies is run once more, then left FAILED
GRACE_SECONDS = 60.0  # after Ctrl-C, how long running configs get to end KILLED on their own
OnLost = Callable[[PlannedConfig, str, str], None]


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


class Pool:
    """Runs `PlannedConfig`s; see the module docstring. Subclasses start, wait and stop.

    Args:
        size: Number of workers (local) or tasks in flight (Ray).
        settings: What every config needs (tracking URI, parent run, threads).
        on_lost: Called as `on_lost(config, status, reason)` when a config's worker is lost,
            before any retry.
    """

    def __init__(
        self,
        size: int,
        settings: WorkerSettings,
        *,
        on_lost: OnLost = lambda *args: None,
        grace_seconds: float = GRACE_SECONDS,
    ):
        self.size = size
        self.settings = settings
        self.on_lost = on_lost
        self.grace_seconds = grace_seconds
        self._open()

    def run(
        self,
        configs: Iterable[PlannedConfig],
        *,
        on_result: Callable[[Result], None],
        stop_level: Callable[[], int] = lambda: 0,
        poll_seconds: float = 0.2,
    ) -> list[PlannedConfig]:
        """Run the configs; returns the ones never started (after a stop)."""
        self._queue = deque(configs)
        self._attempts: dict[int, int] = {}
        self._on_result = on_result
        interrupted_at, killed = None, False
        while True:
            stop = stop_level()
            if stop and interrupted_at is None:
                interrupted_at = time.monotonic()
                self._interrupt_running()
            if stop and not killed:
                if stop >= 2 or time.monotonic() - interrupted_at > self.grace_seconds:
                    killed = True
                    self._kill_running()
            if not stop:
                self._dispatch(self._queue)
            if not self._has_running() and (stop or not self._queue):
                return list(self._queue)
            self._collect(poll_seconds, stopping=bool(stop))

    def _lost(
        self, config: PlannedConfig, status: str, reason: str, *, retry: bool, started: float
    ) -> None:
        """A config whose worker was lost: queued again while it has attempts left (and
        `retry`), else reported with `status` and `reason`."""
        self.on_lost(config, status, reason)
        self._attempts[config.index] = self._attempts.get(config.index, 0) + 1
        if retry and self._attempts[config.index] < MAX_ATTEMPTS:
            self._queue.appendleft(config)
        else:
            seconds = round(time.perf_counter() - started, 3)
            self._on_result(Result(config, status, seconds, reason))

    def _open(self) -> None:
        """Start the workers (or connect their scheduler)."""
        raise NotImplementedError

    def close(self, timeout: float = 10.0) -> None:
        raise NotImplementedError

    def _dispatch(self, queue: deque) -> None:
        """Start configs from the front of `queue` while there is room."""
        raise NotImplementedError

    def _has_running(self) -> bool:
        raise NotImplementedError

    def _collect(self, poll_seconds: float, *, stopping: bool) -> None:
        """Wait up to `poll_seconds` for running configs; report or `_lost` each that ended."""
        raise NotImplementedError

    def _interrupt_running(self) -> None:
        raise NotImplementedError

    def _kill_running(self) -> None:
        raise NotImplementedError
