"""Gradient checking: backprop agrees with finite differences to ~1e-9, and a planted bug shows.

The course checks backprop by the two-sided difference (J(θ + ε) − J(θ − ε)) / 2ε with
ε = 1e-7 and the relative error ‖g − g̃‖ / (‖g‖ + ‖g̃‖): ~1e-7 is fine, ~1e-3 is a bug. Here
`reg_callbacks.gradient_check` does it for Keras models in float64 on the course's own cases
(its `gradient_check_n_test_case`: `np.random.seed(1)`, x 4×3, y = [1, 1, 0], a 4→5→3→1
ReLU/ReLU/sigmoid net with normal weights):

| case     | what                                        | course       | here                 |
|----------|---------------------------------------------|--------------|----------------------|
| 1d       | J = θx, θ = 4, x = 2                        | 2.9e-10      | 2.9e-10 (same bits)  |
| net      | the 3-layer net, Keras cross-entropy        | 1.19e-7      | 1.1e-9               |
| net      | the same with the course's cost formula     | 1.19e-7      | 4.6e-8               |
| l2       | + L2 with λ = 0.7 (penalty λ/(2m)·Σ‖W‖²)    | —            | 1.1e-9, J + penalty  |
| broken   | the course's planted bugs: dW2 ×2, db1 ×4   | 0.2850931568 | 0.2850931, flagged   |
| trained  | a bug hidden while weights are small        | check again  | fine, then flagged   |

Why 1e-9 and not the course's 1e-7: the third example's prediction is 0.99887, and the
course computes −log(1 − a) from the probability, losing ~3 digits to cancellation; each lost
digit of J costs one of the difference quotient. Keras computes the cross-entropy from the
logit, so the rounding noise of J/ε is ~50× smaller. With the course's formula as the loss
the error rises to 4.6e-8. The planted bugs are the course's own (`dW2 = ... * 2`, `db1 =
4./m * ...`), rebuilt as a layer whose backward pass scales its kernel or bias gradient
(`keras.ops.custom_gradient`); the checker names exactly those two variables (`layer_2/kernel`,
`layer_1/bias`) and no other. With L2 on, the checked J includes the penalty, so a backprop
that forgot it would show; the run logs J with and without it.

The course's last advice: a backprop bug can hide while the weights are small, so check at
initialization and again after some training. The `trained` case plants such a bug: a layer
whose forward pass clips its kernel to [−1, 1] (a weight constraint written into the layer)
and whose hand-written backward pass forgets the clip's mask. At initialization every weight
is inside the clip, the backward pass is right and the check reads "fine"; trained on noisy
moons (which the wrong gradient lets push weights past 1), the same check reads "likely a
bug" and names `clipped/kernel`.

Everything lands in one MLflow run: `relative_error/<case>` (and per variable) as metrics,
`verdict/<case>` and `suspect_layers/<case>` as tags, the reports as `gradient_check.txt`,
and a bar chart of the errors. No training, so no bias/variance tag.

Run: `python -m experiments.gradient_check` (or `--case 1d|net|l2|broken|trained`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from experiments.harness.cli import main
from experiments.harness.datasets import DataSplit
from experiments.harness.runner import tracked_run

Case = Literal["all", "1d", "net", "l2", "broken", "trained"]
CASES = ("1d", "net", "l2", "broken", "trained")
TRAINED_ITERATIONS = 2000  # full-batch steps of the `trained` case, at learning rate 1
COURSE = {"1d": 2.919335883291695e-10, "net": 1.1890913022840002e-07, "broken": 0.2850931567761624}


@dataclass(frozen=True)
class Config:
    case: Case = "all"
    epsilon: float = 1e-7
    lambd: float = 0.7  # the course's λ in the cost term λ/(2m)·Σ‖W‖² (case l2)
    seed: int = 1  # NumPy seed of the course's test case (its data and weights)

    def __post_init__(self):
        if self.case not in ("all", *CASES):
            raise ValueError(f"case must be one of all, {', '.join(CASES)}; got {self.case!r}.")
        if not 0 < self.epsilon < 1e-2:
            raise ValueError(f"epsilon must be in (0, 0.01); got {self.epsilon}.")
        if not self.lambd >= 0:
            raise ValueError(f"lambd must be >= 0; got {self.lambd}.")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0; got {self.seed}.")


def course_test_case(seed: int = 1) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The course's `gradient_check_n_test_case`, samples as rows: x (3, 4), y (3, 1), weights.

    Draws in the course's order after `np.random.seed(seed)`; the course's W (out, in) and b
    (out, 1) become Keras kernels (in, out) and biases (out,). NumPy's global RNG state is
    restored afterwards.
    """
    saved = np.random.get_state()
    try:
        np.random.seed(seed)
        x = np.random.randn(4, 3)
        y = np.array([1.0, 1.0, 0.0])
        shapes = {
            "W1": (5, 4),
            "b1": (5, 1),
            "W2": (3, 5),
            "b2": (3, 1),
            "W3": (1, 3),
            "b3": (1, 1),
        }
        course = {name: np.random.randn(*shape) for name, shape in shapes.items()}
    finally:
        np.random.set_state(saved)
    weights = {}
    for layer in (1, 2, 3):
        weights[f"kernel_{layer}"] = course[f"W{layer}"].T
        weights[f"bias_{layer}"] = course[f"b{layer}"].ravel()
    return x.T, y.reshape(-1, 1), weights


