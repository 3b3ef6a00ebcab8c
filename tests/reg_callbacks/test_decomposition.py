"""The bias-variance decomposition: the math against hand-checked and independent answers,
the rounds against Keras's own predictions, and its errors."""

import keras
import numpy as np
import pytest

from reg_callbacks import bias_variance_decomposition
from reg_callbacks.decomposition import decompose, standard_errors

# The hand-checked 3-point example: 4 rounds, observed labels t, Bayes-optimal labels y*.
#   point 0: predictions 0,0,1,0; t = y* = 0: main 0, unbiased, V = 1/4, loss 1/4.
#   point 1: predictions 1,0,0,0; t = y* = 1: main 0, biased, V = 1/4, net -1/4, loss 3/4.
#   point 2: predictions 1,1,1,0; t = 0, y* = 1 (a flipped label): main 1, unbiased,
#            V = 1/4, N = 1, c1 = 2·P(y = y*) - 1 = 1/2, loss P(y ≠ 0) = 3/4.
THREE_POINTS = np.array([[0, 1, 1], [0, 0, 1], [1, 0, 1], [0, 0, 0]])
OBSERVED = np.array([0, 1, 0])
BAYES = np.array([0, 1, 1])


def test_the_three_point_example_by_hand():
    terms = decompose(THREE_POINTS, OBSERVED, BAYES)
    expected = {
        "expected_loss": (1 / 4 + 3 / 4 + 3 / 4) / 3,
        "bias": 1 / 3,
        "variance": (1 / 4 - 1 / 4 + 1 / 4) / 3,
        "noise": 1 / 3,
        "noise_term": (1 / 2) / 3,
        "unsigned_variance": 1 / 4,
    }
    assert terms == pytest.approx(expected, abs=1e-12)


def test_the_three_point_example_without_bayes_labels_folds_noise_into_bias():
    terms = decompose(THREE_POINTS, OBSERVED)
    # Point 2 is now judged against t = 0: main 1 is biased, its net variance -P(y = 0).
    assert terms == pytest.approx(
        {
            "expected_loss": 1.75 / 3,
            "bias": 2 / 3,
            "variance": (1 / 4 - 1 / 4 - 1 / 4) / 3,
            "noise": None,
            "noise_term": 0.0,
            "unsigned_variance": 1 / 4,
        },
        abs=1e-12,
    )


def test_squared_loss_by_hand():
    # Means (2, 2), spreads (1, 0); bias² ((2-1)² + (2-1)²)/2, noise ((2-1)² + (0-1)²)/2,
    # loss: point 0 (1 + 1)/2, point 1 (4 + 4)/2; the cross term 2·mean(1·-1, 1·1) = 0.
    terms = decompose(np.array([[1.0, 2.0], [3.0, 2.0]]), [2.0, 0.0], [1.0, 1.0], "squared")
    assert terms == pytest.approx(
        {
            "expected_loss": 2.5,
            "bias": 1.0,
            "variance": 0.5,
            "noise": 1.0,
            "noise_term": 1.0,
            "unsigned_variance": 0.5,
        }
    )


def domingos_by_loops(predictions, y, bayes):
    """Domingos (2000), Theorem 2 with its c1, c2, one point at a time in plain Python."""
    rounds, points = predictions.shape
    totals = dict.fromkeys(("loss", "noise", "c1_noise", "bias", "c2_variance", "variance"), 0.0)
    for j in range(points):
        column = list(predictions[:, j])
        counts = {label: column.count(label) for label in set(column)}
        main = min(label for label in counts if counts[label] == max(counts.values()))
        p = {label: counts.get(label, 0) / rounds for label in set(column) | {y[j], bayes[j]}}
        noise = float(y[j] != bayes[j])
        bias = float(main != bayes[j])
        variance = 1 - p[main]
        if noise:
            c1 = p[bayes[j]] - (1 - p[bayes[j]]) * (
                p[y[j]] / (1 - p[bayes[j]]) if p[bayes[j]] < 1 else 0
            )
        else:
            c1 = 0.0
        if not bias:
            c2 = 1.0
        else:
            c2 = -(p[bayes[j]] / variance) if variance else 0.0
        totals["loss"] += sum(pred != y[j] for pred in column) / rounds
        totals["noise"] += noise
        totals["c1_noise"] += c1 * noise
        totals["bias"] += bias
        totals["c2_variance"] += c2 * variance
        totals["variance"] += variance
    return {key: value / points for key, value in totals.items()}


