"""Data for the experiments: generated sets, a bundled one, and loaders for the user's files.

Everything returns a `DataSplit`: samples are rows, `x` is float32, `y` is float32 of shape
(m, 1) for binary tasks or int64 class labels of shape (m,) for multi-class ones.

Generators (deterministic given their seeds; nothing is downloaded):

- `course_circles()`: the course's initialization data, 300 train / 100 dev points.
- `noisy_moons()`: two interleaved half-moons with noise, 211 train / 200 dev like the
  course's regularization data by default; an unregularized 2-20-3-1 net overfits it a little.
- `flipped_boundary()`: labels from a fixed circle (or sine) boundary, each flipped with
  probability `flip_prob`, so the Bayes error is exactly `flip_prob`.
- `digits()`: scikit-learn's bundled 8x8 digits, scaled to [0, 1], stratified split.

User files, `load_data(path, dev_path=None, task="binary")`, chosen by extension:

- `.npz` (`np.savez`): arrays `x_train, y_train` with `x_dev, y_dev` (or `x_test, y_test`,
  `x_val, y_val`). Names are case-insensitive, so `X_train` works too. Pickled object
  arrays are refused, never unpickled.
- `.csv`: a header row naming the columns; the label column is called `y` or `label`, every
  other column is a numeric feature. Either one file with a `split` column whose values
  are `train` or `dev` (`test`, `val` also mean dev), or two files, train and dev, given
  as `path` and `dev_path`.
- `.mat` (MATLAB up to v7): the course's `X, y, Xval, yval`, or the `.npz` names.
- `.h5` / `.hdf5`: the course's pair, `train_*.h5` holding `train_set_x, train_set_y` and
  `test_*.h5` holding `test_set_x, test_set_y`, given as `path` and `dev_path`; or one
  file with the `.npz` names as root datasets.

With two files, the dev file may use the dev names or the train names. Images (x with more
than two dimensions) are flattened for dense nets and, when their values exceed 1, divided
by 255. Every malformed input raises one-line `ValueError` (or `FileNotFoundError`) that
names the file, the problem and what is accepted.

No TensorFlow here; scikit-learn, SciPy and h5py are imported only when needed.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "DataSplit",
    "course_circles",
    "digits",
    "flipped_boundary",
    "load_data",
    "noisy_moons",
]

SUPPORTED_EXTENSIONS = (".npz", ".csv", ".mat", ".h5", ".hdf5")
TASKS = ("binary", "multiclass")

_TRAIN_NAMES = (("x_train", "y_train"), ("x", "y"), ("train_set_x", "train_set_y"))
_DEV_NAMES = (
    ("x_dev", "y_dev"),
    ("x_test", "y_test"),
    ("x_val", "y_val"),
    ("xval", "yval"),
    ("xtest", "ytest"),
    ("test_set_x", "test_set_y"),
)
_TRAIN_CONVENTIONS = "x_train/y_train (or X/y, or the course's train_set_x/train_set_y)"
_DEV_CONVENTIONS = (
    "x_dev/y_dev (or x_test/y_test, x_val/y_val, Xval/yval, the course's test_set_x/test_set_y)"
)
_LABEL_COLUMNS = ("y", "label")
_SPLIT_VALUES = {"train": "train", "dev": "dev", "test": "dev", "val": "dev", "validation": "dev"}
_MAX_LISTED = 20


@dataclass(frozen=True, eq=False)
class DataSplit:
    """Train and dev arrays, samples as rows.

    Attributes:
        x_train: float32, shape (m, ...) — (m, n_features) for loaded files.
        y_train: float32 (m, 1) for binary tasks; int64 (m,) class labels for multi-class.
        x_dev: Like `x_train`.
        y_dev: Like `y_train`.
        bayes_error: The exact Bayes error when the generator knows it, else `None`.
        source: Where the data came from (a generator call or file paths), for tagging.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_dev: np.ndarray
    y_dev: np.ndarray
    bayes_error: float | None = None
    source: str = ""

    @property
    def n_features(self) -> int:
        """Inputs per sample (the product of the per-sample shape for images)."""
        return math.prod(self.x_train.shape[1:])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The per-sample shape of x, e.g. (2,) or (8, 8, 1)."""
        return tuple(self.x_train.shape[1:])

    def fingerprint(self) -> str:
        """A short sha256 hex digest of the four arrays (dtype, shape and bytes).

        Two splits with the same fingerprint hold the same data; tag MLflow runs with it.
        """
        digest = hashlib.sha256()
        for name in ("x_train", "y_train", "x_dev", "y_dev"):
            array = np.ascontiguousarray(getattr(self, name))
            digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{name}={getattr(self, name).shape}"
            for name in ("x_train", "y_train", "x_dev", "y_dev")
        )
        return f"DataSplit({shapes}, bayes_error={self.bayes_error}, source={self.source!r})"


# ---------------------------------------------------------------------------------------------
# Generators


def course_circles(train_seed: int = 1, dev_seed: int = 2) -> DataSplit:
    """The course's initialization data: two noisy concentric circles, 300 train / 100 dev.

    Reproduces the course exactly: `np.random.seed(1); make_circles(n_samples=300,
    noise=.05)` for train and `np.random.seed(2); make_circles(n_samples=100, noise=.05)` for
    dev. `make_circles` draws from NumPy's global RNG here, so it is seeded as the course
    does and its previous state is restored afterwards.

    Example:
        >>> data = course_circles()
        >>> data.x_train.shape, data.y_dev.shape
        ((300, 2), (100, 1))
    """
    from sklearn.datasets import make_circles

    saved = np.random.get_state()
    try:
        np.random.seed(train_seed)
        x_train, y_train = make_circles(n_samples=300, noise=0.05)
        np.random.seed(dev_seed)
        x_dev, y_dev = make_circles(n_samples=100, noise=0.05)
    finally:
        np.random.set_state(saved)
    return _binary_split(
        x_train,
        y_train,
        x_dev,
        y_dev,
        source=f"course_circles(train_seed={train_seed}, dev_seed={dev_seed})",
    )


def noisy_moons(
    n_train: int = 211, n_dev: int = 200, noise: float = 0.3, seed: int = 0
) -> DataSplit:
    """Two interleaved half-moons with Gaussian noise (the gradients and regularization data).

    Sized like the course's regularization data by default (211 train / 200 dev); with
    `noise=0.3` an unregularized 2-20-3-1 net fits the training set a few points better than
    the dev set. The regularization experiment draws 100 train / 1000 dev with noise 0.25,
    where it overfits by ~10 points. Train and dev come from independent streams of `seed`,
    so the dev set does not change with `n_train`.

    Example:
        >>> noisy_moons(n_train=10, n_dev=5).x_train.shape
        (10, 2)
    """
    from sklearn.datasets import make_moons

    _check_count("n_train", n_train)
    _check_count("n_dev", n_dev)
    if not (isinstance(noise, int | float) and noise >= 0 and math.isfinite(noise)):
        raise ValueError(f"noise must be a finite number >= 0; got {noise!r}.")
    train_state, dev_state = (
        int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2)
    )
    x_train, y_train = make_moons(n_samples=n_train, noise=noise, random_state=train_state)
    x_dev, y_dev = make_moons(n_samples=n_dev, noise=noise, random_state=dev_state)
    return _binary_split(
        x_train,
        y_train,
        x_dev,
        y_dev,
        source=f"noisy_moons(n_train={n_train}, n_dev={n_dev}, noise={noise}, seed={seed})",
    )


def flipped_boundary(
    n_train: int = 1000,
    n_dev: int = 1000,
    flip_prob: float = 0.1,
    seed: int = 0,
    *,
    boundary: Literal["circle", "sine"] = "circle",
) -> DataSplit:
    """Points in [-1, 1]^2 labelled by a fixed boundary, each label flipped with `flip_prob`.

    The clean label is 1 inside the circle of radius sqrt(2/pi) (half the square's area) or
    above the curve y = 0.5 sin(pi x). Flipping each label independently with probability
    `flip_prob` <= 0.5 makes the Bayes error exactly `flip_prob`: the boundary itself is the
    best classifier. `DataSplit.bayes_error` carries it.

    Points, flips and the dev set come from separate streams of `seed`: a larger `n_train`
    extends a smaller one, and the dev set does not depend on `n_train`.

    Example:
        >>> flipped_boundary(n_train=100, n_dev=50, flip_prob=0.2).bayes_error
        0.2
    """
    _check_count("n_train", n_train)
    _check_count("n_dev", n_dev)
    if not (isinstance(flip_prob, int | float) and 0 <= flip_prob <= 0.5):
        raise ValueError(f"flip_prob must be in [0, 0.5]; got {flip_prob!r}.")
    if boundary not in ("circle", "sine"):
        raise ValueError(f"boundary must be one of 'circle', 'sine'; got {boundary!r}.")
    streams = np.random.SeedSequence(seed).spawn(4)
    parts = []
    for n, points_seed, flip_seed in ((n_train, *streams[:2]), (n_dev, *streams[2:])):
        x = np.random.default_rng(points_seed).uniform(-1.0, 1.0, size=(n, 2))
        clean = boundary_labels(x, boundary)
        flipped = np.random.default_rng(flip_seed).random(n) < flip_prob
        parts += [x, np.where(flipped, 1 - clean, clean)]
    return _binary_split(
        *parts,
        bayes_error=float(flip_prob),
        source=(
            f"flipped_boundary(n_train={n_train}, n_dev={n_dev}, flip_prob={flip_prob}, "
            f"seed={seed}, boundary={boundary!r})"
        ),
    )


def boundary_labels(x: np.ndarray, boundary: Literal["circle", "sine"] = "circle") -> np.ndarray:
    """The noise-free labels of `flipped_boundary` (0/1 ints) for points `x` of shape (m, 2)."""
    x = np.asarray(x, dtype=np.float64)
    if boundary == "circle":
        return (np.sum(x**2, axis=1) < 2.0 / np.pi).astype(np.int64)
    if boundary == "sine":
        return (x[:, 1] > 0.5 * np.sin(np.pi * x[:, 0])).astype(np.int64)
    raise ValueError(f"boundary must be one of 'circle', 'sine'; got {boundary!r}.")


def digits(
    n_train: int = 1000, seed: int = 0, *, n_dev: int | None = None, flat: bool = False
) -> DataSplit:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes), scaled to [0, 1].

    A stratified `train_test_split` keeps the class balance in both sets; the dev set is the
    rest of the images unless `n_dev` is given. Labels are int64 class indices, shape (m,).

    Args:
        n_train: Training images, 10..1787.
        seed: Seed of the split.
        n_dev: Dev images; `None` for all the images not in the training set.
        flat: `True` for x of shape (m, 64); `False` for images (m, 8, 8, 1).

    Example:
        >>> digits(n_train=500).x_train.shape
        (500, 8, 8, 1)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    total, n_classes = len(bunch.target), len(np.unique(bunch.target))
    if not (isinstance(n_train, int) and n_classes <= n_train <= total - n_classes):
        raise ValueError(
            f"n_train must be an integer in [{n_classes}, {total - n_classes}]; got {n_train!r}."
        )
    if n_dev is not None and not (isinstance(n_dev, int) and n_classes <= n_dev <= total - n_train):
        raise ValueError(
            f"n_dev must be None or an integer in [{n_classes}, {total - n_train}]; got {n_dev!r}."
        )
    images = (bunch.images / 16.0).astype(np.float32)
    x = images.reshape(total, -1) if flat else images[..., np.newaxis]
    x_train, x_dev, y_train, y_dev = train_test_split(
        x,
        bunch.target.astype(np.int64),
        train_size=n_train,
        test_size=n_dev,
        stratify=bunch.target,
        random_state=seed,
    )
    return DataSplit(
        x_train,
        y_train,
        x_dev,
        y_dev,
        source=f"digits(n_train={n_train}, seed={seed}, n_dev={n_dev}, flat={flat})",
    )


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")


def _binary_split(x_train, y_train, x_dev, y_dev, *, bayes_error=None, source="") -> DataSplit:
    return DataSplit(
        np.asarray(x_train, dtype=np.float32),
        np.asarray(y_train, dtype=np.float32).reshape(-1, 1),
        np.asarray(x_dev, dtype=np.float32),
        np.asarray(y_dev, dtype=np.float32).reshape(-1, 1),
        bayes_error=bayes_error,
        source=source,
    )


# ---------------------------------------------------------------------------------------------
# User files


class _Part(NamedTuple):
    """One half (train or dev) of a data set as read from a file, before validation."""

    x: np.ndarray
    y: np.ndarray
    x_name: str
    y_name: str
    file: str


def load_data(
    path: str | os.PathLike,
    dev_path: str | os.PathLike | None = None,
    *,
    task: Literal["binary", "multiclass"] = "binary",
) -> DataSplit:
    """Load the user's data file(s) into a validated `DataSplit`.

    See the module docstring for the accepted formats and names.

    Args:
        path: The data file (.npz, .csv, .mat, .h5/.hdf5); holds both sets unless
            `dev_path` is given, then only the training set.
        dev_path: A second file holding the dev set, e.g. the course's `test_catvnoncat.h5`.
        task: `"binary"` (labels 0/1, returned as float32 (m, 1)) or `"multiclass"`
            (non-negative integer labels, returned as int64 (m,)).

    Returns:
        A `DataSplit` with float32 x of shape (m, n_features).

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: one line naming the file, the problem and what is accepted.

    Example:
        >>> data = load_data("data.mat")  # doctest: +SKIP
        >>> data.x_train.shape, data.y_train.shape  # doctest: +SKIP
        ((211, 2), (211, 1))
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of 'binary', 'multiclass'; got {task!r}.")
    train_file = _check_file(path, "data")
    if dev_path is None:
        train, dev = _read_both(train_file)
        source = train_file
    else:
        dev_file = _check_file(dev_path, "dev data")
        train = _read_one(train_file, _TRAIN_NAMES, "training", _TRAIN_CONVENTIONS)
        dev = _read_one(dev_file, _DEV_NAMES + _TRAIN_NAMES, "dev", _DEV_CONVENTIONS)
        source = f"{train_file} + {dev_file}"
    return _validate(train, dev, task, source)


def _check_file(path: str | os.PathLike, role: str) -> str:
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"{role} path must be a string or path; got {path!r}.")
    file = os.fspath(path)
    if not os.path.exists(file):
        raise FileNotFoundError(f"{role} file not found: {file}")
    if os.path.isdir(file):
        raise ValueError(
            f"{file}: is a directory; expected a data file ({', '.join(SUPPORTED_EXTENSIONS)})."
        )
    extension = os.path.splitext(file)[1].lower()
    if extension not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"{file}: unsupported file type {extension or '(no extension)'!r}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}."
        )
    return file


