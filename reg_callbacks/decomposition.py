"""Bias and variance as the course defines them, measured over retrained models.

`bias_variance_decomposition` trains a fresh model from `build_model()` once a round, on a
resample of the training set (or the same set with a new initialization), and records its
predictions on a fixed test set: a prediction matrix of rounds × test points. The math is
in small pure NumPy functions on that matrix (`decompose`, `standard_errors`).

0-1 loss follows Domingos (2000), "A unified bias-variance decomposition". Per test point
x with observed label t, Bayes-optimal label y* and the rounds' predictions y:

- main prediction y_m = the most frequent prediction (ties: the smallest class);
- noise N(x) = [t ≠ y*], bias B(x) = [y_m ≠ y*], variance V(x) = P(y ≠ y_m);
- c1 = P(y = y*) − P(y = t) where t ≠ y* (two classes: 2 P(y = y*) − 1);
- c2 = 1 where y_m = y*, else −P(y = y* | y ≠ y_m) (two classes: −1).

Then the point's mean loss over the rounds, P(y ≠ t), equals c1·N + B + c2·V exactly, for
any number of rounds; averaged over the test set, `expected_loss = noise_term + bias +
variance` with `noise_term` = mean c1·N and `variance` the *net* variance mean c2·V:
variance adds to the error where the main prediction is right and takes from it where it
is wrong. Without Bayes-optimal labels y* is taken to be t: the noise is unknown (`None`)
and folded into the bias.

Squared loss: main prediction = the mean; bias = mean (y_m − y*)² (bias squared), variance
= mean (y − y_m)², noise = mean (t − y*)². On a finite test set the cross term
2·mean((y_m − y*)(y* − t)) does not vanish (it does in expectation), so `noise_term` =
noise + cross term keeps `expected_loss = noise_term + bias + variance` exact.

Standard errors are over rounds: the standard deviation of each term over bootstrap
resamples of the matrix's rows (rounds), which also holds for the main prediction, a mode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

LOSSES = ("0-1", "squared")
RESAMPLES = ("bootstrap", "seed", "both")
TERMS = ("expected_loss", "bias", "variance", "noise_term", "unsigned_variance")
SE_RESAMPLES = 200  # bootstrap resamples of the rounds behind each standard error


@dataclasses.dataclass(frozen=True)
class Decomposition:
    """The result of `bias_variance_decomposition` (all terms averaged over the test set).

    Attributes:
        loss: `"0-1"` or `"squared"`.
        expected_loss: Mean loss of a round's model on the test set, over the rounds.
        bias: 0-1: the fraction of test points whose main prediction is not the
            Bayes-optimal label; squared: mean squared distance of the main prediction from
            the Bayes-optimal value (bias²). Includes the noise when `noise` is `None`.
        variance: 0-1: the net variance (Domingos), mean c2·V; squared: mean squared
            deviation of the rounds' predictions from their mean.
        noise: Mean loss of the Bayes-optimal prediction on the test labels; `None` when
            no `bayes_pred` was given (then it is inside `bias`).
        noise_term: The noise's share of `expected_loss` on this test set (0-1: mean
            c1·N; squared: noise plus the sample's cross term); 0 when noise is unknown.
            `expected_loss == noise_term + bias + variance` up to float rounding.
        unsigned_variance: Mean disagreement with the main prediction (0-1: P(y ≠ y_m),
            what mlxtend calls variance); equal to `variance` for squared loss.
        rounds: Models trained.
        standard_errors: Standard error over rounds of each term above, by name.
        resample: What changed between rounds: `bootstrap` (the training set),
            `seed` (the initialization) or `both`.
        note: How to read the numbers (noise folded into bias, the cross term).
        predictions: The rounds × test points matrix the terms come from.
    """

    loss: str
    expected_loss: float
    bias: float
    variance: float
    noise: float | None
    noise_term: float
    unsigned_variance: float
    rounds: int
    standard_errors: Mapping[str, float]
    resample: str
    note: str
    predictions: np.ndarray = dataclasses.field(repr=False, compare=False)

    def as_dict(self) -> dict:
        """The numbers, without the prediction matrix (for JSON and MLflow)."""
        values = dataclasses.asdict(self)
        values.pop("predictions")
        return values


# ---------------------------------------------------------------------------------------------
# The math: pure NumPy on a prediction matrix


def decompose(predictions, y, bayes=None, loss: str = "0-1") -> dict[str, float | None]:
    """Domingos's 0-1 or the squared-loss decomposition of a rounds × points matrix.

    Args:
        predictions: (rounds, points) predicted classes (0-1) or values (squared).
        y: (points,) observed labels or targets.
        bayes: (points,) Bayes-optimal labels or values; `None` if unknown (noise is then
            folded into the bias, and `noise` is `None`).
        loss: `"0-1"` or `"squared"`.

    Returns:
        `{"expected_loss", "bias", "variance", "noise", "noise_term", "unsigned_variance"}`;
        `expected_loss == noise_term + bias + variance`.

    Example:
        >>> decompose(np.array([[0, 1, 1], [0, 0, 1], [1, 1, 1]]), np.array([0, 1, 0]),
        ...           bayes=np.array([0, 1, 1]))["bias"]
        0.0
    """
    predictions, y, bayes = _checked_matrix(predictions, y, bayes, loss)
    rounds = predictions.shape[0]
    if loss == "0-1":
        classes = int(max(predictions.max(), y.max(), -1 if bayes is None else bayes.max())) + 1
        frequencies = _one_hot(predictions, classes).sum(axis=0) / rounds
        terms = _zero_one_terms(frequencies, y, bayes)
    else:
        terms = _squared_terms(predictions.mean(axis=0), (predictions**2).mean(axis=0), y, bayes)
    terms = {key: float(value) for key, value in terms.items()}
    terms["noise"] = None if bayes is None else _noise(y, bayes, loss)
    return terms


def standard_errors(
    predictions, y, bayes=None, loss: str = "0-1", *, resamples: int = SE_RESAMPLES, seed=0
) -> dict[str, float]:
    """Standard error over rounds of each term of `decompose`: the standard deviation of the
    terms over `resamples` bootstrap resamples of the matrix's rows (rounds)."""
    predictions, y, bayes = _checked_matrix(predictions, y, bayes, loss)
    rounds = predictions.shape[0]
    # Each resample as counts of every round (multinomial): the terms then come from
    # weighted class frequencies or moments, one matrix product per resample set.
    weights = np.random.default_rng(seed).multinomial(
        rounds, np.full(rounds, 1 / rounds), resamples
    )
    weights = weights / rounds
    if loss == "0-1":
        classes = int(max(predictions.max(), y.max(), -1 if bayes is None else bayes.max())) + 1
        one_hot = _one_hot(predictions, classes)  # (rounds, points, classes)
        frequencies = np.einsum("br,rpk->bpk", weights, one_hot)
        terms = _zero_one_terms(frequencies, y, bayes)
    else:
        terms = _squared_terms(weights @ predictions, weights @ predictions**2, y, bayes)
    return {key: float(np.std(values, ddof=1)) for key, values in terms.items()}


