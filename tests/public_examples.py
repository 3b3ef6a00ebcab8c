"""Keras models written the way public Keras examples write them, with synthetic data.

Nothing here follows the library's conventions, on purpose: custom layers whose `__init__`
takes only its own arguments and no `get_config`, subclassed models with no `get_config`, a
"trainer" model wrapping another, a trainer subclass with its own `train_step`, dict inputs
keyed unlike their `Input` names (and as `tf.data` dicts), adapted preprocessing layers, and
conv nets at the sizes people train. Tests and benchmarks use them to try the library on
code it never saw. Nothing is downloaded: the data is synthetic but learnable.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

# ---------------------------------------------------------------------------------------
# train() and the callbacks' cost (issue 25): the models of keras.io's examples
# "Simple MNIST convnet", "Timeseries classification from scratch", "Text classification
# with Transformer", "Structured data classification from scratch" and "Customizing what
# happens in fit()", at their authors' layer sizes; data is synthetic (nothing downloaded)
# but learnable, and `rows` sets how much of it there is.
# ---------------------------------------------------------------------------------------


def mnist_convnet():
    """keras.io "Simple MNIST convnet": two Conv2D/MaxPooling blocks, dropout, softmax."""
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def mnist_like(rows: int, seed: int = 0):
    """`(x, y)`: 28x28x1 images whose class lights one of ten bands; one-hot labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, rows)
    x = rng.random((rows, 28, 28, 1), dtype=np.float32) * 0.5
    for band in range(10):
        x[labels == band, 2 * band + 4 : 2 * band + 6, :, 0] += 0.5
    return x, np.eye(10, dtype="float32")[labels]


def timeseries_conv1d(length: int = 500):
    """keras.io "Timeseries classification from scratch": three Conv1D-BatchNorm-ReLU blocks,
    global average pooling, softmax over two classes."""
    input_layer = keras.layers.Input((length, 1))
    x = input_layer
    for _ in range(3):
        x = keras.layers.Conv1D(filters=64, kernel_size=3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    gap = keras.layers.GlobalAveragePooling1D()(x)
    output_layer = keras.layers.Dense(2, activation="softmax")(gap)
    model = keras.models.Model(inputs=input_layer, outputs=output_layer)
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )
    return model


def timeseries_like(rows: int, length: int = 500, seed: int = 0):
    """`(x, y)`: noisy series whose class sets the frequency of a sine; integer labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows)
    t = np.linspace(0, 1, length, dtype=np.float32)
    frequency = np.where(labels == 1, 7.0, 4.0)[:, None]
    x = np.sin(2 * np.pi * frequency * t) + rng.normal(0, 0.8, (rows, length))
    return x[..., None].astype("float32"), labels


class TransformerBlock(keras.layers.Layer):
    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
        super().__init__()
        self.att = keras.layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential(
            [keras.layers.Dense(ff_dim, activation="relu"), keras.layers.Dense(embed_dim)]
        )
        self.layernorm1 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = keras.layers.Dropout(rate)
        self.dropout2 = keras.layers.Dropout(rate)

    def call(self, inputs, training=False):
        attn_output = self.att(inputs, inputs)
        attn_output = self.dropout1(attn_output, training=training)
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.ffn(out1)
        ffn_output = self.dropout2(ffn_output, training=training)
        return self.layernorm2(out1 + ffn_output)


class TokenAndPositionEmbedding(keras.layers.Layer):
    def __init__(self, maxlen, vocab_size, embed_dim):
        super().__init__()
        self.token_emb = keras.layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = keras.layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        maxlen = keras.ops.shape(x)[-1]
        positions = keras.ops.arange(start=0, stop=maxlen, step=1)
        positions = self.pos_emb(positions)
        x = self.token_emb(x)
        return x + positions


def transformer_classifier(maxlen: int = 200, vocab_size: int = 20000):
    """keras.io "Text classification with Transformer": token and position embedding, one
    transformer block (2 heads, embedding 32), pooling, dropout, two dense layers."""
    embed_dim, num_heads, ff_dim = 32, 2, 32
    inputs = keras.layers.Input(shape=(maxlen,))
    x = TokenAndPositionEmbedding(maxlen, vocab_size, embed_dim)(inputs)
    x = TransformerBlock(embed_dim, num_heads, ff_dim)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dropout(0.1)(x)
    x = keras.layers.Dense(20, activation="relu")(x)
    x = keras.layers.Dropout(0.1)(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def reviews_like(rows: int, maxlen: int = 200, vocab_size: int = 20000, seed: int = 0):
    """`(x, y)`: token ids where positive rows use more tokens from one end of the vocabulary."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows)
    x = rng.integers(1, vocab_size, (rows, maxlen))
    marked = rng.random((rows, maxlen)) < 0.1
    x[marked & (labels[:, None] == 1)] = 7
    x[marked & (labels[:, None] == 0)] = 9
    return x.astype("int32"), labels


