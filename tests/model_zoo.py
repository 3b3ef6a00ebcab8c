"""Keras models as people write them, for testing the library on models it never built.

Each `Case` holds a compiled model, a small batch, and the layers a reader expects to see
reported (by path through the model, found here with `get_layer`, independently of the
library's own path walk). Every model has one layer named `target` built by `target_layer`:
a Dense whose kernel gradient is a custom gradient that takes the kernel variable itself,
which works only in graph mode, as under `fit`. With `broken=True` that gradient is half the
true one, so a gradient checker must flag that layer, by its full path, and no other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

# The subclassed model's custom gradient is the backend's own where it has one users reach
# for: `tf.custom_gradient` on TensorFlow; JAX users write `keras.ops.custom_gradient`.
NATIVE_API = "tf" if keras.backend.backend() == "tensorflow" else "keras"


@keras.saving.register_keras_serializable(package="model_zoo")
class CustomGradientDense(keras.layers.Dense):
    """Dense whose kernel gradient is written by hand, `kernel_gradient_scale` times the true
    one (1: correct). `api` picks `keras.ops.custom_gradient` or `tf.custom_gradient`."""

    def __init__(self, units, kernel_gradient_scale=1.0, api="keras", **kwargs):
        super().__init__(units, **kwargs)
        self.kernel_gradient_scale = kernel_gradient_scale
        self.api = api

    def call(self, inputs):
        scale = self.kernel_gradient_scale

        def matmul(x, kernel):
            def grad(*upstream, **_):
                (up,) = upstream
                return (
                    keras.ops.matmul(up, keras.ops.transpose(kernel)),
                    scale * keras.ops.matmul(keras.ops.transpose(x), up),
                )

            return keras.ops.matmul(x, kernel), grad

        decorate = keras.ops.custom_gradient if self.api == "keras" else tf.custom_gradient
        outputs = decorate(matmul)(inputs, self.kernel)  # the variable, not its value
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_gradient_scale": self.kernel_gradient_scale,
            "api": self.api,
        }


def target_layer(units, broken=False, api="keras", **kwargs):
    return CustomGradientDense(
        units, kernel_gradient_scale=0.5 if broken else 1.0, api=api, name="target", **kwargs
    )


@dataclass
class Case:
    model: keras.Model
    x: object
    y: object
    # path -> layer, input side first: what per-layer keys should name (found by get_layer)
    layers: dict[str, keras.layers.Layer]
    target: str  # path of the `target` layer
    output: str | int | None = None  # the output BiasVarianceCallback diagnoses
    check: dict = field(default_factory=dict)  # extra gradient_check arguments


def seeded_rng(seed=0):
    keras.utils.set_random_seed(seed)
    return np.random.default_rng(seed)


def binary_labelled(rng, n, *shape):
    x = rng.normal(size=(n, *shape)).astype("float32")
    return x, (x.reshape(n, -1)[:, :1] > 0).astype("float32")


def sequential(broken=False) -> Case:
    rng = seeded_rng()
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(
                6, "tanh", kernel_regularizer=keras.regularizers.L2(0.01), name="hidden"
            ),
            target_layer(5, broken, activation="tanh"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(1, "sigmoid", name="out"),
        ],
        name="plain",
    )
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    x, y = binary_labelled(rng, 32, 4)
    return Case(model, x, y, _by_name(model, "hidden", "target", "out"), "target")


def functional(broken=False) -> Case:
    rng = seeded_rng()
    inputs = keras.Input((4,))
    left = keras.layers.Dense(3, "tanh", name="left")(inputs)
    right = target_layer(3, broken, activation="tanh")(inputs)
    merged = keras.layers.Concatenate()([left, right])
    outputs = keras.layers.Dense(1, "sigmoid", name="head")(merged)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    x, y = binary_labelled(rng, 32, 4)
    return Case(model, x, y, _by_name(model, "left", "target", "head"), "target")


@keras.saving.register_keras_serializable(package="model_zoo")
class Subclassed(keras.Model):
    """Layers made in `__init__`, used in `call`, built on the first call."""

    def __init__(self, broken=False, **kwargs):
        super().__init__(**kwargs)
        self.broken = broken
        self.hidden = keras.layers.Dense(6, activation="relu", name="hidden")
        self.target = target_layer(4, broken, api=NATIVE_API, activation="tanh")
        self.out = keras.layers.Dense(1, activation="sigmoid", name="out")

    def call(self, x, training=False):
        return self.out(self.target(self.hidden(x)))

    def get_config(self):
        return {**super().get_config(), "broken": self.broken}


def subclassed(broken=False) -> Case:
    rng = seeded_rng()
    model = Subclassed(broken)  # not built: no weights until its first call
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    x, y = binary_labelled(rng, 32, 3)
    return Case(
        model,
        x,
        y,
        {"hidden": model.hidden, "target": model.target, "out": model.out},
        "target",
    )


def nested(broken=False) -> Case:
    """Conv -> BatchNorm -> Flatten -> Sequential[functional[Dense, target], Dropout] -> Dense:
    blocks two levels deep, the case whose float32 block inputs fooled the checker."""
    rng = seeded_rng()
    inner_in = keras.Input((16,))
    inner_h = keras.layers.Dense(6, "tanh", name="dense")(inner_in)
    inner = keras.Model(inner_in, target_layer(4, broken, activation="tanh")(inner_h), name="inner")
    block = keras.Sequential([inner, keras.layers.Dropout(0.3)], name="block")
    inputs = keras.Input((4, 4, 1))
    h = keras.layers.Conv2D(1, 1, name="conv")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(1, "sigmoid", name="out")(block(h))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    x, y = binary_labelled(rng, 16, 4, 4, 1)
    layers = {
        "conv": model.get_layer("conv"),
        "bn": model.get_layer("bn"),
        "block/inner/dense": inner.get_layer("dense"),
        "block/inner/target": inner.get_layer("target"),
        "out": model.get_layer("out"),
    }
    return Case(model, x, y, layers, "block/inner/target")


def shared(broken=False) -> Case:
    """One layer at two call sites: one entry, its gradient summed over both."""
    rng = seeded_rng()
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    twin = target_layer(4, broken, activation="tanh")
    merged = keras.layers.Add()([twin(a), twin(b)])
    outputs = keras.layers.Dense(1, "sigmoid", name="out")(merged)
    model = keras.Model({"a": a, "b": b}, outputs)
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    xa, y = binary_labelled(rng, 32, 3)
    x = {"a": xa, "b": rng.normal(size=(32, 3)).astype("float32")}
    return Case(model, x, y, _by_name(model, "target", "out"), "target")


def multi_io(broken=False) -> Case:
    """Named inputs, two outputs (binary and 3-class) and `loss_weights`."""
    rng = seeded_rng()
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    trunk = keras.layers.Concatenate()([a, b])
    trunk = target_layer(5, broken, activation="tanh")(trunk)
    binary = keras.layers.Dense(1, "sigmoid", name="binary")(trunk)
    classes = keras.layers.Dense(3, "softmax", name="classes")(trunk)
    model = keras.Model({"a": a, "b": b}, {"binary": binary, "classes": classes})
    model.compile(
        keras.optimizers.SGD(0.1),
        loss={"binary": "binary_crossentropy", "classes": "sparse_categorical_crossentropy"},
        loss_weights={"binary": 1.0, "classes": 0.3},
    )
    x = {"a": rng.normal(size=(32, 3)).astype("float32"), "b": rng.normal(size=(32, 2))}
    x["b"] = x["b"].astype("float32")
    y = {
        "binary": (x["a"][:, :1] > 0).astype("float32"),
        "classes": rng.integers(0, 3, size=(32, 1)),
    }
    layers = _by_name(model, "target", "binary", "classes")
    return Case(model, x, y, layers, "target", output="classes")


def recurrent(broken=False) -> Case:
    """Embedding on integer token ids -> LSTM -> GRU -> target -> Dense."""
    rng = seeded_rng()
    inputs = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(12, 4, name="embedding")(inputs)
    h = keras.layers.LSTM(4, return_sequences=True, name="lstm")(h)
    h = keras.layers.GRU(3, name="gru")(h)
    h = target_layer(3, broken, activation="tanh")(h)
    outputs = keras.layers.Dense(1, "sigmoid", name="out")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    x = rng.integers(0, 12, size=(16, 6)).astype("int32")
    y = (x[:, :1] > 5).astype("float32")
    layers = _by_name(model, "embedding", "lstm", "gru", "target", "out")
    return Case(model, x, y, layers, "target")


def residual_conv(broken=False) -> Case:
    """Conv -> BatchNorm -> residual Add -> LayerNorm -> pooling -> target -> Dense."""
    rng = seeded_rng()
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Add(name="residual")([inputs, h])
    h = keras.layers.LayerNormalization(name="ln")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = target_layer(3, broken, activation="tanh")(h)
    outputs = keras.layers.Dense(1, "sigmoid", name="out")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    x, y = binary_labelled(rng, 16, 6, 6, 2)
    return Case(model, x, y, _by_name(model, "conv", "bn", "ln", "target", "out"), "target")


def mobilenet(broken=False) -> Case:
    """`keras.applications.MobileNet` (weights=None, alpha 0.25, 32x32) as a nested block,
    with a `target` head: 200-odd thousand parameters, checked through `max_params`."""
    rng = seeded_rng()
    base = keras.applications.MobileNet(
        input_shape=(32, 32, 3), alpha=0.25, weights=None, include_top=False, pooling="avg"
    )
    inputs = keras.Input((32, 32, 3))
    h = target_layer(8, broken, activation="tanh")(base(inputs))
    outputs = keras.layers.Dense(3, "softmax", name="out")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    x = rng.normal(size=(8, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, size=(8, 1))
    _calibrate_batch_norm(base, x)
    layers = {
        f"{base.name}/{layer.name}": layer for layer in base.layers if layer.trainable_weights
    }
    layers.update(_by_name(model, "target", "out"))
    return Case(model, x, y, layers, "target", check={"max_params": 400})


def _calibrate_batch_norm(model, x) -> None:
    """Set every batch norm's moving statistics to those of `x`, as training would move them.

    Fresh, a MobileNet's batch norms divide by a moving variance of 1 whatever their inputs,
    the activations die out block by block, and at the last block none is left: the softmax
    is uniform (J = ln 3 exactly) and no gradient reaches a weight. One forward pass in
    training mode with momentum 0 puts each layer's statistics where training would.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(x, training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum


def _by_name(model, *names) -> dict:
    return {name: model.get_layer(name) for name in names}


CASES: dict[str, Callable[..., Case]] = {
    "sequential": sequential,
    "functional": functional,
    "subclassed": subclassed,
    "nested": nested,
    "shared": shared,
    "multi_io": multi_io,
    "recurrent": recurrent,
    "residual_conv": residual_conv,
    "mobilenet": mobilenet,
}