def make_data(cfg: Config) -> DataSplit:
    x, y, _ = course_test_case(cfg.seed)
    return DataSplit(x, y, x, y, source=f"course gradient_check_n_test_case (seed {cfg.seed})")


def numpy_cost(weights: dict[str, np.ndarray], x, y) -> float:
    """The net's cross-entropy without penalty, forward in NumPy float64: an independent J."""
    a = np.asarray(x, dtype=np.float64)
    for i in (1, 2, 3):
        z = a @ weights[f"kernel_{i}"] + weights[f"bias_{i}"]
        a = np.maximum(z, 0) if i < 3 else z
    return float(np.mean(np.logaddexp(0, a) - np.asarray(y) * a))  # from the logit, stably


def course_cost(y_true, y_pred):
    """The course's cross-entropy, computed from probabilities: −mean(y log a + (1−y) log(1−a))."""
    import keras

    ops = keras.ops
    return -ops.mean(y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred))


def scaled_gradient_dense():
    """A Dense layer whose backward pass multiplies its kernel/bias gradients: a planted bug."""
    import keras

    class ScaledGradientDense(keras.layers.Dense):
        def __init__(self, units, *args, kernel_grad_scale=1.0, bias_grad_scale=1.0, **kwargs):
            super().__init__(units, *args, **kwargs)
            self.kernel_grad_scale = kernel_grad_scale
            self.bias_grad_scale = bias_grad_scale

        def get_config(self):
            return {
                **super().get_config(),
                "kernel_grad_scale": self.kernel_grad_scale,
                "bias_grad_scale": self.bias_grad_scale,
            }

        def call(self, inputs):
            kernel_scale, bias_scale = self.kernel_grad_scale, self.bias_grad_scale
            ops = keras.ops

            @ops.custom_gradient
            def affine(inputs, kernel, bias):
                def backward(*upstream, **_):  # TensorFlow also passes `variables=`
                    (up,) = upstream
                    return (
                        ops.matmul(up, ops.transpose(kernel)),
                        kernel_scale * ops.matmul(ops.transpose(inputs), up),
                        bias_scale * ops.sum(up, axis=0),
                    )

                return ops.matmul(inputs, kernel) + bias, backward

            return self.activation(affine(inputs, self.kernel, self.bias))

    return ScaledGradientDense