STRUCTURED_FEATURES = ("age", "trestbps", "chol", "thalach", "oldpeak")


def structured_data_model(train_ds: tf.data.Dataset):
    """keras.io "Structured data classification from scratch" (numeric features): an input a
    feature, each normalized by a `Normalization` adapted on the training dataset, then
    Dense(32), Dropout(0.5) and a sigmoid."""
    inputs, encoded = [], []
    for name in STRUCTURED_FEATURES:
        feature = keras.Input(shape=(1,), name=name)
        normalizer = keras.layers.Normalization()
        normalizer.adapt(train_ds.map(lambda x, y, name=name: x[name][:, None]))
        inputs.append(feature)
        encoded.append(normalizer(feature))
    x = keras.layers.concatenate(encoded)
    x = keras.layers.Dense(32, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    output = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, output)
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return model


def structured_dataset(rows: int, batch_size: int = 32, seed: int = 0) -> tf.data.Dataset:
    """A `tf.data` pipeline of `({feature: values}, target)` batches, as the example makes
    from a DataFrame: `from_tensor_slices((dict(df), labels)).shuffle(...).batch(32)`."""
    rng = np.random.default_rng(seed)
    columns = {name: rng.normal(50, 10, rows).astype("float32") for name in STRUCTURED_FEATURES}
    score = (columns["age"] - 50) / 10 - (columns["thalach"] - 50) / 10
    target = (score + rng.normal(0, 0.5, rows) > 0).astype("float32")[:, None]
    dataset = tf.data.Dataset.from_tensor_slices((columns, target))
    return dataset.shuffle(buffer_size=rows, seed=seed).batch(batch_size)


class CustomTrainer(keras.Model):
    """keras.io "Customizing what happens in fit()": a functional model's layers in a
    subclass with its own `train_step`, returning `{m.name: m.result() for m in
    self.metrics}` (the compile metrics' result is itself a dict)."""

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}


def custom_trainer(n_features: int = 8):
    inputs = keras.Input(shape=(n_features,))
    x = keras.layers.Dense(32, activation="relu")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    model = CustomTrainer(inputs, outputs)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def tabular_like(rows: int, n_features: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, n_features)).astype("float32")
    y = (x[:, :1] + 0.5 * x[:, 1:2] > 0).astype("float32")
    return x, y


# ---------------------------------------------------------------------------------------
# Gradient checking (issue 24): one model per way a checker can refuse, crash on, or
# misjudge a model that `fit` trains.
# ---------------------------------------------------------------------------------------


def _rng(seed):
    keras.utils.set_random_seed(seed)
    return np.random.default_rng(seed)


def _binary(rng, n, *shape):
    x = rng.normal(size=(n, *shape)).astype("float32")
    return x, (x.reshape(n, -1)[:, :1] > 0).astype("float32")


class ScaledDense(keras.layers.Layer):
    """A custom layer as tutorials write it: `__init__` takes its own arguments only."""

    def __init__(self, units, scale):
        super().__init__()
        self.units, self.scale = units, scale

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        return self.scale * keras.ops.tanh(keras.ops.matmul(inputs, self.w) + self.b)


def custom_layer_without_kwargs(seed=0):
    rng = _rng(seed)
    inputs = keras.Input((5,))
    hidden = ScaledDense(6, scale=1.5)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, "sigmoid")(hidden))
    model.compile("adam", "binary_crossentropy")
    x, y = _binary(rng, 16, 5)
    model(x)
    return model, x, y


class QuickstartModel(keras.Model):
    """TensorFlow's quickstart for experts: `__init__(self)`, no `get_config`."""

    def __init__(self):
        super().__init__()
        self.conv1 = keras.layers.Conv2D(4, 3, activation="relu")
        self.flatten = keras.layers.Flatten()
        self.d1 = keras.layers.Dense(8, activation="relu")
        self.d2 = keras.layers.Dense(3)

    def call(self, x):
        x = self.conv1(x)
        x = self.flatten(x)
        x = self.d1(x)
        return self.d2(x)


