"""The sweep's plan: read a grid file, expand it, validate every config, hash it.

Pure Python plus PyYAML: no TensorFlow, no MLflow, no scikit-learn (importing
`sklearn.model_selection` alone costs ~2 s here, the whole `--dry-run` budget), so
`--dry-run` and a refused grid file answer at once.

A grid file is plain YAML, read with `yaml.safe_load` (no `!!python/...` tags):

    name: course                  # the sweep's name: MLflow experiment "sweep-course"
    description: ...              # optional
    summary: course.csv           # optional; inside the output directory
    runs:
      - experiment: initialization   # a name from experiments.harness.registry
        params: {iterations: 15000}  # fixed values
        grid: {init: [zeros, he], seed: [1, 2]}   # lists crossed: 4 configs
      - experiment: regularization
        grid:                        # a list of grids: their union, as in ParameterGrid
          - {variant: [none]}
          - {variant: [l2], lambd: [0.1, 0.7]}

Every config is built with `config_from_dict`, the CLI's own coercion and checks, so a
value the experiment's command line rejects is rejected here too, before anything runs.
Relative data paths are relative to the grid file.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.harness import registry
from experiments.harness.checks import shown
from experiments.harness.cli import config_from_dict
from experiments.harness.tracking_store import clip

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
DEFAULT_PRESET = "course"
TOP_LEVEL_KEYS = ("name", "description", "summary", "runs")
# Bounds on what a grid file can make the planner do (README, "Limits"): every config is
# validated and hashed before anything runs, ~1 ms each here, and each becomes an MLflow run.
MAX_CONFIGS = 10_000
MAX_GRID_FILE_BYTES = 1_000_000
MAX_GRID_VALUES = 100_000  # values in the parsed file, each alias counted at every use
BLOCK_KEYS = ("experiment", "params", "grid")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class PlannedConfig:
    """One validated config of the sweep.

    Attributes:
        index: 1-based position in the plan.
        experiment: Registry name of the experiment module.
        params: Every Config field (defaults included), as `dataclasses.asdict` gives them.
        config_hash: Stable hash of the experiment name and `params`.
        varied: The fields that differ between this experiment's configs in the plan.
    """

    index: int
    experiment: str
    params: dict
    config_hash: str
    varied: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The varied params as `key=value` pairs, e.g. "init=he seed=1"."""
        return " ".join(f"{key}={format_value(value)}" for key, value in self.varied.items())


@dataclass(frozen=True)
class Plan:
    name: str
    source: str  # "preset course" or the grid file's path
    description: str
    summary_file: str  # relative to the output directory
    configs: tuple[PlannedConfig, ...]
    duplicates: int = 0  # configs given twice in the grid, merged

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment holding the sweep's parent and child runs."""
        return f"sweep-{self.name}"

    def experiments(self) -> list[str]:
        return list(dict.fromkeys(config.experiment for config in self.configs))


# ---------------------------------------------------------------------------------------------
# Grid files


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    names = preset_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ValueError(f"unknown preset {shown(name)}; choose from {', '.join(names)}{hint}")
    return PRESETS_DIR / f"{name}.yaml"


