"""Reliability: every bad input is one line naming the problem, exit 2, and nothing stored.

Driven as a user would: each case runs a CLI in a subprocess against an empty MLflow store
(the autouse fixture's), then checks stderr, the exit code and that the store holds no run.
"""

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import reg_callbacks
from reg_callbacks import BiasVarianceCallback, GradientNormLogger, diagnose

HEADER = "name: x\nruns:\n  - experiment: "
GRIDS = {
    "code.yaml": HEADER + "!!python/object/apply:os.system ['echo pwned']\n",
    "unknown_experiment.yaml": HEADER + "nosuch\n",
    "unknown_param.yaml": HEADER + "regularization\n    params: {lamda: 0.7}\n",
    "bad_value.yaml": HEADER + "regularization\n    grid: {keep_prob: [0.5, 1.5]}\n",
    "wrong_type.yaml": HEADER + "initialization\n    params: {iterations: many}\n",
    "empty.yaml": "",
    "toy.yaml": HEADER + "toy\n",
}


def write_bad_files(folder: Path) -> None:
    zeros, labels = np.zeros((2, 2)), np.array([0, 1])
    np.savez(folder / "wrong_keys.npz", a=zeros)
    np.savez(
        folder / "nan.npz",
        x_train=np.array([[np.nan, 1.0], [0, 1]]),
        y_train=labels,
        x_dev=zeros,
        y_dev=labels,
    )
    np.savez(
        folder / "labels.npz", x_train=zeros, y_train=np.array([0, 2]), x_dev=zeros, y_dev=labels
    )
    np.savez(
        folder / "pickled.npz",
        x_train=np.array([{"a": 1}, None], dtype=object),
        y_train=labels,
        x_dev=zeros,
        y_dev=labels,
    )
    np.savez(
        folder / "rows.npz", x_train=np.zeros((3, 2)), y_train=labels, x_dev=zeros, y_dev=labels
    )
    np.savez(
        folder / "features.npz", x_train=zeros, y_train=labels, x_dev=np.zeros((2, 3)), y_dev=labels
    )
    (folder / "empty.npz").write_bytes(b"")
    (folder / "corrupt.h5").write_bytes(b"garbage" * 10)
    (folder / "data.txt").write_text("1,2\n")
    (folder / "inf.csv").write_text("x1,x2,y,split\n1,inf,0,train\n1,2,1,dev\n")
    for name, text in GRIDS.items():
        (folder / name).write_text(text)


