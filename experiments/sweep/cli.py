"""Run grids of experiments in parallel worker processes, tracked in MLflow, resumable.

With no arguments it runs the `course` preset: every experiment's headline configs. Each
sweep is one MLflow experiment, `sweep-<name>`, with a parent run per invocation and one
nested child run per config, tagged with the config's hash. Re-running the same sweep skips
the configs that already have a FINISHED child and re-runs failed, killed or interrupted
ones; `--force` re-runs everything.

    python -m experiments.sweep                                  # the course preset
    python -m experiments.sweep --dry-run                        # the plan, nothing runs
    python -m experiments.sweep --preset regularization-grid --workers 2
    python -m experiments.sweep --grid my_grid.yaml --set seed=1,2,3 --experiment toy
    python -m experiments.sweep --backend ray --ray-address HEAD:6379   # on a Ray cluster

A grid file (YAML; see experiments/sweep/presets/ and experiments/sweep/plan.py):

    name: my-grid
    runs:
      - experiment: initialization
        params: {iterations: 5000}
        grid: {init: [zeros, he], seed: [1, 2, 3]}

Every config is validated before anything runs; bad input is one line on stderr, exit 2.
Exit codes: 0 done (some configs may have FAILED: see the table), 1 every config failed or
`--fail-fast` stopped at a failure, 2 bad input, 130 interrupted (Ctrl-C or SIGTERM;
running configs end KILLED, the next run resumes).

Child runs are created by the experiment's own `run(cfg, *, tracking_uri, parent_run_id,
experiment)`: the sweep passes `experiment="sweep-<name>"` so the whole sweep is one table
in the MLflow UI. An experiment whose `run` has no `experiment` parameter keeps its runs in
its topic experiment; the sweep then finds them there (still nested under the parent).
Workers tag each child with `config_hash`, `sweep`, `sweep.experiment` and `sweep.params`
once the run ends; a child killed before it was tagged is recognized by its params.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from experiments.harness import quiet
from experiments.harness.cli import (
    EXIT_INTERRUPTED,
    _fail,
    _OneLineParser,
    _unrecognized_message,
    add_verbose_flag,
)
from experiments.sweep import store
from experiments.sweep.plan import (
    DEFAULT_PRESET,
    Plan,
    PlannedConfig,
    format_value,
    load_experiment,
    plan_from_args,
    preset_names,
)
from experiments.sweep.store import (
    StoredRun,
    SweepState,
    read_runs_light,
    reconcile,
    resolve_tracking_uri,
)

DEFAULT_OUT = "sweep_results"
EXIT_FAILED = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # both stop the sweep the same clean way
CSV_COLUMNS = (
    "index",
    "experiment",
    "config",
    "status",
    "train_error",
    "dev_error",
    "avoidable_bias",
    "variance",
    "label",
    "gradient_health",
    "seconds",
    "run_id",
    "config_hash",
    "failure_reason",
)


@dataclass
class Row:
    """One config's line in the summary: from this invocation, or FINISHED earlier."""

    config: PlannedConfig
    status: str  # FINISHED, FAILED, KILLED, skipped (FINISHED earlier), not run
    seconds: float | None = None
    reason: str = ""
    summary: dict = field(default_factory=dict)

    def record(self) -> dict:
        """The CSV row (and the plots' input)."""
        record = {
            "index": self.config.index,
            "experiment": self.config.experiment,
            "config": self.config.label,
            "status": self.status,
            "seconds": self.seconds,
            "config_hash": self.config.config_hash,
            "failure_reason": self.reason,
            "params": self.config.varied,
        }
        for key in CSV_COLUMNS:
            if key not in record:
                record[key] = self.summary.get(key)
        return record


