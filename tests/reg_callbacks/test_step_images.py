"""Step images read back from the real store: which keys, how many, at which steps, that the
pictures show what the model predicts, and that the option and the flag turn them off.
"""

import io
import math
import re

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from reg_callbacks import GradientNormLogger, RunRecorder, train
from reg_callbacks.step_images import heatmap_image, image_epochs

IMAGE_FILE = re.compile(r"images/(\w+)\+step\+(\d+)\+timestamp\+\d+\+[-0-9a-f]{36}(\+compressed)?")
REGION_BLUE = (198, 219, 239)  # the documented colour of class 1's region, class 0's is red
REGION_RED = (244, 199, 195)


def step_images(run_id: str) -> dict[str, dict[int, dict[str, bytes]]]:
    """`{key: {step: {"png": bytes, "webp": bytes}}}` of a run, from MLflow's file names."""
    client = MlflowClient()
    found: dict = {}
    for artifact in client.list_artifacts(run_id, "images"):
        stem, extension = artifact.path.rsplit(".", 1)
        match = IMAGE_FILE.fullmatch(stem)
        assert match, f"not MLflow's step image name: {artifact.path}"
        key, step, compressed = match.group(1), int(match.group(2)), bool(match.group(3))
        assert extension == ("webp" if compressed else "png"), artifact.path
        data = open(client.download_artifacts(run_id, artifact.path), "rb").read()
        found.setdefault(key, {}).setdefault(step, {})[extension] = data
    return found


class Ring(keras.layers.Layer):
    """A custom layer as public examples write them: no `**kwargs`, no `get_config`."""

    def __init__(self, units):
        super().__init__()
        self.dense = keras.layers.Dense(units, activation="tanh")

    def call(self, x):
        return self.dense(keras.ops.concatenate([x, keras.ops.square(x)], axis=-1))


class Classifier(keras.Model):
    """A subclassed model with no `get_config`."""

    def __init__(self):
        super().__init__()
        self.ring = Ring(16)
        self.out = keras.layers.Dense(1, activation="sigmoid")

    def call(self, x):
        return self.out(self.ring(x))


def circle_data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2)).astype("float32")
    # Off centre, so that a picture flipped or transposed shows another region.
    y = (np.sum((x - [0.3, 0.4]) ** 2, axis=1) < 0.3).astype("float32")[:, None]
    return x, y


def test_image_epochs_are_spread_evenly_and_end_with_the_last():
    epochs = image_epochs(30, 9)
    assert len(epochs) == 9 and max(epochs) == 29
    gaps = np.diff(sorted({-1, *epochs}))
    assert gaps.max() - gaps.min() <= 1  # even, to the epoch
    assert image_epochs(5, 9) == frozenset(range(5))


def test_a_library_users_fit_logs_step_images_at_its_steps():
    x, y = circle_data()
    model = Classifier()
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    gradients = GradientNormLogger((x[:64], y[:64]))
    epochs, batch_size = 12, 50
    with RunRecorder("users") as recorder:
        recording = recorder.keras_callback(gradients, step_images=True, boundary_data=(x, y))
        model.fit(x, y, epochs=epochs, batch_size=batch_size, callbacks=[gradients, recording])
    images = step_images(recorder.run_id)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    # One before training, then nine epochs, the last included, at their optimizer steps.
    expected = [0] + [(e + 1) * steps_per_epoch for e in sorted(image_epochs(epochs, 9))]
    assert len(expected) == 10 and expected[-1] == epochs * steps_per_epoch
    assert set(images) == {"decision_boundary", "gradient_norms"}
    for key in images:
        assert sorted(images[key]) == expected, key
        for files in images[key].values():
            assert set(files) == {"png", "webp"}
            thumbnail = Image.open(io.BytesIO(files["webp"]))
            assert max(thumbnail.size) == 256  # what MLflow's image card shows
    assert MlflowClient().get_run(recorder.run_id).data.tags["mlflow.loggedImages"] == "True"

    # The last boundary shows the trained model's predictions (Keras's own `predict`) over a
    # 128 x 128 grid around the points, 10 % margin, x2 growing upwards, 2 pixels a point.
    last = np.asarray(Image.open(io.BytesIO(images["decision_boundary"][expected[-1]]["png"])))
    assert last.shape == (256, 256, 3)
    low, high = x.min(axis=0), x.max(axis=0)
    pad = 0.1 * (high - low) + 1e-3
    x1 = np.linspace(low[0] - pad[0], high[0] + pad[0], 128)
    x2 = np.linspace(high[1] + pad[1], low[1] - pad[1], 128)
    grid = np.stack(np.meshgrid(x1, x2), axis=-1).reshape(-1, 2).astype("float32")
    predicted = model.predict(grid, verbose=0).reshape(128, 128) > 0.5
    shown = last[::2, ::2]
    blue, red = (np.all(shown == colour, axis=-1) for colour in (REGION_BLUE, REGION_RED))
    region = blue | red  # not the boundary line or a point drawn over it
    assert region.mean() > 0.8
    assert np.mean(blue[region] == predicted[region]) > 0.99
    assert 0.05 < predicted.mean() < 0.95  # the check means something: both classes shown


def test_train_logs_them_at_its_intervals_and_off_logs_none():
    x, y = circle_data()
    runs = {}
    for step_images_on in (True, False):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((2,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(1, "sigmoid")]
        )
        model.compile(keras.optimizers.SGD(0.5), "binary_crossentropy")
        gradients = GradientNormLogger((x[:64], y[:64]))
        with RunRecorder("train") as recorder:
            recording = recorder.keras_callback(
                gradients, step_images=step_images_on, boundary_data=(x, y)
            )
            train(model, x, y, iterations=2000, log_every=100, callbacks=[gradients, recording])
        runs[step_images_on] = recorder.run_id
    images = step_images(runs[True])
    expected = [0] + [(e + 1) * 100 for e in sorted(image_epochs(20, 9))]
    assert {key: sorted(steps) for key, steps in images.items()} == {
        "decision_boundary": expected,
        "gradient_norms": expected,
    }
    assert MlflowClient().list_artifacts(runs[False], "images") == []
    assert "mlflow.loggedImages" not in MlflowClient().get_run(runs[False]).data.tags


def test_gradient_heatmap_fills_in_column_by_column():
    history = {"grad_norm/first": [1e-3, 0.0], "grad_norm/second": [1.0, math.inf]}
    pixels = np.asarray(heatmap_image(history, columns=4))
    cells = pixels[32:, 120:]  # under the caption and scale, right of the layer names
    height, width = cells.shape[0] // 2, cells.shape[1] // 4
    centre = cells[height // 2 :: height, width // 2 :: width][:2, :4]
    assert tuple(centre[0, 1]) == (217, 217, 217)  # a zero norm: grey
    assert tuple(centre[1, 1]) == (214, 39, 40)  # an overflow: red
    assert (centre[:, 2:] == 255).all()  # not measured yet: white
    # The log scale runs from dark (the smallest norm) to light (the largest).
    assert centre[0, 0].sum() < centre[1, 0].sum()


def test_bad_arguments_name_the_problem():
    with RunRecorder("bad") as recorder:
        with pytest.raises(ValueError, match=r"boundary points must be an \(m, 2\) array"):
            recorder.keras_callback(step_images=True, boundary_data=(np.zeros((5, 3)), None))
        with pytest.raises(ValueError, match="step_images must be True or False"):
            recorder.keras_callback(step_images="yes")
