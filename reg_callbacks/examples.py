"""Examples as users pass them to the callbacks: `(x, y)` arrays, dicts of arrays, or batches.

`x` and `y` may be arrays, tensors, or dicts/lists of them (named inputs, several outputs).
A `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)` batches stands for all of its
batches: it is iterated whole at every measurement, so it must be finite (`take(n)` bounds a
repeated one). Integer arrays stay integer: token ids are never cast to float.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


class Examples:
    """`(x, y)` held in memory as tensors, or a finite `tf.data.Dataset` of batches."""

    def __init__(self, name: str, data):
        if isinstance(data, tf.data.Dataset):
            self.dataset, self.tensors = _checked_dataset(name, data), None
            return
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError(
                f"{name} must be a pair (x, y) or a tf.data.Dataset of (x, y) batches; "
                f"got {type(data).__name__}."
            )
        x, y = (keras.tree.map_structure(as_tensor, part) for part in data)
        counts = {int(t.shape[0]) for t in keras.tree.flatten((x, y)) if len(t.shape)}
        if len(counts) != 1:
            raise ValueError(
                f"{name} must have as many rows in x as in y; got {sorted(counts)} rows."
            )
        self.dataset, self.tensors = None, (x, y)

    def build(self, model: keras.Model) -> None:
        """Build a model not built yet (a subclassed one, before its first call) for this
        data, without running it, as `fit` does before its first step."""
        if model.built:
            return
        if self.tensors is not None:
            model(symbolic_like(self.tensors[0]))
        else:
            model(
                keras.tree.map_structure(
                    lambda spec: keras.KerasTensor(spec.shape, spec.dtype),
                    self.dataset.element_spec[0],
                )
            )

    def batches(self):
        """`(x, y, sample_weight)` for each batch: the in-memory pair is one batch."""
        if self.dataset is None:
            yield (*self.tensors, None)
            return
        for batch in self.dataset:
            yield tuple(
                None if part is None else keras.tree.map_structure(as_tensor, part)
                for part in keras.utils.unpack_x_y_sample_weight(batch)
            )


def rows(x) -> int:
    """Number of examples in `x` (an array, tensor or a nest of them)."""
    return int(keras.tree.flatten(x)[0].shape[0])


def symbolic_like(x):
    """Symbolic inputs shaped like the batch `x` (any number of rows), to build a model."""
    return keras.tree.map_structure(
        lambda t: keras.KerasTensor((None, *t.shape[1:]), dtype=t.dtype),
        keras.tree.map_structure(as_tensor, x),
    )


def as_tensor(array):
    """A backend tensor of `array`: floats in `floatx`, integers kept integer; object arrays
    refused."""
    if keras.ops.is_tensor(array):
        return array
    array = np.asarray(array)
    if array.dtype.kind == "O":
        raise ValueError(f"examples must be numeric arrays; got an array of {array.dtype}.")
    if array.dtype.kind == "f":
        array = array.astype(keras.config.floatx())
    return keras.ops.convert_to_tensor(array)


def _checked_dataset(name: str, dataset: tf.data.Dataset) -> tf.data.Dataset:
    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ValueError(
            f"{name} is an infinite tf.data.Dataset (repeat() without a count), and it is "
            "evaluated over all its batches; pass a finite one, e.g. dataset.take(10)."
        )
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise ValueError(
            f"{name} must yield (x, y) or (x, y, sample_weight) batches; got elements {spec}."
        )
    return dataset