def clipped_dense():
    """A Dense layer that clips its kernel to [-1, 1] in the forward pass, with a hand-written
    backward pass that forgets the clip (its gradient reaches weights the clip cut off)."""
    import keras

    @keras.saving.register_keras_serializable(package="gradient_check")
    class ClippedDense(keras.layers.Dense):
        def call(self, inputs):
            ops = keras.ops

            @ops.custom_gradient
            def clipped_matmul(x, kernel):
                def backward(*upstream, **_):
                    (up,) = upstream
                    clipped = ops.clip(kernel, -1.0, 1.0)
                    # The bug: the true kernel gradient is zero where |kernel| > 1.
                    return ops.matmul(up, ops.transpose(clipped)), ops.matmul(ops.transpose(x), up)

                return ops.matmul(x, ops.clip(kernel, -1.0, 1.0)), backward

            return self.activation(clipped_matmul(inputs, self.kernel) + self.bias)

    return ClippedDense


def trained_check(cfg: Config) -> dict:
    """The `trained` case: the clipped layer's check at initialization and after training."""
    import keras
    from sklearn.datasets import make_moons

    from reg_callbacks import gradient_check, train

    x, y = make_moons(200, noise=0.2, random_state=cfg.seed)
    x, y = x.astype("float32"), y.reshape(-1, 1).astype("float32")
    keras.utils.set_random_seed(cfg.seed)
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(8, "tanh", name="hidden"),
            clipped_dense()(8, "tanh", name="clipped"),
            keras.layers.Dense(1, "sigmoid", name="output"),
        ],
        name="clipped_net",
    )
    model.compile(keras.optimizers.SGD(1.0), "binary_crossentropy")
    probe = x[:32], y[:32]
    at_init = gradient_check(model, *probe, cfg.epsilon)
    train(model, x, y, iterations=TRAINED_ITERATIONS, log_every=TRAINED_ITERATIONS)
    return {
        "report": gradient_check(model, *probe, cfg.epsilon),
        "at_init": at_init,
        "largest_weight": float(abs(model.get_layer("clipped").kernel.numpy()).max()),
    }


def build_model(weights: dict[str, np.ndarray], *, l2: float = 0.0, broken: bool = False):
    """The course's 4→5→3→1 net (ReLU, ReLU, sigmoid) with its weights; Keras pieces only.

    `l2` is Keras's L2 factor on every kernel; `broken` plants the course's two bugs. The
    layers hold float64 so that the course's weights are checked exactly, not rounded to
    float32 (which moves the cost in its 8th digit).
    """
    import keras

    regularizer = keras.regularizers.L2(l2) if l2 else None
    dense = scaled_gradient_dense() if broken else keras.layers.Dense
    bugs = {1: {"bias_grad_scale": 4.0}, 2: {"kernel_grad_scale": 2.0}} if broken else {}
    layers = [keras.Input((4,), dtype="float64", name="x")]
    for i, (units, activation) in enumerate(((5, "relu"), (3, "relu"), (1, "sigmoid")), 1):
        layers.append(
            dense(
                units,
                activation,
                kernel_regularizer=regularizer,
                name=f"layer_{i}",
                dtype="float64",
                **bugs.get(i, {}),
            )
        )
    model = keras.Sequential(layers, name="broken_net" if broken else "net_l2" if l2 else "net")
    model.compile(loss="binary_crossentropy")
    model.set_weights([weights[f"{kind}_{i}"] for i in (1, 2, 3) for kind in ("kernel", "bias")])
    return model


def one_dimensional(epsilon: float):
    """The course's J = θx with θ = 4, x = 2: a one-weight linear model and the loss mean(ŷ)."""
    import keras

    from reg_callbacks import gradient_check

    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, name="theta")], name="one_d"
    )
    model.set_weights([np.array([[4.0]])])
    return gradient_check(
        model,
        np.array([[2.0]]),
        np.zeros((1, 1)),
        epsilon,
        loss=lambda _, y_pred: keras.ops.mean(y_pred),
    )


def check(case: str, cfg: Config, data: DataSplit, weights: dict) -> dict:
    """Run one case; returns its report(s) and the numbers to log."""
    from reg_callbacks import backends

    if case == "trained":
        return trained_check(cfg)
    # The course's weights must stay float64 from the start: on JAX that needs its x64
    # switch (a no-op scope on TensorFlow), which gradient_check itself turns on only later.
    with backends.current().float64_scope():
        return course_check(case, cfg, data, weights)