def _extension(file: str) -> str:
    return os.path.splitext(file)[1].lower()


def _read_both(file: str) -> tuple[_Part, _Part]:
    if _extension(file) == ".csv":
        return _read_csv_with_split(file)
    with _open_arrays(file) as (keys, get):
        train_names = _find_names(file, keys, _TRAIN_NAMES, "training", _TRAIN_CONVENTIONS)
        dev_names = _find_names(
            file,
            keys,
            _DEV_NAMES,
            "dev",
            _DEV_CONVENTIONS,
            hint="; or give the dev set as a second file",
        )
        return (
            _Part(get(train_names[0]), get(train_names[1]), *train_names, file),
            _Part(get(dev_names[0]), get(dev_names[1]), *dev_names, file),
        )


def _read_one(file: str, names: Sequence[tuple[str, str]], role: str, conventions: str) -> _Part:
    if _extension(file) == ".csv":
        return _read_csv_without_split(file)
    with _open_arrays(file) as (keys, get):
        x_name, y_name = _find_names(file, keys, names, role, conventions)
        return _Part(get(x_name), get(y_name), x_name, y_name, file)


def _find_names(
    file: str,
    keys: Sequence[str],
    names: Sequence[tuple[str, str]],
    role: str,
    conventions: str,
    hint: str = "",
) -> tuple[str, str]:
    """The actual (x, y) key names in `keys` for the first matching naming convention."""
    by_lower: dict[str, str] = {}
    for key in keys:
        by_lower.setdefault(key.lower(), key)
    for x_name, y_name in names:
        if x_name in by_lower and y_name in by_lower:
            return by_lower[x_name], by_lower[y_name]
    for x_name, y_name in names:
        if (x_name in by_lower) != (y_name in by_lower):
            found, wanted = (x_name, y_name) if x_name in by_lower else (y_name, x_name)
            raise ValueError(
                f"{file}: found {by_lower[found]!r} but not its partner {wanted!r}; "
                f"keys found: {_list_keys(keys)}."
            )
    raise ValueError(
        f"{file}: no {role} arrays; keys found: {_list_keys(keys)}; "
        f"expected {conventions}, names case-insensitive{hint}."
    )