def subclassed_quickstart(seed=0):
    rng = _rng(seed)
    model = QuickstartModel()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(8, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, size=(8,))
    model(x)
    return model, x, y


class Mlp(keras.Model):
    """A subclassed model whose `__init__` takes an argument, and no `get_config`."""

    def __init__(self, hidden_units):
        super().__init__()
        self.hidden = [keras.layers.Dense(n, activation="tanh") for n in hidden_units]
        self.out = keras.layers.Dense(1)

    def call(self, x):
        for layer in self.hidden:
            x = layer(x)
        return self.out(x)


def subclassed_with_argument(seed=0):
    rng = _rng(seed)
    model = Mlp([6, 4])
    model.compile("adam", "mse")
    x = rng.normal(size=(16, 3)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")
    model(x)
    return model, x, y


class Trainer(keras.Model):
    """The "trainer" pattern of Keras's examples: a model that wraps another, its own `call`
    adding to what the wrapped model computes (here a learned temperature on the logits)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.temperature = self.add_weight(shape=(), initializer="ones", name="temperature")

    def call(self, x):
        return self.model(x) / self.temperature


def trainer_wrapping_a_model(seed=0):
    rng = _rng(seed)
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(3)]
    )
    model = Trainer(inner)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(16, 4)).astype("float32")
    y = rng.integers(0, 3, size=(16,))
    model(x)
    return model, x, y


def dict_inputs_named_unlike_their_keys(seed=0):
    """Inputs named `age_in` and `income_in`, fed as {"age": ..., "income": ...}: Keras maps
    a dict to inputs by order when the names do not match (with a warning) and `fit` trains."""
    rng = _rng(seed)
    age, income = keras.Input((1,), name="age_in"), keras.Input((2,), name="income_in")
    merged = keras.layers.Concatenate()([age, income])
    hidden = keras.layers.Dense(4, activation="tanh")(merged)
    model = keras.Model({"age": age, "income": income}, keras.layers.Dense(1)(hidden))
    model.compile("adam", "mse")
    x = {
        "age": rng.normal(size=(16, 1)).astype("float32"),
        "income": rng.normal(size=(16, 2)).astype("float32"),
    }
    y = rng.normal(size=(16, 1)).astype("float32")
    model(x)
    return model, x, y


def adapted_normalization(seed=0):
    """A `Normalization` layer adapted to the data (its mean and variance are not weights)."""
    rng = _rng(seed)
    x = (rng.normal(size=(32, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -50.0]).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    norm = keras.layers.Normalization()
    norm.adapt(x)
    model = keras.Sequential(
        [keras.Input((3,)), norm, keras.layers.Dense(4, "tanh"), keras.layers.Dense(1, "sigmoid")]
    )
    model.compile("adam", "binary_crossentropy")
    return model, x, y


def multi_head_attention(seed=0):
    """Keras's own `MultiHeadAttention` over a short sequence (JAX casts inside it)."""
    rng = _rng(seed)
    inputs = keras.Input((5, 8))
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(inputs, inputs)
    pooled = keras.layers.GlobalAveragePooling1D()(attended)
    model = keras.Model(inputs, keras.layers.Dense(1, "sigmoid")(pooled))
    model.compile("adam", "binary_crossentropy")
    x, y = _binary(rng, 8, 5, 8)
    model(x)
    return model, x, y


def xception_style(seed=0):
    """Keras's "image classification from scratch" example, shrunk: separable convs, batch
    norm, residual adds (trained briefly so batch norm's statistics are the data's)."""
    rng = _rng(seed)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    previous = x
    for size in (16, 24):
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.SeparableConv2D(size, 3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.SeparableConv2D(size, 3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = keras.layers.Conv2D(size, 1, strides=2, padding="same")(previous)
        x = keras.layers.add([x, residual])
        previous = x
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "binary_crossentropy")
    x_data, y_data = _binary(rng, 16, 16, 16, 3)
    model.fit(x_data, y_data, epochs=2, batch_size=8, verbose=0)
    return model, x_data[:8], y_data[:8]


def tiny_hidden_gradients(seed=0, output_scale=1e-7):
    """A correct 4 -> 1 -> 1 net whose output weight is scaled down: the hidden layer's
    gradients are `output_scale` times their usual size."""
    rng = _rng(seed)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(1, "tanh"), keras.layers.Dense(1, "sigmoid")]
    )
    model.compile("sgd", "binary_crossentropy")
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel * output_scale, bias])
    x, y = _binary(rng, 16, 4)
    return model, x, y


