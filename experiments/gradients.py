"""Vanishing and exploding gradients: deep nets multiply, so their signals grow or shrink as gain^L.

Part 1, the law (no training). A plain net of L linear layers, each with weights
`Identity(gain)` and no bias, computes a_L = gain^L x. With the cost J = mean(a_L²) (squared
error to a zero target, which keeps the law exact) every layer gets the same gradient

    dJ/dW_l = gain^(2L-1) · (2 / (m n)) · XᵀX        for every l = 1..L,

that is gain^(L-1) from backprop through the other layers times dJ/da_L = 2 a_L / (m n), which
itself grows as gain^L. Relative to gain 1, activations scale as gain^L and gradients as
gain^(2L-1). (With a non-zero target y, dJ/da_L tends to -2y/(m n) once gain^L is small, so a
vanishing gradient shrinks only as gain^(L-1); the exploding side keeps gain^(2L-1).)

| L = 150, width 2     | predicted (× gain-1 value) | float64: worst deviation | float32 breaks at |
|----------------------|----------------------------|--------------------------|-------------------|
| activation, gain 1.5 | 1.5^150 = 2.6e26           | 3e-16 over L = 1..150    | never (≤ 150)     |
| gradient, gain 1.5   | 1.5^299 = 4.5e52           | 1.3e-15                  | L = 110: inf      |
| activation, gain 0.5 | 0.5^150 = 7.0e-46          | 2e-16                    | L = 128: 0        |
| gradient, gain 0.5   | 0.5^299 = 9.8e-91          | 1.3e-15                  | L = 61: 0         |

Every layer's gradient norm is the same to 1e-15, as the law says. float32 overflows at 3.4e38
and TensorFlow flushes its subnormals to zero below 1.2e-38, hence the last column; so the
law is measured in float64, and the float32 values are plotted where they exist.

Part 2, training. A ReLU net of depth 30 (width 16, sigmoid output) on the noisy moons, full-
batch gradient descent, lr 0.1, 500 iterations; `GradientNormLogger` records each layer's
gradient norm every 25 iterations (the `gradient_norms.png` heatmap and `gradient_health` tag
of each child run; the parent run shows them side by side on one colour scale):

| init (ReLU, depth 30) | health: start → end   | first / last norm at start | train / dev acc |
|-----------------------|-----------------------|----------------------------|-----------------|
| small: normal sd 0.01 | vanishing → vanishing | 0 (underflow) / 2.4e-3     | 0.50 / 0.50     |
| xavier                | vanishing → healthy*  | 7.3e-8 / 2.4e-3            | 0.50 / 0.50     |
| he: normal, 2/n_in    | healthy → healthy     | 0.33 / 1.9                 | 0.94 / 0.905    |

*Xavier's variance 2/(n_in + n_out) halves the ReLU signal at every layer; training then
leaves every norm tiny (3e-7 to 6e-5), which the label's first/last ratio calls healthy
although the net has learned nothing. With tanh (`--activation tanh --inits large,xavier`),
normal sd 1.0 starts exploding (first layer 1.6e4 against last 0.81) and saturates into
vanishing at 0.50 / 0.51; Xavier is healthy throughout and reaches 0.84 / 0.80. Training runs
without XLA (faster here); with XLA the float32 rounding differs and so do the accuracies
(He 0.91 / 0.875, tanh Xavier 0.91 / 0.915), not the health labels.

Run: `python -m experiments.gradients` (both parts; `--part law` takes a few seconds).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from experiments.harness.checks import dev_data_needs_data, in_range, one_of, positive
from experiments.harness.cli import main
from experiments.harness.datasets import DataSplit, load_data, noisy_moons
from experiments.harness.runner import tracked_run

Activation = Literal["relu", "tanh", "linear"]
Init = Literal["small", "large", "xavier", "he"]
Part = Literal["all", "law", "training"]
ACTIVATIONS = ("relu", "tanh", "linear")
INITS = ("small", "large", "xavier", "he")
PARTS = ("all", "law", "training")


@dataclass(frozen=True)
class Config:
    part: Part = "all"  # law: deep linear nets, no training; training: the heatmaps
    gains: tuple[float, ...] = (1.5, 0.5)  # Identity(gain) of the deep linear nets
    max_depth: int = 150  # deepest linear net of the law
    activation: Activation = "relu"
    inits: tuple[Init, ...] = ("small", "he")  # one child run each; small/large = sd 0.01/1.0
    depth: int = 30  # hidden layers of the trained nets
    width: int = 16
    learning_rate: float = 0.1
    iterations: int = 500
    seed: int = 1
    data: str | None = None  # your own data file instead of the noisy moons
    dev_data: str | None = None  # a separate dev-set file, if `data` holds only train

    def __post_init__(self):
        one_of(self, "part", PARTS)
        one_of(self, "activation", ACTIVATIONS)
        if not self.inits or any(init not in INITS for init in self.inits):
            raise ValueError(f"inits must be a list of {', '.join(INITS)}; got {self.inits!r}.")
        if len(set(self.inits)) != len(self.inits):
            raise ValueError(f"inits must not repeat an init; got {self.inits!r}.")
        if not self.gains or not all(math.isfinite(g) and g > 0 for g in self.gains):
            raise ValueError(f"gains must be finite numbers > 0 like 1.5,0.5; got {self.gains}.")
        in_range(self, "max_depth", 1, 1000)
        in_range(self, "depth", 1, 200)
        positive(self, "width", "learning_rate", "iterations")
        dev_data_needs_data(self)


def make_data(cfg: Config) -> DataSplit:
    return load_data(cfg.data, cfg.dev_data) if cfg.data else noisy_moons(seed=cfg.seed)


# ---------------------------------------------------------------------------------------------
# Part 1: the gain^L law in deep linear nets


def linear_net(depth: int, gain: float, width: int, dtype: str = "float64"):
    """`depth` linear Dense layers (width -> width), weights Identity(gain), no bias.

    Left without an `Input`: each layer is built on its first call, which for 150 layers is
    several times faster than tracing a symbolic graph through them.
    """
    import keras

    return keras.Sequential(
        [
            keras.layers.Dense(
                width,
                use_bias=False,
                kernel_initializer=keras.initializers.Identity(gain=gain),
                dtype=dtype,
            )
            for _ in range(depth)
        ],
        name=f"linear_gain_{gain:g}",
    )


def predicted_law(x: np.ndarray, gain: float, depths) -> dict[str, np.ndarray]:
    """The exact activation RMS norm and per-layer gradient norm of `linear_net` at `depths`."""
    x = np.asarray(x, dtype=np.float64)
    m, n = x.shape
    depths = np.asarray(depths, dtype=np.float64)
    rms = math.sqrt(np.mean(np.sum(x**2, axis=1)))
    gradient_at_gain_1 = 2.0 / (m * n) * np.linalg.norm(x.T @ x)
    return {
        "activation": gain**depths * rms,
        "gradient": gain ** (2 * depths - 1) * gradient_at_gain_1,
    }


def law_depths(max_depth: int) -> list[int]:
    """Depths whose gradients are measured: 1, 2, 3, 5, then every tenth of `max_depth`."""
    step = max(1, max_depth // 15)
    return sorted(
        {d for d in (1, 2, 3, 5) if d <= max_depth} | {*range(step, max_depth, step)} | {max_depth}
    )


def linear_probe(x: np.ndarray, gain: float, max_depth: int, dtype: str = "float64"):
    """Run `linear_net(max_depth)` once; return every depth's activation norm and a gradient probe.

    The net of depth L is the first L layers, with the cost J_L = mean(a_L²). Returns
    `(activation, gradient_norms)`: `activation[L - 1]` is the RMS norm of a_L, and
    `gradient_norms(L)` the norm of dJ_L/dW_l for each layer l = 1..L. Norms are taken in
    float64 whatever `dtype` the net computes in, so only the net itself can overflow.
    """
    import keras

    from reg_callbacks import backends

    if keras.backend.backend() == "jax":
        # float64 on JAX is a switch (a no-op scope on TensorFlow): on for each use of the net.
        with backends.current().float64_scope():
            probe = _jax_probe(x, gain, max_depth, dtype)
        activation, jax_gradient_norms = probe

        def gradient_norms(depth: int) -> np.ndarray:
            with backends.current().float64_scope():
                return jax_gradient_norms(depth)

        return activation, gradient_norms
    return _tensorflow_probe(x, gain, max_depth, dtype)


def _tensorflow_probe(x, gain, max_depth, dtype):
    """`linear_probe` with one persistent `tf.GradientTape` over the whole forward pass."""
    import keras
    import tensorflow as tf

    model = linear_net(max_depth, gain, x.shape[1], dtype)
    outputs, costs = [], []
    tape = tf.GradientTape(persistent=True)
    with tape:
        a = tf.constant(x, dtype)
        for layer in model.layers:
            a = layer(a)  # builds the layer: its kernel is watched from creation on
            outputs.append(a)
            costs.append(keras.ops.mean(keras.ops.square(a)))
    kernels = [layer.kernel for layer in model.layers]
    activation = np.array([_norm(a) / math.sqrt(len(x)) for a in outputs])

    def gradient_norms(depth: int) -> np.ndarray:
        return np.array([_norm(g) for g in tape.gradient(costs[depth - 1], kernels[:depth])])

    return activation, gradient_norms


def _jax_probe(x, gain, max_depth, dtype):
    """`linear_probe` with `jax.grad` of the first `depth` layers' stateless cost."""
    import jax
    import keras

    model = linear_net(max_depth, gain, x.shape[1], dtype)
    a, outputs = keras.ops.convert_to_tensor(x, dtype), []
    for layer in model.layers:
        a = layer(a)  # builds the layer
        outputs.append(a)
    kernels = [layer.kernel for layer in model.layers]
    activation = np.array([_norm(a) / math.sqrt(len(x)) for a in outputs])

    def cost(values):
        a = keras.ops.convert_to_tensor(x, dtype)
        with keras.StatelessScope(state_mapping=list(zip(kernels, values, strict=False))):
            for layer in model.layers[: len(values)]:
                a = layer(a)
        return keras.ops.mean(keras.ops.square(a))

    def gradient_norms(depth: int) -> np.ndarray:
        grads = jax.grad(cost)([kernel.value for kernel in kernels[:depth]])
        return np.array([_norm(g) for g in grads])

    return activation, gradient_norms