def _list_keys(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED]) + (", ..." if len(keys) > _MAX_LISTED else "")
    return shown or "(none)"


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: " + (" ".join(str(exc).split()) or "no details")


@contextlib.contextmanager
def _open_arrays(file: str) -> Iterator[tuple[list[str], Callable[[str], np.ndarray]]]:
    """Yield the array names in an .npz/.mat/.h5 file and a function that reads one."""
    extension = _extension(file)
    if extension == ".npz":
        with _open_npz(file) as opened:
            yield opened
    elif extension == ".mat":
        yield _open_mat(file)
    else:
        with _open_h5(file) as opened:
            yield opened


@contextlib.contextmanager
def _open_npz(file: str) -> Iterator[tuple[list[str], Callable[[str], np.ndarray]]]:
    try:
        archive = np.load(file, allow_pickle=False)
    except ValueError as exc:
        if "pickle" not in str(exc):
            raise ValueError(f"{file}: not a readable .npz archive ({_one_line(exc)}).") from exc
        raise ValueError(
            f"{file}: not an .npz archive (neither a zip of .npy arrays nor a .npy file; "
            "pickled files are not loaded); save it with np.savez."
        ) from exc
    except Exception as exc:  # BadZipFile, truncated file, ...
        raise ValueError(
            f"{file}: not a readable .npz archive ({_one_line(exc)}); save it with np.savez."
        ) from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{file}: holds a single array, not an .npz archive of named arrays; "
            "save it with np.savez(file, x_train=..., y_train=..., x_dev=..., y_dev=...)."
        )

    def get(key: str) -> np.ndarray:
        try:
            array = archive[key]
        except ValueError as exc:
            if "pickle" in str(exc).lower() or "object" in str(exc).lower():
                raise ValueError(
                    f"{file}: array {key!r} holds Python objects (pickled), which are not loaded "
                    "for safety; save numeric arrays, e.g. np.asarray(x, dtype=np.float32)."
                ) from exc
            raise ValueError(f"{file}: cannot read array {key!r} ({_one_line(exc)}).") from exc
        except Exception as exc:  # corrupt member: BadZipFile, zlib.error, EOFError, ...
            raise ValueError(f"{file}: cannot read array {key!r} ({_one_line(exc)}).") from exc
        if not isinstance(array, np.ndarray):  # NpzFile returns non-.npy members as raw bytes
            raise ValueError(f"{file}: member {key!r} is not a NumPy array; save it with np.savez.")
        return array

    with archive:
        yield list(archive.files), get