def conv1d_relu(seed=0):
    """Conv1D -> BatchNorm -> ReLU, twice, on a batch of sequences: ReLUs switch near 0."""
    rng = _rng(seed)
    model = keras.Sequential(
        [
            keras.Input((32, 2)),
            keras.layers.Conv1D(8, 5, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv1D(8, 5, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(1, "sigmoid"),
        ]
    )
    model.compile("adam", "binary_crossentropy")
    x, y = _binary(rng, 32, 32, 2)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return model, x[:16], y[:16]


def residual_convnet(seed=0, batch=8):
    """A ~230k-parameter residual conv net on 32x32x3 images (CIFAR-sized), batch norm after
    every convolution: the size of the nets people train on a laptop."""
    rng = _rng(seed)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    for filters in (32, 64, 96):
        shortcut = keras.layers.Conv2D(filters, 1, strides=2, use_bias=False)(x)
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.add([x, shortcut])
        x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10)(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x_data = rng.normal(size=(batch, 32, 32, 3)).astype("float32")
    y_data = rng.integers(0, 10, size=(batch,))
    model(x_data)
    return model, x_data, y_data


def mnist_convnet_batch(seed=0, batch=8):
    """`mnist_convnet` above (Keras's "simple MNIST convnet") on `batch` images: `(model, x, y)`."""
    keras.utils.set_random_seed(seed)
    x, y = mnist_like(batch, seed)
    return mnist_convnet(), x, y


def mobilenet_small(seed=0, batch=8):
    """`keras.applications.MobileNet(alpha=0.25, weights=None)` on 32x32 images."""
    rng = _rng(seed)
    model = keras.applications.MobileNet(
        input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=10
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    x = rng.normal(size=(batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(batch,))
    model.fit(x, y, epochs=1, verbose=0)  # batch norm statistics of the data, as after training
    return model, x, y


def mlp_10k(seed=0, batch=64):
    """A 20 -> 200 -> 30 -> 1 MLP: about 10k parameters."""
    rng = _rng(seed)
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(200, "relu"),
            keras.layers.Dense(30, "relu"),
            keras.layers.Dense(1, "sigmoid"),
        ]
    )
    model.compile("adam", "binary_crossentropy")
    x, y = _binary(rng, batch, 20)
    return model, x, y


GRADIENT_CHECK_EXAMPLES = {
    "custom_layer_without_kwargs": custom_layer_without_kwargs,
    "subclassed_quickstart": subclassed_quickstart,
    "subclassed_with_argument": subclassed_with_argument,
    "trainer_wrapping_a_model": trainer_wrapping_a_model,
    "dict_inputs_named_unlike_their_keys": dict_inputs_named_unlike_their_keys,
    "adapted_normalization": adapted_normalization,
    "multi_head_attention": multi_head_attention,
    "xception_style": xception_style,
    "tiny_hidden_gradients": tiny_hidden_gradients,
    "conv1d_relu": conv1d_relu,
}


# ---------------------------------------------------------------------------------------
# Activation statistics (issue 27): a model written as the examples write theirs — a custom
# block without `**kwargs` or `get_config` holding its Dense layers as attributes, a dict
# input named unlike its key — and the keras.io MNIST convnet above.
# ---------------------------------------------------------------------------------------


class TwoDenseBlock(keras.layers.Layer):
    def __init__(self, units):
        super().__init__()
        self.inner = keras.layers.Dense(units, activation="relu")
        self.outer = keras.layers.Dense(units, activation="tanh")

    def call(self, inputs):
        return self.outer(self.inner(inputs))


def activation_block_net(rows: int = 64, seed: int = 0):
    """`(model, x)`: input "numbers" (dict key) named "features_in" -> block -> Dense head."""
    inputs = keras.Input(shape=(6,), name="features_in")
    block = TwoDenseBlock(8)
    block.name = "block"
    outputs = keras.layers.Dense(1, activation="sigmoid", name="head")(block(inputs))
    model = keras.Model({"numbers": inputs}, outputs)
    model.compile("adam", "binary_crossentropy")
    x = {"numbers": np.random.default_rng(seed).normal(size=(rows, 6)).astype("float32")}
    return model, x
