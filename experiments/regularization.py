"""Regularization: L2, L1, dropout and early stopping shrink an overfit net's train/dev gap.

The course's net 2→20→3→1 (ReLU, ReLU, sigmoid), full-batch gradient descent, learning rate
0.3, 30 000 iterations, weights normal with variance 1/n_in, biases zero. The course reports
train / dev accuracy on its own 2-D file; without a file we use two noisy moons (noise 0.25,
100 train / 1000 dev examples) whose Bayes error is 0.057 (computed, see `moons_bayes_error`),
so a train accuracy above ~0.94 means fitting noise. Train / dev accuracy:

| variant         | course (its file) | here, seed 1  | dev, seeds 1 / 2 / 3  | label, seed 1 |
|-----------------|-------------------|---------------|-----------------------|---------------|
| none            | 0.948 / 0.915     | 1.000 / 0.886 | 0.886 / 0.890 / 0.885 | high variance |
| l2, λ = 0.7     | 0.938 / 0.930     | 0.910 / 0.923 | 0.923 / 0.920 / 0.922 | low / low     |
| dropout, 0.86   | 0.929 / 0.95 (*)  | 0.960 / 0.904 | 0.904 / 0.911 / 0.899 | high variance |
| l1, λ = 0.7     | —                 | 0.890 / 0.915 | 0.915 / 0.934 / 0.902 | high bias     |
| early_stopping  | —                 | 0.960 / 0.905 | 0.905 / 0.894 / 0.903 | high variance |

Unregularized, the net fits the 100 training examples perfectly, 6 points past the Bayes
accuracy (0.943), and leaves a gap of 11.4 points (9.5–11.4 over the seeds). Every variant
narrows it and raises the dev accuracy on every seed. L2 closes it (gaps −1.3 / −1.0 / 0.8,
dev +3 points) by giving up 9 points of train accuracy, as in the course. L1 at the same λ
is stronger still: seed 1 ends 0.3 points past the 5-point avoidable-bias threshold, labelled
high bias — too much regularization trades variance for bias (seeds 2 and 3: low / low).
Dropout at the course's keep_prob 0.86 is the mildest: gaps 5.6 / 6.9 / 7.1, dev +1.4 to +2.1
points; a layer of 3 units has little to thin out, and dropping one drops a third of its
features. Early stopping: gaps 5.5 / 4.6 / 3.7.

Why this data: at the course's size (211 train / 200 dev, noise 0.3) the net fit only a few
points past the Bayes accuracy, and dropout at 0.86 moved the dev accuracy by less than the
±2-point sampling error of 200 dev examples (up or down depending on the seed). A grid over
100–300 training examples and noise 0.25–0.35 (default moons draw, seeds 1–3) picked the set
where the unregularized net overfits most clearly; 1000 dev examples bring the sampling
error to ±1 point. The dropout result is the least robust one: on two other draws of the
moons (`noisy_moons(seed=1 or 2)`) keep_prob 0.86 changed the dev accuracy by −1.2 to +1.3
points, while L2 gained 0.8–2.5 points on every seed (leaving aside one unregularized run
that stalled at 0.82 dev accuracy). `--n-train 300` shows the other remedy for variance,
more data: unregularized, the gap shrinks to 3.0–4.5 points (dev 0.918–0.929).

How the course's numbers map onto Keras:
- L2: the course's cost is J = cross-entropy + λ/(2m)·Σ‖W‖²_F (m training examples, kernels
  only). Keras adds a layer's penalty to the *mean* batch loss, so `L2(λ/(2m))` is exactly
  that cost (a test compares it with the formula by hand). Its gradient λ/m·W makes every
  step first multiply W by 1 − αλ/m = 0.9979 (metric `weight_decay_factor`): weight decay.
  Σ‖W‖² ends at 28 against 542 unregularized (metric `weight_sq_norm`). ReLU units that
  die get no data gradient, so their weights decay to zero: L2 also shows 38 % `sparsity`.
- L1: the analogue λ/m·Σ|W| is `L1(λ/m)`; each step moves every weight αλ/m = 0.0021 towards
  zero, so many end up hovering there: 43 % of the weights have |w| < 1e-3 (`sparsity`).
- Dropout: `Dropout(rate=1 − keep_prob)` after both hidden layers, inverted like the
  course's (see `experiments.dropout_check`). (*) The course's `forward_propagation_with_
  dropout` calls `np.random.seed(1)` at its top, so its masks D1, D2 are the same at every
  iteration: it fits one fixed thinned copy of the training set rather than averaging over
  random sub-networks, and its 0.929 / 0.95 is the outcome of that one mask. Keras draws a
  fresh mask every step; on the course's file that gives about 0.95 / 0.93 (course-style
  re-runs over 4 seeds: train 0.948–0.953, dev 0.925–0.935), the figure `--variant dropout
  --data data.mat` is for (the file is not bundled, so it is not re-measured here). There is
  no fixed-mask variant: it would take a custom layer to copy what is a bug.
- Early stopping: `EarlyStopping(monitor="dev_error", mode="min", patience=3,
  restore_best_weights=True)`, patience in logging intervals of 1000 iterations. Seed 1 stops
  at iteration 5000 and restores iteration 2000 (metrics `stopped_iteration`,
  `best_iteration`; Keras-3 MLflow autologging omits them); train/dev error are re-measured
  on the restored weights. The dev error picked this way is slightly optimistic: it was
  selected on the dev set.

Early stopping vs L2 (orthogonalization): early stopping gets its dev accuracy by *not*
minimizing J (its restored weights have cost 0.127, against 0.0004 after 30 000 unregularized
steps; it ran 5000), so one knob controls both "fit the training set" and "don't overfit",
and here it ends 1.8 points of dev accuracy below L2. L2 keeps the two apart: run
gradient descent to convergence on J + penalty, then tune λ on its own — at the price of a
search over λ, several full runs where early stopping needs one short run.

Run: `python -m experiments.regularization --variant l2` (or none, l1, dropout,
early_stopping); `--data data.mat` runs it on the course's own file (keys X, y, Xval, yval).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from experiments.harness.checks import (
    at_least,
    dev_data_needs_data,
    in_range,
    layer_widths,
    positive,
)
from experiments.harness.cli import main
from experiments.harness.datasets import DataSplit, load_data, noisy_moons
from experiments.harness.runner import tracked_run

Variant = Literal["none", "l2", "l1", "dropout", "early_stopping"]
SPARSE_BELOW = 1e-3  # |w| under this counts as zero for L1's sparsity
MOONS_DEV_SIZE = 1000  # a dev accuracy's standard error is then ~1 point, not ~2
LOG_EVERY = 1000  # iterations per logging interval (a Keras epoch); early stopping's patience unit


@dataclass(frozen=True)
class Config:
    variant: Variant = "none"
    hidden: tuple[int, ...] = (20, 3)
    learning_rate: float = 0.3
    iterations: int = 30_000
    lambd: float = 0.7  # the course's λ: cost + λ/(2m)·Σ‖W‖² for l2, + λ/m·Σ|W| for l1
    keep_prob: float = 0.86  # dropout: probability of keeping a hidden unit
    patience: int = 3  # early_stopping: intervals of 1000 iterations without a lower dev error
    noise: float = 0.25  # standard deviation of the moons' noise (generated data only)
    n_train: int = 100  # training examples drawn from the moons (generated data only)
    seed: int = 1  # seeds the weights and the dropout masks; the moons are fixed
    data: str | None = None  # your own data file instead of the moons, e.g. the course's data.mat
    dev_data: str | None = None  # a separate dev-set file, if `data` holds only train

    def __post_init__(self):
        layer_widths(self)
        positive(self, "learning_rate", "iterations", "patience", "n_train")
        at_least(self, 0, "lambd", "noise")
        in_range(self, "keep_prob", 0, 1, "(]")
        dev_data_needs_data(self)


def make_data(cfg: Config) -> DataSplit:
    if cfg.data:
        return load_data(cfg.data, cfg.dev_data)
    return noisy_moons(n_train=cfg.n_train, n_dev=MOONS_DEV_SIZE, noise=cfg.noise)


def moons_bayes_error(noise: float, resolution: int = 400, curve_points: int = 1000) -> float:
    """The Bayes error of `make_moons` data with this noise, by integrating over a grid.

    The moons are two half circles sampled evenly, plus isotropic Gaussian noise: each
    class's density is the mean of Gaussians along its curve, and the best possible
    classifier errs with probability ∫ min(p0, p1) / 2 (equal priors). Noise 0.3 gives 0.086.
    """
    import numpy as np

    if noise == 0:
        return 0.0
    t = np.linspace(0, np.pi, curve_points)
    pad = 5 * noise
    x0 = np.linspace(-1 - pad, 2 + pad, resolution)
    x1 = np.linspace(-0.5 - pad, 1 + pad, resolution)

    def gauss(grid, centres):  # one axis of the separable 2-D Gaussian, (resolution, points)
        return np.exp(-((grid[:, None] - centres[None]) ** 2) / (2 * noise**2))

    p0, p1 = (
        gauss(x1, c1) @ gauss(x0, c0).T / (curve_points * 2 * np.pi * noise**2)
        for c0, c1 in ((np.cos(t), np.sin(t)), (1 - np.cos(t), 0.5 - np.sin(t)))
    )
    return float(0.5 * np.minimum(p0, p1).sum() * (x0[1] - x0[0]) * (x1[1] - x1[0]))


def l2_factor(lambd: float, m: int) -> float:
    """Keras's `L2` factor for the course's λ/(2m)·Σ‖W‖²_F (Keras adds it to the mean loss)."""
    return lambd / (2 * m)


def l1_factor(lambd: float, m: int) -> float:
    """Keras's `L1` factor for the L1 analogue λ/m·Σ|W|."""
    return lambd / m