def _norm(tensor) -> float:
    """Frobenius norm in float64, scaled so that it neither over- nor underflows needlessly."""
    values = np.asarray(tensor, dtype=np.float64)
    largest = np.max(np.abs(values))
    if not np.isfinite(largest) or largest == 0:
        return float(largest)
    return float(largest * np.linalg.norm(values / largest))


def _broken(norm: float) -> bool:
    return not np.isfinite(norm) or norm == 0


def first_broken_depth(is_broken, good: int, bad: int) -> int:
    """The smallest depth in (good, bad] where `is_broken(depth)`, by bisection (monotone)."""
    while bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (good, middle) if is_broken(middle) else (middle, bad)
    return bad


def law_results(x: np.ndarray, gain: float, max_depth: int) -> dict:
    """Measured (float64, and float32 to show where it breaks) against the predicted law."""
    x = np.asarray(x, dtype=np.float64)
    depths = np.array(law_depths(max_depth))
    every_depth = np.arange(1, max_depth + 1)
    predicted = predicted_law(x, gain, every_depth)
    activation, gradient_norms = linear_probe(x, gain, max_depth, "float64")
    activation32, gradient_norms32 = linear_probe(x, gain, max_depth, "float32")
    per_layer = [gradient_norms(depth) for depth in depths]
    gradient = np.array([norms[0] for norms in per_layer])
    gradient32 = np.array([gradient_norms32(depth)[0] for depth in depths])

    summary = {
        "activation_max_rel_deviation": float(
            np.max(np.abs(activation / predicted["activation"] - 1))
        ),
        "gradient_max_rel_deviation": float(
            np.max(np.abs(gradient / predicted["gradient"][depths - 1] - 1))
        ),
        # Largest relative difference between two layers' gradient norms at one depth (law: 0).
        "gradient_layer_spread": float(max(n.max() / n.min() - 1 for n in per_layer)),
        "activation_at_max_depth": float(activation[-1]),
        "gradient_at_max_depth": float(gradient[-1]),
    }
    # The first depth at which float32 gives inf/NaN or 0 (0: none up to max_depth).
    broken = np.flatnonzero([_broken(a) for a in activation32])
    summary["activation_float32_breaks_at"] = int(every_depth[broken[0]]) if broken.size else 0
    broken = np.flatnonzero([_broken(g) for g in gradient32])
    if broken.size:
        bad = int(depths[broken[0]])
        good = int(depths[broken[0] - 1]) if broken[0] else 0
        summary["gradient_float32_breaks_at"] = first_broken_depth(
            lambda depth: _broken(gradient_norms32(depth)[0]), good, bad
        )
    else:
        summary["gradient_float32_breaks_at"] = 0
    return {
        "depths": depths,
        "every_depth": every_depth,
        "predicted": predicted,
        "activation": activation,
        "activation_float32": activation32,
        "gradient": gradient,
        "gradient_float32": gradient32,
        "summary": summary,
    }