@pytest.mark.parametrize("classes, rounds", [(2, 7), (2, 10), (3, 9), (4, 2)])
def test_zero_one_terms_match_a_loop_over_points_and_the_identity_holds(classes, rounds):
    rng = np.random.default_rng(classes * 100 + rounds)
    for _ in range(20):
        bayes = rng.integers(0, classes, 50)
        y = np.where(rng.random(50) < 0.2, rng.integers(0, classes, 50), bayes)
        # Rounds that mostly agree with the truth, so both biased and unbiased points occur.
        skill = rng.random(50)
        predictions = np.where(
            rng.random((rounds, 50)) < skill, bayes, rng.integers(0, classes, (rounds, 50))
        )
        terms = decompose(predictions, y, bayes)
        loops = domingos_by_loops(predictions, y, bayes)
        assert terms["expected_loss"] == pytest.approx(loops["loss"], abs=1e-12)
        assert terms["noise"] == pytest.approx(loops["noise"], abs=1e-12)
        assert terms["noise_term"] == pytest.approx(loops["c1_noise"], abs=1e-12)
        assert terms["bias"] == pytest.approx(loops["bias"], abs=1e-12)
        assert terms["variance"] == pytest.approx(loops["c2_variance"], abs=1e-12)
        assert terms["unsigned_variance"] == pytest.approx(loops["variance"], abs=1e-12)
        # Domingos's identity, on the sample, exactly.
        assert terms["expected_loss"] == pytest.approx(
            terms["noise_term"] + terms["bias"] + terms["variance"], abs=1e-12
        )


def test_without_bayes_labels_bias_and_unsigned_variance_are_mlxtends():
    """mlxtend's 0-1 definitions, written out: main = bincount's argmax, bias against the
    observed labels, variance = mean disagreement with the main prediction."""
    rng = np.random.default_rng(3)
    predictions = rng.integers(0, 2, (11, 40))
    y = rng.integers(0, 2, 40)
    main = np.apply_along_axis(lambda column: np.argmax(np.bincount(column)), 0, predictions)
    terms = decompose(predictions, y)
    assert terms["bias"] == pytest.approx(np.mean(main != y))
    assert terms["unsigned_variance"] == pytest.approx(np.mean(predictions != main))
    assert terms["expected_loss"] == pytest.approx(np.mean(predictions != y))
    assert terms["expected_loss"] == pytest.approx(terms["bias"] + terms["variance"])


def test_squared_terms_and_identity_on_random_matrices():
    rng = np.random.default_rng(5)
    predictions = rng.normal(size=(13, 30))
    y, bayes = rng.normal(size=30), rng.normal(size=30)
    terms = decompose(predictions, y, bayes, "squared")
    main = predictions.mean(axis=0)
    assert terms["expected_loss"] == pytest.approx(np.mean((predictions - y) ** 2))
    assert terms["bias"] == pytest.approx(np.mean((main - bayes) ** 2))
    assert terms["variance"] == pytest.approx(np.mean(predictions.var(axis=0)))
    assert terms["noise"] == pytest.approx(np.mean((y - bayes) ** 2))
    assert terms["expected_loss"] == pytest.approx(
        terms["noise_term"] + terms["bias"] + terms["variance"], abs=1e-12
    )


