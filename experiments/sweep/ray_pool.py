"""The sweep's Ray backend: each config is one Ray task, `run_config_on_ray`.

`RayPool` has `WorkerPool`'s interface (`run(configs, on_result=, stop_level=)`, `close()`)
so the sweep treats both alike. Tasks run with `max_retries=0`: Ray's own retry would hide
which config a dead worker had and leave the killed attempt's MLflow run RUNNING. Instead a
task whose worker or node died (`WorkerCrashedError`, `NodeDiedError`) is handed to
`on_lost` (the sweep ends its run FAILED with the reason) and submitted again, up to
`MAX_ATTEMPTS`, exactly as the local pool does. At most `size` tasks are in flight, so a
stop leaves the rest "not run" for the next invocation to resume.

Ray is imported only here, and only when the sweep runs with `--backend ray`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from experiments.sweep.local_pool import (
    GRACE_SECONDS,
    Result,
    WorkerSettings,
    run_config,
    settle_lost,
)
from experiments.sweep.plan import PlannedConfig

THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")


def connect(address: str, threads: int) -> int:
    """Connect this process to the Ray cluster as the driver; returns the cluster's CPUs.

    Every worker of this job gets TensorFlow's thread variables through the job's runtime
    environment, so they are set before TensorFlow is imported there.
    """
    import ray

    env = {name: str(threads) for name in THREAD_VARIABLES}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if not ray.is_initialized():
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
    return int(ray.cluster_resources().get("CPU", 0))


def run_config_on_ray(config: PlannedConfig, settings: WorkerSettings) -> Result:
    """The Ray task: one config in a Ray worker process (the worker keeps TensorFlow loaded)."""
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return run_config(config, settings)


class RayPool:
    """Run `PlannedConfig`s as Ray tasks on the cluster `connect` joined; see the module doc.

    Args:
        size: Most tasks in flight at once.
        settings: What every task needs (tracking URI, parent run, threads = CPUs a task asks).
        on_lost: Called as `on_lost(config, status, reason)` when a task's worker or node
            dies, or the task is cancelled, before any retry.
    """

    def __init__(
        self,
        size: int,
        settings: WorkerSettings,
        *,
        on_lost: Callable[[PlannedConfig, str, str], None] = lambda *args: None,
        grace_seconds: float = GRACE_SECONDS,
    ):
        import ray

        self.size = size
        self.settings = settings
        self.on_lost = on_lost
        self.grace_seconds = grace_seconds
        self._task = ray.remote(run_config_on_ray).options(
            num_cpus=settings.threads, max_retries=0, retry_exceptions=False
        )
        self._running: dict = {}  # ObjectRef -> (config, perf_counter at submit)

    def run(
        self,
        configs: Iterable[PlannedConfig],
        *,
        on_result: Callable[[Result], None],
        stop_level: Callable[[], int] = lambda: 0,
        poll_seconds: float = 0.2,
    ) -> list[PlannedConfig]:
        """Run the configs; returns the ones never submitted (after a stop).

        `stop_level()` is polled: 0 goes on; 1 stops submitting and cancels running tasks
        (KeyboardInterrupt in the task: its run ends KILLED); 2, or the grace period
        passing, force-kills their workers.
        """
        import ray

        queue = deque(configs)
        attempts: dict[int, int] = {}
        interrupted_at = None
        forced = False
        while True:
            stop = stop_level()
            if stop and interrupted_at is None:
                interrupted_at = time.monotonic()
                for ref in self._running:
                    ray.cancel(ref)
            if (
                stop
                and not forced
                and (stop >= 2 or time.monotonic() - interrupted_at > self.grace_seconds)
            ):
                forced = True
                for ref in self._running:
                    ray.cancel(ref, force=True)
            while not stop and queue and len(self._running) < self.size:
                config = queue.popleft()
                ref = self._task.remote(config, self.settings)
                self._running[ref] = (config, time.perf_counter())
            if not self._running and (stop or not queue):
                return list(queue)
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=poll_seconds)
            for ref in ready:
                self._collect(ref, queue, attempts, on_result, stopping=bool(stop))

    def _collect(self, ref, queue, attempts, on_result, *, stopping: bool) -> None:
        import ray
        from ray.exceptions import NodeDiedError, TaskCancelledError, WorkerCrashedError

        config, started = self._running.pop(ref)
        try:
            on_result(ray.get(ref))
            return
        except (WorkerCrashedError, NodeDiedError) as exc:
            status = "KILLED" if stopping else "FAILED"
            reason, retry = f"{type(exc).__name__}: {_first_line(exc)}", not stopping
        except TaskCancelledError:
            status, reason, retry = "KILLED", "interrupted (Ray task cancelled)", False
        except ray.exceptions.RayError as exc:  # a bug in run_config, or Ray lost the result
            status, reason, retry = "FAILED", f"Ray {type(exc).__name__}: {_first_line(exc)}", False
        self.on_lost(config, status, reason)
        settle_lost(config, status, reason, retry, started, queue, attempts, on_result)

    def close(self, timeout: float = 10.0) -> None:
        """Force-cancel what still runs and disconnect from the cluster (it keeps running)."""
        import ray

        for ref in self._running:
            ray.cancel(ref, force=True)
        self._running.clear()
        ray.shutdown()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(text[0].split()) if text else type(exc).__name__
