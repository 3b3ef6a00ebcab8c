"""Tiers 1 and 3: gradient checking against exact answers, and a negative control.

The checker must pass correct models (the course's J = theta * x, a 3-layer net with and
without L2, a net with dropout) and flag a layer whose backward pass is deliberately wrong,
naming that layer and no other.
"""

import math
import os
import subprocess
import sys

import keras
import model_zoo
import numpy as np
import public_examples
import pytest
from model_zoo import CASES, CustomGradientDense, binary_labelled

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
    assert report.n_params == 4 * 5 + 5 + 5 * 3 + 3 + 3 + 1
    # Every variable along two directions, then its largest gradient one by one.
    assert report.n_variables == 6 and report.n_directions == 12
    assert report.n_checked == 6 and report.mode == "directional"
    assert list(report.per_variable) == [
        f"{layer}/{name}"
        for layer in ("hidden_1", "broken_dense", "output")
        for name in ("kernel", "bias")
    ]


def test_l2_penalty_is_part_of_the_checked_cost(batch):
    plain = three_layer_net(seed=1)
    regularized = three_layer_net(l2=0.1, seed=1)
    regularized.set_weights(plain.get_weights())
    plain_report = gradient_check(plain, *batch, mode="per_parameter")
    report = gradient_check(regularized, *batch, mode="per_parameter")
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


def test_per_parameter_mode_compares_every_parameter(batch):
    report = gradient_check(three_layer_net(), *batch, mode="per_parameter")
    assert report.n_params == report.n_checked == 47 and report.verdict == FINE
    assert report.relative_error < 1e-6
    assert all(not np.isnan(g).any() for g in report.numerical.values())
    assert "47 of 47 parameters one by one" in str(report)


def test_max_params_checks_a_seeded_subset(batch):
    model = three_layer_net()
    first = gradient_check(model, *batch, mode="per_parameter", max_params=10, seed=3)
    again = gradient_check(model, *batch, mode="per_parameter", max_params=10, seed=3)
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
        ({"max_params": 0, "mode": "per_parameter"}, "max_params"),
        ({"max_params": 2.5, "mode": "per_parameter"}, "max_params"),
        ({"seed": -1}, "seed"),
        ({"seed": "zero"}, "seed"),
        ({"mode": "all"}, "mode"),
        ({"directions": 0}, "directions"),
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


# Planted bugs: each flagged "likely a bug" with the culprit variable named first.


class PlantedBugDense(keras.layers.Layer):
    """A square Dense layer (`units` = its input width) whose hand-written backward pass
    has one planted bug: `kernel_scale` (the kernel gradient times 1.02), `transposed` (the
    kernel gradient transposed) or `flipped_bias` (the bias gradient's sign flipped)."""

    def __init__(self, units, bug=None, name=None):
        super().__init__(name=name)
        self.units, self.bug = units, bug

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="random_normal", name="bias")

    def call(self, inputs):
        ops, bug = keras.ops, self.bug

        @ops.custom_gradient
        def affine(x, kernel, bias):
            def backward(*upstream, **_):  # TensorFlow also passes `variables=`
                (up,) = upstream
                d_kernel = ops.matmul(ops.transpose(x), up)
                if bug == "kernel_scale":
                    d_kernel = 1.02 * d_kernel
                elif bug == "transposed":
                    d_kernel = ops.transpose(d_kernel)
                d_bias = ops.sum(up, axis=0)
                if bug == "flipped_bias":
                    d_bias = -d_bias
                return ops.matmul(up, ops.transpose(kernel)), d_kernel, d_bias

            return ops.matmul(x, kernel) + bias, backward

        return ops.tanh(affine(inputs, self.kernel, self.bias))


class StoppedBranch(keras.layers.Layer):
    """A Dense branch whose output goes through `stop_gradient`: no gradient reaches it."""

    def __init__(self, units, name=None):
        super().__init__(name=name)
        self.dense = keras.layers.Dense(units, activation="tanh", name="dense")

    def call(self, inputs):
        return keras.ops.stop_gradient(self.dense(inputs))