def test_standard_error_of_the_expected_loss_is_that_of_a_mean_over_rounds():
    """The loss is a mean of per-round losses: its standard error is s / sqrt(rounds)."""
    rng = np.random.default_rng(7)
    skill = rng.random(200)
    predictions = (rng.random((40, 200)) < skill).astype(int)
    y = np.ones(200, int)
    per_round = np.mean(predictions != y, axis=1)
    formula = per_round.std(ddof=1) / np.sqrt(len(per_round))
    errors = standard_errors(predictions, y, resamples=4000, seed=1)
    assert errors["expected_loss"] == pytest.approx(formula, rel=0.1)
    assert set(errors) >= {"bias", "variance"}
    # Ten times the rounds of the same kind: about a third of the error (the net variance
    # shrinks slower: a point whose vote is near a tie swaps sign with the main prediction).
    more = (rng.random((400, 200)) < skill).astype(int)
    assert standard_errors(more, y, seed=1)["unsigned_variance"] < 0.5 * errors["unsigned_variance"]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: decompose(THREE_POINTS[:1], OBSERVED), "rounds >= 2"),
        (lambda: decompose(THREE_POINTS, OBSERVED, loss="hinge"), "loss must be one of '0-1'"),
        (lambda: decompose(THREE_POINTS, [0, 1]), "one label per column"),
        (lambda: decompose(THREE_POINTS, [0, 0.5, 1]), "must be class labels"),
        (lambda: decompose(THREE_POINTS, OBSERVED, [0, 1]), "one value per test point"),
    ],
)
def test_pure_functions_refuse_bad_input_in_one_line(call, message):
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------------------------------------
# Training rounds on real Keras models

pytestmark_backends = pytest.mark.backends


def moons(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2)).astype("float32")
    return x, (x[:, 0] * x[:, 1] > 0).astype("int64")


TRAIN, TEST = moons(60, 0), moons(40, 1)


def sequential():
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(1, "sigmoid")]
    )
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    return model


class Classifier(keras.Model):
    """Written as public examples write them: no **kwargs passed on, no get_config."""

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.out = keras.layers.Dense(3)

    def call(self, x):
        return self.out(self.hidden(x))