# ---------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    doc = (__doc__ or "").split("\n\n")
    parser = _OneLineParser(
        prog="python -m experiments.sweep",
        description=doc[0],
        epilog="\n\n".join(doc[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--preset",
        metavar="NAME",
        help=f"a shipped grid: {', '.join(preset_names())} (default: {DEFAULT_PRESET})",
    )
    source.add_argument("--grid", metavar="FILE", help="a grid file (YAML)")
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=V1,V2",
        action="append",
        default=[],
        help="values for KEY in every block whose experiment has it (';' separates list "
        "values: --set hidden='20,3;40,6'); repeatable",
    )
    parser.add_argument(
        "--experiment",
        dest="only",
        metavar="NAME",
        action="append",
        default=[],
        help="run only this experiment's blocks; repeatable",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="parallel worker processes (default: CPU count, capped at available memory / 1.5 GB)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan and what is already done; run nothing",
    )
    parser.add_argument("--force", action="store_true", help="re-run configs already FINISHED")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failed config")
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"where the summary CSV and the workers' log go (default: {DEFAULT_OUT}/)",
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: worker processes here; ray: one Ray task per config on a cluster, "
        "tracked on an MLflow server (docs/scale-out.md; pip install -e '.[ray]')",
    )
    parser.add_argument(
        "--ray-address",
        default="auto",
        metavar="auto|HOST:PORT",
        help="with --backend ray: the head's GCS address (default: auto, the local cluster "
        "or $RAY_ADDRESS)",
    )
    parser.add_argument(
        "--takeover",
        action="store_true",
        help="the same sweep looks RUNNING from another host: mark its runs KILLED and go on",
    )
    add_verbose_flag(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        parser.error(_unrecognized_message(extras, parser))
    try:
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be >= 1; got {args.workers}.")
        plan = plan_from_args(
            preset=args.preset, grid_file=args.grid, overrides=args.overrides, only=args.only
        )
        summary_path = output_file(args.out, plan.summary_file)
    except ValueError as exc:
        _fail(str(exc))
    uri = resolve_tracking_uri(args.tracking_uri)
    if args.backend == "ray" and (uri is None or not uri.startswith(("http://", "https://"))):
        _fail(
            f"--backend ray needs an MLflow tracking server (--tracking-uri or "
            f"MLFLOW_TRACKING_URI=http://HOST:5000); got {uri or './mlruns'}, which every Ray "
            "node would write on its own disk. See docs/scale-out.md."
        )
    if args.dry_run:
        if hasattr(signal, "SIGPIPE"):  # `--dry-run | head` ends quietly, like other tools
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        return dry_run(plan, uri)
    try:
        return Sweep(plan, args, uri, summary_path).run()
    except SweepRefused as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def output_file(out_dir: str, name: str) -> Path:
    """`out_dir/name`, refusing a name that would land outside `out_dir`."""
    base = Path(out_dir).resolve()
    path = (base / name).resolve()
    if path == base or not path.is_relative_to(base):
        raise ValueError(
            f"the summary file {name!r} must stay inside the output directory {out_dir}."
        )
    return path


class SweepRefused(ValueError):
    """The store says this sweep cannot start (e.g. the same sweep is running elsewhere)."""


# ---------------------------------------------------------------------------------------------
# --dry-run


def dry_run(plan: Plan, uri: str | None) -> int:
    """Print the plan and what the store already holds, without TensorFlow (or MLflow on
    a sqlite store)."""
    names = [plan.experiment_name, *_topic_experiments(plan)]
    runs = read_runs_light(uri, names)
    if runs is None:  # not a sqlite store: MLflow's client it is (a few seconds)
        runs = store.read_runs_client(store.client_for(uri), names)
    state = reconcile(plan, runs)
    done = sum(1 for c in plan.configs if c.config_hash in state.finished)
    out = sys.stdout
    merged = f", {plan.duplicates} duplicates merged" if plan.duplicates else ""
    print(
        f"sweep {plan.name!r} ({plan.source}): {len(plan.configs)} configs, {done} already "
        f"FINISHED, {len(plan.configs) - done} to run{merged}",
        file=out,
    )
    print(f"MLflow: experiment {plan.experiment_name!r} at {uri or 'MLflow default'}", file=out)
    if state.live_parents:
        print(f"note: {_describe_live(plan, state.live_parents)}", file=out)
    for experiment in plan.experiments():
        configs = [c for c in plan.configs if c.experiment == experiment]
        fixed = {k: v for k, v in configs[0].params.items() if k not in configs[0].varied}
        print(f"\n{experiment}: {len(configs)} config(s); fixed: {_pairs(fixed)}", file=out)
        width = max(len(c.label) for c in configs)
        for config in configs:
            print(
                f"  {config.index:>4}  {config.label or '(defaults)':<{max(width, 10)}}  "
                f"{config.config_hash}  {_planned_status(config, state)}",
                file=out,
            )
    return 0


def _planned_status(config: PlannedConfig, state: SweepState) -> str:
    if config.config_hash in state.finished:
        return f"FINISHED (run {state.finished[config.config_hash].run_id[:8]}): skip"
    if config.config_hash in state.running:
        return "RUNNING in another sweep process"
    last = state.last_status.get(config.config_hash)
    return f"to run (last run {last})" if last else "to run"


def _pairs(params: Mapping) -> str:
    return " ".join(f"{k}={format_value(v)}" for k, v in params.items()) or "-"


def _topic_experiments(plan: Plan) -> list[str]:
    """Experiments whose `run` takes no `experiment=`: their children live under their own."""
    from experiments.sweep.local_pool import accepts_experiment

    return [e for e in plan.experiments() if not accepts_experiment(load_experiment(e).run)]


def _describe_live(plan: Plan, parents: Sequence[StoredRun]) -> str:
    parent = parents[0]
    return (
        f"sweep {plan.name!r} is already running: parent run {parent.run_id} (pid "
        f"{parent.tags.get('sweep.pid', '?')} on {parent.tags.get('sweep.host', '?')})"
    )


# ---------------------------------------------------------------------------------------------
# The sweep


class Sweep:
    def __init__(self, plan: Plan, args: argparse.Namespace, uri: str | None, summary_path: Path):
        self.plan = plan
        self.args = args
        self.uri = uri
        self.summary_path = summary_path
        self.rows: dict[int, Row] = {}
        self.interrupts = 0
        self.failed_fast: Row | None = None

    def run(self) -> int:
        # MLflow's INFO lines ("Creating initial MLflow database tables...") would break the
        # progress bar; the workers' own output goes to their log file.
        quiet.quiet_logs(self.args._verbose)
        from reg_callbacks.tracking import get_or_create_experiment

        try:
            self.summary_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SweepRefused(f"cannot create the output directory: {exc}") from None
        # The store and the experiment are created here, before any worker exists: MLflow's
        # SQLite store races when several processes create its tables at once.
        try:
            self.client = store.client_for(self.uri)
            self.experiment_id = get_or_create_experiment(self.client, self.plan.experiment_name)
        except Exception as exc:  # MLflow wraps OS, SQL and HTTP errors in many types
            where = self.uri or "the default MLflow store"
            raise SweepRefused(f"cannot open the MLflow store {where}: {exc}") from None
        state = self._resume_state()
        todo = []
        for config in self.plan.configs:
            finished = state.finished.get(config.config_hash)
            if finished is not None and not self.args.force:
                self.rows[config.index] = _row_from_store(config, finished)
            else:
                todo.append(config)
        if not todo:
            self._report(None, wall=0.0)
            print(
                f"all {len(self.plan.configs)} configs of sweep {self.plan.name!r} are already "
                "FINISHED; --force re-runs them.",
                file=sys.stderr,
            )
            return 0
        return self._run_configs(todo)

    def _resume_state(self) -> SweepState:
        names = [self.plan.experiment_name, *_topic_experiments(self.plan)]
        state = reconcile(self.plan, store.read_runs_client(self.client, names))
        if state.live_parents:
            if not self.args.takeover or any(
                store.liveness(p.tags) == store.ALIVE for p in state.live_parents
            ):
                raise SweepRefused(
                    _describe_live(self.plan, state.live_parents)
                    + "; wait for it to end (or stop it), then run this again."
                    + (
                        ""
                        if self.args.takeover
                        else " If it ran on another host and is gone, add --takeover."
                    )
                )
            state.stale_parents += state.live_parents
            state.orphans += list(state.running.values())
        for parent in state.stale_parents:
            store.terminate(
                self.client,
                parent.run_id,
                "KILLED",
                f"the sweep process (pid {parent.tags.get('sweep.pid', '?')}) ended without "
                "closing this run; a later sweep resumed it",
            )
        for child in state.orphans:
            store.terminate(
                self.client, child.run_id, "KILLED", "its sweep process ended while it ran"
            )
        return state

    def _run_configs(self, todo: list[PlannedConfig]) -> int:
        from experiments.sweep.local_pool import default_workers, threads_per_worker
        from reg_callbacks.tracking import RunRecorder

        if self.args.backend == "ray":  # one CPU (and TensorFlow thread) per task
            from experiments.sweep.ray_pool import connect

            threads = 1
            try:
                cpus = connect(self.args.ray_address, threads)
            except Exception as exc:  # ConnectionError, or Ray's own on a version mismatch
                raise SweepRefused(
                    f"cannot connect to Ray at {self.args.ray_address}: {exc}"
                ) from None
            workers = min(self.args.workers or max(1, cpus), len(todo))
        else:
            workers = min(self.args.workers or default_workers(), len(todo))
            threads = threads_per_worker(workers)
        self.summary_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = self.summary_path.with_name(f"{self.plan.name}-workers.log")
        recorder = RunRecorder(
            self.plan.experiment_name,
            run_name=f"sweep {self.plan.name}",
            params={
                "sweep": self.plan.name,
                "source": self.plan.source,
                "configs": len(self.plan.configs),
                "to_run": len(todo),
                "workers": workers,
                "backend": self.args.backend,
                "threads_per_worker": threads,
                "force": self.args.force,
                "set": " ".join(self.args.overrides) or "none",
                "only": ",".join(self.args.only) or "all",
            },
            tags={
                "sweep": self.plan.name,
                "sweep.role": "parent",
                **store.process_identity(),
            },
            description=self.plan.description or None,
            tracking_uri=self.uri,
        )
        started = time.perf_counter()
        try:
            with recorder:
                self.parent_run_id = recorder.run_id
                settings = self._settings(threads, str(log_file))
                not_run = self._execute(todo, workers, settings)
                for config in not_run:
                    self.rows[config.index] = Row(config, "not run")
                self._close_running_children()
                wall = time.perf_counter() - started
                self._report(log_file, wall=wall, workers=workers)
                self._log_parent(recorder, wall)
                self._raise_outcome()
        except KeyboardInterrupt:
            print(
                f"interrupted: re-run the same command to resume ({self._resume_hint()})",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        except (_SweepFailed, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        return 0

    def _settings(self, threads: int, log_file: str):
        from experiments.sweep.local_pool import WorkerSettings

        return WorkerSettings(
            tracking_uri=self.uri,
            parent_run_id=self.parent_run_id,
            sweep_name=self.plan.name,
            sweep_experiment=self.plan.experiment_name,
            sweep_experiment_id=self.experiment_id,
            threads=threads,
            log_file=log_file,
        )

    def _execute(self, todo, workers: int, settings) -> list[PlannedConfig]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from experiments.sweep.local_pool import WorkerPool

        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]} · remaining {task.fields[remaining]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        task = progress.add_task(
            f"sweep {self.plan.name} ({_count(workers, 'worker')})",
            total=len(todo),
            failed=0,
            remaining=len(todo),
        )
        failed = 0

        def on_result(result) -> None:
            nonlocal failed
            row = Row(result.config, result.status, result.seconds, result.reason, result.summary)
            self.rows[result.config.index] = row
            if result.status != "FINISHED":
                failed += 1
                if result.status == "FAILED" and self.args.fail_fast and self.failed_fast is None:
                    self.failed_fast = row
            done = len([r for r in self.rows.values() if r.config.config_hash in todo_hashes])
            progress.update(task, advance=1, failed=failed, remaining=len(todo) - done)

        todo_hashes = {c.config_hash for c in todo}
        previous = {s: signal.signal(s, self._on_interrupt) for s in STOP_SIGNALS}
        pool = None
        try:
            with progress:
                if self.args.backend == "ray":
                    from experiments.sweep.ray_pool import RayPool as WorkerPool  # noqa: N814
                pool = WorkerPool(workers, settings, on_lost=self._close_lost_run)
                return pool.run(todo, on_result=on_result, stop_level=self._stop_level)
        finally:
            if pool is not None:
                pool.close()
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _on_interrupt(self, signum, frame) -> None:
        self.interrupts += 1
        if self.interrupts == 1:
            print(
                "\ninterrupting: running configs end KILLED (Ctrl-C again to kill them now)",
                file=sys.stderr,
            )

    def _stop_level(self) -> int:
        if self.interrupts:
            return min(self.interrupts, 2)
        return 1 if self.failed_fast is not None else 0

    def _close_lost_run(self, config: PlannedConfig, status: str, reason: str) -> None:
        """A worker died running `config`: end its run (if it got one) with the reason."""
        run = store.find_child(self.client, self._experiment_ids(), self.parent_run_id, config)
        if run is not None and run.status == "RUNNING":
            store.terminate(self.client, run.run_id, status, reason)

    def _close_running_children(self) -> None:
        """Children of this sweep still RUNNING (their worker was killed) end KILLED."""
        from reg_callbacks.tracking import with_retries

        runs = with_retries(
            self.client.search_runs,
            self._experiment_ids(),
            filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' "
            "AND attributes.status = 'RUNNING'",
            max_results=1000,
        )
        for run in runs:
            store.terminate(self.client, run.info.run_id, "KILLED", "the sweep was interrupted")

    def _experiment_ids(self) -> list[str]:
        from reg_callbacks.tracking import with_retries

        ids = [self.experiment_id]
        for name in _topic_experiments(self.plan):
            experiment = with_retries(self.client.get_experiment_by_name, name)
            if experiment is not None:
                ids.append(experiment.experiment_id)
        return ids

    def _raise_outcome(self) -> None:
        if self.interrupts:
            raise KeyboardInterrupt
        if self.failed_fast is not None:
            row = self.failed_fast
            raise _SweepFailed(
                f"--fail-fast: config #{row.config.index} ({row.config.experiment} "
                f"{row.config.label}) failed: {row.reason}"
            )
        if not any(r.status in ("FINISHED", "skipped") for r in self.rows.values()):
            raise _SweepFailed(f"every config failed ({len(self.rows)} of them)")

    def _resume_hint(self) -> str:
        done = sum(1 for r in self.rows.values() if r.status in ("FINISHED", "skipped"))
        return f"{done} of {len(self.plan.configs)} configs are FINISHED"

    # -----------------------------------------------------------------------------------------
    # Output

    def _records(self) -> list[dict]:
        return [self.rows[c.index].record() for c in self.plan.configs if c.index in self.rows]

    def _log_parent(self, recorder, wall: float) -> None:
        from experiments.sweep.plots import bias_variance_scatter, dev_error_by_param

        records = self._records()
        counts = _counts(records)
        recorder.log_final(
            {
                **{f"configs_{status}": n for status, n in counts.items()},
                "wall_seconds": wall,
                "configs_per_minute": 60 * counts.get("finished", 0) / wall if wall > 0 else 0.0,
            }
        )
        recorder.log_file(self.summary_path)
        recorder.log_text(render_table(self.plan, records, width=160), "summary.txt")
        recorder.log_figure(
            bias_variance_scatter(records, title=f"sweep {self.plan.name}"), "bias_variance.png"
        )
        recorder.log_figure(
            dev_error_by_param(records, title=f"sweep {self.plan.name}"), "dev_error_by_param.png"
        )

    def _write_csv(self, records: list[dict]) -> None:
        self.summary_path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(dict.fromkeys(k for r in records for k in r["params"]))
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([*CSV_COLUMNS, *(f"param.{k}" for k in keys)])
        for record in records:
            writer.writerow(
                [_csv_value(record[c]) for c in CSV_COLUMNS]
                + [_csv_value(record["params"].get(k)) for k in keys]
            )
        partial = self.summary_path.with_name(self.summary_path.name + ".partial")
        partial.write_text(buffer.getvalue(), encoding="utf-8")
        os.replace(partial, self.summary_path)

    def _report(self, log_file: Path | None, *, wall: float, workers: int | None = None) -> None:
        records = self._records()
        self._write_csv(records)
        print(render_table(self.plan, records), end="")
        failures = [
            r for r in records if r["status"] in ("FAILED", "KILLED") and r["failure_reason"]
        ]
        for record in failures:
            print(
                f"{record['status']} #{record['index']} {record['experiment']} {record['config']}: "
                f"{record['failure_reason']}"
            )
        counts = _counts(records)
        line = ", ".join(f"{n} {status}" for status, n in counts.items())
        timing = f" in {wall:.1f} s with {_count(workers, 'worker')}" if workers else ""
        print(f"\n{len(records)} configs: {line}{timing}")
        print(f"summary: {_relative(self.summary_path)}")
        if failures and log_file is not None:
            print(f"worker output (tracebacks): {_relative(log_file)}")
        where = f" in {self.uri}" if self.uri else ""
        print(f"MLflow: experiment {self.plan.experiment_name!r}{where}; browse with `mlflow ui`")


class _SweepFailed(Exception):
    pass


def _row_from_store(config: PlannedConfig, run: StoredRun) -> Row:
    summary = {
        k: run.metrics[k]
        for k in ("train_error", "dev_error", "avoidable_bias", "variance")
        if k in run.metrics
    }
    summary["run_id"] = run.run_id
    if "bias_variance" in run.tags:
        summary["label"] = run.tags["bias_variance"]
    if "gradient_health" in run.tags:
        summary["gradient_health"] = run.tags["gradient_health"]
    return Row(config, "skipped", None, "", summary)


def _counts(records: Sequence[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        key = record["status"].lower()
        counts[key] = counts.get(key, 0) + 1
    return counts


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def render_table(plan: Plan, records: Sequence[dict], *, width: int | None = None) -> str:
    """The summary table as text: config, train error, dev error, label, status, time."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep {plan.name}", title_justify="left", header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("experiment")
    table.add_column("config")
    table.add_column("train err", justify="right")
    table.add_column("dev err", justify="right")
    table.add_column("label")
    table.add_column("status")
    table.add_column("time", justify="right")
    for record in records:
        table.add_row(
            str(record["index"]),
            record["experiment"],
            record["config"] or "(defaults)",
            _number(record.get("train_error")),
            _number(record.get("dev_error")),
            record.get("label") or "",
            record["status"],
            f"{record['seconds']:.1f}s" if record.get("seconds") is not None else "",
        )
    buffer = io.StringIO()
    console = Console(file=buffer, width=width or _terminal_width(), highlight=False, no_color=True)
    console.print(table)
    return buffer.getvalue()


def _terminal_width() -> int:
    try:
        return max(100, os.get_terminal_size(sys.stdout.fileno()).columns)
    except (OSError, ValueError):
        return 120


def _number(value) -> str:
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{value:.3f}"
    return ""
