"""Keras callbacks and tools for the "improving deep neural networks" toolbox.

`diagnose` is pure Python; everything that needs TensorFlow is imported on first use, so
`from reg_callbacks import diagnose` stays fast (the sweep's planner relies on it).
"""

from __future__ import annotations

import importlib

from reg_callbacks.diagnosis import LABELS, Diagnosis, diagnose

_LAZY = {
    "ActivationStatsLogger": "reg_callbacks.activations",
    "activation_stats": "reg_callbacks.activations",
    "activation_health": "reg_callbacks.activations",
    "BiasVarianceCallback": "reg_callbacks.bias_variance",
    "classification_error": "reg_callbacks.bias_variance",
    "GradientNormLogger": "reg_callbacks.gradient_norms",
    "layer_gradient_norms": "reg_callbacks.gradient_norms",
    "gradient_health": "reg_callbacks.gradient_norms",
    "gradient_check": "reg_callbacks.gradient_checking",
    "GradientCheckReport": "reg_callbacks.gradient_checking",
    "RunRecorder": "reg_callbacks.tracking",
    "train": "reg_callbacks.training",
    "bias_variance_decomposition": "reg_callbacks.decomposition",
    "Decomposition": "reg_callbacks.decomposition",
    "TrainingDiverged": "reg_callbacks.training",
}

__all__ = ["LABELS", "Diagnosis", "diagnose", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'reg_callbacks' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
