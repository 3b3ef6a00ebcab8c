"""Matplotlib figures from plain arrays and histories, for MLflow artifacts.

Figures are built with `matplotlib.figure.Figure` directly, not `pyplot`, so no GUI
backend or global figure state is involved (safe in worker processes and threads). Call
these after training, never inside a step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch


def decision_boundary(
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    *,
    title: str = "Decision boundary",
    ax=None,
    resolution: int = 200,
) -> Figure:
    """Shade the region a binary classifier assigns to class 1, with the points on top.

    The title's second line is the classifier's accuracy on the points shown, so a panel
    reads on its own; the legend names both the point colours and the shaded regions.

    Args:
        predict: Maps an (n, 2) array to probabilities of class 1 (e.g. `model.predict`).
        x: (m, 2) points; y: their 0/1 labels.
        ax: Draw into this axes (for side-by-side panels) instead of a new figure.
    """
    figure, ax = _figure_and_axes(ax)
    x = np.asarray(x, dtype=float)
    pad = 0.1 * (x.max(axis=0) - x.min(axis=0)) + 1e-3
    lo, hi = x.min(axis=0) - pad, x.max(axis=0) + pad
    g0, g1 = np.meshgrid(
        np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    )
    grid = np.c_[g0.ravel(), g1.ravel()].astype(np.float32)
    probability = np.asarray(predict(grid), dtype=float).reshape(g0.shape)
    regions = ("#f4c7c3", "#c6dbef")  # light red = predicted 0, light blue = predicted 1
    ax.contourf(g0, g1, probability > 0.5, levels=[-0.5, 0.5, 1.5], colors=list(regions))
    if (probability > 0.5).any() and not (probability > 0.5).all():
        ax.contour(g0, g1, probability, levels=[0.5], colors="#555555", linewidths=0.8)
    labels = np.asarray(y).reshape(-1)
    for value, color, marker in ((0, "#d62728", "o"), (1, "#1f77b4", "s")):
        mask = labels == value
        ax.scatter(
            x[mask, 0],
            x[mask, 1],
            s=12,
            c=color,
            marker=marker,
            label=f"y = {value}",
            edgecolors="white",
            linewidths=0.3,
        )
    predicted = np.asarray(predict(x.astype(np.float32)), dtype=float).reshape(-1) > 0.5
    accuracy = float(np.mean(predicted == (labels > 0.5))) if labels.size else float("nan")
    ax.set(
        title=f"{title}\naccuracy {accuracy:.1%} on these {labels.size} points",
        xlabel="$x_1$",
        ylabel="$x_2$",
        xlim=(lo[0], hi[0]),
        ylim=(lo[1], hi[1]),
    )
    handles, names = ax.get_legend_handles_labels()
    for color, name in zip(regions, ("predicted 0", "predicted 1"), strict=True):
        handles.append(Patch(facecolor=color, edgecolor="#999999", linewidth=0.5))
        names.append(name)
    spans = hi - lo
    if 0.75 <= spans[0] / spans[1] <= 1.33:
        # Square data stays round, and the legend goes in the width that leaves free.
        ax.set_aspect("equal", adjustable="box")
        ax.legend(handles, names, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7)
    else:
        ax.legend(handles, names, loc="best", fontsize=7, framealpha=0.85)
    return figure


def gradient_heatmap(
    history: Mapping[str, Sequence[float]],
    epochs: Sequence[int],
    *,
    iterations_per_epoch: int | None = None,
    title: str = "Gradient norm per layer",
) -> Figure:
    """Layer x epoch heatmap of gradient norms (log colour scale), input layer at the top.

    A zero norm (no gradient reaches the layer, as with zeros initialization) is grey and
    a non-finite one (overflow) red, both named in a legend instead of left blank. Small
    grids print each cell's value. A near-constant range is widened to one decade so the
    colour bar stays readable.

    Args:
        history: `GradientNormLogger.history`: `{"grad_norm/<layer>": [norm per epoch]}`.
        epochs: `GradientNormLogger.epochs` (-1 = before training).
        iterations_per_epoch: Label the x axis in iterations instead of epochs.
    """
    names = [key.removeprefix("grad_norm/") for key in history]
    values = np.array([history[key] for key in history], dtype=float)
    rows, columns = values.shape
    measured = np.isfinite(values) & (values > 0)
    zero, overflow = values == 0, ~np.isfinite(values)
    low, high = (values[measured].min(), values[measured].max()) if measured.any() else (1e-8, 1)
    if high < 10 * low:
        middle = np.sqrt(low * high)
        low, high = min(low, middle / np.sqrt(10)), max(high, middle * np.sqrt(10))
    norm = LogNorm(vmin=low, vmax=high)
    grey, red = "#d9d9d9", "#d62728"
    height = min(0.4 * rows, 3 + 0.15 * rows) + 1.8  # deep nets: thinner rows, no labels
    figure = Figure(figsize=(8, max(3.0, height)), layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(
        np.where(measured, values, np.nan),
        aspect="auto",
        norm=norm,
        cmap=colormaps["viridis"].with_extremes(bad=grey),
        interpolation="nearest",
    )
    if overflow.any():
        overlay = np.zeros((rows, columns, 4))
        overlay[overflow] = to_rgba(red)
        ax.imshow(overlay, aspect="auto", interpolation="nearest")
    if rows * columns <= 160 and columns <= 16:
        for (row, column), value in np.ndenumerate(values):
            dark = overflow[row, column] or (measured[row, column] and norm(value) < 0.45)
            ax.text(
                column,
                row,
                f"{value:.2g}",
                ha="center",
                va="center",
                fontsize=7 if columns > 8 else 8,
                color="white" if dark else "black",
                in_layout=False,  # inside the axes: the layout need not measure each one
            )
    steps = [(e + 1) * (iterations_per_epoch or 1) for e in epochs]
    ticks = np.arange(0, len(steps), max(1, math.ceil((len(steps) - 1) / 7)))  # <= 8 ticks
    start = "\n(start)"  # the column measured before the first step
    ax.set_xticks(ticks, [f"{steps[t]}{start if epochs[t] < 0 else ''}" for t in ticks])
    if rows <= 30:
        ax.set_yticks(range(rows), names, fontsize=9 if rows <= 12 else 7)
    ax.set(
        title=title,
        xlabel="iteration" if iterations_per_epoch else "epoch",
        ylabel="layer (input at top)",
    )
    figure.colorbar(image, ax=ax, label="‖∂J/∂W‖₂ (log scale)")
    extremes = [
        (grey, "0: no gradient reaches the layer", zero.any()),
        (red, "inf / nan: overflow", overflow.any()),
    ]
    if any(shown for _, _, shown in extremes):
        figure.legend(
            [Patch(facecolor=c, edgecolor="#999999") for c, _, shown in extremes if shown],
            [label for _, label, shown in extremes if shown],
            loc="outside lower center",
            ncols=2,
            fontsize=8,
            frameon=False,
        )
    return figure


def learning_curve(
    history: Mapping[str, Sequence[float]],
    keys: Sequence[str],
    *,
    steps: Sequence[int] | None = None,
    title: str = "Learning curve",
    ylabel: str = "cost",
    log_y: bool = False,
    hline: tuple[float, str] | None = None,
) -> Figure:
    """Lines of `history[key]` for each key, against steps (iterations) or epochs.

    Each legend entry ends with the key's final value; short histories get markers (a
    one-point history is still visible); a non-negative y axis starts at 0, so gaps read
    true to scale.

    Args:
        hline: `(value, label)` drawn as a dashed line, e.g. the Bayes error.
    """
    figure, ax = _figure_and_axes(None)
    lowest = np.inf
    for key in keys:
        values = np.asarray(history[key], dtype=float)
        x = list(steps if steps is not None else range(1, len(values) + 1))[: len(values)]
        final = f" (final {values[-1]:.3g})" if values.size else ""
        marker = "o" if values.size <= 25 else None
        ax.plot(x, values, marker=marker, markersize=4, label=f"{key}{final}")
        if np.isfinite(values).any():
            lowest = min(lowest, np.nanmin(np.where(np.isfinite(values), values, np.nan)))
    if hline is not None:
        ax.axhline(hline[0], color="gray", linestyle="--", label=f"{hline[1]} ({hline[0]:.3g})")
        lowest = min(lowest, hline[0])
    ax.set(title=title, xlabel="iteration" if steps is not None else "epoch", ylabel=ylabel)
    if log_y:
        ax.set_yscale("log")
    elif lowest >= 0:
        ax.set_ylim(bottom=0)
    if steps is not None:
        ax.set_xlim(left=0)  # iteration 0 is the start, even when the first point is later
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def side_by_side(count: int, *, width: float = 4.0, height: float = 3.6) -> tuple[Figure, list]:
    """A figure with `count` axes in a row, for comparing variants."""
    figure = Figure(figsize=(width * count, height), layout="constrained")
    return figure, list(np.atleast_1d(figure.subplots(1, count)))


def _figure_and_axes(ax):
    if ax is not None:
        return ax.figure, ax
    figure = Figure(figsize=(5.5, 4.2), layout="constrained")
    return figure, figure.add_subplot()


def error_vs_training_size(
    sizes: Sequence[int],
    train_errors: Sequence[float],
    dev_errors: Sequence[float],
    *,
    bayes_error: float,
    mark: int | None = None,
    title: str = "Learning curve",
    ax=None,
) -> Figure:
    """Train and dev error against training-set size (log x axis), with the Bayes error line.

    High bias shows as both curves flattening well above the Bayes line (more data will not
    help); high variance as a gap between them that narrows as the set grows.

    Args:
        sizes: Training-set sizes, ascending.
        bayes_error: Drawn as a dashed line and shaded below: no model beats it on average.
        mark: A size to mark with a dotted vertical line (the run's own training set).
    """
    figure, ax = _figure_and_axes(ax)
    ax.plot(sizes, train_errors, "o-", color="C0", label="train error")
    ax.plot(sizes, dev_errors, "s-", color="C1", label="dev error")
    ax.axhline(bayes_error, color="gray", linestyle="--", label=f"Bayes error {bayes_error:g}")
    ax.axhspan(0, bayes_error, color="gray", alpha=0.08)
    if mark is not None:
        ax.axvline(mark, color="k", linestyle=":", lw=1, label=f"this run (m={mark})")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set(title=title, xlabel="training-set size m", ylabel="error")
    ax.legend(fontsize=7)
    return figure


def recipe_rounds(
    labels: Sequence[str],
    avoidable_bias: Sequence[float],
    variance: Sequence[float],
    *,
    target_bias: float,
    target_variance: float,
    title: str = "Basic recipe: gaps per round",
) -> Figure:
    """Avoidable bias and variance per round as paired bars, with the two targets dashed.

    Args:
        labels: One x tick label per round, e.g. "1\\nwidth 4".
    """
    figure, ax = _figure_and_axes(None)
    figure.set_size_inches(max(5.5, 1.3 * len(labels) + 2), 4.2)
    x = np.arange(len(labels))
    ax.bar(x - 0.2, avoidable_bias, 0.4, color="C0", label="avoidable bias (train − Bayes)")
    ax.bar(x + 0.2, variance, 0.4, color="C1", label="variance (dev − train)")
    ax.axhline(target_bias, color="C0", linestyle="--", lw=1, label=f"target bias {target_bias:g}")
    ax.axhline(
        target_variance,
        color="C1",
        linestyle=":",
        lw=1.5,
        label=f"target variance {target_variance:g}",
    )
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set(title=title, xlabel="round", ylabel="gap (fraction)")
    ax.legend(fontsize=7)
    return figure


def measured_vs_predicted(
    x: Sequence[float],
    series: Mapping[str, tuple[Sequence[float], Sequence[float] | None]],
    *,
    ax=None,
    title: str = "Measured vs predicted",
    xlabel: str = "depth L",
    ylabel: str = "",
    log_y: bool = True,
) -> Figure:
    """Measured values as markers and their predictions as lines, one colour per series.

    Args:
        x: Shared x values (e.g. depths).
        series: `{label: (measured, predicted or None)}`. Non-finite measured values, and
            non-positive ones on a log axis, are left out (an overflow shows as a gap).
        log_y: Logarithmic y axis, on which gain**L is a straight line.
    """
    figure, ax = _figure_and_axes(ax)
    x = np.asarray(x, dtype=float)
    markers = "o^sxvD+*"
    for i, (label, (measured, predicted)) in enumerate(series.items()):
        color = f"C{i}"
        measured = np.asarray(measured, dtype=float)
        keep = np.isfinite(measured) & ((measured > 0) if log_y else True)
        step = max(1, len(x) // 40)  # at most ~40 markers a series
        shown = np.flatnonzero(keep)[::step]
        ax.plot(
            x[shown],
            measured[shown],
            markers[i % len(markers)],
            color=color,
            ms=4,
            fillstyle="none",
            label=f"{label} (measured)",
        )
        if predicted is not None:
            ax.plot(
                x,
                np.asarray(predicted, dtype=float),
                "-",
                color=color,
                lw=1,
                label=f"{label} (predicted)",
            )
    if log_y:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=7)
    return figure


def gradient_heatmaps(
    panels: Mapping[str, tuple[Mapping[str, Sequence[float]], Sequence[int]]],
    *,
    iterations_per_epoch: int | None = None,
) -> Figure:
    """`gradient_heatmap`s side by side on one shared log colour scale, for comparing runs.

    Norms that are exactly 0 (a float32 underflow: the gradient vanished completely) are
    grey, non-finite ones (overflow) red, so neither is mistaken for a missing value.

    Args:
        panels: `{title: (GradientNormLogger.history, GradientNormLogger.epochs)}`.
        iterations_per_epoch: Label the x axes in iterations instead of epochs.
    """
    from matplotlib import colormaps

    grids = {
        title: np.array([history[key] for key in history], dtype=float)
        for title, (history, _) in panels.items()
    }
    finite = np.concatenate([g[np.isfinite(g) & (g > 0)].ravel() for g in grids.values()])
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (1e-8, 1.0)
    norm = LogNorm(vmin=vmin, vmax=max(vmax, vmin * 10))
    cmap = colormaps["viridis"].with_extremes(under="0.8", bad="#d62728")
    rows = max(len(g) for g in grids.values())
    figure = Figure(figsize=(4.2 * len(panels), max(2.5, 0.18 * rows + 1.5)), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(panels), sharey=True))
    image = None
    for ax, (title, (_, epochs)) in zip(axes, panels.items(), strict=True):
        values = grids[title]
        shown = np.where(np.isfinite(values), np.where(values > 0, values, vmin / 10), np.nan)
        image = ax.imshow(shown, aspect="auto", norm=norm, cmap=cmap, interpolation="nearest")
        steps = [(e + 1) * (iterations_per_epoch or 1) for e in epochs]
        ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 5)).astype(int))
        ax.set_xticks(ticks, [str(steps[t]) for t in ticks])
        ax.set(title=title, xlabel="iteration" if iterations_per_epoch else "epoch")
    axes[0].set_ylabel("layer (input at top)")
    figure.colorbar(
        image, ax=list(axes), extend="min", label="‖∂J/∂W‖₂  (grey: exactly 0, red: inf/NaN)"
    )
    return figure


def relative_error_bars(
    errors: Mapping[str, float],
    *,
    fine: float = 1e-6,
    bug: float = 1e-3,
    title: str = "Gradient check: relative error",
) -> Figure:
    """Horizontal bars of gradient-check relative errors on a log axis, with the course's lines.

    Args:
        errors: `{label: relative error}`, drawn top to bottom.
        fine, bug: The verdict lines of `gradient_check` (below `fine`: fine; at or above
            `bug`: likely a bug), drawn dashed.
    """
    labels = list(errors)
    values = np.array([errors[label] for label in labels], dtype=float)
    shown = np.where(values > 0, values, np.nan)
    figure = Figure(figsize=(6.5, max(2.2, 0.4 * len(labels) + 1.2)), layout="constrained")
    ax = figure.add_subplot()
    colors = ["#d62728" if v >= bug else "#ff7f0e" if v >= fine else "#2ca02c" for v in values]
    ax.barh(range(len(labels)), shown, color=colors)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(fine, color="gray", linestyle="--", lw=1, label=f"fine below {fine:g}")
    ax.axvline(bug, color="black", linestyle="--", lw=1, label=f"likely a bug from {bug:g}")
    ax.set_xlim(right=max(np.nanmax(shown, initial=bug), bug) * 50)
    for i, value in enumerate(values):
        ax.annotate(
            f"{value:.2g}",
            (shown[i] if value > 0 else fine, i),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set(title=title, xlabel="‖g − g̃‖ / (‖g‖ + ‖g̃‖)")
    ax.legend(fontsize=8, loc="upper right")
    return figure


def image_grid(images: np.ndarray, *, title: str = "", cmap: str = "gray_r") -> Figure:
    """Images in a grid without axes: `images` of shape (rows, columns, height, width[, 1])."""
    images = np.asarray(images)
    rows, columns = images.shape[:2]
    figure = Figure(figsize=(1.1 * columns, 1.1 * rows + 0.4), layout="constrained")
    for (row, column), ax in np.ndenumerate(np.atleast_2d(figure.subplots(rows, columns))):
        ax.imshow(images[row, column].squeeze(), cmap=cmap, vmin=0, vmax=1)
        ax.set_axis_off()
    figure.suptitle(title)
    return figure


def cost_contours(
    panels: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    xlabel: str = "$w_1$",
    ylabel: str = "$w_2$",
    levels: int = 15,
) -> Figure:
    """Contours of a cost over two parameters, one panel each, log-spaced levels, equal aspect.

    Args:
        panels: `{title: (w1 values, w2 values, cost of shape (len(w2), len(w1)))}`; the
            lowest cost in each panel is marked with a cross.
    """
    figure, axes = side_by_side(len(panels), height=4.0)
    for ax, (title, (w1, w2, cost)) in zip(axes, panels.items(), strict=True):
        cost = np.asarray(cost, dtype=float)
        finite = cost[np.isfinite(cost) & (cost > 0)]
        ax.contour(w1, w2, cost, levels=np.geomspace(finite.min(), finite.max(), levels))
        row, column = np.unravel_index(np.nanargmin(cost), cost.shape)
        ax.plot(w1[column], w2[row], "kx")
        ax.set_aspect("equal", adjustable="box")
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return figure


def tradeoff(
    capacities: Sequence[float],
    *,
    train_error: Sequence[float],
    dev_error: Sequence[float],
    expected_loss: Sequence[float],
    bias: Sequence[float],
    variance: Sequence[float],
    noise_term: Sequence[float],
    bias_se: Sequence[float] | None = None,
    variance_se: Sequence[float] | None = None,
    bayes_error: float | None = None,
    best: float | None = None,
    interpolation: float | None = None,
    xlabel: str = "capacity",
    title: str = "Bias-variance trade-off",
) -> Figure:
    """Errors and their decomposition against capacity (log x), the trade-off point marked.

    Left: the trained net's train and dev error and the rounds' expected dev-set loss, with
    the Bayes error dashed. Right: the loss's parts, bias, net variance (with ±1 standard
    error bands where given) and the noise term, which add up to the expected loss.

    Args:
        capacities: Ascending, e.g. hidden units.
        best: The capacity with the smallest expected loss, marked on both panels.
        interpolation: The smallest capacity with zero train error, marked too.
    """
    figure, (errors_ax, parts_ax) = side_by_side(2, width=5.5, height=4.2)
    capacities = np.asarray(capacities, dtype=float)
    errors_ax.plot(capacities, train_error, "o-", color="C0", label="train error")
    errors_ax.plot(capacities, dev_error, "s-", color="C1", label="dev error")
    errors_ax.plot(capacities, expected_loss, "^-", color="k", label="expected dev loss (rounds)")
    parts = (
        ("bias", bias, bias_se, "C3"),
        ("net variance", variance, variance_se, "C2"),
        ("noise term", noise_term, None, "C7"),
    )
    for label, values, errors, color in parts:
        values = np.asarray(values, dtype=float)
        parts_ax.plot(capacities, values, "o-", color=color, label=label)
        if errors is not None:
            errors = np.asarray(errors, dtype=float)
            parts_ax.fill_between(
                capacities, values - errors, values + errors, color=color, alpha=0.2
            )
    parts_ax.plot(capacities, expected_loss, "^-", color="k", label="sum = expected dev loss")
    parts_ax.axhline(0, color="k", lw=0.5)
    for ax in (errors_ax, parts_ax):
        if bayes_error is not None:
            ax.axhline(
                bayes_error, color="gray", linestyle="--", label=f"Bayes error {bayes_error:g}"
            )
        if best is not None:
            ax.axvline(best, color="k", linestyle=":", lw=1.2, label=f"trade-off point ({best:g})")
        if interpolation is not None:
            ax.axvline(
                interpolation,
                color="C4",
                linestyle="-.",
                lw=1,
                label=f"train error 0 ({interpolation:g})",
            )
        ax.set_xscale("log")
        ax.set(xlabel=xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    errors_ax.set_ylim(bottom=0)
    errors_ax.set(title=title, ylabel="error")
    parts_ax.set(title="Decomposition of the dev loss (0-1)", ylabel="share of the error")
    return figure


def activation_std_by_depth(
    std: Sequence[Sequence[float]],
    labels: Sequence[str],
    *,
    theory: Mapping[str, Sequence[float]] | None = None,
    title: str = "Activation spread by depth",
) -> Figure:
    """Standard deviation of each layer's activations against depth, one line per
    measurement (an epoch, or an initialization), on a log scale.

    A std of exactly 0 (zeros initialization) cannot sit on a log axis: it is drawn at the
    bottom edge as a grey dotted line, named in the legend; a non-finite one ends its line.

    Args:
        std: `(measurements, layers)`: a row per line, layers input side first (from
            `ActivationStatsLogger.history["act_std/<path>"]`, or `activation_stats` runs).
        labels: One legend label per row ("start", "epoch 3", "He", ...).
        theory: `{label: std per layer}` drawn dashed, e.g. (σ²·n/2)^(l/2) for ReLU.
    """
    values = np.asarray(std, dtype=float)
    if values.ndim != 2 or len(labels) != len(values):
        raise ValueError(
            f"std must be (measurements, layers) with one label per measurement; got shape "
            f"{values.shape} and {len(labels)} labels."
        )
    depth = np.arange(1, values.shape[1] + 1)
    positive = values[np.isfinite(values) & (values > 0)]
    floor = positive.min() / 10 if positive.size else 1e-8
    figure = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = figure.add_subplot()
    colors = colormaps["viridis"](np.linspace(0, 0.9, len(values)))
    for row, label, color in zip(values, labels, colors, strict=True):
        if np.all(row == 0):
            ax.plot(depth, np.full_like(row, floor), ":", color="0.5", label=f"{label} (all 0)")
        else:
            ax.plot(depth, np.where(row > 0, row, np.nan), "o-", ms=3, color=color, label=label)
    for label, line in (theory or {}).items():
        ax.plot(depth, np.asarray(line, float), "--", color="0.3", lw=1, label=label)
    ax.set_yscale("log")
    ax.set(title=title, xlabel="layer (depth)", ylabel="std of activations (log scale)")
    ax.legend(fontsize=8, loc="best")
    return figure


def activation_histograms(
    histograms: Mapping[str, np.ndarray],
    ranges: Mapping[str, tuple[float, float]],
    epochs: Sequence[int],
    *,
    columns: int = 4,
) -> Figure:
    """Per-layer heatmaps of activation histograms over training: value bins (y) x
    measurement (x), colour the log of the count, as fastai's "colorful dimension".

    Args:
        histograms: `ActivationStatsLogger.histograms`: `{path: (measurements, bins)}`.
        ranges: `ActivationStatsLogger.ranges`: `{path: (low, high)}` of the bins.
        epochs: `ActivationStatsLogger.epochs` (-1 = before training).
        columns: Panels per row.
    """
    if not histograms:
        raise ValueError("histograms must hold at least one layer's counts; got none.")
    paths = list(histograms)
    columns = min(columns, len(paths))
    rows = math.ceil(len(paths) / columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for ax, path in zip(axes, paths, strict=False):
        counts = np.asarray(histograms[path], dtype=float)
        low, high = ranges[path]
        ax.imshow(
            np.log1p(counts.T),
            origin="lower",
            aspect="auto",
            extent=(-0.5, len(counts) - 0.5, low, high),
            cmap="viridis",
            interpolation="nearest",
        )
        ticks = np.unique(np.linspace(0, len(epochs) - 1, min(len(epochs), 4)).astype(int))
        ax.set_xticks(ticks, ["start" if epochs[t] < 0 else str(epochs[t] + 1) for t in ticks])
        ax.set_title(path, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(paths) :]:
        ax.set_visible(False)
    figure.supxlabel("epoch (measurement)", fontsize=9)
    figure.supylabel("activation value", fontsize=9)
    return figure
