"""One invocation of the sweep: resume from the store, run what is left on a pool, report.

`Sweep(plan, options, uri, summary_path).run()` opens the store, skips configs FINISHED
earlier (unless `force`), closes what dead sweep processes left RUNNING, opens the parent
run, runs the rest on the pool `make_pool` picks, and reports (`report`). Ctrl-C or SIGTERM
stop it the same clean way: the first interrupts running configs (they end KILLED), a
second kills them.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from experiments.harness import quiet
from experiments.harness.cli import EXIT_FAILED, EXIT_INTERRUPTED
from experiments.harness.tracking_store import quiet_store_errors
from experiments.sweep import report, store
from experiments.sweep.local_pool import LocalPool, start_workers
from experiments.sweep.plan import Plan, PlannedConfig
from experiments.sweep.pool import OnLost, default_workers, threads_per_worker
from experiments.sweep.ray_pool import RayPool, connect
from experiments.sweep.report import Row
from experiments.sweep.store import SweepRefused
from experiments.sweep.worker import WorkerSettings, topic_experiments

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # both stop the sweep the same clean way


@dataclass(frozen=True)
class SweepOptions:
    """How to run a planned sweep: the command line's flags, checked."""

    workers: int | None = None  # None: one a CPU (capped by memory), or the Ray cluster's CPUs
    backend: str = "local"  # or "ray"
    ray_address: str = "auto"
    force: bool = False  # re-run configs FINISHED earlier
    fail_fast: bool = False
    takeover: bool = False  # the same sweep looks RUNNING from another host: close its runs
    log_model: bool = True  # each config's trained model as its run's MLflow model
    step_images: bool = True  # each config's run logs step images while training
    verbose: bool = False
    overrides: tuple[str, ...] = ()  # --set, for the parent run's params
    only: tuple[str, ...] = ()  # --experiment, likewise


class SweepFailed(Exception):
    """Every config failed, or `--fail-fast` stopped at one."""


def parent_recorder(
    plan: Plan, options: SweepOptions, uri, to_run: int, workers: int, threads: int
):
    """The sweep's parent run: what was asked and how it ran, as params and tags."""
    from reg_callbacks.tracking import RunRecorder

    # What the workers inherit; each child also records the backend its own Keras ran on.
    keras_backend = os.environ.get("KERAS_BACKEND")
    return RunRecorder(
        plan.experiment_name,
        run_name=f"sweep {plan.name}",
        params={
            "sweep": plan.name,
            "source": plan.source,
            "configs": len(plan.configs),
            "to_run": to_run,
            "workers": workers,
            "backend": options.backend,
            "threads_per_worker": threads,
            "force": options.force,
            "log_model": options.log_model,
            "step_images": options.step_images,
            "set": " ".join(options.overrides) or "none",
            "only": ",".join(options.only) or "all",
        },
        tags={
            "sweep": plan.name,
            "sweep.role": "parent",
            **store.process_identity(),
            **({"keras_backend": keras_backend} if keras_backend else {}),
        },
        description=plan.description or None,
        tracking_uri=uri,
    )


def pool_size(backend: str, ray_address: str, requested: int | None, configs: int):
    """(workers, TensorFlow threads per worker) for `configs` configs on this backend.

    Raises:
        ConnectionError: the Ray cluster cannot be reached.
    """
    if backend != "ray":
        workers = min(requested or default_workers(), configs)
        return workers, threads_per_worker(workers)
    threads = 1  # one CPU (and TensorFlow thread) per task
    try:
        cpus = connect(ray_address, threads)
    except Exception as exc:  # ConnectionError, or Ray's own on a version mismatch
        raise ConnectionError(f"cannot connect to Ray at {ray_address}: {exc}") from None
    return min(requested or max(1, cpus), configs), threads


