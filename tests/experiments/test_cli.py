"""experiments.harness.cli: values -> Config coercion, flags, and `main` driven as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from support import REPO

from experiments.harness.cli import config_from_dict, main, parse_args, print_summary


@dataclass(frozen=True)
class Config:
    variant: Literal["none", "l2", "dropout"] = "none"
    hidden: tuple[int, ...] = (20, 3)
    learning_rate: float = 0.3  # gradient-descent step size
    iterations: int = 30_000
    lambd: float = 0.7
    keep_prob: float = 0.86
    verbose: bool = False
    data: str | None = None

    def __post_init__(self):
        if not 0 < self.keep_prob <= 1:
            raise ValueError(f"keep_prob must be in (0, 1]; got {self.keep_prob}.")


# ---------------------------------------------------------------------------------------------
# config_from_dict


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("hidden", "20,3", (20, 3)),
        ("hidden", "(5, 2)", (5, 2)),
        ("hidden", [4, 4, 1], (4, 4, 1)),
        ("hidden", 7, (7,)),
        ("hidden", "", ()),
        ("learning_rate", 1, 1.0),
        ("learning_rate", "1e-3", 0.001),
        ("iterations", 3.0, 3),
        ("iterations", "30_000", 30_000),
        ("iterations", "3e4", 30_000),
        ("verbose", "yes", True),
        ("verbose", "off", False),
        ("verbose", True, True),
        ("variant", "l2", "l2"),
        ("data", "none", None),
        ("data", None, None),
        ("data", Path("x.npz"), "x.npz"),
        ("data", "d.csv", "d.csv"),
    ],
)
def test_values_are_coerced_to_the_field_type(key, value, expected):
    cfg = config_from_dict(Config, {key: value})
    assert getattr(cfg, key) == expected
    assert type(getattr(cfg, key)) is type(expected)


def test_defaults_fill_the_rest_and_dashes_name_fields():
    cfg = config_from_dict(Config, {"learning-rate": "0.1"})
    assert cfg == Config(learning_rate=0.1)
    assert config_from_dict(Config, {}) == Config()


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        (
            {"lamda": 1},
            [
                "unknown parameter 'lamda' for test_cli",
                "allowed: data, hidden, iterations, keep_prob, lambd, learning_rate, variant, "
                "verbose;",
                "did you mean 'lambd'?",
            ],
        ),
        ({"iterations": True}, ["iterations must be an integer; got True."]),
        ({"iterations": 1.5}, ["iterations must be an integer; got 1.5."]),
        ({"iterations": "many"}, ["iterations must be an integer; got 'many'."]),
        ({"learning_rate": True}, ["learning_rate must be a number; got True."]),
        ({"learning_rate": "fast"}, ["learning_rate must be a number; got 'fast'."]),
        (
            {"variant": "l3"},
            ["variant must be one of 'none', 'l2', 'dropout'; got 'l3'"],
        ),
        ({"variant": "dropuot"}, ["did you mean 'dropout'?"]),
        (
            {"hidden": "20,x"},
            ["hidden must be a comma-separated list of integers (e.g. '20,3'); got '20,x'."],
        ),
        ({"hidden": [2.5]}, ["hidden must be a comma-separated list of integers"]),
        ({"hidden": {"a": 1}}, ["hidden must be"]),
        ({"verbose": "maybe"}, ["verbose must be true or false; got 'maybe'."]),
        ({"verbose": 2}, ["verbose must be true or false; got 2."]),
        ({"data": 3}, ["data must be a string or none; got 3."]),
        ({"keep_prob": 1.5}, ["keep_prob must be in (0, 1]; got 1.5."]),
        ({"keep_prob": None}, ["keep_prob must be a number; got None."]),
    ],
)
def test_bad_values_name_the_field_the_value_and_what_is_allowed(values, fragments):
    with pytest.raises(ValueError) as info:
        config_from_dict(Config, values)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_unknown_parameters_name_the_experiment():
    with pytest.raises(ValueError, match="unknown parameter 'x' for regularization; allowed"):
        config_from_dict(Config, {"x": 1}, name="regularization")
    with pytest.raises(ValueError, match=r"unknown parameters 'a', 'b' for test_cli"):
        config_from_dict(Config, {"a": 1, "b": 2})


def test_required_fields_must_be_given():
    @dataclass(frozen=True)
    class Needs:
        size: int
        rate: float = 0.1

    assert config_from_dict(Needs, {"size": "3"}) == Needs(size=3)
    with pytest.raises(ValueError, match="missing required parameter.*size"):
        config_from_dict(Needs, {"rate": 1})


def test_fixed_length_tuples_and_other_unions():
    @dataclass(frozen=True)
    class Shapes:
        pair: tuple[int, float] = (1, 0.5)
        limit: int | str = 3

    assert config_from_dict(Shapes, {"pair": "2,3"}).pair == (2, 3.0)
    assert config_from_dict(Shapes, {"limit": "auto"}).limit == "auto"
    assert config_from_dict(Shapes, {"limit": "4"}).limit == 4
    with pytest.raises(ValueError, match="pair must be a comma-separated list of exactly 2"):
        config_from_dict(Shapes, {"pair": [1, 2, 3]})


# ---------------------------------------------------------------------------------------------
# parse_args


def test_parse_args_defaults():
    assert parse_args(Config, []) == (Config(), None)


def test_parse_args_reads_every_kind_of_flag():
    cfg, uri = parse_args(
        Config,
        [
            "--variant",
            "l2",
            "--hidden",
            "5,2",
            "--learning-rate",
            "0.1",
            "--iterations=100",
            "--keep-prob",
            "1",
            "--verbose",
            "--data",
            "d.npz",
            "--tracking-uri",
            "sqlite:///x.db",
        ],
    )
    assert cfg == Config(
        variant="l2",
        hidden=(5, 2),
        learning_rate=0.1,
        iterations=100,
        keep_prob=1.0,
        verbose=True,
        data="d.npz",
    )
    assert uri == "sqlite:///x.db"
    assert parse_args(Config, ["--verbose", "--no-verbose"])[0].verbose is False
    assert parse_args(Config, ["--data", "none"])[0].data is None


def test_parse_args_bad_value_raises_value_error():
    with pytest.raises(ValueError, match="learning_rate must be a number; got 'abc'"):
        parse_args(Config, ["--learning-rate", "abc"])


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--lamda", "1"], "error: unrecognized arguments: --lamda 1 (did you mean --lambd?)"),
        (["--learning-rate"], "error: argument --learning-rate: expected one argument"),
        (["positional"], "error: unrecognized arguments: positional"),
        (
            ["--learn", "0.1"],
            "error: unrecognized arguments: --learn 0.1 (did you mean --learning-rate?)",
        ),  # no abbreviations
    ],
)
def test_argparse_errors_are_one_line_and_exit_2(capsys, argv, fragment):
    with pytest.raises(SystemExit) as info:
        parse_args(Config, argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [fragment]


def test_help_lists_flags_choices_defaults_and_field_comments(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(Config, ["--help"], prog="python -m demo")
    assert info.value.code == 0
    out = capsys.readouterr().out
    for fragment in [
        "usage: python -m demo",
        "experiments.harness.cli: values -> Config coercion",  # module docstring, first paragraph
        "--variant {none,l2,dropout}",
        "--hidden INT,...",
        "(default: 20,3)",
        "--learning-rate FLOAT",
        "gradient-descent step size (default: 0.3)",
        "--keep-prob FLOAT",
        "--verbose, --no-verbose",
        "--data PATH",
        "--tracking-uri URI",
    ]:
        assert fragment in out, fragment


# ---------------------------------------------------------------------------------------------
# main, in process


def _run_ok(cfg, tracking_uri=None):
    return {
        "train_error": 0.0512345,
        "dev": {"error": 0.1},
        "label": "high variance",
        "uri": tracking_uri,
    }


def test_main_runs_and_prints_the_summary(capsys):
    main(Config, _run_ok, ["--tracking-uri", "file:/tmp/x"])
    out = capsys.readouterr().out
    for fragment in ["train_error", "0.05123", "dev/error", "high variance", "file:/tmp/x"]:
        assert fragment in out


def test_main_hands_the_recording_flags_on_only_when_given(capsys):
    calls = []

    def run(cfg, **where):
        calls.append(where)

    main(Config, run, [])
    main(Config, run, ["--no-log-model"])
    main(Config, run, ["--system-metrics", "--log-model"])
    main(Config, run, ["--no-step-images"])
    assert calls == [
        {"tracking_uri": None},
        {"tracking_uri": None, "log_model": False},
        {"tracking_uri": None, "log_model": True, "system_metrics": True},
        {"tracking_uri": None, "step_images": False},
    ]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            ValueError("data.npz: 'y_train' must hold 0/1 labels\nfound 2"),
            "data.npz: 'y_train' must hold 0/1 labels found 2",
        ),
        (FileNotFoundError("data file not found: d.npz"), "data file not found: d.npz"),
        (
            FileNotFoundError(2, "No such file or directory", "d.npz"),
            "No such file or directory: d.npz",
        ),
    ],
)
def test_main_turns_input_errors_inside_run_into_one_line(capsys, error, expected):
    def run(cfg, tracking_uri=None):
        raise error

    with pytest.raises(SystemExit) as info:
        main(Config, run, [])
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {expected}"]


def test_main_validation_error_and_traceback_flag(capsys):
    with pytest.raises(SystemExit) as info:
        main(Config, _run_ok, ["--keep-prob", "1.5"])
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: keep_prob must be in (0, 1]; got 1.5.\n"
    with pytest.raises(ValueError, match="keep_prob"):
        main(Config, _run_ok, ["--keep-prob", "1.5", "--traceback"])


def test_main_interrupted(capsys):
    def run(cfg, tracking_uri=None):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as info:
        main(Config, run, [])
    assert info.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_main_lets_programming_errors_through():
    def run(cfg, tracking_uri=None):
        raise TypeError("a bug")

    with pytest.raises(TypeError, match="a bug"):
        main(Config, run, [])


def test_print_summary_plain_values(capsys):
    print_summary({"n": 3, "ok": True, "hidden": (20, 3), "none": None})
    out = capsys.readouterr().out
    for fragment in ["n", "3", "True", "20, 3", "None"]:
        assert fragment in out


# ---------------------------------------------------------------------------------------------
# main, as a user runs it

DUMMY_EXPERIMENT = '''
"""A dummy experiment: reports a fake error.