def planted_bug_net(bug, seed=0):
    """4 -> [planted (4) | branch (3)] -> concatenate -> Dense(1, sigmoid)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    left = PlantedBugDense(4, bug if bug != "stop_gradient" else None, name="planted")(inputs)
    branch = StoppedBranch if bug == "stop_gradient" else keras.layers.Dense
    right = branch(3, name="branch")(inputs)
    if branch is keras.layers.Dense:
        right = keras.ops.tanh(right)
    merged = keras.layers.Concatenate()([left, right])
    model = keras.Model(inputs, keras.layers.Dense(1, "sigmoid", name="out")(merged))
    model.compile(loss="binary_crossentropy")
    return model


PLANTED = {
    "kernel_scale": "planted/kernel",
    "transposed": "planted/kernel",
    "flipped_bias": "planted/bias",
    "stop_gradient": "branch/",  # both of the branch's variables get no gradient
}


@pytest.mark.parametrize("bug", list(PLANTED))
@pytest.mark.parametrize("mode", ["directional", "per_parameter"])
def test_a_planted_bug_is_flagged_with_its_variable_first(batch, bug, mode):
    report = gradient_check(planted_bug_net(bug), *batch, mode=mode)
    print(f"{bug} ({mode}):\n{report}")
    assert report.verdict == LIKELY_BUG, report.summary()
    assert report.suspect_layers[0].startswith(PLANTED[bug])
    assert report.precision == "float64"
    clean = gradient_check(planted_bug_net(None), *batch, mode=mode)
    assert clean.verdict == FINE and clean.suspect_layers == [], clean.summary()


def test_the_course_clipped_kernel_is_flagged_after_training():
    # The course's last advice: a bug hidden while the weights are small shows after training.
    from sklearn.datasets import make_moons

    from experiments.gradient_check import clipped_dense
    from reg_callbacks import train

    x, y = make_moons(200, noise=0.2, random_state=1)
    x, y = x.astype("float32"), y.reshape(-1, 1).astype("float32")
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(8, "tanh", name="hidden"),
            clipped_dense()(8, "tanh", name="clipped"),
            keras.layers.Dense(1, "sigmoid", name="output"),
        ]
    )
    model.compile(keras.optimizers.SGD(1.0), "binary_crossentropy")
    at_init = gradient_check(model, x[:32], y[:32])
    train(model, x, y, iterations=2000, log_every=2000)
    assert np.abs(model.get_layer("clipped").kernel.numpy()).max() > 1.0  # past the clip
    report = gradient_check(model, x[:32], y[:32])
    print(report)
    assert at_init.verdict == FINE
    assert report.verdict == LIKELY_BUG and report.suspect_layers[0] == "clipped/kernel"


# No false alarm: models written as public examples write them, tiny gradients, kinks.


def test_tiny_gradients_within_the_noise_read_fine():
    # The hidden layer's gradients are ~1e-9: a relative error one rounding step of J makes
    # there is no evidence of a bug.
    for scale in (2e-6, 1e-7):
        for seed in range(3):
            model, x, y = public_examples.tiny_hidden_gradients(seed, output_scale=scale)
            report = gradient_check(model, x, y)
            assert report.verdict == FINE, report.summary()
            report = gradient_check(model, x, y, mode="per_parameter")
            assert report.verdict == FINE, report.summary()


def test_a_bug_in_tiny_gradients_is_still_seen_where_it_stands_out():
    # The same 4 -> 1 -> 1 net with the output weight at 1e-3 and the hidden kernel's
    # gradient doubled: a difference far beyond the noise, so flagged.
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            CustomGradientDense(1, kernel_gradient_scale=2.0, activation="tanh", name="hidden"),
            keras.layers.Dense(1, "sigmoid", name="out"),
        ]
    )
    model.compile(loss="binary_crossentropy")
    kernel, bias = model.get_layer("out").get_weights()
    model.get_layer("out").set_weights([kernel * 1e-3, bias])
    x, y = binary_labelled(np.random.default_rng(0), 16, 4)
    report = gradient_check(model, x, y)
    assert report.verdict == LIKELY_BUG and report.suspect_layers[0] == "hidden/kernel"


@pytest.mark.parametrize("name", list(public_examples.GRADIENT_CHECK_EXAMPLES))
def test_public_examples_are_checked_not_refused(name):
    model, x, y = public_examples.GRADIENT_CHECK_EXAMPLES[name]()
    before = [w.copy() for w in model.get_weights()]
    policies = [layer.dtype_policy.name for layer in model._flatten_layers()]
    report = gradient_check(model, x, y)
    print(f"{name}:\n{report}")
    assert report.verdict == FINE, report.summary()
    assert report.suspect_layers == [] and report.deterministic
    assert report.n_variables == len(model.trainable_variables)
    if name == "multi_head_attention" and keras.backend.backend() == "jax":
        # Keras's JAX attention casts to float32 inside: checked in float32, and said so.
        assert report.precision == "float32"
        assert "float64 was impossible" in str(report) and "multi_head_attention" in str(report)
    else:
        assert report.precision == "float64" and report.notes == []
        assert report.relative_error < 1e-6
    # The model is given back as it was: weights, their dtype, its layers' policies.
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
        assert new.dtype == old.dtype
    assert [layer.dtype_policy.name for layer in model._flatten_layers()] == policies
    np.testing.assert_allclose(model.predict_on_batch(x), model.predict_on_batch(x))


def test_public_example_with_a_bug_is_flagged_through_its_own_call():
    # The trainer wraps a model and scales its logits by a learned temperature: a wrong
    # gradient planted in the wrapped model shows through the wrapper's own `call`.
    keras.utils.set_random_seed(0)
    inner = keras.Sequential(
        [
            keras.Input((4,)),
            CustomGradientDense(5, kernel_gradient_scale=1.02, activation="relu", name="bad"),
            keras.layers.Dense(3),
        ]
    )
    model = public_examples.Trainer(inner)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, size=(16,))
    report = gradient_check(model, x, y)
    assert report.verdict == LIKELY_BUG and report.suspect_layers[0].endswith("bad/kernel")


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("kind", list(CASES))
def test_every_zoo_model_reads_fine_under_five_seeds(kind, seed, monkeypatch):
    monkeypatch.setattr(model_zoo, "seeded_rng", lambda s=0: _seeded(s + seed))
    case = CASES[kind]()
    report = gradient_check(case.model, case.x, case.y)
    assert report.verdict == FINE, report.summary()


def _seeded(seed):
    keras.utils.set_random_seed(seed)
    return np.random.default_rng(seed)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's stateful RNG")
def test_a_model_whose_cost_is_not_deterministic_is_said_so():
    import tensorflow as tf

    class Noisy(keras.layers.Layer):
        def call(self, inputs):
            return inputs + 1e-3 * tf.random.normal(tf.shape(inputs), dtype=inputs.dtype)

    model = keras.Sequential([keras.Input((4,)), Noisy(), keras.layers.Dense(1, "sigmoid")])
    model.compile(loss="binary_crossentropy")
    x, y = binary_labelled(np.random.default_rng(0), 16, 4)
    report = gradient_check(model, x, y)
    assert not report.deterministic
    assert any("not deterministic" in note for note in report.notes)


def test_no_log_spam_on_stderr(tmp_path):
    # TensorFlow's optimizer logged "Not handling type DT_DOUBLE" for every float64 op it
    # skipped: dozens of lines a check. A fresh process with every log level shown.
    script = tmp_path / "check.py"
    script.write_text(
        "import public_examples\n"
        "from reg_callbacks import gradient_check\n"
        "model, x, y = public_examples.xception_style()\n"
        "print(gradient_check(model, x, y).verdict)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fine"
    assert "DT_DOUBLE" not in result.stderr
