"""Matplotlib figures from plain arrays and histories, for MLflow artifacts.

Figures are built with `matplotlib.figure.Figure` directly, not `pyplot`, so no GUI
backend or global figure state is involved (safe in worker processes and threads). Call
these after training, never inside a step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure


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

    Args:
        predict: Maps an (n, 2) array to probabilities of class 1 (e.g. `model.predict`).
        x: (m, 2) points; y: their 0/1 labels.
        ax: Draw into this axes (for side-by-side panels) instead of a new figure.
    """
    figure, ax = _figure_and_axes(ax)
    x = np.asarray(x)
    pad = 0.1 * (x.max(axis=0) - x.min(axis=0)) + 1e-3
    lo, hi = x.min(axis=0) - pad, x.max(axis=0) + pad
    g0, g1 = np.meshgrid(
        np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    )
    grid = np.c_[g0.ravel(), g1.ravel()].astype(np.float32)
    probability = np.asarray(predict(grid), dtype=float).reshape(g0.shape)
    ax.contourf(g0, g1, probability > 0.5, levels=[-0.5, 0.5, 1.5], colors=["#f4c7c3", "#c6dbef"])
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
    ax.set(title=title, xlabel="$x_1$", ylabel="$x_2$", xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]))
    ax.legend(loc="upper right", fontsize=8)
    return figure


def gradient_heatmap(
    history: Mapping[str, Sequence[float]],
    epochs: Sequence[int],
    *,
    iterations_per_epoch: int | None = None,
    title: str = "Gradient norm per layer",
) -> Figure:
    """Layer x epoch heatmap of gradient norms (log colour scale), input layer at the top.

    Args:
        history: `GradientNormLogger.history`: `{"grad_norm/<layer>": [norm per epoch]}`.
        epochs: `GradientNormLogger.epochs` (-1 = before training).
        iterations_per_epoch: Label the x axis in iterations instead of epochs.
    """
    names = [key.removeprefix("grad_norm/") for key in history]
    values = np.array([history[key] for key in history], dtype=float)
    finite = values[np.isfinite(values) & (values > 0)]
    norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if finite.size else None
    figure = Figure(figsize=(7, max(2.5, 0.25 * len(names) + 1.5)), layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(
        np.where(values > 0, values, np.nan),
        aspect="auto",
        norm=norm,
        cmap="viridis",
        interpolation="nearest",
    )
    steps = [(e + 1) * (iterations_per_epoch or 1) for e in epochs]
    ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 8)).astype(int))
    ax.set_xticks(ticks, [str(steps[t]) for t in ticks])
    if len(names) <= 30:
        ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(
        title=title,
        xlabel="iteration" if iterations_per_epoch else "epoch",
        ylabel="layer (input at top)",
    )
    figure.colorbar(image, ax=ax, label="‖∂J/∂W‖₂")
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

    Args:
        hline: `(value, label)` drawn as a dashed line, e.g. the Bayes error.
    """
    figure, ax = _figure_and_axes(None)
    for key in keys:
        values = history[key]
        x = steps if steps is not None else range(1, len(values) + 1)
        ax.plot(list(x)[: len(values)], values, label=key)
    if hline is not None:
        ax.axhline(hline[0], color="gray", linestyle="--", label=hline[1])
    ax.set(title=title, xlabel="iteration" if steps is not None else "epoch", ylabel=ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.legend()
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