def read_grid_file(path: str | os.PathLike) -> dict:
    """Parse a grid file with `yaml.safe_load`; ValueError naming the file on any problem."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise ValueError(f"grid file not found: {path}")
    if not path.is_file():
        raise ValueError(f"grid file is not a file: {path}")
    if path.stat().st_size > MAX_GRID_FILE_BYTES:
        raise ValueError(
            f"grid file {path} is {path.stat().st_size} bytes; a grid file is at most "
            f"{MAX_GRID_FILE_BYTES} bytes (write the alternatives, the sweep crosses them)."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read grid file {path}: {exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValueError(f"{path}{where}: not a plain YAML grid file: {problem}") from None
    if not isinstance(document, dict):
        raise ValueError(
            f"{path}: a grid file is a mapping with 'name' and 'runs'; "
            f"got {type(document).__name__}."
        )
    if _values_over(document, MAX_GRID_VALUES):
        raise ValueError(
            f"{path}: the grid file expands to more than {MAX_GRID_VALUES} values (YAML "
            "aliases repeating aliases?); write the alternatives out."
        )
    return document


def _values_over(document: Any, limit: int) -> bool:
    """Whether `document` holds more than `limit` values, counting each alias's every use
    (what expanding it would make); stops counting at `limit`."""
    count, stack = 0, [document]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# ---------------------------------------------------------------------------------------------
# Expansion


def parameter_grid(grid: Mapping | Sequence[Mapping]) -> Iterator[dict]:
    """The dicts of scikit-learn's `ParameterGrid(grid)`, in the same order.

    Keys of each grid are sorted and their value lists crossed; a list of grids yields each
    grid's configs in turn. (Re-implemented in six lines because importing scikit-learn
    costs ~2 s, more than the whole `--dry-run` budget; a test checks the two agree.)
    """
    for one in [grid] if isinstance(grid, Mapping) else grid:
        items = sorted(one.items())
        if not items:
            yield {}
            continue
        keys, values = zip(*items, strict=True)
        for combination in itertools.product(*values):
            yield dict(zip(keys, combination, strict=True))


def parse_set(assignments: Sequence[str]) -> dict[str, list[str]]:
    """`["seed=1,2,3", "hidden=20,3;40,6"]` -> `{"seed": ["1","2","3"], "hidden": [...]}`.

    Alternatives are separated by commas, or by semicolons when the value holds one (for
    list-valued params such as `hidden`).
    """
    values: dict[str, list[str]] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--set takes key=value[,value...]; got {assignment!r}.")
        items = [item.strip() for item in text.split(";" if ";" in text else ",")]
        if any(item == "" for item in items):
            raise ValueError(f"--set {key}: empty value in {text!r}.")
        values[key] = items
    return values


def build_plan(
    document: Mapping,
    *,
    source: str,
    base_dir: str | os.PathLike,
    overrides: Mapping[str, list[str]] | None = None,
    only: Sequence[str] = (),
) -> Plan:
    """Expand and validate a parsed grid file.

    Args:
        document: The parsed grid file.
        source: Where it came from, for messages ("preset course", a path).
        base_dir: Relative data paths in the grid file are resolved against it.
        overrides: `--set` values: each replaces that key's values in every block whose
            Config has the key; a key no selected block has is an error.
        only: `--experiment` names; keep only their blocks.

    Raises:
        ValueError: one line naming the file, the block and the problem.
    """
    overrides = dict(overrides or {})
    _check_keys(document, TOP_LEVEL_KEYS, source, "the grid file")
    name = document.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"{source}: 'name' must be letters, digits, '.', '_' or '-' (it names the MLflow "
            f"experiment and the summary file); got {shown(name)}."
        )
    description = document.get("description") or ""
    if not isinstance(description, str):
        raise ValueError(f"{source}: 'description' must be a string; got {shown(description)}.")
    summary_file = document.get("summary", f"{name}.csv")
    if not isinstance(summary_file, str) or not summary_file.strip().endswith(".csv"):
        raise ValueError(
            f"{source}: 'summary' must be a file name ending in .csv (the sweep writes only "
            f"its CSV there, never over the store or its log); got {clip(repr(summary_file))}."
        )
    blocks = document.get("runs")
    if not isinstance(blocks, list) or not blocks:
        raise ValueError(f"{source}: 'runs' must be a non-empty list of blocks with 'experiment'.")

    names = [_block_experiment(block, i, source) for i, block in enumerate(blocks)]
    for wanted in only:
        if wanted not in registry.EXPERIMENTS:
            raise ValueError(_unknown_experiment(wanted, "--experiment"))
        if wanted not in names:
            raise ValueError(
                f"--experiment {wanted}: {source} has no block for it; it has "
                f"{', '.join(dict.fromkeys(names))}."
            )
    selected = [i for i, name_ in enumerate(names) if not only or name_ in only]

    modules = {names[i]: load_experiment(names[i]) for i in selected}
    fields_of = {name_: _config_fields(module.Config) for name_, module in modules.items()}
    for key in overrides:
        if not any(key in fields_of[names[i]] for i in selected):
            allowed = sorted(set().union(*(fields_of[names[i]] for i in selected)))
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise ValueError(
                f"--set {key}: no selected experiment has a parameter {shown(key)}; "
                f"allowed: {', '.join(allowed)}{hint}"
            )

    _check_plan_size(blocks, selected, overrides, source)
    configs: list[tuple[str, dict, str]] = []
    for i in selected:
        block, experiment = blocks[i], names[i]
        where = f"{source}, runs[{i}] ({experiment})"
        config_cls = modules[experiment].Config
        fields = fields_of[experiment]
        params = _normalized(block.get("params") or {}, f"{where}: 'params'")
        grids = _grids(block.get("grid") or {}, where)
        params = {k: _resolve_path(k, v, base_dir) for k, v in params.items()}
        grids = [
            {k: [_resolve_path(k, v, base_dir) for v in vs] for k, vs in g.items()} for g in grids
        ]
        mine = {k: [_resolve_path(k, v, os.getcwd()) for v in vs] for k, vs in overrides.items()}
        mine = {k: vs for k, vs in mine.items() if k in fields}
        params = {k: v for k, v in params.items() if k not in mine}
        grids = [{**{k: vs for k, vs in g.items() if k not in mine}, **mine} for g in grids]
        for values in parameter_grid(grids):
            try:
                cfg = config_from_dict(config_cls, {**params, **values}, name=experiment)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            _check_input_files(cfg, where)
            asdict = dataclasses.asdict(cfg)
            configs.append((experiment, asdict, config_hash(experiment, asdict)))

    unique: dict[str, tuple[str, dict, str]] = {}
    for item in configs:
        unique.setdefault(item[2], item)
    planned = _with_varied(list(unique.values()))
    return Plan(
        name=name,
        source=source,
        description=description.strip(),
        summary_file=summary_file,
        configs=tuple(planned),
        duplicates=len(configs) - len(unique),
    )


def plan_from_args(
    *,
    preset: str | None,
    grid_file: str | None,
    overrides: Sequence[str] = (),
    only: Sequence[str] = (),
) -> Plan:
    """The plan for the command line's `--preset`/`--grid`, `--set` and `--experiment`."""
    if preset and grid_file:
        raise ValueError("give either --preset or --grid, not both.")
    path = Path(grid_file) if grid_file else preset_path(preset or DEFAULT_PRESET)
    document = read_grid_file(path)
    source = str(path) if grid_file else f"preset {path.stem}"
    if not grid_file and document.get("name") != path.stem:
        raise ValueError(f"{path}: a preset's name must be its file name {path.stem!r}.")
    return build_plan(
        document,
        source=source,
        base_dir=path.resolve().parent,
        overrides=parse_set(overrides),
        only=only,
    )


