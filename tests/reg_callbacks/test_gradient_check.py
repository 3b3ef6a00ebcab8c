"""Tiers 1 and 3: gradient checking against exact answers, and a negative control.

The checker must pass correct models (the course's J = theta * x, a 3-layer net with and
without L2, a net with dropout) and flag a layer whose backward pass is deliberately wrong,
naming that layer and no other.
"""

import math

import keras
import numpy as np
import pytest

from reg_callbacks.gradient_checking import (
    FINE,
    LIKELY_BUG,
    GradientCheckReport,
    gradient_check,
)

# Every test here runs on each backend: `KERAS_BACKEND=jax pytest -m backends`.
pytestmark = pytest.mark.backends


def mean_prediction(y_true, y_pred):
    """The cost J = mean(y_pred): with one example and one weight, J = theta * x."""
    return keras.ops.mean(y_pred)


@keras.ops.custom_gradient
def matmul_with_half_kernel_gradient(inputs, kernel):
    """inputs @ kernel whose backward pass forgets a factor 2 for the kernel."""

    def grad(*upstream, **_):  # TensorFlow also passes `variables=`
        (up,) = upstream
        return (
            keras.ops.matmul(up, keras.ops.transpose(kernel)),
            0.5 * keras.ops.matmul(keras.ops.transpose(inputs), up),
        )

    return keras.ops.matmul(inputs, kernel), grad


class BrokenDense(keras.layers.Dense):
    """Dense with a wrong kernel gradient, written with `keras.ops.custom_gradient`.

    Given the kernel variable itself, as a user writes it: on TensorFlow that works only
    inside a compiled function, as under `fit`, and gradient_check compiles its passes.
    """

    def call(self, inputs):
        outputs = matmul_with_half_kernel_gradient(inputs, self.kernel)
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs)


def three_layer_net(l2=0.0, middle=keras.layers.Dense, seed=0):
    """4 -> 5 -> 3 -> 1, relu/relu/sigmoid, binary cross-entropy; same weights for a seed."""
    keras.utils.set_random_seed(seed)
    regularizer = keras.regularizers.L2(l2) if l2 else None
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(5, "relu", kernel_regularizer=regularizer, name="hidden_1")(inputs)
    hidden = middle(3, "relu", kernel_regularizer=regularizer, name="broken_dense")(hidden)
    outputs = keras.layers.Dense(1, "sigmoid", kernel_regularizer=regularizer, name="output")(
        hidden
    )
    model = keras.Model(inputs, outputs)
    model.compile(loss=keras.losses.BinaryCrossentropy())
    return model


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = rng.integers(0, 2, size=(16, 1)).astype("float32")
    return x, y


# Tier 1: exact answers.


def test_one_parameter_cost_theta_times_x():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    model.set_weights([np.array([[4.0]])])
    x, y = np.array([[2.0]]), np.zeros((1, 1))
    report = gradient_check(model, x, y, loss=mean_prediction)
    print(f"J = theta * x: relative error {report.relative_error:.2e}")
    (path,) = report.per_variable
    assert report.cost == 8.0
    assert report.analytic[path].item() == 2.0  # dJ/dtheta = x
    assert report.numerical[path].item() == pytest.approx(2.0, rel=1e-8)
    # The course sees 2.9e-10; float32 could not get near 1e-7 with epsilon = 1e-7.
    assert report.relative_error < 1e-7
    assert report.verdict == FINE and report.n_params == 1


def test_report_is_frozen_and_prints_a_summary(batch):
    report = gradient_check(three_layer_net(), *batch)
    assert isinstance(report, GradientCheckReport)
    with pytest.raises(AttributeError):
        report.verdict = "other"
    text = str(report)
    assert text.startswith("Gradient check: relative error") and "-> fine" in text
    assert len(text.splitlines()) <= 4


# Tier 3: references with a negative control.


def test_correct_three_layer_net_is_fine(batch):
    report = gradient_check(three_layer_net(), *batch)
    print(f"3-layer net: relative error {report.relative_error:.2e}")
    assert report.relative_error < 1e-6
    assert report.verdict == FINE and report.suspect_layers == []
    assert report.n_params == report.n_checked == 4 * 5 + 5 + 5 * 3 + 3 + 3 + 1
    assert list(report.per_variable) == [
        f"{layer}/{name}"
        for layer in ("hidden_1", "broken_dense", "output")
        for name in ("kernel", "bias")
    ]