def build_model(cfg: Config, n_features: int, m: int):
    """The course's net; `m` (training-set size) scales the L2/L1 penalty as the course does."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    regularizer = {
        "l2": lambda: keras.regularizers.L2(l2_factor(cfg.lambd, m)),
        "l1": lambda: keras.regularizers.L1(l1_factor(cfg.lambd, m)),
    }.get(cfg.variant, lambda: None)

    def dense(index, units, activation):
        # Variance 1/n_in, untruncated, as the course's `np.random.randn(...) / sqrt(n_in)`;
        # a seed per layer, as one int seed would make every layer draw the same numbers.
        init = keras.initializers.VarianceScaling(
            1.0, "fan_in", "untruncated_normal", seed=1000 * cfg.seed + index
        )
        return keras.layers.Dense(
            units, activation, kernel_initializer=init, kernel_regularizer=regularizer()
        )

    layers = [keras.Input((n_features,))]
    for index, units in enumerate(cfg.hidden):
        layers.append(dense(index, units, "relu"))
        if cfg.variant == "dropout":
            layers.append(keras.layers.Dropout(1 - cfg.keep_prob, seed=cfg.seed + index))
    layers.append(dense(len(cfg.hidden), 1, "sigmoid"))
    model = keras.Sequential(layers, name=f"regularization_{cfg.variant}")
    model.compile(
        keras.optimizers.SGD(cfg.learning_rate), "binary_crossentropy", metrics=["accuracy"]
    )
    return model


def weight_stats(model) -> dict:
    """Σ‖W‖²_F over the kernels and the fraction of kernel entries with |w| < SPARSE_BELOW."""
    import numpy as np

    kernels = [np.asarray(layer.kernel) for layer in model.layers if hasattr(layer, "kernel")]
    flat = np.concatenate([k.ravel() for k in kernels])
    return {
        "weight_sq_norm": float(np.sum(flat**2)),
        "weight_abs_sum": float(np.sum(np.abs(flat))),
        "sparsity": float(np.mean(np.abs(flat) < SPARSE_BELOW)),
    }


def run(cfg: Config, **where) -> dict:
    data = make_data(cfg)
    m = len(data.x_train)
    bayes_error = None if cfg.data else moons_bayes_error(cfg.noise)
    model = build_model(cfg, data.n_features, m)
    label = {
        "l2": f"λ={cfg.lambd}",
        "l1": f"λ={cfg.lambd}",
        "dropout": f"keep_prob={cfg.keep_prob}",
        "early_stopping": f"patience={cfg.patience}",
    }.get(cfg.variant, "")
    with tracked_run(
        cfg,
        data,
        run_name=f"regularization {cfg.variant} {label}".strip(),
        bayes_error=bayes_error,
        tags={"variant": cfg.variant},
        **where,
    ) as tracked:
        callbacks = []
        if cfg.variant == "early_stopping":
            import keras

            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="dev_error",
                    mode="min",
                    patience=cfg.patience,
                    restore_best_weights=True,
                )
            )
        log_every = min(LOG_EVERY, cfg.iterations)
        tracked.train(model, iterations=cfg.iterations, log_every=log_every, callbacks=callbacks)
        stats = weight_stats(model)
        if cfg.variant == "l2":
            stats["weight_decay_factor"] = 1 - cfg.learning_rate * cfg.lambd / m
        tracked.recorder.log_final(stats)
        _log_boundaries(tracked, model, data, cfg)
        return tracked.summary(**stats)


def _log_boundaries(tracked, model, data, cfg) -> None:
    if data.n_features != 2:
        return
    from reg_callbacks.plots import decision_boundary, side_by_side

    predict = model.predict_on_batch  # one batch: predict() would take 1250 batches of 32
    figure, (left, right) = side_by_side(2)
    name = f"{cfg.variant}"
    decision_boundary(predict, data.x_train, data.y_train, ax=left, title=f"{name}: train")
    decision_boundary(predict, data.x_dev, data.y_dev, ax=right, title=f"{name}: dev")
    tracked.log_figure(figure, "decision_boundary.png")


if __name__ == "__main__":
    main(Config, run)
