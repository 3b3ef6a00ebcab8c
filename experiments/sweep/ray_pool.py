"""The sweep's Ray backend: each config is one Ray task, `run_config_on_ray`.

`RayPool` is a `Pool` like the local one, so the sweep treats both alike. Tasks run with
`max_retries=0`: Ray's own retry would hide which config a dead worker had and leave the
killed attempt's MLflow run RUNNING. Instead a task whose worker or node died
(`WorkerCrashedError`, `NodeDiedError`) is handed to `on_lost` (the sweep ends its run
FAILED with the reason) and submitted again, up to `MAX_ATTEMPTS`, exactly as the local pool
does. At most `size` tasks are in flight, so a stop leaves the rest "not run" for the next
invocation to resume.

Ray is imported only here, and only when the sweep runs with `--backend ray`.
"""

from __future__ import annotations

import os
import time

from experiments.sweep.plan import PlannedConfig
from experiments.sweep.pool import Pool
from experiments.sweep.worker import Result, WorkerSettings, run_config

THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")


def connect(address: str, threads: int) -> int:
    """Connect this process to the Ray cluster as the driver; returns the cluster's CPUs.

    Every worker of this job gets TensorFlow's thread variables, and the driver's
    `KERAS_BACKEND` if set, through the job's runtime environment, so they are set before
    TensorFlow or Keras is imported there (local workers inherit the sweep's environment).
    """
    import ray

    env = {name: str(threads) for name in THREAD_VARIABLES}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if "KERAS_BACKEND" in os.environ:
        env["KERAS_BACKEND"] = os.environ["KERAS_BACKEND"]
    if not ray.is_initialized():
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
    return int(ray.cluster_resources().get("CPU", 0))


def run_config_on_ray(config: PlannedConfig, settings: WorkerSettings) -> Result:
    """The Ray task: one config in a Ray worker process (the worker keeps TensorFlow loaded)."""
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return run_config(config, settings)


class RayPool(Pool):
    """Run `PlannedConfig`s as Ray tasks on the cluster `connect` joined; see `Pool`.

    `size` is the most tasks in flight; `settings.threads` the CPUs a task asks for.
    Interrupting cancels the tasks (KeyboardInterrupt in the task: its run ends KILLED);
    killing force-cancels them.
    """

    def _open(self) -> None:
        import ray

        self._task = ray.remote(run_config_on_ray).options(
            num_cpus=self.settings.threads, max_retries=0, retry_exceptions=False
        )
        self._running: dict = {}  # ObjectRef -> (config, perf_counter at submit)

    def _has_running(self) -> bool:
        return bool(self._running)

    def _interrupt_running(self) -> None:
        import ray

        for ref in self._running:
            ray.cancel(ref)

    def _kill_running(self) -> None:
        import ray

        for ref in self._running:
            ray.cancel(ref, force=True)

    def _dispatch(self, queue) -> None:
        while queue and len(self._running) < self.size:
            config = queue.popleft()
            ref = self._task.remote(config, self.settings)
            self._running[ref] = (config, time.perf_counter())

    def _collect(self, poll_seconds: float, *, stopping: bool) -> None:
        import ray

        ready, _ = ray.wait(list(self._running), num_returns=1, timeout=poll_seconds)
        for ref in ready:
            self._collect_one(ref, stopping=stopping)

    def _collect_one(self, ref, *, stopping: bool) -> None:
        import ray
        from ray.exceptions import NodeDiedError, TaskCancelledError, WorkerCrashedError

        config, started = self._running.pop(ref)
        try:
            self._on_result(ray.get(ref))
            return
        except (WorkerCrashedError, NodeDiedError) as exc:
            status = "KILLED" if stopping else "FAILED"
            reason, retry = f"{type(exc).__name__}: {_first_line(exc)}", not stopping
        except TaskCancelledError:
            status, reason, retry = "KILLED", "interrupted (Ray task cancelled)", False
        except ray.exceptions.RayError as exc:  # a bug in run_config, or Ray lost the result
            status, reason, retry = "FAILED", f"Ray {type(exc).__name__}: {_first_line(exc)}", False
        self._lost(config, status, reason, retry=retry, started=started)

    def close(self, timeout: float = 10.0) -> None:
        """Force-cancel what still runs and disconnect from the cluster (it keeps running)."""
        import ray

        self._kill_running()
        self._running.clear()
        ray.shutdown()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(text[0].split()) if text else type(exc).__name__