def test_l2_penalty_is_part_of_the_checked_cost(batch):
    plain = three_layer_net(seed=1)
    regularized = three_layer_net(l2=0.1, seed=1)
    regularized.set_weights(plain.get_weights())
    plain_report = gradient_check(plain, *batch)
    report = gradient_check(regularized, *batch)
    print(f"3-layer net + L2(0.1): relative error {report.relative_error:.2e}")
    assert report.relative_error < 1e-6 and report.verdict == FINE
    # Keras's L2(l) adds l * sum(W**2) to J, so both gradients move by 2 * l * W.
    for layer in ("hidden_1", "broken_dense", "output"):
        path = f"{layer}/kernel"
        weight = regularized.get_layer(layer).kernel.numpy()
        for gradients in ("analytic", "numerical"):
            shift = getattr(report, gradients)[path] - getattr(plain_report, gradients)[path]
            np.testing.assert_allclose(shift, 2 * 0.1 * weight, atol=1e-6)


def test_broken_layer_is_flagged_and_named(batch):
    correct = gradient_check(three_layer_net(seed=2), *batch)
    report = gradient_check(three_layer_net(middle=BrokenDense, seed=2), *batch)
    print(f"broken_dense: relative error {report.relative_error:.2e}\n{report}")
    assert correct.verdict == FINE and correct.suspect_layers == []
    assert report.verdict == LIKELY_BUG
    assert report.suspect_layers == ["broken_dense/kernel"]
    # Half the true gradient: |g - 2g| / (|g| + |2g|) = 1/3 for that kernel.
    assert report.per_variable["broken_dense/kernel"] == pytest.approx(1 / 3, rel=1e-6)
    assert report.worst[0].path == "broken_dense/kernel"
    assert report.worst[0].analytic == pytest.approx(report.worst[0].numerical / 2, rel=1e-6)


def test_dropout_is_off_during_the_check(batch):
    x, y = batch
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, "relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(1, "sigmoid"),
        ]
    )
    model.compile(loss="binary_crossentropy")
    report = gradient_check(model, x, y)
    print(f"dropout net: relative error {report.relative_error:.2e}")
    assert report.relative_error < 1e-6 and report.verdict == FINE
    inference_cost = keras.losses.binary_crossentropy(y, model(x, training=False))
    assert report.cost == pytest.approx(float(keras.ops.mean(inference_cost)), rel=1e-5)


def test_max_params_checks_a_seeded_subset(batch):
    model = three_layer_net()
    first = gradient_check(model, *batch, max_params=10, seed=3)
    again = gradient_check(model, *batch, max_params=10, seed=3)
    assert first.n_checked == 10 and first.n_params == 47
    checked = np.concatenate([~np.isnan(g.ravel()) for g in first.numerical.values()])
    assert checked.sum() == 10
    assert first.relative_error == again.relative_error
    assert first.verdict == FINE


# Arguments and side effects.


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"epsilon": -1.0}, "epsilon"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"epsilon": 0.5}, "epsilon"),
        ({"epsilon": math.nan}, "epsilon"),
        ({"epsilon": "1e-7"}, "epsilon"),
        ({"max_params": 0}, "max_params"),
        ({"max_params": 2.5}, "max_params"),
        ({"seed": -1}, "seed"),
        ({"seed": "zero"}, "seed"),
    ],
)
def test_bad_arguments_name_the_argument(batch, kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        gradient_check(three_layer_net(), *batch, **kwargs)


def test_epsilon_message_states_the_allowed_range(batch):
    with pytest.raises(ValueError, match=r"epsilon must be in \(0, 0.01\); got -1.0."):
        gradient_check(three_layer_net(), *batch, epsilon=-1.0)


def test_uncompiled_model_needs_a_loss(batch):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="^loss must be given"):
        gradient_check(model, *batch)


def test_dtype_policy_and_weights_are_left_alone(batch):
    model = three_layer_net()
    before = [w.copy() for w in model.get_weights()]
    policy, floatx = keras.config.dtype_policy().name, keras.config.floatx()
    gradient_check(model, *batch)
    assert keras.config.dtype_policy().name == policy == "float32"
    assert keras.config.floatx() == floatx == "float32"
    after = model.get_weights()
    assert all(a.dtype == np.float32 for a in after)
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old, new)


def test_dtype_policy_is_restored_when_the_check_fails(batch):
    def failing_loss(y_true, y_pred):
        raise RuntimeError("loss failed")

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(RuntimeError, match="loss failed"):
        gradient_check(model, *batch, loss=failing_loss)
    assert keras.config.dtype_policy().name == "float32"
    assert keras.config.floatx() == "float32"


def test_package_attribute_is_the_function_after_the_module_is_imported():
    import reg_callbacks
    import reg_callbacks.gradient_checking  # noqa: F401

    assert callable(reg_callbacks.gradient_check)
    assert reg_callbacks.gradient_check.__name__ == "gradient_check"