def _zero_one_terms(frequencies, y, bayes) -> dict[str, np.ndarray]:
    """Domingos's terms, averaged over points, from class frequencies (..., points, classes)."""
    target = y if bayes is None else bayes
    points = np.arange(frequencies.shape[-2])
    p_observed = frequencies[..., points, y]
    p_target = frequencies[..., points, target]
    main = np.argmax(frequencies, axis=-1)  # the first of tied classes
    p_main = np.take_along_axis(frequencies, main[..., None], axis=-1)[..., 0]
    biased = main != target
    noisy = y != target
    # c2·V: V where the main prediction is right; -P(y = y*) where it is wrong.
    net_variance = np.where(biased, -p_target, 1 - p_main)
    return {
        "expected_loss": (1 - p_observed).mean(axis=-1),
        "bias": biased.mean(axis=-1),
        "variance": net_variance.mean(axis=-1),
        "noise_term": np.where(noisy, p_target - p_observed, 0.0).mean(axis=-1),
        "unsigned_variance": (1 - p_main).mean(axis=-1),
    }


def _squared_terms(mean, second_moment, y, bayes) -> dict[str, np.ndarray]:
    """The squared-loss terms, averaged over points, from each point's first two moments."""
    target = y if bayes is None else bayes
    variance = np.maximum(second_moment - mean**2, 0.0)
    bias = (mean - target) ** 2
    noise_term = (y - target) ** 2 + 2 * (mean - target) * (target - y)
    return {
        "expected_loss": (variance + (mean - y) ** 2).mean(axis=-1),
        "bias": bias.mean(axis=-1),
        "variance": variance.mean(axis=-1),
        "noise_term": noise_term.mean(axis=-1),
        "unsigned_variance": variance.mean(axis=-1),
    }


def _noise(y, bayes, loss: str) -> float:
    if loss == "0-1":
        return float(np.mean(y != bayes))
    return float(np.mean((y - bayes) ** 2))