def law_figure(results: dict[float, dict]):
    from reg_callbacks.plots import measured_vs_predicted, side_by_side

    figure, axes = side_by_side(2, width=5.5, height=4.4)
    first = next(iter(results.values()))
    for ax, key, x, label in (
        (axes[0], "activation", first["every_depth"], "RMS norm of a_L"),
        (axes[1], "gradient", first["depths"], "‖∂J/∂W_l‖ (the same for every layer l)"),
    ):
        series = {}
        for gain, result in results.items():
            series[f"gain {gain:g}, float64"] = (result[key], result["predicted"][key][x - 1])
            series[f"gain {gain:g}, float32"] = (result[f"{key}_float32"], None)
        measured_vs_predicted(
            x,
            series,
            ax=ax,
            xlabel="depth L",
            ylabel=label,
            title=f"{key}s: markers measured, lines the gain^L law",
        )
    return figure


# ---------------------------------------------------------------------------------------------
# Part 2: training deep nets with bad and good initializations


def initializer(init: Init, seed: int):
    """A fresh Keras initializer; give each layer its own seed (same seed, same values)."""
    import keras

    return {
        "small": lambda: keras.initializers.RandomNormal(stddev=0.01, seed=seed),
        "large": lambda: keras.initializers.RandomNormal(stddev=1.0, seed=seed),
        "xavier": lambda: keras.initializers.GlorotNormal(seed=seed),
        "he": lambda: keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal", seed),
    }[init]()