def subclassed_softmax():
    model = Classifier()
    model.compile(
        keras.optimizers.Adam(0.05),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def functional_dict_inputs():
    first, second = keras.Input((1,), name="left_coordinate"), keras.Input((1,), name="other")
    hidden = keras.layers.Dense(8, "relu")(keras.layers.Concatenate()([first, second]))
    model = keras.Model({"a": first, "b": second}, keras.layers.Dense(1, "sigmoid")(hidden))
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    return model


def as_dict(x):
    return {"a": x[:, :1], "b": x[:, 1:]}


@pytestmark_backends
@pytest.mark.parametrize("kind", ["sequential", "subclassed", "dict inputs"])
def test_rounds_record_each_models_own_predictions(kind):
    built = []

    def build_model():
        model = {"sequential": sequential, "subclassed": subclassed_softmax}.get(
            kind, functional_dict_inputs
        )()
        built.append(model)
        return model

    x_train, x_test = TRAIN[0], TEST[0]
    y_train, y_test = TRAIN[1], TEST[1]
    if kind == "subclassed":  # three classes
        y_train, y_test = y_train + (TRAIN[0][:, 0] > 0.5), y_test + (TEST[0][:, 0] > 0.5)
    if kind == "dict inputs":
        x_train, x_test = as_dict(x_train), as_dict(x_test)
    result = bias_variance_decomposition(
        build_model, (x_train, y_train), (x_test, y_test), rounds=3, iterations=30, seed=4
    )
    assert result.rounds == 3 == len(built)
    for row, model in zip(result.predictions, built, strict=True):
        output = model.predict(x_test, verbose=0)  # Keras's own predict on the trained model
        classes = (output[:, 0] > 0.5) if output.shape[1] == 1 else np.argmax(output, axis=1)
        np.testing.assert_array_equal(row, classes)
    loops = domingos_by_loops(result.predictions, y_test, y_test)
    assert result.expected_loss == pytest.approx(loops["loss"])
    assert result.bias == pytest.approx(loops["bias"])
    assert result.variance == pytest.approx(loops["c2_variance"])
    assert result.noise is None and "noise unknown" in result.note
    assert result.expected_loss == pytest.approx(result.noise_term + result.bias + result.variance)


@pytestmark_backends
def test_bootstrap_keeps_the_initialization_and_seed_changes_it():
    initial = {"bootstrap": [], "seed": []}

    def recording(resample):
        def build_model():
            model = sequential()
            initial[resample].append([w.copy() for w in model.get_weights()])
            return model

        return build_model

    for resample in initial:
        bias_variance_decomposition(
            recording(resample), TRAIN, TEST, rounds=3, iterations=5, resample=resample
        )
    first, *others = initial["bootstrap"]
    for weights in others:
        for a, b in zip(first, weights, strict=True):
            np.testing.assert_array_equal(a, b)
    first, *others = initial["seed"]
    assert all(not np.array_equal(first[0], weights[0]) for weights in others)


@pytestmark_backends
def test_tolerance_stops_once_the_standard_errors_are_small_enough():
    bayes = TEST[1]
    loose = bias_variance_decomposition(
        sequential, TRAIN, TEST, rounds=8, iterations=20, bayes_pred=bayes,
        tolerance=1.0, min_rounds=3,
    )  # fmt: skip
    assert loose.rounds == 3
    strict = bias_variance_decomposition(
        sequential, TRAIN, TEST, rounds=4, iterations=20, bayes_pred=bayes, tolerance=1e-9,
        min_rounds=3,
    )  # fmt: skip
    assert strict.rounds == 4
    assert loose.noise == 0.0 and "noise unknown" not in loose.note
    for result in (loose, strict):
        assert result.predictions.shape == (result.rounds, len(TEST[1]))


def test_fit_options_train_with_fit():
    seen = []

    class Counting(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(epoch)

    result = bias_variance_decomposition(
        sequential, TRAIN, TEST, rounds=2, fit_options={"epochs": 3, "callbacks": [Counting()]}
    )
    assert result.rounds == 2 and seen == [0, 1, 2, 0, 1, 2]


def test_squared_loss_on_a_regression_net():
    def regression():
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.1), "mse")
        return model

    x, _ = TRAIN
    y = x @ np.array([1.0, -2.0]) + 0.1 * np.random.default_rng(0).normal(size=len(x))
    x_test, _ = TEST
    truth = x_test @ np.array([1.0, -2.0])
    result = bias_variance_decomposition(
        regression, (x, y), (x_test, truth), rounds=4, iterations=200, loss="squared",
        bayes_pred=truth,
    )  # fmt: skip
    # A linear net on a linear truth: almost no bias; noise is 0 on noise-free test targets.
    assert result.noise == 0.0 and result.bias < 0.05
    assert result.expected_loss == pytest.approx(result.noise_term + result.bias + result.variance)


def same_model_every_time():
    model = sequential()
    return lambda: model


def pinned_seed():
    keras.utils.set_random_seed(0)
    return sequential()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(build_model=same_model_every_time()), "returned the same model object twice"),
        (dict(build_model=pinned_seed, resample="seed"), "same initial weights in rounds 0 and 1"),
        (dict(rounds=1), "rounds must be an integer >= 2"),
        (dict(loss="hinge"), "loss must be one of '0-1', 'squared'"),
        (dict(resample="jackknife"), "resample must be one of"),
        (dict(train=(TRAIN[0], TRAIN[1][:-1])), "as many rows in x as in y"),
        (dict(test=(TEST[0], TEST[1] + 0.5)), "must be class labels"),
        (dict(bayes_pred=TEST[1][:-1]), "one value per test point"),
        (dict(iterations=None), "exactly one of iterations"),
        (dict(fit_options={"epochs": 1}), "exactly one of iterations"),
        (dict(tolerance=0), "tolerance must be None or a number > 0"),
        (dict(build_model=lambda: "not a model"), "must return a compiled keras.Model"),
    ],
)
def test_bad_input_is_one_line_naming_what_is_allowed(kwargs, message):
    arguments = dict(build_model=sequential, train=TRAIN, test=TEST, rounds=3, iterations=2)
    arguments.update(kwargs)
    build_model = arguments.pop("build_model")
    train, test = arguments.pop("train"), arguments.pop("test")
    with pytest.raises(ValueError, match=message) as error:
        bias_variance_decomposition(build_model, train, test, **arguments)
    assert "\n" not in str(error.value)
