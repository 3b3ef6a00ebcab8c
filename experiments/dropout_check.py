"""Dropout check: Keras's Dropout is inverted dropout, with a fresh mask per call, off at predict.

The course's inverted dropout keeps each unit with probability keep_prob and divides the kept
activations by keep_prob, so the expected activation is unchanged and nothing needs
rescaling at test time, where dropout is off. `keras.layers.Dropout(rate=1 - keep_prob)` does
the same. Measured on a 1000×1000 tensor of ones (keep_prob 0.7, seed 1):

| measurement                                  | inverted dropout  | here   |
|----------------------------------------------|-------------------|--------|
| mean activation, training mode               | 1 (±0.02)         | 1.0004 |
| fraction of units kept                       | 0.7               | 0.7003 |
| value of a kept unit                         | 1 / 0.7 = 1.4286  | 1.4286 |
| max change at `training=False` and `predict` | 0                 | 0      |
| units whose mask changed between two calls   | 2·0.7·0.3 = 0.42  | 0.4198 |

The last line is the difference from the course's notebook, whose forward pass re-seeds
NumPy's RNG on every call and so drops the same units at every step (see
`experiments.regularization`). No training here, so the MLflow run holds these numbers as
metrics and `inverted`/`off_at_prediction`/`fresh_mask` tags, but no bias/variance tag.

Run: `python -m experiments.dropout_check` (`--keep-prob 0.5`, `--size 2000`).
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.harness.checks import at_least, in_range
from experiments.harness.cli import main
from experiments.harness.datasets import DataSplit
from experiments.harness.runner import tracked_run


@dataclass(frozen=True)
class Config:
    keep_prob: float = 0.7  # the course's keep probability; Keras rate = 1 - keep_prob
    size: int = 1000  # the input is a size × size tensor of ones
    tolerance: float = 0.02  # allowed |mean activation - 1| in training mode
    seed: int = 1

    def __post_init__(self):
        in_range(self, "keep_prob", 0, 1, "(]")
        at_least(self, 10, "size")
        in_range(self, "tolerance", 0, 1, "()")


def make_data(cfg: Config) -> DataSplit:
    import numpy as np

    ones = np.ones((cfg.size, cfg.size), dtype=np.float32)
    labels = np.zeros((cfg.size, 1), dtype=np.float32)
    return DataSplit(ones, labels, ones, labels, source=f"ones({cfg.size}, {cfg.size})")


def build_model(cfg: Config, n_features: int):
    import keras

    return keras.Sequential(
        [keras.Input((n_features,)), keras.layers.Dropout(1 - cfg.keep_prob, seed=cfg.seed)],
        name="dropout_only",
    )


def measure(model, x) -> dict:
    """What the model's Dropout does to `x` in training mode, at `training=False` and in predict."""
    import numpy as np

    first, second = (np.asarray(model(x, training=True)) for _ in range(2))
    kept = first != 0
    return {
        "train_mean_ratio": float(first.mean() / x.mean()),
        "kept_fraction": float(kept.mean()),
        "kept_scale": float(np.mean(first[kept] / x[kept])),
        "mask_changed_fraction": float(np.mean(kept != (second != 0))),
        "inference_max_abs_change": float(np.max(np.abs(np.asarray(model(x, training=False)) - x))),
        "predict_max_abs_change": float(np.max(np.abs(model.predict_on_batch(x) - x))),
    }


def run(cfg: Config, **where) -> dict:
    data = make_data(cfg)
    model = build_model(cfg, data.n_features)
    with tracked_run(
        cfg, data, run_name=f"dropout_check keep_prob={cfg.keep_prob}", **where
    ) as tracked:
        values = measure(model, data.x_train)
        checks = {
            "inverted": abs(values["train_mean_ratio"] - 1) <= cfg.tolerance,
            "off_at_prediction": max(
                values["inference_max_abs_change"], values["predict_max_abs_change"]
            )
            == 0,
            "fresh_mask": cfg.keep_prob == 1 or values["mask_changed_fraction"] > 0,
        }
        tracked.recorder.log_final(values)
        tracked.recorder.set_tags({key: "yes" if ok else "no" for key, ok in checks.items()})
        return tracked.summary(**values, **checks)


if __name__ == "__main__":
    main(Config, run)
