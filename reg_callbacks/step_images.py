"""Images of training in progress, drawn from arrays: MLflow step images a run logs as it
trains (its image card, scrubbed through with a slider), cheap enough to draw at the
logging intervals.

A matplotlib figure is too slow for that: drawing and saving one costs about as much as
several training intervals of the course's small nets (`benchmarks/bench_recording.py`
times the end-of-run figures). Here each image is a NumPy array of colours turned into a
PIL image: no matplotlib, no pyplot, no text but a few labels.

- `image_epochs(epochs)`: the epochs (logging intervals) to draw at, spread over the run.
- `boundary_grid(x)` and `boundary_image(...)`: a classifier's predicted regions over a grid
  around 2-D points, with the points on top.
- `heatmap_image(history, ...)`: the layer x interval gradient norms measured so far.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

IMAGES_PER_RUN = 10  # step images of each key a run logs, at most (one before training)
# A decision boundary image is 256 pixels square, the size MLflow's image card shows (it
# stores each step image again, resized to fit 256 pixels, and the resizing and WebP
# encoding are most of what a step image costs to write).
GRID_RESOLUTION = 128  # grid points along each axis
BOUNDARY_SCALE = 2  # pixels per grid point
MAX_POINTS = 1000  # points drawn over a decision boundary, at most (the first ones)
# A heatmap's cells fill about 256 x 192 pixels (rows 14 to 48 pixels high, columns 1 to 24
# wide), so that a shallow net's heatmap is not a thin strip in MLflow's square image card.
HEATMAP_SIZE = (256, 192)
LABEL_WIDTH = 120  # pixels left of the heatmap for the layer names

# Predicted regions (light) and points (dark) per class: class 0 red, 1 blue, as in `plots`.
_REGIONS = np.array(
    [[244, 199, 195], [198, 219, 239], [199, 233, 192], [253, 208, 162], [218, 218, 235]],
    dtype=np.uint8,
)
_POINTS = np.array(
    [[214, 39, 40], [31, 119, 180], [44, 160, 44], [255, 127, 14], [117, 107, 177]],
    dtype=np.uint8,
)
_EDGE = np.array([85, 85, 85], dtype=np.uint8)
# Viridis at five stops: dark violet for the smallest norm, yellow for the largest.
_COLOUR_STOPS = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=float
)
_ZERO, _OVERFLOW, _NOT_YET = (217, 217, 217), (214, 39, 40), (255, 255, 255)


def image_epochs(epochs: int, count: int = IMAGES_PER_RUN) -> frozenset[int]:
    """The epochs (0-based) to draw at the end of: `count` of them spread evenly over
    `epochs`, the last included (every epoch when there are no more than `count`)."""
    if epochs <= count:
        return frozenset(range(max(epochs, 0)))
    return frozenset(math.ceil(k * epochs / count) - 1 for k in range(1, count + 1))


def boundary_grid(x, resolution: int = GRID_RESOLUTION) -> tuple[np.ndarray, tuple]:
    """`(grid, extent)`: `resolution`**2 points (float32, shape (n, 2)) covering the points
    `x` with a 10 % margin, row by row from the top (largest x2) down, and `extent`, the
    `(low, high)` corners of the box, for `boundary_image`."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] != 2 or not len(x):
        raise ValueError(f"boundary points must be an (m, 2) array; got shape {x.shape}.")
    pad = 0.1 * (x.max(axis=0) - x.min(axis=0)) + 1e-3
    low, high = x.min(axis=0) - pad, x.max(axis=0) + pad
    x1 = np.linspace(low[0], high[0], resolution)
    x2 = np.linspace(high[1], low[1], resolution)
    g1, g2 = np.meshgrid(x1, x2)
    return np.c_[g1.ravel(), g2.ravel()].astype(np.float32), (low, high)


def predicted_classes(predictions) -> np.ndarray:
    """Class indices from a classifier's outputs: above 0.5 for one column (a sigmoid),
    the largest column otherwise."""
    predictions = np.asarray(predictions, dtype=float)
    if predictions.ndim > 1 and predictions.shape[-1] > 1:
        return predictions.argmax(axis=-1).reshape(len(predictions))
    return (predictions.reshape(len(predictions)) > 0.5).astype(int)