def build_model(cfg: Config, init: Init, n_features: int):
    import keras

    keras.utils.set_random_seed(cfg.seed)
    layers = [keras.Input((n_features,))]
    for i in range(cfg.depth):
        layers.append(
            keras.layers.Dense(
                cfg.width,
                cfg.activation,
                kernel_initializer=initializer(init, 1000 * cfg.seed + i),
                name=f"hidden_{i + 1:02d}",
            )
        )
    layers.append(
        keras.layers.Dense(
            1,
            "sigmoid",
            kernel_initializer=initializer(init, 1000 * cfg.seed + cfg.depth),
            name="output",
        )
    )
    model = keras.Sequential(layers, name=f"{cfg.activation}_{init}_depth_{cfg.depth}")
    model.compile(
        keras.optimizers.SGD(cfg.learning_rate), "binary_crossentropy", metrics=["accuracy"]
    )
    return model


def train_one(cfg: Config, init: Init, data: DataSplit, **where):
    """Train the net with `init` in its own (child) run; returns its summary and gradient logger.

    A run whose loss diverges (exploding gradients can do that) is recorded as FAILED with
    its reason, and the comparison goes on with the next init.
    """
    from reg_callbacks import TrainingDiverged

    model = build_model(cfg, init, data.n_features)
    try:
        with tracked_run(
            dataclasses.replace(cfg, inits=(init,), part="training"),
            data,
            run_name=f"gradients {cfg.activation} depth={cfg.depth} init={init}",
            tags={"init": init},
            **where,
        ) as tracked:
            # No XLA: compiling the 31-layer loop takes longer than 500 plain steps (~3x).
            tracked.train(
                model, iterations=cfg.iterations, log_every=log_interval(cfg), jit_compile=False
            )
            summary = tracked.summary()
    except TrainingDiverged as error:
        summary = {
            "run_id": tracked.run_id,
            "diverged": str(error),
            "gradient_health": tracked.gradients.health,
        }
    logger = tracked.gradients
    start = [values[0] for values in logger.history.values()]
    summary.update(
        gradient_health_at_start=logger.health_history[0],
        first_layer_norm_at_start=start[0],
        last_layer_norm_at_start=start[-1],
    )
    return summary, logger