def _open_mat(file: str) -> tuple[list[str], Callable[[str], np.ndarray]]:
    import scipy.io

    try:
        contents = scipy.io.loadmat(file)
    except NotImplementedError as exc:  # MATLAB v7.3 files are HDF5
        raise ValueError(
            f"{file}: MATLAB v7.3 files are not supported; re-save with save(..., '-v7') or as .h5."
        ) from exc
    except Exception as exc:
        raise ValueError(f"{file}: not a readable MATLAB .mat file ({_one_line(exc)}).") from exc
    keys = [key for key in contents if not key.startswith("__")]
    return keys, contents.__getitem__


@contextlib.contextmanager
def _open_h5(file: str) -> Iterator[tuple[list[str], Callable[[str], np.ndarray]]]:
    import h5py

    try:
        handle = h5py.File(file, "r")
    except Exception as exc:
        raise ValueError(f"{file}: not a readable HDF5 file ({_one_line(exc)}).") from exc

    def get(key: str) -> np.ndarray:
        node = handle[key]
        if not isinstance(node, h5py.Dataset):
            raise ValueError(f"{file}: {key!r} is an HDF5 group, not a dataset of numbers.")
        try:
            return np.asarray(node[()])
        except Exception as exc:
            raise ValueError(f"{file}: cannot read dataset {key!r} ({_one_line(exc)}).") from exc

    with handle:
        yield list(handle.keys()), get


