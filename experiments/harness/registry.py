"""The experiments the sweep and the tests can name, without importing TensorFlow.

Each module defines `Config` (a frozen dataclass), `run(cfg, *, tracking_uri=None,
parent_run_id=None) -> dict`, and imports Keras only inside its functions, so that loading
a module to validate a config stays fast.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXPERIMENTS = (
    "initialization",
    "regularization",
    "dropout_check",
    "augmentation",
    "normalization",
    "gradients",
    "gradient_check",
    "bias_variance",
    "recipe",
    "tradeoff",
    "toy",
)


def load(name: str) -> ModuleType:
    """The experiment module called `name`; ValueError listing the choices otherwise."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}.")
    return importlib.import_module(f"experiments.{name}")