def _one_hot(classes_matrix, classes: int) -> np.ndarray:
    return (classes_matrix[..., None] == np.arange(classes)).astype(np.float64)


def _checked_matrix(predictions, y, bayes, loss):
    _check_choice("loss", loss, LOSSES)
    predictions = np.asarray(predictions)
    if predictions.ndim != 2 or predictions.shape[0] < 2:
        raise ValueError(
            f"predictions must be a (rounds, points) matrix with rounds >= 2; got shape "
            f"{predictions.shape}."
        )
    y = _labels(y, "y", loss)
    if len(y) != predictions.shape[1]:
        raise ValueError(
            f"y must have one label per column of predictions; got {len(y)} labels for "
            f"{predictions.shape[1]} points."
        )
    bayes = _bayes_labels(bayes, len(y), loss)
    if loss == "0-1":
        predictions = _labels(predictions.reshape(-1), "predictions", loss).reshape(
            predictions.shape
        )
    else:
        predictions = predictions.astype(np.float64)
    return predictions, y, bayes


def _bayes_labels(bayes, points: int, loss: str) -> np.ndarray | None:
    if bayes is None:
        return None
    bayes = _labels(bayes, "bayes_pred", loss)
    if len(bayes) != points:
        raise ValueError(
            f"bayes_pred must have one value per test point; got {len(bayes)} for {points} points."
        )
    return bayes


def _labels(values, name: str, loss: str) -> np.ndarray:
    """A vector of class indices (0-1) or floats (squared) from (n,), (n, 1) or one-hot rows."""
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric; got an array of {values.dtype}.")
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if loss == "0-1" and values.ndim == 2 and _one_hot_rows(values):
        values = np.argmax(values, axis=1)
    if values.ndim != 1:
        allowed = "(n,), (n, 1) or one-hot (n, classes)" if loss == "0-1" else "(n,) or (n, 1)"
        raise ValueError(f"{name} must have shape {allowed}; got {values.shape}.")
    if loss == "squared":
        if not np.isfinite(values).all():
            raise ValueError(f"{name} must be finite numbers; got NaN or inf.")
        return values.astype(np.float64)
    is_class = np.isfinite(values) & (values >= 0) & (values == np.round(values))
    if not is_class.all():
        examples = ", ".join(f"{v:g}" for v in np.unique(values[~is_class])[:3])
        raise ValueError(
            f"for loss='0-1', {name} must be class labels (integers >= 0, or one-hot rows); "
            f"got values such as {examples}. Use loss='squared' for a regression target."
        )
    return values.astype(np.int64)


def _one_hot_rows(values: np.ndarray) -> bool:
    return bool(np.isin(values, (0, 1)).all() and (values.sum(axis=1) == 1).all())


def _check_choice(name: str, value, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}.")


# ---------------------------------------------------------------------------------------------
# Training the rounds