def course_check(case: str, cfg: Config, data: DataSplit, weights: dict) -> dict:
    from reg_callbacks.gradient_checking import gradient_check

    x, y = data.x_train, data.y_train
    if case == "1d":
        return {"report": one_dimensional(cfg.epsilon)}
    if case == "net":
        model = build_model(weights)
        return {
            "report": gradient_check(model, x, y, cfg.epsilon),
            "course_cost": gradient_check(model, x, y, cfg.epsilon, loss=course_cost),
        }
    if case == "l2":
        factor = cfg.lambd / (2 * len(x))  # λ/(2m)·Σ‖W‖² = Keras L2(λ/(2m))
        report = gradient_check(build_model(weights, l2=factor), x, y, cfg.epsilon)
        penalty = factor * sum(float(np.sum(weights[f"kernel_{i}"] ** 2)) for i in (1, 2, 3))
        return {
            "report": report,
            "penalty": penalty,
            "cost_without_penalty": numpy_cost(weights, x, y),
        }
    return {"report": gradient_check(build_model(weights, broken=True), x, y, cfg.epsilon)}


def run(cfg: Config, **where) -> dict:
    from reg_callbacks.gradient_checking import BUG_THRESHOLD, FINE_THRESHOLD
    from reg_callbacks.plots import relative_error_bars

    data = make_data(cfg)
    _, _, weights = course_test_case(cfg.seed)
    cases = CASES if cfg.case == "all" else (cfg.case,)
    with tracked_run(cfg, data, run_name=f"gradient_check {cfg.case}", **where) as tracked:
        recorder = tracked.recorder
        summary, texts, bars, metrics, tags = {}, [], {}, {}, {}
        for case in cases:
            result = check(case, cfg, data, weights)
            report = result["report"]
            numbers = {
                "relative_error": report.relative_error,
                "verdict": report.verdict,
                "suspect_layers": ", ".join(report.suspect_layers) or "none",
                "cost": report.cost,
            }
            if case in COURSE:
                numbers["course_relative_error"] = COURSE[case]
            if "course_cost" in result:
                numbers["relative_error_course_cost"] = result["course_cost"].relative_error
                bars[f"{case} (course's cost formula)"] = result["course_cost"].relative_error
            if "at_init" in result:
                numbers["relative_error_at_init"] = result["at_init"].relative_error
                numbers["verdict_at_init"] = result["at_init"].verdict
                numbers["largest_weight"] = result["largest_weight"]
                bars[f"{case} (at initialization)"] = result["at_init"].relative_error
                texts.append(f"[{case}, at initialization]\n{result['at_init'].summary()}")
            if "penalty" in result:
                numbers["penalty"] = result["penalty"]
                numbers["cost_without_penalty"] = result["cost_without_penalty"]
            summary[case] = numbers
            bars[case] = report.relative_error
            metrics.update(
                {f"{key}/{case}": v for key, v in numbers.items() if not isinstance(v, str)}
            )
            metrics.update(
                {f"relative_error/{case}/{p}": e for p, e in report.per_variable.items()}
            )
            tags.update({f"{key}/{case}": v for key, v in numbers.items() if isinstance(v, str)})
            texts.append(f"[{case}]\n{report.summary()}")
            if "course_cost" in result:
                texts.append(
                    f"[{case}, the course's cost formula]\n{result['course_cost'].summary()}"
                )
        recorder.log_final(metrics)
        recorder.set_tags(tags)
        recorder.log_text("\n\n".join(texts) + "\n", "gradient_check.txt")
        tracked.log_figure(
            relative_error_bars(bars, fine=FINE_THRESHOLD, bug=BUG_THRESHOLD), "relative_errors.png"
        )
        return tracked.summary(**summary)


if __name__ == "__main__":
    main(Config, run)
