"""Turn an experiment's frozen `Config` dataclass into a command line and into sweep configs.

Every experiment ends with `main(Config, run)`; the sweep builds its configs with
`config_from_dict(Config, values)`. Both go through the same coercion and the dataclass's own
`__post_init__` checks, so a value the CLI rejects is rejected by a sweep file too, with the
same message. Bad input never shows a traceback: it becomes one line `error: <message>` on
stderr and exit code 2 (130 on Ctrl-C).

Standard library only at import time (no TensorFlow, NumPy or MLflow): `--help` and the sweep
planner stay instant.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import difflib
import gc
import inspect
import io
import math
import numbers
import os
import re
import signal
import sys
import tokenize
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from experiments.harness import quiet
from experiments.harness.checks import shown
from experiments.harness.tracking_store import (
    check_tracking_uri,
    clip,
    describe_store_error,
    quiet_store_errors,
    resolve_tracking_uri,
    store_error,
)

__all__ = ["build_parser", "config_from_dict", "main", "parse_args", "print_summary"]

C = TypeVar("C")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
MAX_MESSAGE = 2000  # characters of an error line: user input is quoted in it cut short
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("none", "null", "")
# Errors that mean "the user's input is wrong" rather than "the program is wrong".
_USER_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, PermissionError)


# ---------------------------------------------------------------------------------------------
# Values -> Config


def config_from_dict(
    config_cls: type[C], values: Mapping[str, Any], *, name: str | None = None
) -> C:
    """Build a `config_cls` from loosely typed values (YAML, TOML or command-line strings).

    Each value is coerced to its field's annotation: `int` (rejects bools and floats with a
    fractional part), `float` (accepts ints; rejects bools and non-numeric strings), `bool`
    (`true/false/yes/no/on/off/1/0`), `str`, `Literal[...]` (one of the choices), `tuple[T, ...]`
    (a list, a tuple or a string like `"20,3"`) and `X | None` (`None`, `"none"` or `"null"`).
    Dashes in keys are read as underscores, so `learning-rate` names `learning_rate`. Fields
    not given keep their dataclass defaults, and the dataclass's `__post_init__` runs last.

    Args:
        config_cls: A dataclass type, typically frozen.
        values: Field name -> value.
        name: The experiment's name in messages; defaults to the last part of the module that
            defines `config_cls`.

    Returns:
        The constructed, validated config.

    Raises:
        ValueError: one line naming the parameter, the bad value and what is allowed.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Config:
        ...     hidden: tuple[int, ...] = (20, 3)
        ...     lambd: float = 0.7
        >>> config_from_dict(Config, {"hidden": "5,2", "lambd": 1})
        Config(hidden=(5, 2), lambd=1.0)
    """
    if not dataclasses.is_dataclass(config_cls) or not isinstance(config_cls, type):
        raise TypeError(f"config_cls must be a dataclass type; got {config_cls!r}.")
    if not isinstance(values, Mapping):
        raise ValueError(f"parameters must be a mapping of name -> value; got {values!r}.")
    experiment = name or _experiment_name(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    hints = _type_hints(config_cls)

    kwargs: dict[str, Any] = {}
    unknown: list[str] = []
    for raw_key, value in values.items():
        key = raw_key.replace("-", "_") if isinstance(raw_key, str) else raw_key
        if key not in fields:
            unknown.append(raw_key)
            continue
        if key in kwargs:
            raise ValueError(f"parameter {key!r} for {experiment} is given twice.")
        kwargs[key] = _within_limits(key, _coerce(key, hints.get(key, Any), value))
    if unknown:
        raise ValueError(_unknown_message(unknown, sorted(fields), experiment))

    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"missing required parameter(s) for {experiment}: {', '.join(missing)}.")
    try:
        return config_cls(**kwargs)
    except TypeError as exc:  # e.g. a hand-written __init__ that disagrees with the fields
        raise ValueError(f"cannot build the {experiment} config: {exc}") from exc


def _unknown_message(unknown: list, allowed: list[str], experiment: str) -> str:
    names = ", ".join(repr(k) for k in unknown)
    plural = "s" if len(unknown) > 1 else ""
    message = f"unknown parameter{plural} {names} for {experiment}; allowed: {', '.join(allowed)}"
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(str(key).replace("-", "_"), allowed, n=1, cutoff=0.6)
        if close:
            hints.append(f"{close[0]!r}" if len(unknown) == 1 else f"{close[0]!r} for {key!r}")
    if hints:
        message += f"; did you mean {', '.join(hints)}?"
    return message + ("" if hints else ".")


def _type_hints(config_cls: type) -> dict[str, Any]:
    try:
        return get_type_hints(config_cls)
    except Exception:  # unresolvable forward reference: fall back to the raw annotations
        return {f.name: f.type for f in dataclasses.fields(config_cls)}


def _split_optional(tp: Any) -> tuple[Any, bool]:
    """`X | None` -> (X, True); anything else -> (tp, False)."""
    if get_origin(tp) in (Union, types.UnionType):
        args = get_args(tp)
        rest = tuple(a for a in args if a is not type(None))
        if len(rest) < len(args):
            return (rest[0] if len(rest) == 1 else Union[rest]), True  # noqa: UP007
    return tp, False


def _describe(tp: Any) -> str:
    """What a value of type `tp` may look like, for error messages."""
    inner, optional = _split_optional(tp)
    origin = get_origin(inner)
    if origin is Literal:
        text = "one of " + ", ".join(repr(c) for c in get_args(inner))
    elif origin in (Union, types.UnionType):
        text = " or ".join(_describe(a) for a in get_args(inner))
    elif origin is tuple:
        args = get_args(inner)
        if len(args) == 2 and args[1] is Ellipsis:
            text = f"a comma-separated list of {_plural(args[0])} (e.g. '20,3')"
        else:
            text = f"a comma-separated list of exactly {len(args)} values"
    elif inner is bool:
        text = "true or false"
    elif inner is int:
        text = "an integer"
    elif inner is float:
        text = "a number"
    elif inner is str:
        text = "a string"
    else:
        text = f"a {getattr(inner, '__name__', inner)}"
    return text + (" or none" if optional else "")


def _plural(tp: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(tp, "values")


def _bad(name: str, tp: Any, value: Any) -> ValueError:
    return ValueError(f"{name} must be {_describe(tp)}; got {shown(value)}.")


SEED_RANGE = (0, 2**32 - 1)  # what NumPy's and Keras's seeding take
MAX_LAYER_WIDTH = 100_000  # units of a hidden layer: a 100 000 x 100 000 kernel is 40 GB


def _within_limits(name: str, value: Any) -> Any:
    """Values every config would fail on at run time, refused when it is planned."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value}.")
    if name == "seed" and isinstance(value, int) and not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
        raise ValueError(f"seed must be in [0, {SEED_RANGE[1]}] (NumPy's seeds); got {value}.")
    if name == "hidden":
        widths = value if isinstance(value, tuple) else (value,)
        if any(isinstance(w, int) and w > MAX_LAYER_WIDTH for w in widths):
            raise ValueError(
                f"hidden layers have at most {MAX_LAYER_WIDTH} units; got {shown(value)}."
            )
    return value


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Convert `value` to the field type `tp`, or raise a one-line ValueError."""
    inner, optional = _split_optional(tp)
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
        return None
    if value is None:
        raise _bad(name, tp, value)
    origin = get_origin(inner)

    if origin is Literal:
        choices = get_args(inner)
        for choice in choices:
            if type(choice) is type(value) and choice == value:
                return choice
        if isinstance(value, str):
            for choice in choices:
                if str(choice) == value.strip():
                    return choice
        message = f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {shown(value)}"
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        raise ValueError(message + (f"; did you mean {close[0]!r}?" if close else "."))

    if origin in (Union, types.UnionType):
        for option in get_args(inner):
            try:
                return _coerce(name, option, value)
            except ValueError:
                continue
        raise _bad(name, tp, value)

    if origin is tuple:
        return _coerce_tuple(name, tp, inner, value)

    try:
        if inner is bool:
            return _to_bool(value)
        if inner is int:
            return _to_int(value)
        if inner is float:
            return _to_float(value)
        if inner is str:
            if isinstance(value, str):
                return value
            if isinstance(value, os.PathLike):
                return os.fspath(value)
            raise ValueError
    except (ValueError, TypeError, OverflowError):
        raise _bad(name, tp, value) from None

    if inner is Any or not isinstance(inner, type) or isinstance(value, inner):
        return value
    raise _bad(name, tp, value)


def _coerce_tuple(name: str, tp: Any, inner: Any, value: Any) -> tuple:
    args = get_args(inner)
    variadic = len(args) == 2 and args[1] is Ellipsis
    if isinstance(value, str):
        text = value.strip().strip("()[]").strip()
        items: list[Any] = [t for t in re.split(r"[,\s]+", text) if t] if text else []
    elif isinstance(value, list | tuple):
        items = list(value)
    elif isinstance(value, numbers.Number) and not isinstance(value, bool):
        items = [value]
    else:
        raise _bad(name, tp, value)
    if not variadic and len(items) != len(args):
        raise _bad(name, tp, value)
    element_types = [args[0]] * len(items) if variadic else list(args)
    try:
        return tuple(_coerce(name, t, item) for t, item in zip(element_types, items, strict=True))
    except ValueError:
        raise _bad(name, tp, value) from None


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            value = float(text)  # "3e4"; a fractional part is rejected below
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(value)
    raise ValueError


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return float(value.strip())
    raise ValueError


# ---------------------------------------------------------------------------------------------
# Command line -> Config


class _OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line `error: <message>` and exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        _fail(message)


def build_parser(config_cls: type, *, prog: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser for `config_cls`: one flag per field, plus `--tracking-uri`.

    Field `learning_rate` becomes `--learning-rate`; bools become `--flag/--no-flag`. Help
    text comes from `field(metadata={"help": ...})` or else the field's trailing `# comment`
    in the source; the description is the first paragraph of the module docstring and the
    rest of the docstring is the epilog. Every flag defaults to "not given", so fields not
    on the command line keep the dataclass defaults (shown in `--help`).
    """
    doc = inspect.cleandoc(getattr(sys.modules.get(config_cls.__module__), "__doc__", None) or "")
    paragraphs = re.split(r"\n\s*\n", doc, maxsplit=1) if doc else [""]
    parser = _OneLineParser(
        prog=prog or _prog(config_cls),
        description=paragraphs[0] or None,
        epilog=paragraphs[1] if len(paragraphs) > 1 else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    hints = _type_hints(config_cls)
    comments = _field_comments(config_cls)
    for field in dataclasses.fields(config_cls):
        if not field.init:
            continue
        tp = hints.get(field.name, Any)
        inner, _ = _split_optional(tp)
        flag = "--" + field.name.replace("_", "-")
        help_text = str(field.metadata.get("help") or comments.get(field.name, ""))
        default = _default_text(field)
        if default is not None:
            help_text = f"{help_text} (default: {default})".strip()
        help_text = help_text.replace("%", "%%")
        if inner is bool:
            parser.add_argument(
                flag,
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            parser.add_argument(
                flag,
                dest=field.name,
                default=argparse.SUPPRESS,
                metavar=_metavar(field.name, inner),
                help=help_text,
            )
    parser.add_argument(
        "--tracking-uri",
        dest="_tracking_uri",
        metavar="URI",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else MLflow's own default)",
    )
    parser.add_argument(
        "--log-model",
        dest="_log_model",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log the trained Keras model as the run's MLflow model (.keras format, with a "
        "signature; load it with mlflow.keras.load_model('runs:/<run id>/model')) "
        "(default: true)",
    )
    parser.add_argument(
        "--step-images",
        dest="_step_images",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log the gradient-norm heatmap (and a topic's decision boundary) as MLflow step "
        "images while training, scrubbed through in the run's image card (default: true)",
    )
    parser.add_argument(
        "--system-metrics",
        dest="_system_metrics",
        action="store_true",
        default=None,
        help="record MLflow's system metrics (CPU, memory, disk, network) during the run",
    )
    parser.add_argument(
        "--traceback",
        dest="_traceback",
        action="store_true",
        help="on an input error, show the full traceback instead of one line",
    )
    if "--verbose" not in parser._option_string_actions:  # a Config field may be `verbose`
        add_verbose_flag(parser)
    return parser


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(_verbose=False)
    parser.add_argument(
        "--verbose",
        dest="_verbose",
        action="store_true",
        help=f"show TensorFlow's and MLflow's INFO logs (or set {quiet.VERBOSE_VARIABLE}=1)",
    )


def parse_args(
    config_cls: type[C], argv: list[str] | None = None, *, prog: str | None = None
) -> tuple[C, str | None]:
    """Parse a command line into a validated config and the MLflow tracking URI.

    Args:
        config_cls: The experiment's Config dataclass.
        argv: Arguments without the program name; `None` reads `sys.argv[1:]`.
        prog: Program name in usage and help.

    Returns:
        `(config, tracking_uri)`; `tracking_uri` is `None` unless `--tracking-uri` is given.

    Raises:
        ValueError: a value is malformed or fails the Config's validation.
        SystemExit: code 2 after one line on stderr for argparse errors (unknown flag,
            missing value); code 0 after `--help`.
    """
    cfg, tracking_uri, *_ = _parse(config_cls, argv, prog)
    return cfg, tracking_uri


def _parse(
    config_cls: type[C], argv: list[str] | None, prog: str | None
) -> tuple[C, str | None, bool, bool, dict[str, bool]]:
    """(config, tracking URI, --traceback, --verbose, the recording flags given)."""
    parser = build_parser(config_cls, prog=prog)
    namespace, extras = parser.parse_known_args(argv)
    if extras:
        parser.error(_unrecognized_message(extras, parser))
    given = vars(namespace)
    tracking_uri = given.pop("_tracking_uri")
    show_traceback = given.pop("_traceback")
    verbose = given.pop("_verbose", False)
    recording = {
        "log_model": given.pop("_log_model"),
        "step_images": given.pop("_step_images"),
        "system_metrics": given.pop("_system_metrics"),
    }
    recording = {name: value for name, value in recording.items() if value is not None}
    return config_from_dict(config_cls, given), tracking_uri, show_traceback, verbose, recording


def _unrecognized_message(extras: list[str], parser: argparse.ArgumentParser) -> str:
    message = "unrecognized arguments: " + " ".join(extras)
    known = [s for action in parser._actions for s in action.option_strings]
    for extra in extras:
        if extra.startswith("--"):
            close = difflib.get_close_matches(extra.split("=", 1)[0], known, n=1, cutoff=0.6)
            if close:
                return f"{message} (did you mean {close[0]}?)"
    return message


# ---------------------------------------------------------------------------------------------
# main


def main(
    config_cls: type[C], run_fn: Callable[..., Mapping | None], argv: list[str] | None = None
) -> None:
    """Parse the command line, call `run_fn(cfg, tracking_uri=...)`, print its summary.

    `--no-log-model` (or `--log-model`), `--no-step-images` (or `--step-images`) and
    `--system-metrics` add `log_model=False` (or True), `step_images=False` (or True) and
    `system_metrics=True` to the call (see `experiments.harness.runner`).

    Bad input (a `ValueError` or missing file from parsing, validation or from inside
    `run_fn`, e.g. data loading) prints one line `error: <message>` on stderr and exits with
    code 2; a run whose loss diverged (NaN/inf; recorded in MLflow as FAILED with its
    reason), whose plots could not be stored (disk full, no permission), or whose tracking
    store failed (full, read-only, left mid-migration) prints one line and exits with 1;
    Ctrl-C or SIGTERM prints `interrupted` and exits with 130.
    `--traceback` re-raises instead, for debugging a ValueError that is a bug, not bad input.

    Args:
        config_cls: The experiment's Config dataclass.
        run_fn: `run(cfg, tracking_uri=None) -> dict`; the dict is printed as a table.
        argv: Arguments without the program name; `None` reads `sys.argv[1:]`.

    Example:
        if __name__ == "__main__":
            main(Config, run)
    """
    skip_final_collection()
    tolerant_output()
    stop_on_sigterm()
    show_traceback = "--traceback" in (sys.argv[1:] if argv is None else argv)
    try:
        cfg, tracking_uri, show_traceback, verbose, recording = _parse(config_cls, argv, None)
        check_tracking_uri(resolve_tracking_uri(tracking_uri))
        quiet.quiet_logs(verbose)
        if not verbose:
            quiet_store_errors()
        summary = run_fn(cfg, tracking_uri=tracking_uri, **recording)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except _USER_ERRORS as exc:
        if show_traceback:
            raise
        _fail(_exception_text(exc))
    except FloatingPointError as exc:  # reg_callbacks.TrainingDiverged
        if show_traceback:
            raise
        print(f"run FAILED: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None
    except Exception as exc:
        if show_traceback:
            raise
        tracking = sys.modules.get("reg_callbacks.tracking")  # loaded if it raised this
        cause = store_error(exc)
        if tracking is not None and isinstance(exc, tracking.ArtifactStoreError):
            print(f"run FAILED: {_one_line(exc)}", file=sys.stderr)
        elif cause is not None:
            # The store is unreachable, full or refused a write, after bounded retries.
            print(f"error: MLflow tracking store: {describe_store_error(cause)}", file=sys.stderr)
        else:
            raise
        raise SystemExit(EXIT_FAILED) from None
    if summary is not None:
        print_summary(summary)


def tolerant_output() -> None:
    """Characters the terminal's encoding lacks (λ, box lines on a latin-1 locale) print as
    escapes instead of ending the command with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):  # replaced or closed streams
            stream.reconfigure(errors="backslashreplace")


def stop_on_sigterm() -> None:
    """SIGTERM stops the command as Ctrl-C does (KeyboardInterrupt): a run in progress ends
    KILLED instead of being left RUNNING by a process that vanished."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def skip_final_collection() -> None:
    """Let this process end without the garbage collection of Python's shutdown.

    That collection walks every object TensorFlow, Keras, MLflow and matplotlib made: a
    visible share of a short command, and a sweep waits for its workers' exits. Call it first
    thing: it registers `gc.freeze` with `atexit` (once, however often it is called), and
    handlers run last registered first, so the freeze comes after the others. Frozen objects
    are skipped; atexit handlers, flushing and module teardown still run.
    """
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def print_summary(summary: Mapping, file: typing.TextIO | None = None) -> None:
    """Print a (possibly nested) summary dict as a two-column table; floats to 4 digits."""
    rows = [(key, _format_value(value)) for key, value in _flat_items(summary)]
    out = file or sys.stdout
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is a dependency, but a plain table is fine without it
        width = max((len(k) for k, _ in rows), default=0)
        for key, value in rows:
            print(f"{key:<{width}}  {value}", file=out)
        return
    table = Table(show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, value)
    Console(file=out, highlight=False).print(table)


def _flat_items(mapping: Mapping, prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items.extend(_flat_items(value, f"{name}/"))
        else:
            items.append((name, value))
    return items


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_format_value(v) for v in value)
    return str(value)


# ---------------------------------------------------------------------------------------------
# helpers


def _fail(message: str) -> typing.NoReturn:
    print(f"error: {clip(_one_line(message), MAX_MESSAGE)}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "invalid input"


def _exception_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc) or type(exc).__name__


def _main_module_name() -> str | None:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec is not None and spec.name else None


def _experiment_name(config_cls: type) -> str:
    module = config_cls.__module__
    if module == "__main__":
        module = _main_module_name() or os.path.splitext(os.path.basename(sys.argv[0] or ""))[0]
    return module.rpartition(".")[2] or config_cls.__name__


def _prog(config_cls: type) -> str | None:
    if config_cls.__module__ == "__main__":
        name = _main_module_name()
        if name:
            return f"python -m {name.removesuffix('.__main__')}"
    return None


def _default_text(field: dataclasses.Field) -> str | None:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return None
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


def _metavar(name: str, tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "{" + ",".join(str(c) for c in get_args(tp)) + "}"
    if origin is tuple:
        args = get_args(tp)
        element = {int: "INT", float: "FLOAT"}.get(args[0] if args else None, "X")
        return (
            f"{element},..."
            if len(args) == 2 and args[1] is Ellipsis
            else ",".join([element] * len(args))
        )
    if tp is int:
        return "INT"
    if tp is float:
        return "FLOAT"
    if tp is str and (
        name in ("data", "dev_data") or name.endswith(("_path", "_file", "_dir", "_data"))
    ):
        return "PATH"
    return name.upper()


def _field_comments(config_cls: type) -> dict[str, str]:
    """Trailing `# comments` on `name: type = default` lines of the class body, by field name."""
    try:
        source = inspect.getsource(config_cls)
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (OSError, TypeError, tokenize.TokenError, SyntaxError, IndentationError):
        return {}
    by_line: dict[int, list[tokenize.TokenInfo]] = {}
    for token in tokens:
        by_line.setdefault(token.start[0], []).append(token)
    comments = {}
    for line_tokens in by_line.values():
        significant = [t for t in line_tokens if t.type not in (tokenize.INDENT, tokenize.DEDENT)]
        if (
            len(significant) >= 3
            and significant[0].type == tokenize.NAME
            and significant[1].string == ":"
            and significant[-1].type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE)
        ):
            comment = next((t.string for t in significant if t.type == tokenize.COMMENT), None)
            if comment:
                comments[significant[0].string] = comment.lstrip("#").strip()
    return comments