def bias_variance_decomposition(
    build_model: Callable,
    train: tuple,
    test: tuple,
    *,
    rounds: int = 50,
    iterations: int | None = None,
    bayes_pred=None,
    loss: str = "0-1",
    resample: str = "bootstrap",
    seed: int = 0,
    tolerance: float | None = None,
    min_rounds: int = 10,
    batch_size: int | None = None,
    fit_options: Mapping | None = None,
    verbose: int = 0,
) -> Decomposition:
    """Decompose a Keras model's expected test loss into noise, bias and variance.

    Each round calls `build_model()` for a fresh compiled model, trains it, and predicts the
    test set. What changes between rounds is `resample`: `"bootstrap"` draws the training
    set with replacement and keeps the initialization (Keras's global seed is set to `seed`
    before every `build_model()` call): the variance due to the data; `"seed"` keeps the
    training set and sets a new global seed every round: the variance due to the
    initialization (and the mini-batch order); `"both"` changes both, as mlxtend does.

    Training runs `iterations` steps of `reg_callbacks.train` (full batch, or `batch_size`
    mini-batches), whose compiled loop models of one architecture share, so a round costs
    the steps and little else; or, with `fit_options`, `model.fit(x, y, **fit_options)`.

    Args:
        build_model: `build_model() -> keras.Model`, compiled, a new model on every call.
            Leave its initializers' seeds to Keras's global seed: with `resample="seed"`,
            a model whose initial weights do not change between rounds is refused.
        train: `(x, y)`: arrays, or dicts/lists of arrays for several inputs.
        test: `(x, y)`; 0-1 loss needs class labels (integers, or one-hot rows).
        rounds: Models to train, at least 2; with `tolerance`, the most to train.
        iterations: Optimizer steps a round with `train`.
        bayes_pred: Bayes-optimal labels (0-1) or values (squared) of the test points, where
            the data's generator is known; else the noise is reported as unknown (`None`)
            and counted in the bias.
        loss: `"0-1"` (predictions are classes: a one-column output thresholded at 0.5,
            several columns by argmax) or `"squared"` (a one-column output as it is).
        resample: `"bootstrap"`, `"seed"` or `"both"`; see above.
        seed: Seeds the resamples, the initializations and the standard errors.
        tolerance: Stop after the first round (from `min_rounds` on) where the standard
            errors of both bias and variance are at most this.
        min_rounds: Rounds before `tolerance` is first checked.
        batch_size: Mini-batch size for `train`; `None` for full batch.
        fit_options: Train with `model.fit(x, y, verbose=0, **fit_options)` instead (e.g.
            `{"epochs": 50, "batch_size": 32}`); then leave `iterations` out.
        verbose: 1 prints each round's test loss.

    Returns:
        A `Decomposition`.

    Raises:
        ValueError: a bad argument, mismatched shapes, labels that are not classes for
            0-1 loss, or `build_model` returning a model it returned before.

    Example:
        >>> def build_model():
        ...     model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(8, "relu"),
        ...                               keras.layers.Dense(1, "sigmoid")])
        ...     model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
        ...     return model
        >>> result = bias_variance_decomposition(
        ...     build_model, (x, y), (x_test, y_test), rounds=20, iterations=500)
        >>> abs(result.expected_loss - (result.noise_term + result.bias + result.variance)) < 1e-12
        True
    """
    _check_arguments(rounds, iterations, fit_options, resample, tolerance, min_rounds, loss)
    x_train, y_train = _pair(train, "train")
    x_test, y_test = _pair(test, "test")
    y_test = _labels(y_test, "test labels", loss)
    bayes_pred = _bayes_labels(bayes_pred, len(y_test), loss)
    if loss == "0-1":
        _labels(y_train, "train labels", loss)
    n_train = len(_flatten(x_train)[0])

    rows = []
    previous = None
    first_weights = None
    for round_index in range(rounds):
        model = _fresh_model(build_model, previous, round_index, resample, seed)
        if resample != "bootstrap" and round_index < 2:
            weights = _weight_fingerprint(model)
            if round_index == 1 and weights == first_weights:
                raise ValueError(
                    f"build_model gave the same initial weights in rounds 0 and 1, so "
                    f"resample={resample!r} would measure no initialization variance; let "
                    "its initializers draw from Keras's global seed (no fixed seed= and no "
                    "keras.utils.set_random_seed inside build_model)."
                )
            first_weights = weights
        x, y = _round_data(x_train, y_train, n_train, round_index, resample, seed)
        _fit(model, x, y, iterations, batch_size, fit_options, shuffle_seed=seed + round_index)
        rows.append(_predict(model, x_test, len(y_test), loss))
        previous = model
        if verbose:
            print(f"round {round_index + 1}: test loss {_round_loss(rows[-1], y_test, loss):.4f}")
        if tolerance is not None and len(rows) >= min_rounds:
            errors = standard_errors(np.stack(rows), y_test, bayes_pred, loss, seed=seed)
            if max(errors["bias"], errors["variance"]) <= tolerance:
                break
    predictions = np.stack(rows)
    return _result(predictions, y_test, bayes_pred, loss, resample, seed)


def _result(predictions, y, bayes, loss, resample, seed) -> Decomposition:
    terms = decompose(predictions, y, bayes, loss)
    errors = standard_errors(predictions, y, bayes, loss, seed=seed)
    notes = []
    if bayes is None:
        notes.append(
            "noise unknown (no bayes_pred): bias is measured against the observed labels and "
            "includes the noise"
        )
    if loss == "0-1":
        notes.append(
            "variance is Domingos's net variance (negative where the main prediction "
            "is wrong); unsigned_variance is the mean disagreement"
        )
    elif bayes is not None:
        notes.append(
            "noise_term = noise + the test set's cross term 2·mean((main − bayes)·"
            "(bayes − y)), zero in expectation"
        )
    return Decomposition(
        loss=loss,
        expected_loss=terms["expected_loss"],
        bias=terms["bias"],
        variance=terms["variance"],
        noise=terms["noise"],
        noise_term=terms["noise_term"],
        unsigned_variance=terms["unsigned_variance"],
        rounds=predictions.shape[0],
        standard_errors=errors,
        resample=resample,
        note="; ".join(notes) + ".",
        predictions=predictions,
    )


def _flatten(x) -> list:
    import keras

    return keras.tree.flatten(x)


