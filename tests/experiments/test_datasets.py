"""Generators and user-file loaders of experiments.harness.datasets: round trips, bad input."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from sklearn.datasets import make_circles

from experiments.harness.datasets import (
    DataSplit,
    boundary_labels,
    course_circles,
    digits,
    flipped_boundary,
    load_data,
    noisy_moons,
)

RNG = np.random.default_rng(0)
X_TRAIN = RNG.normal(size=(12, 2))
Y_TRAIN = (np.arange(12) % 2).astype(np.int64)
X_DEV = RNG.normal(size=(6, 2))
Y_DEV = (np.arange(6) % 2).astype(np.int64)


def assert_split(data: DataSplit, *, n_features: int = 2) -> None:
    assert isinstance(data, DataSplit)
    assert data.x_train.dtype == data.x_dev.dtype == np.float32
    assert data.y_train.dtype == data.y_dev.dtype == np.float32
    assert data.x_train.shape == (len(data.y_train), n_features)
    assert data.x_dev.shape == (len(data.y_dev), n_features)
    assert data.y_train.shape[1:] == data.y_dev.shape[1:] == (1,)


def assert_same_data(data: DataSplit) -> None:
    assert_split(data)
    np.testing.assert_allclose(data.x_train, X_TRAIN, rtol=1e-6)
    np.testing.assert_array_equal(data.y_train[:, 0], Y_TRAIN)
    np.testing.assert_allclose(data.x_dev, X_DEV, rtol=1e-6)
    np.testing.assert_array_equal(data.y_dev[:, 0], Y_DEV)


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize(
    "names",
    [
        ("x_train", "y_train", "x_dev", "y_dev"),
        ("X_train", "Y_train", "X_test", "Y_test"),
        ("x_train", "y_train", "x_val", "y_val"),
    ],
)
def test_npz_round_trip(tmp_path, names):
    path = tmp_path / "data.npz"
    np.savez(path, **dict(zip(names, (X_TRAIN, Y_TRAIN, X_DEV, Y_DEV), strict=True)))
    data = load_data(path)
    assert_same_data(data)
    assert str(path) in data.source


def test_npz_course_label_layout_one_row(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x_train=X_TRAIN, y_train=Y_TRAIN[None, :], x_dev=X_DEV, y_dev=Y_DEV[:, None])
    assert_same_data(load_data(path))


def test_csv_one_file_with_split_column(tmp_path):
    rows = [[*x, y, "train"] for x, y in zip(X_TRAIN, Y_TRAIN, strict=True)]
    rows += [[*x, y, split] for x, y, split in zip(X_DEV, Y_DEV, ["dev", "test"] * 3, strict=True)]
    path = write_csv(tmp_path / "data.csv", ["x1", "x2", "label", "split"], rows)
    assert_same_data(load_data(path))


def test_csv_two_files(tmp_path):
    train = write_csv(
        tmp_path / "train.csv",
        ["x1", "x2", "y"],
        [[*x, y] for x, y in zip(X_TRAIN, Y_TRAIN, strict=True)],
    )
    dev = write_csv(
        tmp_path / "dev.csv",
        ["x1", "x2", "y"],
        [[*x, y] for x, y in zip(X_DEV, Y_DEV, strict=True)],
    )
    assert_same_data(load_data(train, dev))


def test_mat_course_keys(tmp_path):
    path = tmp_path / "data.mat"
    scipy.io.savemat(
        path, {"X": X_TRAIN, "y": Y_TRAIN[:, None], "Xval": X_DEV, "yval": Y_DEV[:, None]}
    )
    assert_same_data(load_data(path))


def test_h5_course_pair_images_are_flattened_and_scaled(tmp_path):
    rng = np.random.default_rng(1)
    train_x = rng.integers(0, 256, size=(4, 64, 64, 3), dtype=np.uint8)
    test_x = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    train_path, test_path = tmp_path / "train_catvnoncat.h5", tmp_path / "test_catvnoncat.h5"
    with h5py.File(train_path, "w") as f:
        f["train_set_x"] = train_x
        f["train_set_y"] = np.array([0, 1, 1, 0])
        f["list_classes"] = np.array([b"non-cat", b"cat"])
    with h5py.File(test_path, "w") as f:
        f["test_set_x"] = test_x
        f["test_set_y"] = np.array([1, 0])
        f["list_classes"] = np.array([b"non-cat", b"cat"])
    data = load_data(train_path, test_path)
    assert_split(data, n_features=64 * 64 * 3)
    assert data.n_features == 12288
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    np.testing.assert_allclose(data.x_train, train_x.reshape(4, -1) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(data.x_dev, test_x.reshape(2, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y_dev[:, 0], [1, 0])


def test_h5_single_file(tmp_path):
    path = tmp_path / "data.hdf5"
    with h5py.File(path, "w") as f:
        for name, array in zip(
            ("x_train", "y_train", "x_dev", "y_dev"), (X_TRAIN, Y_TRAIN, X_DEV, Y_DEV), strict=True
        ):
            f[name] = array
    assert_same_data(load_data(path))


def test_images_already_in_unit_range_are_not_rescaled(tmp_path):
    images = np.random.default_rng(2).random((6, 4, 4, 1))
    path = tmp_path / "images.npz"
    np.savez(path, x_train=images, y_train=Y_DEV, x_dev=images, y_dev=Y_DEV)
    data = load_data(path)
    np.testing.assert_allclose(data.x_train, images.reshape(6, 16), rtol=1e-6)


def test_multiclass_labels_are_int_vectors(tmp_path):
    path = tmp_path / "digits.npz"
    np.savez(
        path, x_train=X_TRAIN, y_train=np.arange(12) % 4, x_dev=X_DEV, y_dev=np.arange(6) % 3.0
    )
    data = load_data(path, task="multiclass")
    assert data.y_train.dtype == data.y_dev.dtype == np.int64
    assert data.y_train.shape == (12,) and data.y_dev.shape == (6,)


def test_fingerprint_identifies_the_data():
    a, b = noisy_moons(n_train=20, n_dev=10), noisy_moons(n_train=20, n_dev=10)
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 16 and int(a.fingerprint(), 16) >= 0
    x_changed = a.x_train.copy()
    x_changed[0, 0] += 1e-3
    changed = DataSplit(x_changed, a.y_train, a.x_dev, a.y_dev)
    assert changed.fingerprint() != a.fingerprint()
    assert noisy_moons(n_train=20, n_dev=10, seed=1).fingerprint() != a.fingerprint()


# ---------------------------------------------------------------------------------------------
# Malformed input: every case is one line naming the file and the problem


def _npz(**arrays):
    def write(tmp_path):
        path = tmp_path / "bad.npz"
        np.savez(path, **arrays)
        return path, None

    return write


def _good(**overrides):
    arrays = {"x_train": X_TRAIN, "y_train": Y_TRAIN, "x_dev": X_DEV, "y_dev": Y_DEV}
    arrays.update(overrides)
    return _npz(**arrays)


def _bytes(name, content):
    def write(tmp_path):
        path = tmp_path / name
        path.write_bytes(content)
        return path, None

    return write


def _truncated_npz(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=X_TRAIN, y_train=Y_TRAIN, x_dev=X_DEV, y_dev=Y_DEV)
    path.write_bytes(path.read_bytes()[:100])
    return path, None


def _npz_members(x_train_bytes):
    def write(tmp_path):
        path = tmp_path / "bad.npz"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("x_train.npy", x_train_bytes)
            for name in ("y_train", "x_dev", "y_dev"):
                archive.writestr(f"{name}.npy", b"\x93NUMPY")
        return path, None

    return write


def _mat_cells(tmp_path):
    path = tmp_path / "bad.mat"
    cells = np.array([[1, "a"]], dtype=object)
    scipy.io.savemat(path, {"X": cells, "y": [[1]], "Xval": [[1.0, 2.0]], "yval": [[0]]})
    return path, None


def _mat_v73(tmp_path):
    path = tmp_path / "big.mat"
    path.write_bytes(b"MATLAB 7.3 MAT-file".ljust(124, b" ") + b"\x00\x02IM" + bytes(512))
    return path, None


def _h5_text_x(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["x_train"] = np.array([b"a", b"b"])
        f["y_train"] = np.array([0, 1])
        f["x_dev"] = np.array([b"a", b"b"])
        f["y_dev"] = np.array([0, 1])
    return path, None


def _csv(text, name="bad.csv"):
    def write(tmp_path):
        path = tmp_path / name
        path.write_text(text)
        return path, None

    return write


def _csv_pair_with_split(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("x1,y,split\n1,0,train\n2,1,dev\n")
    dev = tmp_path / "dev.csv"
    dev.write_text("x1,y\n1,0\n")
    return train, dev


def _dev_features_differ(tmp_path):
    train = tmp_path / "train.npz"
    np.savez(train, x_train=X_TRAIN, y_train=Y_TRAIN)
    dev = tmp_path / "dev.npz"
    np.savez(dev, x_dev=np.ones((6, 3)), y_dev=Y_DEV)
    return train, dev


def _missing_file(tmp_path):
    return tmp_path / "nope.npz", None


def _directory(tmp_path):
    (tmp_path / "folder.npz").mkdir()
    return tmp_path / "folder.npz", None


def _with_nan(array, row):
    array = array.astype(float)
    array[row, 0] = np.nan
    return array


MALFORMED = {
    "missing file": (_missing_file, FileNotFoundError, ["data file not found", "nope.npz"]),
    "directory": (_directory, ValueError, ["folder.npz", "is a directory"]),
    "unsupported extension": (
        _bytes("data.txt", b"1,2\n"),
        ValueError,
        ["data.txt", "unsupported file type '.txt'", "supported: .npz, .csv, .mat, .h5, .hdf5"],
    ),
    "missing training keys": (
        _npz(a=X_TRAIN, b=Y_TRAIN),
        ValueError,
        [
            "bad.npz",
            "no training arrays",
            "keys found: a, b",
            "x_train/y_train",
            "case-insensitive",
        ],
    ),
    "missing dev keys": (
        _npz(x_train=X_TRAIN, y_train=Y_TRAIN),
        ValueError,
        ["no dev arrays", "keys found: x_train, y_train", "x_dev/y_dev", "second file"],
    ),
    "x without y": (
        _npz(x_train=X_TRAIN, x_dev=X_DEV, y_dev=Y_DEV),
        ValueError,
        ["found 'x_train' but not its partner 'y_train'"],
    ),
    "row count mismatch": (
        _good(y_train=Y_TRAIN[:-1]),
        ValueError,
        ["'x_train' has 12 rows but 'y_train' has 11", "samples must be rows"],
    ),
    "feature count mismatch": (
        _dev_features_differ,
        ValueError,
        ["train.npz", "2 features", "has 3", "dev.npz", "must match"],
    ),
    "empty x": (_good(x_train=np.empty((0, 2))), ValueError, ["'x_train' is empty"]),
    "empty y": (_good(y_dev=np.empty((0,))), ValueError, ["'y_dev' is empty"]),
    "nan in x": (
        _good(x_train=_with_nan(X_TRAIN, 3)),
        ValueError,
        ["'x_train' contains 1 NaN/inf", "row 3"],
    ),
    "inf in y": (
        _good(y_dev=np.array([0, 1, np.inf, 0, 1, 0])),
        ValueError,
        ["'y_dev' contains 1 NaN/inf", "row 2"],
    ),
    "labels not 0/1": (
        _good(y_train=np.where(Y_TRAIN == 0, -1, 1)),
        ValueError,
        ["'y_train' must hold 0/1 labels", "found -1, 1"],
    ),
    "y with two columns": (
        _good(y_train=np.ones((12, 2))),
        ValueError,
        ["'y_train' has shape (12, 2)", "shape (m,) or (m, 1)"],
    ),
    "object array is not unpickled": (
        _good(x_train=np.array([{"a": 1}] * 12, dtype=object)),
        ValueError,
        ["'x_train' holds Python objects (pickled)", "not loaded"],
    ),
    "not an npz": (
        _bytes("bad.npz", b"garbage" * 10),
        ValueError,
        ["not an .npz archive", "np.savez"],
    ),
    "truncated npz": (_truncated_npz, ValueError, ["not a readable .npz archive"]),
    "npz member not an array": (
        _npz_members(b"not an npy header"),
        ValueError,
        ["member 'x_train' is not a NumPy array"],
    ),
    "truncated npz member": (
        _npz_members(b"\x93NUMPY"),
        ValueError,
        ["cannot read array 'x_train'", "EOF"],
    ),
    "corrupt h5": (
        _bytes("bad.h5", b"\x00" * 64),
        ValueError,
        ["bad.h5", "not a readable HDF5 file"],
    ),
    "corrupt mat": (
        _bytes("bad.mat", b"\x01" * 64),
        ValueError,
        ["not a readable MATLAB .mat file"],
    ),
    "mat v7.3": (_mat_v73, ValueError, ["MATLAB v7.3 files are not supported", "-v7"]),
    "mat cell array": (_mat_cells, ValueError, ["'X' holds Python objects", "numeric array"]),
    "h5 text dataset": (_h5_text_x, ValueError, ["'x_train' holds bytes/text"]),
    "csv without header": (_csv("1,2,0\n3,4,1\n"), ValueError, ["first row must be a header"]),
    "csv without label column": (
        _csv("a,b,split\n1,2,train\n"),
        ValueError,
        ["no label column", "'y' or 'label'", "columns found: a, b, split"],
    ),
    "csv non-number": (
        _csv("x1,x2,y,split\n1,2,0,train\n1,abc,1,dev\n"),
        ValueError,
        ["line 3, column 'x2': 'abc' is not a number"],
    ),
    "csv ragged row": (
        _csv("x1,x2,y,split\n1,2,0,train\n1,dev\n"),
        ValueError,
        ["line 3 has 2 fields but the header has 4"],
    ),
    "csv without split column": (
        _csv("x1,y\n1,0\n"),
        ValueError,
        ["no 'split' column", "two files"],
    ),
    "csv bad split value": (
        _csv("x1,y,split\n1,0,train\n2,1,holdout\n"),
        ValueError,
        ["line 3: split must be train or dev", "'holdout'"],
    ),
    "csv without dev rows": (
        _csv("x1,y,split\n1,0,train\n"),
        ValueError,
        ["no rows with split=dev"],
    ),
    "csv split column in a pair": (_csv_pair_with_split, ValueError, ["has a 'split' column"]),
    "csv empty": (_csv(""), ValueError, ["is empty"]),
    "image values above 255": (
        _good(x_train=np.full((12, 2, 2), 300.0), x_dev=np.ones((6, 2, 2))),
        ValueError,
        ["image values must be in [0, 1] or [0, 255]", "300"],
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_input_is_one_clear_line(tmp_path, case):
    write, error, fragments = MALFORMED[case]
    path, dev_path = write(tmp_path)
    with pytest.raises(error) as info:
        load_data(path, dev_path)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        (np.arange(12) * 0.5, "'y_train' must hold integer class labels 0..K-1"),
        (np.arange(12) - 1, "found -1, 0, 1"),
    ],
)
def test_multiclass_labels_must_be_non_negative_integers(tmp_path, labels, fragment):
    path = tmp_path / "data.npz"
    np.savez(path, x_train=X_TRAIN, y_train=labels, x_dev=X_DEV, y_dev=Y_DEV)
    with pytest.raises(ValueError, match="multi-class") as info:
        load_data(path, task="multiclass")
    assert fragment in str(info.value)


def test_unknown_task_is_rejected(tmp_path):
    with pytest.raises(
        ValueError, match="task must be one of 'binary', 'multiclass'; got 'regression'"
    ):
        load_data(tmp_path / "x.npz", task="regression")


# ---------------------------------------------------------------------------------------------
# Generators


def test_course_circles_reproduces_the_course_and_restores_the_global_rng():
    np.random.seed(123)
    before = np.random.get_state()
    data = course_circles()
    after = np.random.get_state()
    assert before[0] == after[0] and before[2:] == after[2:]
    np.testing.assert_array_equal(before[1], after[1])

    assert_split(data)
    assert data.x_train.shape == (300, 2) and data.x_dev.shape == (100, 2)
    assert set(np.unique(data.y_train)) == {0.0, 1.0}
    np.random.seed(1)
    x_course, y_course = make_circles(n_samples=300, noise=0.05)
    np.random.seed(2)
    x_dev_course, _ = make_circles(n_samples=100, noise=0.05)
    np.testing.assert_array_equal(data.x_train, x_course.astype(np.float32))
    np.testing.assert_array_equal(data.y_train[:, 0], y_course)
    np.testing.assert_array_equal(data.x_dev, x_dev_course.astype(np.float32))
    assert course_circles().fingerprint() == data.fingerprint()


def test_noisy_moons_is_deterministic_and_sized_like_the_course():
    data = noisy_moons()
    assert_split(data)
    assert (len(data.x_train), len(data.x_dev)) == (211, 200)
    assert noisy_moons().fingerprint() == data.fingerprint()
    assert noisy_moons(seed=1).fingerprint() != data.fingerprint()
    np.testing.assert_array_equal(noisy_moons(n_train=50).x_dev, data.x_dev)


@pytest.mark.parametrize("boundary", ["circle", "sine"])
@pytest.mark.parametrize("flip_prob", [0.0, 0.1, 0.3])
def test_flipped_boundary_bayes_error_is_flip_prob(flip_prob, boundary):
    data = flipped_boundary(n_train=100_000, n_dev=100_000, flip_prob=flip_prob, boundary=boundary)
    assert data.bayes_error == flip_prob
    for x, y in ((data.x_train, data.y_train), (data.x_dev, data.y_dev)):
        clean = boundary_labels(x, boundary)
        assert abs(np.mean(y[:, 0] != clean) - flip_prob) < 0.01
        assert abs(clean.mean() - 0.5) < 0.02  # the boundary halves the square


def test_flipped_boundary_is_deterministic_and_nested():
    small = flipped_boundary(n_train=100, n_dev=50, flip_prob=0.2, seed=3)
    large = flipped_boundary(n_train=300, n_dev=50, flip_prob=0.2, seed=3)
    assert flipped_boundary(n_train=100, n_dev=50, flip_prob=0.2, seed=3).fingerprint() == (
        small.fingerprint()
    )
    np.testing.assert_array_equal(large.x_train[:100], small.x_train)
    np.testing.assert_array_equal(large.y_train[:100], small.y_train)
    np.testing.assert_array_equal(large.x_dev, small.x_dev)
    assert flipped_boundary(n_train=100, n_dev=50, flip_prob=0.2, seed=4).fingerprint() != (
        small.fingerprint()
    )


def test_digits_stratified_scaled_images():
    data = digits(n_train=500, seed=0)
    assert data.x_train.shape == (500, 8, 8, 1) and data.x_dev.shape == (1297, 8, 8, 1)
    assert data.n_features == 64 and data.input_shape == (8, 8, 1)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    counts = np.bincount(data.y_train, minlength=10)
    assert counts.min() >= 48 and counts.max() <= 52
    assert digits(n_train=500, seed=0).fingerprint() == data.fingerprint()
    assert digits(n_train=500, seed=1).fingerprint() != data.fingerprint()
    flat = digits(n_train=100, n_dev=50, flat=True)
    assert flat.x_train.shape == (100, 64) and flat.x_dev.shape == (50, 64)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: flipped_boundary(flip_prob=0.6), "flip_prob must be in [0, 0.5]; got 0.6."),
        (lambda: flipped_boundary(boundary="square"), "boundary must be one of 'circle', 'sine'"),
        (lambda: noisy_moons(n_train=0), "n_train must be a positive integer; got 0."),
        (lambda: noisy_moons(noise=-1), "noise must be a finite number >= 0; got -1."),
        (lambda: digits(n_train=5), "n_train must be an integer in [10, 1787]; got 5."),
        (lambda: digits(n_train=1700, n_dev=200), "n_dev must be None or an integer in [10, 97]"),
    ],
)
def test_generator_arguments_are_validated(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


def test_paths_may_be_strings_or_pathlike(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x_train=X_TRAIN, y_train=Y_TRAIN, x_dev=X_DEV, y_dev=Y_DEV)
    assert load_data(os.fspath(path)).fingerprint() == load_data(path).fingerprint()
