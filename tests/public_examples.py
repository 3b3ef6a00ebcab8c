"""Keras models written the way public Keras examples write them, with synthetic data.

Nothing here follows the library's conventions: custom layers take no `**kwargs` and have
no `get_config`, a trainer subclass has its own `train_step`, inputs come as `tf.data`
dicts. Tests and benchmarks use them to try the library on code it never saw.
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