Run: python -m dummy_experiment --variant l2
"""

from dataclasses import dataclass
from typing import Literal

from experiments.harness.cli import main


@dataclass(frozen=True)
class Config:
    variant: Literal["none", "l2", "l1", "dropout", "early_stopping"] = "none"
    hidden: tuple[int, ...] = (20, 3)
    learning_rate: float = 0.3
    lambd: float = 0.7
    keep_prob: float = 0.86
    interrupt: bool = False
    data: str | None = None  # path to the user's data file
    dev_data: str | None = None

    def __post_init__(self):
        if not 0 < self.keep_prob <= 1:
            raise ValueError(f"keep_prob must be in (0, 1]; got {self.keep_prob}.")


def run(cfg: Config, tracking_uri: str | None = None) -> dict:
    if cfg.interrupt:
        raise KeyboardInterrupt
    if cfg.data is not None:
        from experiments.harness.datasets import load_data

        load_data(cfg.data, cfg.dev_data)
    return {"train_error": 0.05, "dev_error": 0.125, "variant": cfg.variant}


if __name__ == "__main__":
    main(Config, run)
'''


@pytest.fixture
def experiment(tmp_path):
    (tmp_path / "dummy_experiment.py").write_text(textwrap.dedent(DUMMY_EXPERIMENT))
    (tmp_path / "not_a_zip.npz").write_bytes(b"garbage")
    (tmp_path / "data.txt").write_text("x,y\n1,0\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dummy_experiment", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def test_cli_success(experiment):
    result = experiment("--variant", "l2", "--hidden", "5,2")
    assert result.returncode == 0, result.stderr
    assert "dev_error" in result.stdout and "0.125" in result.stdout and "l2" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--learning-rate", "abc"], "learning_rate must be a number; got 'abc'."),
        (["--lamda", "1"], "unrecognized arguments: --lamda 1 (did you mean --lambd?)"),
        (["--keep-prob", "1.5"], "keep_prob must be in (0, 1]; got 1.5."),
        (["--variant", "l3"], "variant must be one of 'none', 'l2', 'l1'"),
        (["--hidden", "20,x"], "hidden must be a comma-separated list of integers"),
        (["--data", "missing.npz"], "data file not found: missing.npz"),
        (["--data", "not_a_zip.npz"], "not_a_zip.npz: not an .npz archive"),
        (["--data", "data.txt"], "unsupported file type"),
        (
            ["--log-model=yes"],
            "argument --log-model/--no-log-model: ignored explicit argument 'yes'",
        ),
        (["--system-metric"], "(did you mean --system-metrics?)"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(experiment, args, fragment):
    result = experiment(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_help(experiment):
    result = experiment("--help")
    assert result.returncode == 0
    for fragment in [
        "usage: python -m dummy_experiment",
        "A dummy experiment: reports a fake error.",
        "Run: python -m dummy_experiment --variant l2",
        "--variant {none,l2,l1,dropout,early_stopping}",
        "--hidden INT,...",
        "--learning-rate FLOAT",
        "--keep-prob FLOAT",
        "--interrupt, --no-interrupt",
        "--data PATH",
        "path to the user's data file",
        "--dev-data PATH",
        "--tracking-uri URI",
        "--log-model, --no-log-model",
        "--system-metrics",
    ]:
        assert fragment in result.stdout, fragment


def test_cli_interrupted(experiment):
    result = experiment("--interrupt")
    assert result.returncode == 130
    assert result.stderr.strip() == "interrupted"


def test_modules_import_fast_without_tensorflow():
    code = textwrap.dedent(
        """
        import json, sys, time
        start = time.perf_counter()
        import experiments.harness.cli, experiments.harness.datasets
        elapsed = time.perf_counter() - start
        heavy = ["tensorflow", "keras", "mlflow", "sklearn", "scipy", "h5py"]
        print(json.dumps({"seconds": elapsed, "loaded": [m for m in heavy if m in sys.modules]}))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["loaded"] == []
    assert report["seconds"] < 1.0