def _pair(data, name: str) -> tuple:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"{name} must be a pair (x, y) of arrays; got {type(data).__name__}.")
    x, y = data
    counts = sorted({len(np.asarray(a)) for a in _flatten(x)} | {len(np.asarray(y))})
    if len(counts) != 1:
        raise ValueError(f"{name} must have as many rows in x as in y; got {counts} rows.")
    if counts[0] < 1:
        raise ValueError(f"{name} must have at least one row; got 0.")
    return x, np.asarray(y)


def _fresh_model(build_model, previous, round_index: int, resample: str, seed: int):
    import keras

    init_seed = seed if resample == "bootstrap" else _round_seed(seed, round_index, "init")
    keras.utils.set_random_seed(init_seed)
    model = build_model()
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"build_model must return a compiled keras.Model; got {type(model).__name__}."
        )
    if model is previous:
        raise ValueError(
            "build_model returned the same model object twice; it must build and compile a "
            "new model on every call (the rounds must not continue each other's training)."
        )
    return model


def _round_seed(seed: int, round_index: int, purpose: str) -> int:
    stream = {"init": 0, "data": 1}[purpose]
    return int(np.random.SeedSequence([seed, round_index, stream]).generate_state(1)[0] >> 1)


def _round_data(x, y, n: int, round_index: int, resample: str, seed: int):
    if resample == "seed":
        return x, y
    import keras

    rows = np.random.default_rng(_round_seed(seed, round_index, "data")).integers(0, n, n)
    return keras.tree.map_structure(lambda a: np.asarray(a)[rows], x), y[rows]


def _fit(model, x, y, iterations, batch_size, fit_options, shuffle_seed: int) -> None:
    if fit_options is not None:
        model.fit(x, y, **{"verbose": 0, **fit_options})
        return
    from reg_callbacks.training import train

    train(
        model,
        x,
        y,
        iterations=iterations,
        log_every=iterations,
        batch_size=batch_size,
        shuffle_seed=shuffle_seed,
    )


def _predict(model, x_test, n_test: int, loss: str) -> np.ndarray:
    from reg_callbacks.bias_variance import predict

    output = predict(model, x_test)
    if not isinstance(output, np.ndarray):
        raise ValueError(
            "the model must have one output for the decomposition; got "
            f"{len(_flatten(output))} outputs."
        )
    if len(output) != n_test or output.ndim > 2:
        raise ValueError(
            f"the model's output must be (test points, columns); got {output.shape} for "
            f"{n_test} test points."
        )
    output = output.reshape(n_test, -1)
    if loss == "squared":
        if output.shape[1] != 1:
            raise ValueError(
                f"loss='squared' needs a one-column output; got {output.shape[1]} columns."
            )
        return output[:, 0].astype(np.float64)
    if output.shape[1] == 1:
        return (output[:, 0] > 0.5).astype(np.int64)
    return np.argmax(output, axis=1).astype(np.int64)


def _round_loss(row, y, loss: str) -> float:
    return float(np.mean(row != y) if loss == "0-1" else np.mean((row - y) ** 2))


def _check_arguments(rounds, iterations, fit_options, resample, tolerance, min_rounds, loss):
    _check_choice("loss", loss, LOSSES)
    _check_choice("resample", resample, RESAMPLES)
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 2:
        raise ValueError(f"rounds must be an integer >= 2; got {rounds!r}.")
    if (iterations is None) == (fit_options is None):
        raise ValueError(
            "give exactly one of iterations (steps of reg_callbacks.train) and fit_options "
            f"(model.fit arguments); got iterations={iterations!r}, fit_options={fit_options!r}."
        )
    if iterations is not None and (
        isinstance(iterations, bool)
        or not isinstance(iterations, (int, np.integer))
        or iterations < 1
    ):
        raise ValueError(f"iterations must be a positive integer; got {iterations!r}.")
    if fit_options is not None and not isinstance(fit_options, Mapping):
        raise ValueError(f"fit_options must be a dict of model.fit arguments; got {fit_options!r}.")
    if tolerance is not None and not (
        isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool) and tolerance > 0
    ):
        raise ValueError(f"tolerance must be None or a number > 0; got {tolerance!r}.")
    if (
        isinstance(min_rounds, bool)
        or not isinstance(min_rounds, (int, np.integer))
        or min_rounds < 2
    ):
        raise ValueError(f"min_rounds must be an integer >= 2; got {min_rounds!r}.")


def _weight_fingerprint(model) -> bytes:
    return b"".join(np.asarray(w).tobytes() for w in model.get_weights())
