"""The field checks every topic's `Config.__post_init__` uses, with one message for each.

Each reads the named fields of `cfg` and raises one-line `ValueError`s that name the field,
the bad value and what is allowed (scikit-learn's style): "keep_prob must be in (0, 1];
got 1.5." The command line and the sweep show that line as it is.

Example:
    def __post_init__(self):
        positive(self, "learning_rate", "iterations")
        in_range(self, "keep_prob", 0, 1, "(]")
        one_of(self, "init", INITS)
        dev_data_needs_data(self)
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Sequence

# How an error message shows a value from user input: cut short, never expanded in full
# (a YAML alias bomb is a few hundred bytes that would print as gigabytes).
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel = 2
_SHOWN.maxdict = _SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxset = 6
_SHOWN.maxstring = _SHOWN.maxother = 80
_SHOWN.maxlong = 40


def shown(value) -> str:
    """`repr(value)`, bounded in length (200 characters) and in the work to make it."""
    text = _SHOWN.repr(value)
    return text if len(text) <= 200 else text[:199] + "…"


def positive(cfg, *names: str, optional: bool = False) -> None:
    """Each field > 0 (an integer field: >= 1). `optional`: None passes too."""
    for name in names:
        value = getattr(cfg, name)
        if optional and value is None:
            continue
        _finite(name, value)
        if not value > 0:
            bound = ">= 1" if isinstance(value, int) else "> 0"
            raise ValueError(f"{name} must be {bound}{_or_none(optional)}; got {value}.")


def at_least(cfg, low: float, *names: str, optional: bool = False) -> None:
    """Each field >= `low`. `optional`: None passes too."""
    for name in names:
        value = getattr(cfg, name)
        if optional and value is None:
            continue
        _finite(name, value)
        if not value >= low:
            raise ValueError(f"{name} must be >= {low:g}{_or_none(optional)}; got {value}.")


def in_range(
    cfg, name: str, low: float, high: float, ends: str = "[]", *, optional: bool = False
) -> None:
    """`low <= value <= high`; `ends` is how the message writes the interval: "(]" leaves
    out `low`, "[)" leaves out `high`, "()" both. `optional`: None passes too."""
    value = getattr(cfg, name)
    if optional and value is None:
        return
    above = value > low if ends[0] == "(" else value >= low
    below = value < high if ends[1] == ")" else value <= high
    if not (above and below):
        interval = f"{ends[0]}{low:g}, {high:g}{ends[1]}"
        raise ValueError(f"{name} must be in {interval}{_or_none(optional)}; got {value}.")


def one_of(cfg, name: str, choices: Sequence[str]) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")


def layer_widths(cfg, name: str = "hidden") -> None:
    """A non-empty tuple of positive layer widths."""
    value = getattr(cfg, name)
    if not value or min(value) < 1:
        raise ValueError(f"{name} must be positive layer widths like 20,3; got {value}.")


def dev_data_needs_data(cfg) -> None:
    if cfg.dev_data and not cfg.data:
        raise ValueError("dev_data needs data: pass --data TRAIN_FILE --dev-data DEV_FILE.")


def _finite(name: str, value) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value}.")


def _or_none(optional: bool) -> str:
    return " (or None)" if optional else ""
