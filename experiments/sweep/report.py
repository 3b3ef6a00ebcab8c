"""What a sweep reports: the table on stdout, the summary CSV, the parent run's artifacts.

Each config ends as one `Row` (FINISHED, FAILED or KILLED in this invocation, `skipped`
when FINISHED earlier, `not run` after a stop); `Row.record()` is the CSV line and the
plots' input.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from experiments.harness.runner import DIAGNOSIS_NUMBERS
from experiments.sweep.plan import Plan, PlannedConfig
from experiments.sweep.store import StoredRun

CSV_COLUMNS = (
    "index",
    "experiment",
    "config",
    "status",
    *DIAGNOSIS_NUMBERS,
    "label",
    "gradient_health",
    "seconds",
    "run_id",
    "config_hash",
    "failure_reason",
)


class OutputError(RuntimeError):
    """The sweep's output folder cannot take its summary (full, read-only)."""


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


def row_from_store(config: PlannedConfig, run: StoredRun) -> Row:
    summary = {k: run.metrics[k] for k in DIAGNOSIS_NUMBERS if k in run.metrics}
    summary["run_id"] = run.run_id
    if "bias_variance" in run.tags:
        summary["label"] = run.tags["bias_variance"]
    if "gradient_health" in run.tags:
        summary["gradient_health"] = run.tags["gradient_health"]
    return Row(config, "skipped", None, "", summary)


def progress_bar(description: str, total: int):
    """The rich progress bar on stderr, and its task id; the table goes to stdout."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

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
    task = progress.add_task(description, total=total, failed=0, remaining=total)
    return progress, task


def workers_log(summary_path: Path, sweep_name: str) -> Path:
    """The workers' output (tracebacks), beside the summary."""
    return summary_path.with_name(f"{sweep_name}-workers.log")


def write_csv(path: Path, records: Sequence[dict]) -> None:
    """The summary CSV, replaced whole (never half-written): fixed columns, then each param."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in records for k in r["params"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*CSV_COLUMNS, *(f"param.{k}" for k in keys)])
    for record in records:
        writer.writerow(
            [_csv_value(record[c]) for c in CSV_COLUMNS]
            + [_csv_value(record["params"].get(k)) for k in keys]
        )
    partial = path.with_name(path.name + ".partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()  # a link planted there goes, not what it points to
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with open(descriptor, "w", encoding="utf-8", newline="") as file:
            file.write(buffer.getvalue())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def print_report(
    plan: Plan,
    records: Sequence[dict],
    *,
    summary_path: Path,
    uri: str | None,
    log_file: Path | None = None,
    wall: float = 0.0,
    workers: int | None = None,
) -> None:
    """Write the CSV, then print the table, each failure's reason and where things are.

    Raises:
        OutputError: the CSV could not be written (after the table is printed).
    """
    try:
        write_csv(summary_path, records)
        unwritten = None
    except OSError as exc:
        unwritten = exc
    print(render_table(plan, records), end="")
    failures = [r for r in records if r["status"] in ("FAILED", "KILLED") and r["failure_reason"]]
    for record in failures:
        print(
            f"{record['status']} #{record['index']} {record['experiment']} {record['config']}: "
            f"{record['failure_reason']}"
        )
    counts = _counts(records)
    line = ", ".join(f"{n} {status}" for status, n in counts.items())
    timing = f" in {wall:.1f} s with {_count(workers, 'worker')}" if workers else ""
    print(f"\n{len(records)} configs: {line}{timing}")
    if unwritten is None:
        print(f"summary: {_relative(summary_path)}")
    if failures and log_file is not None:
        print(f"worker output (tracebacks): {_relative(log_file)}")
    where = f" in {uri}" if uri else ""
    print(f"MLflow: experiment {plan.experiment_name!r}{where}; browse with `mlflow ui`")
    if unwritten is not None:
        raise OutputError(
            f"cannot write the summary {_relative(summary_path)}: "
            f"{unwritten.strerror or unwritten}; the runs are in the store: free space (or "
            "fix --out) and run the same command again to write it."
        )


def log_parent(recorder, plan: Plan, records: Sequence[dict], summary_path: Path, wall: float):
    """The parent run's counts, throughput, CSV, text table, its table for MLflow's UI
    (`summary_table.json`) and two summary figures."""
    from experiments.sweep.plots import bias_variance_scatter, dev_error_by_param

    counts = _counts(records)
    recorder.log_final(
        {
            **{f"configs_{status}": n for status, n in counts.items()},
            "wall_seconds": wall,
            "configs_per_minute": 60 * counts.get("finished", 0) / wall if wall > 0 else 0.0,
        }
    )
    recorder.log_file(summary_path)
    recorder.log_text(render_table(plan, records, width=160), "summary.txt")
    recorder.log_table(summary_table(records), "summary_table.json")
    title = f"sweep {plan.name}"
    recorder.log_figure(bias_variance_scatter(records, title=title), "bias_variance.png")
    recorder.log_figure(dev_error_by_param(records, title=title), "dev_error_by_param.png")


# The columns of the parent run's table, which MLflow's UI shows on its Artifacts tab.
TABLE_COLUMNS = ("experiment", "config", *DIAGNOSIS_NUMBERS, "label", "status", "run_id")


def summary_table(records: Sequence[dict]) -> dict[str, list]:
    """The records as `{column: [value per config]}`, for `RunRecorder.log_table`."""
    return {column: [record[column] for record in records] for column in TABLE_COLUMNS}


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


def stable_columns(records: Sequence[dict]) -> list[list[str]]:
    """The table's columns that the same code and seeds reproduce (all but the time), as
    printed: #, experiment, config, train err, dev err, label, status."""
    return [
        [
            str(record["index"]),
            record["experiment"],
            record["config"] or "(defaults)",
            _number(record.get("train_error")),
            _number(record.get("dev_error")),
            record.get("label") or "",
            record["status"],
        ]
        for record in records
    ]


STABLE_HEADER = ("#", "experiment", "config", "train err", "dev err", "label", "status")


def markdown_table(records: Sequence[dict]) -> str:
    """`stable_columns` as a Markdown table (the results page, the README)."""
    lines = ["| " + " | ".join(STABLE_HEADER) + " |", "|---:|---|---|---:|---:|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in stable_columns(records)]
    return "\n".join(lines) + "\n"


def read_csv(path: Path) -> list[dict]:
    """The records back from a summary CSV written by `write_csv` (errors as floats)."""
    with open(path, newline="", encoding="utf-8") as file:
        records = list(csv.DictReader(file))
    for record in records:
        record["index"] = int(record["index"])
        for key in DIAGNOSIS_NUMBERS:
            record[key] = float(record[key]) if record[key] else None
    return records


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
    for record, columns in zip(records, stable_columns(records), strict=True):
        seconds = record.get("seconds")
        table.add_row(*columns, f"{seconds:.1f}s" if seconds is not None else "")
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
