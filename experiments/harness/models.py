"""Keras nets that more than one experiment trains (experiments never import each other)."""

from __future__ import annotations


def binary_mlp(
    *,
    n_features: int,
    width: int,
    depth: int,
    l2: float = 0.0,
    dropout: float = 0.0,
    learning_rate: float = 0.01,
    seed: int = 0,
):
    """`depth` ReLU layers of `width` units (L2 and dropout optional), a sigmoid output, Adam.

    The bias/variance experiment's four regimes and the recipe's rounds are this net with
    different sizes and regularization, so that the recipe's remedies change one knob.
    """
    import keras

    keras.utils.set_random_seed(seed)
    regularizer = keras.regularizers.L2(l2) if l2 else None
    layers = [keras.Input((n_features,))]
    for _ in range(depth):
        layers.append(keras.layers.Dense(width, "relu", kernel_regularizer=regularizer))
        if dropout:
            layers.append(keras.layers.Dropout(dropout, seed=seed))
    layers.append(keras.layers.Dense(1, "sigmoid", kernel_regularizer=regularizer))
    model = keras.Sequential(layers, name=f"mlp_{width}x{depth}")
    model.compile(keras.optimizers.Adam(learning_rate), "binary_crossentropy")
    return model


MLP_FIELDS = ("width", "depth", "l2", "dropout", "learning_rate", "seed")


def binary_mlp_for(cfg, n_features: int = 2):
    """`binary_mlp` with the `MLP_FIELDS` of an experiment's config."""
    return binary_mlp(n_features=n_features, **{field: getattr(cfg, field) for field in MLP_FIELDS})