def load_experiment(name: str):
    """The experiment module; ValueError if the name is unknown or the module is missing."""
    try:
        return registry.load(name)
    except ModuleNotFoundError as exc:
        if exc.name != f"experiments.{name}":
            raise
        raise ValueError(
            f"experiment {shown(name)} is registered but experiments/{name}.py does not exist yet."
        ) from None


# ---------------------------------------------------------------------------------------------
# Hashes and MLflow param strings


def config_hash(experiment: str, params: Mapping) -> str:
    """sha256 of the experiment name and the canonical (sorted, JSON) params; 16 hex digits."""
    canonical = json.dumps(
        {"experiment": experiment, "params": params},
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def format_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


# ---------------------------------------------------------------------------------------------
# helpers


def _check_plan_size(blocks, selected, overrides: Mapping, source: str) -> None:
    """Refuse a plan of more than MAX_CONFIGS configs before expanding it."""
    total = 0
    for i in selected:
        where = f"{source}, runs[{i}]"
        grids = _grids(blocks[i].get("grid") or {}, where)
        for grid in grids:
            sizes = {k: len(v) for k, v in grid.items()}
            sizes.update({k: len(v) for k, v in overrides.items()})
            total += math.prod(sizes.values())
    if total > MAX_CONFIGS:
        raise ValueError(
            f"{source}: the grid crosses to {total} configs; the sweep plans at most "
            f"{MAX_CONFIGS} (each is validated, then an MLflow run): split it into sweeps."
        )


def _check_keys(mapping: Mapping, allowed: Sequence[str], source: str, what: str) -> None:
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise ValueError(
                f"{source}: unknown key {shown(key)} in {what}; allowed: {', '.join(allowed)}{hint}"
            )


def _block_experiment(block: Any, i: int, source: str) -> str:
    if not isinstance(block, dict):
        raise ValueError(
            f"{source}, runs[{i}]: a block is a mapping with 'experiment'; got {shown(block)}."
        )
    _check_keys(block, BLOCK_KEYS, f"{source}, runs[{i}]", "a block")
    name = block.get("experiment")
    if not isinstance(name, str):
        raise ValueError(
            f"{source}, runs[{i}]: 'experiment' must name an experiment; got {shown(name)}."
        )
    if name not in registry.EXPERIMENTS:
        raise ValueError(_unknown_experiment(name, f"{source}, runs[{i}]"))
    return name


def _unknown_experiment(name: str, where: str) -> str:
    close = difflib.get_close_matches(name, registry.EXPERIMENTS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return (
        f"{where}: unknown experiment {shown(name)}; choose from "
        f"{', '.join(registry.EXPERIMENTS)}{hint}"
    )


def _normalized(mapping: Any, where: str) -> dict:
    if not isinstance(mapping, dict):
        raise ValueError(f"{where} must be a mapping of parameter -> value; got {shown(mapping)}.")
    result = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise ValueError(f"{where}: parameter names must be strings; got {shown(key)}.")
        result[key.replace("-", "_")] = value
    return result


def _grids(grid: Any, where: str) -> list[dict]:
    grids = grid if isinstance(grid, list) else [grid]
    result = []
    for one in grids:
        one = _normalized(one, f"{where}: 'grid'")
        for key, values in one.items():
            if not isinstance(values, list) or not values:
                raise ValueError(
                    f"{where}: grid values are non-empty lists of alternatives; got {key}: "
                    f"{shown(values)} (write {key}: [{shown(values)}] or move it to 'params')."
                )
        result.append(one)
    return result or [{}]


def _config_fields(config_cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(config_cls) if f.init}


def _is_input_path(key: str) -> bool:
    return key in ("data", "dev_data") or key.endswith(("_data", "_file", "_path"))


def _resolve_path(key: str, value: Any, base_dir: str | os.PathLike) -> Any:
    if (
        not _is_input_path(key)
        or not isinstance(value, str)
        or value.lower() in ("", "none", "null")
    ):
        return value
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else Path(base_dir) / path)


def _check_input_files(cfg: Any, where: str) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if _is_input_path(f.name) and isinstance(value, str) and not os.path.isfile(value):
            raise ValueError(
                f"{where}: {f.name} file not found: {value} (relative paths in a grid file are "
                "relative to the grid file's folder)."
            )


def _with_varied(configs: list[tuple[str, dict, str]]) -> list[PlannedConfig]:
    by_experiment: dict[str, list[dict]] = {}
    for experiment, params, _ in configs:
        by_experiment.setdefault(experiment, []).append(params)
    varied_keys = {
        experiment: [
            key
            for key in all_params[0]
            if len({json.dumps(p[key], sort_keys=True, default=str) for p in all_params}) > 1
        ]
        for experiment, all_params in by_experiment.items()
    }
    return [
        PlannedConfig(
            index=i,
            experiment=experiment,
            params=params,
            config_hash=digest,
            varied={key: params[key] for key in varied_keys[experiment]},
        )
        for i, (experiment, params, digest) in enumerate(configs, start=1)
    ]