def make_pool(
    backend: str, size: int, settings: WorkerSettings, *, on_lost: OnLost, started=()
) -> LocalPool | RayPool:
    """`size` local worker processes (taking `started` ones first), or at most `size` Ray
    tasks in flight."""
    if backend == "ray":
        return RayPool(size, settings, on_lost=on_lost)
    return LocalPool(size, settings, on_lost=on_lost, started=started)


class Interrupts:
    """Inside the block, SIGINT and SIGTERM are counted instead of raising: the first asks
    running configs to end KILLED (level 1), a second kills them (level 2)."""

    def __init__(self):
        self.count = 0
        self._depth = 0  # blocks nest: the outermost installs and restores the handlers

    def level(self) -> int:
        return min(self.count, 2)

    def __enter__(self):
        if self._depth == 0:
            self._previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        self._depth += 1
        return self

    def __exit__(self, *exc_info) -> None:
        self._depth -= 1
        if self._depth == 0:
            for number, handler in self._previous.items():
                signal.signal(number, handler)

    def _on_signal(self, signum, frame) -> None:
        self.count += 1
        if self.count == 1:
            print(
                "\ninterrupting: running configs end KILLED (Ctrl-C again to kill them now)",
                file=sys.stderr,
            )


class Sweep:
    def __init__(self, plan: Plan, options: SweepOptions, uri: str | None, summary_path: Path):
        self.plan = plan
        self.options = options
        self.uri = uri
        self.summary_path = summary_path
        self.rows: dict[int, Row] = {}
        self.interrupts = Interrupts()
        self.failed_fast: Row | None = None

    def run(self) -> int:
        # MLflow's INFO lines would break the progress bar; workers log to their own file.
        quiet.quiet_logs(self.options.verbose)
        if not self.options.verbose:
            quiet_store_errors()
        try:
            self.summary_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SweepRefused(f"cannot create the output directory: {exc}") from None
        # The workers import TensorFlow while the store is opened and the parent run made;
        # they touch the store only once given their settings, after it exists (MLflow's
        # SQLite store races when several processes create its tables at once).
        self._started = self._start_workers()
        try:
            return self._resume_and_run()
        finally:
            for worker in self._started:  # those no pool took
                worker.discard()

    def _start_workers(self) -> list:
        if self.options.backend != "local":
            return []
        workers = min(self.options.workers or default_workers(), len(self.plan.configs))
        return start_workers(workers, threads_per_worker(workers), str(self._log_file()))

    def _log_file(self) -> Path:
        return report.workers_log(self.summary_path, self.plan.name)

    def _resume_and_run(self) -> int:
        self.client, self.experiment_id = store.open_store(self.uri, self.plan.experiment_name)
        names = [self.plan.experiment_name, *topic_experiments(self.plan)]
        state = store.resume(self.client, self.plan, names, takeover=self.options.takeover)
        todo = []
        for config in self.plan.configs:
            if config.config_hash in state.finished and not self.options.force:
                self.rows[config.index] = report.row_from_store(
                    config, state.finished[config.config_hash]
                )
            else:
                todo.append(config)
        if todo or not state.reported:  # a stop before its report: a parent makes it now
            return self._run_configs(todo)
        report.print_report(
            self.plan, self._records(), summary_path=self.summary_path, uri=self.uri
        )
        print(
            f"all {len(self.plan.configs)} configs of sweep {self.plan.name!r} are already "
            "FINISHED; --force re-runs them.",
            file=sys.stderr,
        )
        return 0

    def _run_configs(self, todo: list[PlannedConfig]) -> int:
        options = self.options
        try:
            workers, threads = (
                pool_size(options.backend, options.ray_address, options.workers, len(todo))
                if todo
                else (0, 0)
            )
        except ConnectionError as exc:
            raise SweepRefused(str(exc)) from None
        log_file = self._log_file()
        recorder = parent_recorder(self.plan, options, self.uri, len(todo), workers, threads)
        started = time.perf_counter()
        try:
            # From before the parent run exists to its end, a stop signal is counted, not
            # raised mid-call: the parent then ends KILLED, never left RUNNING.
            with self.interrupts, recorder:
                self.parent_run_id = recorder.run_id
                if todo:
                    for config in self._execute(todo, workers, threads, str(log_file)):
                        self.rows[config.index] = Row(config, "not run")
                wall = time.perf_counter() - started
                records = self._records()
                # The table and the CSV first: they hold what the workers reported even if
                # the store fails from here on.
                report.print_report(
                    self.plan,
                    records,
                    summary_path=self.summary_path,
                    uri=self.uri,
                    log_file=log_file,
                    wall=wall,
                    workers=workers,
                )
                store.close_running_children(self.client, self._experiment_ids(), recorder.run_id)
                report.log_parent(recorder, self.plan, records, self.summary_path, wall)
                self._raise_outcome()
        except KeyboardInterrupt:
            done = sum(1 for r in self.rows.values() if r.status in ("FINISHED", "skipped"))
            print(
                f"interrupted: re-run the same command to resume ({done} of "
                f"{len(self.plan.configs)} configs are FINISHED)",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        except (SweepFailed, RuntimeError) as exc:  # incl. OutputError, workers dying
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        return 0

    def _execute(self, todo, workers: int, threads: int, log_file: str) -> list[PlannedConfig]:
        """Run `todo` on the pool with a progress bar; returns the configs never started."""
        settings = WorkerSettings(
            tracking_uri=self.uri,
            parent_run_id=self.parent_run_id,
            sweep_name=self.plan.name,
            sweep_experiment=self.plan.experiment_name,
            sweep_experiment_id=self.experiment_id,
            threads=threads,
            log_file=log_file,
            log_model=self.options.log_model,
            step_images=self.options.step_images,
        )
        s = "" if workers == 1 else "s"
        progress, task = report.progress_bar(
            f"sweep {self.plan.name} ({workers} worker{s})", len(todo)
        )
        failed = 0

        def on_result(result) -> None:
            nonlocal failed
            row = Row(result.config, result.status, result.seconds, result.reason, result.summary)
            self.rows[result.config.index] = row
            if result.status != "FINISHED":
                failed += 1
                if result.status == "FAILED" and self.options.fail_fast and not self.failed_fast:
                    self.failed_fast = row
            done = sum(1 for c in todo if c.index in self.rows)
            progress.update(task, advance=1, failed=failed, remaining=len(todo) - done)

        with self.interrupts, progress:
            pool = make_pool(
                self.options.backend,
                workers,
                settings,
                on_lost=self._close_lost_run,
                started=self._started,
            )
            self._started = []
            try:
                return pool.run(todo, on_result=on_result, stop_level=self._stop_level)
            finally:
                pool.close()

    def _stop_level(self) -> int:
        return self.interrupts.level() or (1 if self.failed_fast is not None else 0)

    def _close_lost_run(self, config: PlannedConfig, status: str, reason: str) -> None:
        """A worker died running `config`: end its run (if it got one) with the reason."""
        run = store.find_child(self.client, self._experiment_ids(), self.parent_run_id, config)
        if run is not None and run.status == "RUNNING":
            store.terminate(self.client, run.run_id, status, reason)

    def _experiment_ids(self) -> list[str]:
        return [
            self.experiment_id,
            *store.experiment_ids(self.client, topic_experiments(self.plan)),
        ]

    def _raise_outcome(self) -> None:
        if self.interrupts.count:
            raise KeyboardInterrupt
        if self.failed_fast is not None:
            row = self.failed_fast
            raise SweepFailed(
                f"--fail-fast: config #{row.config.index} ({row.config.experiment} "
                f"{row.config.label}) failed: {row.reason}"
            )
        if not any(r.status in ("FINISHED", "skipped") for r in self.rows.values()):
            raise SweepFailed(f"every config failed ({len(self.rows)} of them)")

    def _records(self) -> list[dict]:
        return [self.rows[c.index].record() for c in self.plan.configs if c.index in self.rows]