def log_interval(cfg: Config) -> int:
    """Iterations between gradient-norm measurements: 20 columns in the heatmap."""
    return max(1, cfg.iterations // 20)


# ---------------------------------------------------------------------------------------------


def run(cfg: Config, **where) -> dict:
    from reg_callbacks.plots import gradient_heatmaps

    data = make_data(cfg)
    run_name = f"gradients {cfg.part} {cfg.activation} depth={cfg.depth}"
    with tracked_run(cfg, data, run_name=run_name, **where) as tracked:
        recorder = tracked.recorder
        summary: dict = {}
        if cfg.part in ("all", "law"):
            x = np.asarray(data.x_train, dtype=np.float64)
            results = {gain: law_results(x, gain, cfg.max_depth) for gain in cfg.gains}
            for gain, result in results.items():
                prefix = f"law/gain_{gain:g}/"
                summary[prefix.rstrip("/")] = result["summary"]
                recorder.log_metrics(
                    [
                        (int(depth), {prefix + "activation": value})
                        for depth, value in zip(
                            result["every_depth"], result["activation"], strict=True
                        )
                    ]
                    + [
                        (int(depth), {prefix + "gradient": value, prefix + "gradient_float32": v32})
                        for depth, value, v32 in zip(
                            result["depths"],
                            result["gradient"],
                            result["gradient_float32"],
                            strict=True,
                        )
                    ]
                )
                recorder.log_final({prefix + k: v for k, v in result["summary"].items()})
            tracked.log_figure(law_figure(results), "depth_law.png")
        if cfg.part in ("all", "training"):
            panels = {}
            for init in cfg.inits:
                child, logger = train_one(
                    cfg, init, data, **{**where, "parent_run_id": tracked.run_id}
                )
                summary[init] = child
                health = child["gradient_health"]
                panels[f"init {init}: {health}"] = (logger.history, logger.epochs)
                recorder.set_tags({f"gradient_health/{init}": health})
            tracked.log_figure(
                gradient_heatmaps(panels, iterations_per_epoch=log_interval(cfg)),
                "gradient_heatmaps.png",
            )
        return tracked.summary(**summary)


if __name__ == "__main__":
    main(Config, run)