def _read_csv(file: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-blank rows (with their line numbers) of a CSV file."""
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{file}: not a UTF-8 text CSV file ({exc.reason} at byte {exc.start})."
        ) from exc
    except csv.Error as exc:
        raise ValueError(f"{file}: malformed CSV ({_one_line(exc)}).") from exc
    if not rows:
        raise ValueError(f"{file}: is empty; expected a header row and one row per sample.")
    header = [cell.strip() for cell in rows[0][1]]
    if all(_is_number(cell) for cell in header):
        raise ValueError(
            f"{file}: the first row must be a header naming the columns (features, then 'y' or "
            f"'label', optionally 'split'); got {', '.join(header[:_MAX_LISTED])}."
        )
    return header, rows[1:]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_columns(file: str, header: list[str]) -> tuple[list[int], int, int | None]:
    """Indices of the feature columns, the label column and the split column (or None)."""
    lowered = [name.lower() for name in header]
    labels = [i for i, name in enumerate(lowered) if name in _LABEL_COLUMNS]
    if len(labels) != 1:
        problem = "no label column" if not labels else "more than one label column"
        raise ValueError(
            f"{file}: {problem}; name exactly one column 'y' or 'label'; columns found: "
            f"{', '.join(header[:_MAX_LISTED])}."
        )
    split = lowered.index("split") if "split" in lowered else None
    features = [i for i in range(len(header)) if i != labels[0] and i != split]
    if not features:
        raise ValueError(
            f"{file}: no feature columns; every column other than 'y'/'label' and 'split' "
            "is a feature."
        )
    return features, labels[0], split


def _csv_numbers(file: str, header: list[str], rows, columns: list[int]) -> np.ndarray:
    values = np.empty((len(rows), len(columns)), dtype=np.float64)
    for r, (line, row) in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(
                f"{file}: line {line} has {len(row)} fields but the header has {len(header)}."
            )
        for c, column in enumerate(columns):
            try:
                values[r, c] = float(row[column])
            except ValueError:
                raise ValueError(
                    f"{file}: line {line}, column {header[column]!r}: {row[column]!r} "
                    "is not a number."
                ) from None
    return values


def _read_csv_with_split(file: str) -> tuple[_Part, _Part]:
    header, rows = _read_csv(file)
    features, label, split = _csv_columns(file, header)
    if split is None:
        raise ValueError(
            f"{file}: no 'split' column to tell train rows from dev rows; add one with values "
            "train/dev, or give train and dev as two files."
        )
    x = _csv_numbers(file, header, rows, features)
    y = _csv_numbers(file, header, rows, [label])[:, 0]
    roles = []
    for line, row in rows:
        value = row[split].strip().lower()
        if value not in _SPLIT_VALUES:
            raise ValueError(
                f"{file}: line {line}: split must be train or dev (test, val also mean dev); "
                f"got {row[split]!r}."
            )
        roles.append(_SPLIT_VALUES[value])
    roles_array = np.array(roles)
    parts = []
    for role in ("train", "dev"):
        mask = roles_array == role
        if not mask.any():
            raise ValueError(
                f"{file}: no rows with split={role}; the file needs both train and dev rows."
            )
        parts.append(
            _Part(x[mask], y[mask], f"x ({role} rows)", f"{header[label]} ({role} rows)", file)
        )
    return parts[0], parts[1]


def _read_csv_without_split(file: str) -> _Part:
    header, rows = _read_csv(file)
    features, label, split = _csv_columns(file, header)
    if split is not None:
        raise ValueError(
            f"{file}: has a 'split' column but was given as one of two files; give it alone, "
            "or drop the column."
        )
    if not rows:
        raise ValueError(f"{file}: has a header but no data rows.")
    x = _csv_numbers(file, header, rows, features)
    y = _csv_numbers(file, header, rows, [label])[:, 0]
    return _Part(x, y, "features", header[label], file)


# ---------------------------------------------------------------------------------------------
# Validation


def _validate(train: _Part, dev: _Part, task: str, source: str) -> DataSplit:
    images = False
    checked = []
    for part in (train, dev):
        x = _numeric(part.x, part.x_name, part.file)
        y = _numeric(part.y, part.y_name, part.file)
        if x.ndim == 0 or x.shape[0] == 0 or x.size == 0:
            raise ValueError(
                f"{part.file}: {part.x_name!r} is empty (shape {x.shape}); "
                "it needs samples as rows."
            )
        if y.size == 0:
            raise ValueError(f"{part.file}: {part.y_name!r} is empty (shape {y.shape}).")
        images = images or x.ndim > 2
        x = x.reshape(len(x), -1)
        y = _as_label_vector(y, len(x), part)
        if len(y) != len(x):
            raise ValueError(
                f"{part.file}: {part.x_name!r} has {len(x)} rows but {part.y_name!r} has {len(y)}; "
                "samples must be rows: x of shape (m, n_features), y of shape (m,) or (m, 1)."
            )
        _check_finite(x, part.x_name, part.file)
        _check_finite(y, part.y_name, part.file)
        _check_labels(y, part.y_name, part.file, task)
        checked.append((x, y))
    (x_train, y_train), (x_dev, y_dev) = checked
    if x_train.shape[1] != x_dev.shape[1]:
        raise ValueError(
            f"{train.file}: training set has {x_train.shape[1]} features ({train.x_name!r}) "
            f"but the dev set has {x_dev.shape[1]} ({dev.x_name!r} in {dev.file}); they must match."
        )
    if images:
        peak = max(float(x_train.max()), float(x_dev.max()))
        if peak > 255:
            raise ValueError(
                f"{source}: image values must be in [0, 1] or [0, 255]; the largest is {peak:g}."
            )
        if peak > 1:
            x_train, x_dev = x_train / 255.0, x_dev / 255.0
    if task == "binary":
        y_train, y_dev = (y.astype(np.float32).reshape(-1, 1) for y in (y_train, y_dev))
    else:
        y_train, y_dev = (y.astype(np.int64) for y in (y_train, y_dev))
    return DataSplit(
        x_train.astype(np.float32),
        y_train,
        x_dev.astype(np.float32),
        y_dev,
        source=source,
    )


def _numeric(array: np.ndarray, name: str, file: str) -> np.ndarray:
    array = np.asarray(array)
    kind = array.dtype.kind
    if kind in "biuf":
        return array
    problem = {
        "O": "holds Python objects (pickled data, strings, or MATLAB cells/structs)",
        "U": "holds text",
        "S": "holds bytes/text",
        "c": "holds complex numbers",
        "V": "holds structured records",
    }.get(kind, f"has dtype {array.dtype}")
    raise ValueError(f"{file}: {name!r} {problem}; expected a numeric array (int, float or bool).")


def _as_label_vector(y: np.ndarray, m: int, part: _Part) -> np.ndarray:
    if y.ndim == 1:
        return y
    if y.ndim == 2 and y.shape[1] == 1:
        return y[:, 0]
    if y.ndim == 2 and y.shape[0] == 1 and y.shape[1] == m:  # the course's (1, m) layout
        return y[0]
    raise ValueError(
        f"{part.file}: {part.y_name!r} has shape {y.shape}; expected one label per sample, "
        "shape (m,) or (m, 1)."
    )


def _check_finite(array: np.ndarray, name: str, file: str) -> None:
    if array.dtype.kind != "f":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(
            f"{file}: {name!r} contains {int(bad.sum())} NaN/inf value(s), first in row {row}; "
            "remove or impute them."
        )


def _check_labels(y: np.ndarray, name: str, file: str, task: str) -> None:
    values = np.unique(y)
    if task == "binary":
        if not np.isin(values, (0, 1)).all():
            raise ValueError(
                f"{file}: {name!r} must hold 0/1 labels for a binary task; found {_some(values)}."
            )
    elif not (np.all(values >= 0) and np.all(np.floor(values) == values)):
        raise ValueError(
            f"{file}: {name!r} must hold integer class labels 0..K-1 for a multi-class task; "
            f"found {_some(values)}."
        )


def _some(values: np.ndarray, limit: int = 6) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:limit].astype(np.float64))
    return shown + (", ..." if len(values) > limit else "")
