"""The library on Keras models it never built: every public piece, same call, no flags.

Expected values come from outside the library: per-layer keys from the layers `model_zoo`
finds with `get_layer`, gradient norms from a hand-written `tf.GradientTape` over those
layers' weights, errors from NumPy on `model.predict`, and the broken layer from the zoo's
own record of where it planted the wrong gradient.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from model_zoo import CASES, Case

from reg_callbacks import (
    BiasVarianceCallback,
    GradientNormLogger,
    RunRecorder,
    classification_error,
    gradient_check,
    layer_gradient_norms,
    train,
)
from reg_callbacks.gradient_checking import FINE, LIKELY_BUG

KINDS = list(CASES)


def expected_norms(case: Case) -> dict[str, float]:
    """`grad_norm/<path>` of the training loss, from a tape over each expected layer."""
    model = case.model

    @tf.function
    def gradients(x, y):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=False), training=False)
        return tape.gradient(loss, [layer.trainable_weights for layer in case.layers.values()])

    x, y = (keras.tree.map_structure(tf.convert_to_tensor, a) for a in (case.x, case.y))
    return {
        f"grad_norm/{path}": math.sqrt(sum(float(tf.reduce_sum(tf.square(g))) for g in grads))
        for path, grads in zip(case.layers, gradients(x, y), strict=True)
    }


def built(case: Case) -> Case:
    case.model(keras.tree.map_structure(tf.convert_to_tensor, case.x))
    return case


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_check_passes_every_correct_model(kind):
    case = CASES[kind]()
    report = gradient_check(case.model, case.x, case.y, **case.check)
    assert report.verdict == FINE, report.summary()
    assert report.relative_error < 1e-6
    assert report.suspect_layers == []
    print(f"{kind}: {report.relative_error:.2e} over {report.n_checked} of {report.n_params}")


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_check_names_the_broken_layer_by_its_path(kind):
    case = CASES[kind](broken=True)
    report = gradient_check(case.model, case.x, case.y, **case.check)
    assert report.verdict == LIKELY_BUG, report.summary()
    assert report.suspect_layers == [f"{case.target}/kernel"]


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_norms_name_every_layer_by_its_path(kind):
    case = built(CASES[kind]())
    expected = expected_norms(case)
    norms = layer_gradient_norms(case.model, case.x, case.y)
    assert list(norms) == list(expected)
    np.testing.assert_allclose(list(norms.values()), list(expected.values()), rtol=1e-4)
    assert all(math.isfinite(v) and v > 0 for v in norms.values())
