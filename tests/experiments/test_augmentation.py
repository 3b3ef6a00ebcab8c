"""experiments.augmentation: augmentation layers act only in training; they lower the dev error."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from support import run_module

from experiments import augmentation
from experiments.augmentation import Config


def test_augmentation_layers_change_images_only_in_training():
    cfg = Config()
    model = augmentation.build_model(cfg, (8, 8, 1))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:2] == ["RandomRotation", "RandomTranslation"] and "RandomFlip" not in kinds
    images = augmentation.make_data(cfg).x_train[:16]
    augment = model.layers[:2]
    trained, predicted = images, images
    for layer in augment:
        trained, predicted = layer(trained, training=True), layer(predicted, training=False)
    assert np.abs(np.asarray(trained) - images).max() > 0.1
    np.testing.assert_array_equal(np.asarray(predicted), images)


def test_no_augment_has_no_random_layers_and_zoom_is_optional():
    plain = augmentation.build_model(Config(augment=False), (8, 8, 1))
    assert not any(type(layer).__name__.startswith("Random") for layer in plain.layers)
    zoomed = augmentation.build_model(Config(zoom=0.05), (8, 8, 1))
    assert "RandomZoom" in [type(layer).__name__ for layer in zoomed.layers]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rotation": 1.0}, "rotation must be in [0, 1); got 1.0."),
        ({"rotation": 0.0, "shift": 0.0}, "augment needs at least one of rotation, shift, zoom"),
        ({"n_train": 5}, "n_train must be in [10, 1787]; got 5."),
        ({"batch_size": 0}, "batch_size must be >= 1; got 0."),
    ],
)
def test_config_validation(values, message):
    with pytest.raises(ValueError) as raised:
        Config(**values)
    assert str(raised.value).startswith(message)


@pytest.mark.slow
def test_augmentation_lowers_the_dev_error():
    plain = augmentation.run(Config(augment=False))
    augmented = augmentation.run(Config())
    # 300 training images are memorized; augmentation keeps them from being memorized exactly.
    assert plain["train_error"] == 0.0 and plain["variance"] > 0.05
    assert augmented["dev_error"] < plain["dev_error"] - 0.003  # 1497 dev images: 5+ fewer errors
    assert augmented["variance"] < plain["variance"]
    client = mlflow.MlflowClient()
    for summary, figures in (
        (plain, {"errors.png"}),
        (augmented, {"errors.png", "augmented_examples.png"}),
    ):
        run = client.get_run(summary["run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["bias_variance"] == summary["label"]
        assert figures <= {a.path for a in client.list_artifacts(summary["run_id"])}


@pytest.mark.slow
def test_cli_help_and_bad_flag():
    shown = run_module("experiments.augmentation", "--help")
    assert shown.returncode == 0 and "--augment, --no-augment" in shown.stdout
    bad = run_module("experiments.augmentation", "--zoom", "2")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: zoom must be in [0, 1); got 2.0."
