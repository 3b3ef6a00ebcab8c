"""Bias/variance diagnosis from train, dev and Bayes error: the course's basic recipe.

Pure Python, no TensorFlow: the sweep's planner and the tests import it cheaply.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

HIGH_BIAS = "high bias"
HIGH_VARIANCE = "high variance"
HIGH_BOTH = "high bias & high variance"
LOW_BOTH = "low bias & low variance"
LABELS = (HIGH_BIAS, HIGH_VARIANCE, HIGH_BOTH, LOW_BOTH)
# The numbers of a `Diagnosis`, in the order summaries, tables and MLflow runs show them.
NUMBERS = ("train_error", "dev_error", "avoidable_bias", "variance")

# Five percentage points: above the sampling noise of a 100-example dev set (about two
# points of standard error at 5-10 % error) and well under the ten-point gaps that the
# course calls "high".
DEFAULT_BIAS_THRESHOLD = 0.05
DEFAULT_VARIANCE_THRESHOLD = 0.05

BIAS_REMEDIES = (
    "bigger network (more hidden units or layers)",
    "train longer (more iterations or a better optimizer)",
    "different architecture",
)
VARIANCE_REMEDIES = (
    "more data (or data augmentation)",
    "regularization (L2, dropout, early stopping)",
    "different architecture",
)


@dataclass(frozen=True)
class Diagnosis:
    """Where a model stands against the Bayes error, and what the recipe says to do next.

    `avoidable_bias` is train - Bayes error and `variance` is dev - train error. Both are
    reported as measured: a small negative value means sampling noise (or a Bayes estimate
    that is too high) and counts as low.
    """

    train_error: float
    dev_error: float
    bayes_error: float
    avoidable_bias: float
    variance: float
    high_bias: bool
    high_variance: bool
    label: str
    remedies: tuple[str, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def diagnose(
    train_error: float,
    dev_error: float,
    bayes_error: float = 0.0,
    *,
    bias_threshold: float = DEFAULT_BIAS_THRESHOLD,
    variance_threshold: float = DEFAULT_VARIANCE_THRESHOLD,
) -> Diagnosis:
    """Label a model "high bias", "high variance", both, or neither.

    Args:
        train_error: Training-set error, a fraction in [0, 1].
        dev_error: Dev-set error, a fraction in [0, 1].
        bayes_error: Best achievable error (human-level proxy), a fraction in [0, 1].
        bias_threshold: Avoidable bias (train - Bayes) above which bias is "high".
        variance_threshold: Variance (dev - train) above which variance is "high".

    Returns:
        A `Diagnosis`; its `remedies` list the basic recipe's next steps, bias first,
        because the course fixes bias before variance.

    Raises:
        ValueError: an error is not a finite fraction in [0, 1], or a threshold is not
            in (0, 1].

    Example:
        >>> diagnose(0.15, 0.16).label
        'high bias'
        >>> diagnose(0.15, 0.16, bayes_error=0.15).label
        'low bias & low variance'
    """
    for name, value in (
        ("train_error", train_error),
        ("dev_error", dev_error),
        ("bayes_error", bayes_error),
    ):
        _check_fraction(name, value)
    for name, value in (
        ("bias_threshold", bias_threshold),
        ("variance_threshold", variance_threshold),
    ):
        if not _is_real(value) or not 0.0 < value <= 1.0:
            raise ValueError(f"{name} must be in (0, 1]; got {value!r}.")

    avoidable_bias = float(train_error) - float(bayes_error)
    variance = float(dev_error) - float(train_error)
    high_bias = avoidable_bias > bias_threshold
    high_variance = variance > variance_threshold
    label = {
        (True, True): HIGH_BOTH,
        (True, False): HIGH_BIAS,
        (False, True): HIGH_VARIANCE,
        (False, False): LOW_BOTH,
    }[(high_bias, high_variance)]
    remedies = (BIAS_REMEDIES if high_bias else ()) + (
        tuple(r for r in VARIANCE_REMEDIES if not (high_bias and r in BIAS_REMEDIES))
        if high_variance
        else ()
    )
    return Diagnosis(
        train_error=float(train_error),
        dev_error=float(dev_error),
        bayes_error=float(bayes_error),
        avoidable_bias=avoidable_bias,
        variance=variance,
        high_bias=high_bias,
        high_variance=high_variance,
        label=label,
        remedies=remedies,
    )


def _is_real(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        or (hasattr(value, "dtype") and getattr(value, "shape", ()) == ())
    )


def _check_fraction(name: str, value) -> None:
    if not _is_real(value) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite fraction in [0, 1]; got {value!r}.")
    if not 0.0 <= float(value) <= 1.0:
        hint = (
            f" (errors are fractions: {float(value):g} % is {float(value) / 100:g})"
            if 1.0 < float(value) <= 100.0
            else ""
        )
        raise ValueError(f"{name} must be a fraction in [0, 1]; got {value!r}{hint}.")
