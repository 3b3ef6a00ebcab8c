"""The README's sweep table is what `python -m experiments.sweep` prints for the same seeds.

`python benchmarks/results.py` writes the table into README.md and docs/results.md. CI's
quick start runs the sweep before the tests, so the slow test reads that run's summary
(`sweep_results/course.csv`) when every config ran in it and it is newer than the code;
otherwise it runs the sweep itself (a couple of minutes).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

from experiments.harness.registry import EXPERIMENTS
from experiments.sweep.plan import plan_from_args
from experiments.sweep.report import markdown_table, read_csv, stable_columns, write_csv

START, END = "<!-- results:sweep -->", "<!-- /results:sweep -->"
REGENERATE = "README.md's sweep table is stale: `python benchmarks/results.py` regenerates it"


def readme_table() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(re.escape(START) + r"\n(.*?)" + re.escape(END), text, re.S)
    assert match, f"README.md has no {START} ... {END} block"
    return match.group(1)


def readme_rows() -> list[list[str]]:
    lines = readme_table().strip().splitlines()[2:]  # after the header and the rule
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_the_readme_table_lists_the_course_plan_in_order():
    plan = plan_from_args(preset=None, grid_file=None)
    expected = [[str(c.index), c.experiment, c.label or "(defaults)"] for c in plan.configs]
    assert [row[:3] for row in readme_rows()] == expected, REGENERATE
    assert {row[6] for row in readme_rows()} == {"FINISHED"}


def test_the_csv_reads_back_as_the_printed_columns(tmp_path):
    records = [
        {"index": 1, "experiment": "toy", "config": "seed=1", "status": "FINISHED",
         "train_error": 0.123456789, "dev_error": 0.0995, "avoidable_bias": 0.1,
         "variance": -0.02, "label": "high bias", "gradient_health": "healthy",
         "seconds": 1.5, "run_id": "r", "config_hash": "h", "failure_reason": "",
         "params": {"seed": 1}},
        {"index": 2, "experiment": "gradients", "config": "", "status": "FINISHED",
         "train_error": None, "dev_error": None, "avoidable_bias": None, "variance": None,
         "label": None, "gradient_health": None, "seconds": None, "run_id": "s",
         "config_hash": "i", "failure_reason": "", "params": {}},
    ]  # fmt: skip
    write_csv(tmp_path / "s.csv", records)
    assert stable_columns(read_csv(tmp_path / "s.csv")) == [
        ["1", "toy", "seed=1", "0.123", "0.100", "high bias", "FINISHED"],
        ["2", "gradients", "(defaults)", "", "", "", "FINISHED"],
    ]


def fresh_summary() -> list[dict] | None:
    """The repository's own sweep summary, if it shows the current code's numbers."""
    path = REPO / "sweep_results" / "course.csv"
    if not path.exists():
        return None
    sources = [
        p for folder in ("experiments", "reg_callbacks") for p in (REPO / folder).rglob("*")
        if p.suffix in (".py", ".yaml")
    ]  # fmt: skip
    if path.stat().st_mtime < max(p.stat().st_mtime for p in sources):
        return None
    records = read_csv(path)
    # A row FINISHED in an earlier invocation ("skipped") holds that run's numbers.
    return records if all(r["status"] == "FINISHED" for r in records) else None


def run_sweep(folder: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'fresh.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", "--out", str(folder / "out")],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return read_csv(folder / "out" / "course.csv")


@pytest.mark.slow
def test_the_readme_sweep_table_is_what_the_sweep_prints(tmp_path):
    records = fresh_summary() or run_sweep(tmp_path)
    assert readme_table() == markdown_table(records), REGENERATE


def test_topic_docstrings_keep_measured_tables_out():
    """A docstring states the claim, the course's number and the command; what the code
    measures is on the generated results page, where it cannot go stale."""
    for name in EXPERIMENTS:
        path = REPO / "experiments" / f"{name}.py"
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        tables = [line for line in docstring.splitlines() if line.lstrip().startswith("|")]
        assert not tables, f"{path.name}'s docstring holds a table: {tables[0]!r}"


def test_the_readme_links_to_every_section_of_the_results_page():
    spec = importlib.util.spec_from_file_location("results", REPO / "benchmarks" / "results.py")
    results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results)
    page = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    for name in results.SECTIONS:
        assert f"<!-- results:{name} -->" in page, f"docs/results.md has no {name} section"
    headings = {line.lstrip("# ").strip() for line in page.splitlines() if line.startswith("#")}
    # GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
    headings |= {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    anchors = re.findall(r"\(docs/results\.md#([\w-]+)\)", readme)
    assert set(EXPERIMENTS) - {"toy"} <= set(anchors)
    missing = [anchor for anchor in anchors if anchor not in headings]
    assert not missing, f"README links to results-page sections that do not exist: {missing}"
