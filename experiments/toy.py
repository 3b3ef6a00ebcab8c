"""Toy: a 2→4→1 net on noisy moons in well under a second, for testing the sweep.

Not a course result: a real but tiny Keras experiment that goes through exactly the same
plumbing as the others (`tracked_run`, the fast training path, bias/variance diagnosis,
MLflow run with params, metrics, tags and plots), so the sweep's tests and benchmarks can
run hundreds of configs quickly. Expect roughly 15 % train / 15 % dev error on defaults.
`--diverge` swaps the output for a linear unit with squared error and multiplies the
learning rate by 10^6, so the loss overflows within the first interval and the run ends
FAILED with `TrainingDiverged`. `--model centroid` skips Keras for a nearest-class-mean
classifier in NumPy: a real run in milliseconds, recorded the same way, for load-testing
the store with hundreds of runs.

Run: `python -m experiments.toy --lr 0.5 --seed 3` (add `--diverge` to see a FAILED run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from experiments.harness.checks import at_least, positive
from experiments.harness.cli import main
from experiments.harness.datasets import DataSplit, noisy_moons
from experiments.harness.runner import DIAGNOSIS_NUMBERS, tracked_run

DIVERGE_FACTOR = 1e6


@dataclass(frozen=True)
class Config:
    lr: float = 0.5
    seed: int = 0  # seeds the weights and the data
    iterations: int = 200
    hidden: int = 4  # units in the one hidden layer; 0 makes it logistic regression
    diverge: bool = False  # linear output, squared error and lr × 1e6: the loss overflows
    model: Literal["net", "centroid"] = "net"  # centroid: nearest class mean, no TensorFlow

    def __post_init__(self):
        positive(self, "lr", "iterations")
        at_least(self, 0, "hidden")


def make_data(cfg: Config) -> DataSplit:
    return noisy_moons(n_train=200, n_dev=200, noise=0.2, seed=cfg.seed)


def build_model(cfg: Config, n_features: int):
    import keras

    keras.utils.set_random_seed(cfg.seed)
    layers = [keras.Input((n_features,))]
    if cfg.hidden:
        layers.append(keras.layers.Dense(cfg.hidden, "tanh"))
    if cfg.diverge:
        layers.append(keras.layers.Dense(1))
        model = keras.Sequential(layers, name="toy_diverging")
        model.compile(keras.optimizers.SGD(cfg.lr * DIVERGE_FACTOR), "mean_squared_error")
        return model
    layers.append(keras.layers.Dense(1, "sigmoid"))
    model = keras.Sequential(layers, name="toy")
    model.compile(keras.optimizers.SGD(cfg.lr), "binary_crossentropy", metrics=["accuracy"])
    return model


def centroid_errors(data: DataSplit) -> tuple[float, float]:
    """Train and dev error of the nearest-class-mean classifier fitted on train."""
    labels = data.y_train.ravel()
    means = np.stack([data.x_train[labels == c].mean(axis=0) for c in (0, 1)])

    def error(x, y):
        predicted = np.argmin(((x[:, None, :] - means) ** 2).sum(axis=2), axis=1)
        return float(np.mean(predicted != y.ravel()))

    return error(data.x_train, data.y_train), error(data.x_dev, data.y_dev)


def run(cfg: Config, **where) -> dict:
    data = make_data(cfg)
    model = build_model(cfg, data.n_features) if cfg.model == "net" else None
    run_name = f"toy lr={cfg.lr} seed={cfg.seed}" + (" diverge" if cfg.diverge else "")
    with tracked_run(cfg, data, run_name=run_name, **where) as tracked:
        if model is not None:
            tracked.train(model, iterations=cfg.iterations, seed=cfg.seed)
            return tracked.summary()
        from reg_callbacks import diagnose

        diagnosis = diagnose(*centroid_errors(data), tracked.bayes_error)
        tracked.recorder.log_diagnosis(diagnosis)
        return tracked.summary(**{k: getattr(diagnosis, k) for k in (*DIAGNOSIS_NUMBERS, "label")})


if __name__ == "__main__":
    main(Config, run)
