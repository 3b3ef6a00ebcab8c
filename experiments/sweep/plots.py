"""The sweep's two summary figures, from the summary rows (plain dicts), for the parent run.

Built on `matplotlib.figure.Figure`, not `pyplot` (no GUI backend, no global state).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from reg_callbacks.diagnosis import (
    DEFAULT_BIAS_THRESHOLD,
    DEFAULT_VARIANCE_THRESHOLD,
    HIGH_BIAS,
    HIGH_BOTH,
    HIGH_VARIANCE,
    LOW_BOTH,
)

LABEL_COLOURS = {
    LOW_BOTH: "#2ca02c",
    HIGH_BIAS: "#1f77b4",
    HIGH_VARIANCE: "#ff7f0e",
    HIGH_BOTH: "#d62728",
}
MAX_ANNOTATIONS = 40  # beyond this the labels overlap into noise


def bias_variance_scatter(rows: Sequence[Mapping], *, title: str = "Bias vs variance") -> Figure:
    """Avoidable bias (x) against variance (y) for every run, coloured by its label.

    Each point is annotated with its experiment and varied params; dashed lines mark the
    thresholds that split "high" from "low".

    Args:
        rows: Dicts with `avoidable_bias`, `variance`, `label`, `experiment`, `config`.
            Rows without finite numbers (failed runs) are left out.
    """
    figure = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = figure.add_subplot()
    points = [row for row in rows if _finite(row.get("avoidable_bias"), row.get("variance"))]
    for label, colour in LABEL_COLOURS.items():
        mine = [row for row in points if row.get("label") == label]
        if mine:
            ax.scatter(
                [row["avoidable_bias"] for row in mine],
                [row["variance"] for row in mine],
                c=colour,
                s=36,
                label=f"{label} ({len(mine)})",
                edgecolors="white",
                linewidths=0.5,
            )
    others = [row for row in points if row.get("label") not in LABEL_COLOURS]
    if others:
        ax.scatter(
            [row["avoidable_bias"] for row in others],
            [row["variance"] for row in others],
            c="gray",
            s=36,
            label="no label",
        )
    if len(points) <= MAX_ANNOTATIONS:
        for row in points:
            ax.annotate(
                _short(row),
                (row["avoidable_bias"], row["variance"]),
                textcoords="offset points",
                xytext=(4, 3),
                fontsize=7,
            )
    ax.axvline(DEFAULT_BIAS_THRESHOLD, color="gray", linestyle="--", linewidth=0.8)
    ax.axhline(DEFAULT_VARIANCE_THRESHOLD, color="gray", linestyle="--", linewidth=0.8)
    ax.set(
        title=f"{title} ({len(points)} runs)",
        xlabel="avoidable bias (train error − Bayes error)",
        ylabel="variance (dev error − train error)",
    )
    if points:
        ax.legend(fontsize=8, loc="best")
    return figure


def dev_error_by_param(rows: Sequence[Mapping], *, title: str = "Dev error by parameter") -> Figure:
    """One panel per (experiment, varied param): dev error of each run at each value.

    Points are the runs; the line joins the mean at each value, so a trend across a param
    (λ, keep_prob, depth) shows even when other params vary too. Params with one value
    among the finished runs get no panel.

    Args:
        rows: Dicts with `experiment`, `dev_error` and `params` (the varied params).
    """
    panels: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for row in rows:
        if not _finite(row.get("dev_error")):
            continue
        for key, value in (row.get("params") or {}).items():
            panels.setdefault((row["experiment"], key), []).append((_text(value), row["dev_error"]))
    # A param all of whose finished runs share one value (the others failed) shows no trend.
    panels = {key: points for key, points in panels.items() if len({v for v, _ in points}) > 1}
    count = max(1, len(panels))
    columns = min(3, count)
    lines = math.ceil(count / columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * lines), layout="constrained")
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if not panels:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no finished runs with a varied parameter", ha="center")
        axes[0].set_axis_off()
    for ax, ((experiment, key), points) in zip(axes, panels.items(), strict=False):
        values = list(dict.fromkeys(value for value, _ in _sorted(points)))
        position = {value: i for i, value in enumerate(values)}
        ax.scatter([position[v] for v, _ in points], [e for _, e in points], s=18, alpha=0.7)
        means = [
            sum(e for v, e in points if v == value) / sum(1 for v, _ in points if v == value)
            for value in values
        ]
        ax.plot(range(len(values)), means, color="black", linewidth=1, marker="_", markersize=14)
        ax.set_xticks(range(len(values)), values, rotation=30 if len(values) > 4 else 0)
        ax.set(title=f"{experiment}: {key}", xlabel=key, ylabel="dev error")
    figure.suptitle(title)
    return figure


def _finite(*values) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def _short(row: Mapping) -> str:
    config = row.get("config") or ""
    return f"{row.get('experiment', '')} {config}".strip()


def _text(value) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _sorted(points: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Numeric values in numeric order, anything else in order of appearance."""
    try:
        return sorted(points, key=lambda p: float(p[0]))
    except ValueError:
        return points