# (command, words the message must contain)
CASES = [
    (["experiments.initialization", "--init", "bogus"], ["init", "zeros"]),
    (["experiments.initialization", "--learning-rate", "abc"], ["learning_rate", "number"]),
    (["experiments.initialization", "--iterations", "2.5"], ["iterations", "integer"]),
    (["experiments.initialization", "--hidden", "10,-5"], ["hidden"]),
    (["experiments.initialization", "--lerning-rate", "0.1"], ["--learning-rate"]),
    (["experiments.regularization", "--keep-prob", "0"], ["keep_prob", "(0, 1]"]),
    (["experiments.regularization", "--keep-prob", "1.5"], ["keep_prob", "1.5"]),
    (["experiments.regularization", "--lambd", "-1"], ["lambd", ">= 0"]),
    (["experiments.initialization", "--dev-data", "nan.npz"], ["dev_data needs data"]),
    (["experiments.initialization", "--data", "missing.npz"], ["not found", "missing.npz"]),
    (["experiments.initialization", "--data", "empty.npz"], ["empty.npz", "np.savez"]),
    (["experiments.initialization", "--data", "wrong_keys.npz"], ["keys found: a", "x_train"]),
    (["experiments.initialization", "--data", "nan.npz"], ["NaN/inf", "x_train"]),
    (["experiments.initialization", "--data", "inf.csv"], ["NaN/inf"]),
    (["experiments.initialization", "--data", "labels.npz"], ["0/1 labels", "2"]),
    (["experiments.initialization", "--data", "pickled.npz"], ["Python objects", "not loaded"]),
    (["experiments.initialization", "--data", "rows.npz"], ["3 rows", "2"]),
    (["experiments.initialization", "--data", "features.npz"], ["features"]),
    (["experiments.initialization", "--data", "data.txt"], ["unsupported", ".npz"]),
    (["experiments.initialization", "--data", "corrupt.h5"], ["HDF5"]),
    (["experiments.sweep", "--grid", "code.yaml"], ["not a plain YAML", "python/object"]),
    (["experiments.sweep", "--grid", "unknown_experiment.yaml"], ["unknown experiment", "recipe"]),
    (["experiments.sweep", "--grid", "unknown_param.yaml"], ["lamda", "lambd"]),
    (["experiments.sweep", "--grid", "bad_value.yaml"], ["keep_prob", "1.5"]),
    (["experiments.sweep", "--grid", "wrong_type.yaml"], ["iterations", "many"]),
    (["experiments.sweep", "--grid", "empty.yaml"], ["name", "runs"]),
    (["experiments.sweep", "--grid", "missing.yaml"], ["not found"]),
    (["experiments.sweep", "--set", "lambd=-1", "--experiment", "regularization"], ["lambd"]),
    (["experiments.sweep", "--workers", "0"], ["--workers", ">= 1"]),
    (["experiments.sweep", "--preset", "nosuch"], ["unknown preset", "course"]),
    # Values every config fails on at run time are refused when planned (--dry-run too).
    (["experiments.toy", "--seed", "-1"], ["seed", "[0, 4294967295]"]),
    (["experiments.toy", "--seed", "4294967296"], ["seed", "4294967296"]),
    (["experiments.toy", "--lr", "inf"], ["lr", "finite"]),
    (["experiments.toy", "--hidden", "100000000000"], ["hidden", "100000"]),
    (["experiments.sweep", "--grid", "toy.yaml", "--set", "lr=inf", "--dry-run"], ["finite"]),
    (["experiments.sweep", "--grid", "toy.yaml", "--set", "seed=-1", "--dry-run"], ["seed"]),
    (
        [
            "experiments.initialization",
            "--iterations",
            "10",
            "--tracking-uri",
            "sqlite:////proc/no/such/dir/mlflow.db",
        ],
        ["/proc/no"],
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("command", "words"), CASES, ids=[" ".join(c[0][1:]) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_stored(tmp_path, command, words):
    write_bad_files(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    store = tmp_path / "mlflow.db"
    if store.exists():
        with sqlite3.connect(store) as db:
            assert db.execute("select count(*) from runs").fetchone()[0] == 0


STORES = {  # a tracking store a new user might name, which cannot work
    "not a database": ("sqlite:///notes.db", "not an SQLite database"),
    "unknown scheme": ("foo://x", "unknown tracking URI scheme 'foo'"),
    "a directory": ("sqlite:///folder", "is a directory"),
}


def write_bad_stores(folder: Path) -> None:
    (folder / "notes.db").write_text("my notes\n")
    (folder / "folder").mkdir()


@pytest.mark.parametrize("command", ["experiments.toy", "experiments.sweep"])
@pytest.mark.parametrize("store", STORES)
def test_a_store_that_cannot_work_is_refused_at_once(tmp_path, command, store):
    uri, words = STORES[store]
    write_bad_stores(tmp_path)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", command, "--tracking-uri", uri],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert words in result.stderr
    assert seconds < 10  # before TensorFlow or MLflow is imported; a directory took ~105 s
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "notes.db"]
    assert (tmp_path / "notes.db").read_text() == "my notes\n"


def test_the_library_refuses_a_store_that_cannot_work_before_a_run(tmp_path):
    from experiments import toy

    write_bad_stores(tmp_path)
    for uri, words in STORES.values():
        with pytest.raises(ValueError, match=words):
            toy.run(toy.Config(model="centroid"), tracking_uri=uri)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "notes.db"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: diagnose(0.1, 1.5), "dev_error must be a fraction"),
        (lambda: diagnose(float("nan"), 0.1), "train_error must be a finite"),
        (lambda: BiasVarianceCallback((np.ones((2, 1)), np.ones(2)), None), "dev_data"),
        (lambda: GradientNormLogger(np.ones(3)), "probe_data"),
        (lambda: reg_callbacks.gradient_check(None, None, None), "model must be a keras.Model"),
    ],
    ids=["diagnose-range", "diagnose-nan", "callback-pair", "probe-pair", "check-model"],
)
def test_library_api_rejects_bad_arguments_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()