def boundary_image(predictions, x, y, extent, *, scale: int = BOUNDARY_SCALE):
    """A PIL image of the regions a classifier predicts over a `boundary_grid`, with the
    boundary between them in grey and the points `x` (labels `y`) on top.

    Args:
        predictions: The model's outputs on the grid's points, in the grid's order.
        x: The (m, 2) points the grid was made around; y: their class labels (m,) or
            one-hot (m, k).
        extent: `boundary_grid`'s box.
        scale: Pixels per grid point.
    """
    from PIL import Image

    classes = predicted_classes(predictions)
    side = int(round(np.sqrt(classes.size)))
    classes = classes.reshape(side, side) % len(_REGIONS)
    pixels = _REGIONS[classes]
    edge = np.zeros((side, side), dtype=bool)
    edge[:, 1:] |= classes[:, 1:] != classes[:, :-1]
    edge[1:, :] |= classes[1:, :] != classes[:-1, :]
    pixels[edge] = _EDGE
    pixels = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    size = side * scale
    points = np.asarray(x, dtype=float)[:MAX_POINTS]
    labels = np.asarray(y)[:MAX_POINTS]
    labels = predicted_classes(labels) if labels.ndim > 1 and labels.shape[-1] > 1 else labels
    labels = np.rint(labels.reshape(len(points))).astype(int) % len(_POINTS)
    low, high = (np.asarray(corner, dtype=float) for corner in extent)
    columns = np.rint((points[:, 0] - low[0]) / (high[0] - low[0]) * (size - 1)).astype(int)
    rows = np.rint((high[1] - points[:, 1]) / (high[1] - low[1]) * (size - 1)).astype(int)
    for d_row in (-1, 0, 1):
        for d_column in (-1, 0, 1):
            r = np.clip(rows + d_row, 0, size - 1)
            c = np.clip(columns + d_column, 0, size - 1)
            pixels[r, c] = _POINTS[labels]
    return Image.fromarray(pixels, mode="RGB")


def colour_map(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """RGB (uint8) of positive `values` on a log scale from `low` to `high` (viridis)."""
    position = (np.log10(values) - np.log10(low)) / max(np.log10(high) - np.log10(low), 1e-12)
    position = np.clip(position, 0, 1) * (len(_COLOUR_STOPS) - 1)
    lower = np.minimum(position.astype(int), len(_COLOUR_STOPS) - 2)
    weight = (position - lower)[..., None]
    colours = _COLOUR_STOPS[lower] * (1 - weight) + _COLOUR_STOPS[lower + 1] * weight
    return np.rint(colours).astype(np.uint8)


def heatmap_image(history: Mapping[str, Sequence[float]], columns: int, *, caption: str = ""):
    """A PIL image of `GradientNormLogger.history` so far: a row per layer (input layer at
    the top, its name on the left), a column per measurement, `columns` of them in all so
    that every image of a run has the same size (columns not measured yet are white).

    The colour is the norm on a log scale over the norms so far (viridis: dark small,
    yellow large; a range under a decade is widened to one); a zero norm is grey, a
    non-finite one red. `caption` goes above, the scale under it.
    """
    from PIL import Image, ImageDraw

    names = [key.removeprefix("grad_norm/") for key in history]
    values = np.array([list(history[key]) for key in history], dtype=float).reshape(len(names), -1)
    measured_columns = values.shape[1]
    columns = max(columns, measured_columns)
    measured = np.isfinite(values) & (values > 0)
    low, high = (values[measured].min(), values[measured].max()) if measured.any() else (1e-8, 1)
    if high < 10 * low:
        middle = np.sqrt(low * high)
        low, high = min(low, middle / np.sqrt(10)), max(high, middle * np.sqrt(10))
    cells = np.empty((len(names), columns, 3), dtype=np.uint8)
    cells[:] = _NOT_YET
    shown = cells[:, :measured_columns]
    shown[measured] = colour_map(values[measured], low, high)
    shown[values == 0] = _ZERO
    shown[~np.isfinite(values)] = _OVERFLOW
    top = 32  # two lines of text: the caption, the scale
    cell_width = int(np.clip(HEATMAP_SIZE[0] // columns, 1, 24))
    cell_height = int(np.clip(HEATMAP_SIZE[1] // max(len(names), 1), 14, 48))
    pixels = np.repeat(np.repeat(cells, cell_height, axis=0), cell_width, axis=1)
    height, width = pixels.shape[:2]
    canvas = np.full((height + top, width + LABEL_WIDTH, 3), 255, dtype=np.uint8)
    canvas[top:, LABEL_WIDTH:] = pixels
    image = Image.fromarray(canvas, mode="RGB")
    draw = ImageDraw.Draw(image)
    draw.text((4, 3), caption, fill=(0, 0, 0))
    draw.text((4, 16), f"log scale {low:.1e} (dark) to {high:.1e} (yellow)", fill=(0, 0, 0))
    for row, name in enumerate(names):
        label = name if len(name) <= 19 else "..." + name[-16:]
        draw.text((4, top + row * cell_height + (cell_height - 11) // 2), label, fill=(0, 0, 0))
    return image
