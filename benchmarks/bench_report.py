"""What every benchmark's report shares: the machine it ran on, the table, the JSON file.

Kept free of TensorFlow so that a benchmark timing processes (the sweep's) can use it
without importing it.
"""

from __future__ import annotations

import json
import os


def machine(load_before, **details) -> dict:
    """A report's `"machine"`: the cores, the load average before and after the run (other
    work on a shared machine slows wall times), and any `details` (versions, platform)."""
    return {
        "cpus": os.cpu_count(),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        **details,
    }


def finish(report: dict, json_path: str | None) -> int:
    """Print the load the run saw and write the report to `json_path` if given."""
    loads = report["machine"]
    print(
        "load average (1 min) before/after: "
        f"{loads['load_average_before'][0]:.2f} / {loads['load_average_after'][0]:.2f}"
    )
    if json_path:
        with open(json_path, "w") as file:
            json.dump(report, file, indent=2)
    return 0


def rich_table(title: str, headers: list[str], rows: list[list[str]], width: int) -> dict:
    """Print a rich table of the benchmark's rows; return it for the report's `table`.

    `benchmarks/results.py` renders a report's `table` onto the results page, so the page
    shows exactly what the benchmark printed.
    """
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, title=title)
    for row in rows:
        table.add_row(*row)
    Console(width=width).print(table)
    return {"title": title, "headers": headers, "rows": rows}
