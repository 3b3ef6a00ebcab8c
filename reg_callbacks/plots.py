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
