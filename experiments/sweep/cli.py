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
Exit codes: 0 done (some configs may have FAILED: see the table), 1 every config failed,
`--fail-fast` stopped at a failure, or the store or the output folder failed (full,
read-only, deleted: one line; the next run resumes), 2 bad input, 130 interrupted (Ctrl-C or
SIGTERM; running configs end KILLED, the next run resumes).

Child runs are created by the experiment's own `run(cfg, *, tracking_uri, parent_run_id,
experiment)`: the sweep passes `experiment="sweep-<name>"` so the whole sweep is one table
in the MLflow UI. An experiment whose `run` has no `experiment` parameter keeps its runs in
its topic experiment; the sweep then finds them there (still nested under the parent).
Workers tag each child with `config_hash`, `sweep`, `sweep.experiment` and `sweep.params`
once the run ends; a child killed before it was tagged is recognized by its params.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from experiments.harness.cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    _fail,
    _OneLineParser,
    _unrecognized_message,
    add_verbose_flag,
    skip_final_collection,
    stop_on_sigterm,
    tolerant_output,
)
from experiments.harness.tracking_store import (
    check_tracking_uri,
    describe_store_error,
    resolve_tracking_uri,
    sqlite_path,
    store_error,
)
from experiments.sweep import store
from experiments.sweep.plan import (
    DEFAULT_PRESET,
    Plan,
    PlannedConfig,
    format_value,
    plan_from_args,
    preset_names,
)
from experiments.sweep.report import CSV_COLUMNS, OutputError, workers_log
from experiments.sweep.run import Sweep, SweepOptions, SweepRefused
from experiments.sweep.store import SweepState, read_runs_light, reconcile
from experiments.sweep.worker import topic_experiments

DEFAULT_OUT = "sweep_results"
SUMMARY_HEADER = ",".join(CSV_COLUMNS).encode()

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
        "--log-model",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log each config's trained Keras model as its run's MLflow model (default: "
        "true; configs already FINISHED are skipped as ever: add --force to log theirs)",
    )
    parser.add_argument(
        "--step-images",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each config's run logs the gradient-norm heatmap (and a topic's decision "
        "boundary) as MLflow step images while training (default: true)",
    )
    parser.add_argument(
        "--takeover",
        action="store_true",
        help="the same sweep looks RUNNING from another host: mark its runs KILLED and go on",
    )
    add_verbose_flag(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    skip_final_collection()
    tolerant_output()
    stop_on_sigterm()
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
        uri = resolve_tracking_uri(args.tracking_uri)
        check_tracking_uri(uri)
        if not args.dry_run:
            check_outputs(summary_path, workers_log(summary_path, plan.name), uri)
    except ValueError as exc:
        _fail(str(exc))
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
    options = SweepOptions(
        workers=args.workers,
        backend=args.backend,
        ray_address=args.ray_address,
        force=args.force,
        fail_fast=args.fail_fast,
        takeover=args.takeover,
        log_model=args.log_model,
        step_images=args.step_images,
        verbose=args._verbose,
        overrides=tuple(args.overrides),
        only=tuple(args.only),
    )
    try:
        return Sweep(plan, options, uri, summary_path).run()
    except SweepRefused as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        cause = store_error(exc)
        if cause is None:
            raise
        # Full, read-only, deleted or replaced: what the workers ran is in the table and the
        # CSV; a re-run once the store is back closes what was left RUNNING and goes on.
        print(f"error: MLflow tracking store: {describe_store_error(cause)}", file=sys.stderr)
        return EXIT_FAILED


def output_file(out_dir: str, name: str) -> Path:
    """`out_dir/name`, refusing a name that would land outside `out_dir`."""
    base = Path(out_dir).resolve()
    path = (base / name).resolve()
    if path == base or not path.is_relative_to(base):
        raise ValueError(
            f"the summary file {name!r} must stay inside the output directory {out_dir}."
        )
    return path


def check_outputs(summary_path: Path, log_path: Path, uri: str | None) -> None:
    """Refuse outputs that would write over what the sweep did not make.

    The summary replaces a file only if it is an earlier summary (its header is the
    sweep's); neither it, its `.partial` nor the log may be a symbolic link (in a shared
    folder, a link would send the write elsewhere) or the tracking store.
    """
    store_file = sqlite_path(uri)
    store_files = set()
    if store_file:
        store = Path(store_file).resolve()
        store_files = {store.with_name(store.name + s) for s in ("", "-journal", "-wal", "-shm")}
    partial = summary_path.with_name(summary_path.name + ".partial")
    for path in (summary_path, partial, log_path):
        if path.is_symlink():
            raise ValueError(
                f"{path} is a symbolic link; the sweep does not write through links in its "
                "output folder: remove it or pass another --out."
            )
        if path in store_files:
            raise ValueError(
                f"{path} is the tracking store; name the summary another .csv file or pass "
                "another --out."
            )
    if summary_path.exists() and not _is_summary(summary_path):
        raise ValueError(
            f"{summary_path} exists and is not a summary this sweep wrote; move it, or name "
            "another summary file or --out."
        )


def _is_summary(path: Path) -> bool:
    try:
        with open(path, "rb") as file:
            first = file.read(len(SUMMARY_HEADER))
    except OSError:
        return False
    return first in (b"", SUMMARY_HEADER)


# ---------------------------------------------------------------------------------------------
# --dry-run


def dry_run(plan: Plan, uri: str | None) -> int:
    """Print the plan and what the store already holds, without TensorFlow (or MLflow on
    a sqlite store)."""
    names = [plan.experiment_name, *topic_experiments(plan)]
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
        print(f"note: {store.describe_live(plan, state.live_parents)}", file=out)
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
