"""Tier 2: when the callbacks measure under `fit` by default (`every="auto"`) and under `train`.

A fake clock stands in for time: epochs "take" 10 s (a callback placed before the measured
ones moves the clock), a measurement a fixed number of seconds (the probe functions move it),
so the epochs measured follow from the budget rule alone, whatever the machine's speed.
"""

import keras
import numpy as np
import pytest
from public_examples import custom_layer_without_kwargs, mnist_convnet, mnist_like

from reg_callbacks import BiasVarianceCallback, GradientNormLogger, probes, train

pytestmark = pytest.mark.backends

EPOCH_SECONDS = 10.0


@pytest.fixture
def clock(monkeypatch):
    """`now[0]`: the schedule's time; `tick(seconds)` moves it."""
    now = [0.0]
    monkeypatch.setattr(probes.Schedule, "clock", staticmethod(lambda: now[0]))

    def tick(seconds):
        now[0] += seconds

    return now, tick


def expected_epochs(cost, epochs, spent=0.0, first=0):
    """The budget rule written out: epoch e (after `(e + 1) * EPOCH_SECONDS` of training) is
    measured when measured-so-far + twice a measurement's cost <= budget * training time;
    `first`, measured before any cost is known; the last always."""
    measured = [] if first is None else [first]
    spent += 0.0 if first is None else cost
    for epoch in range((first or 0) + 1, epochs - 1):
        if spent + 2 * cost <= probes.MEASUREMENT_BUDGET * (epoch + 1) * EPOCH_SECONDS:
            measured.append(epoch)
            spent += cost
    return [*measured, epochs - 1]


def a_net():
    model, x, y = custom_layer_without_kwargs()
    return model, np.repeat(x, 8, axis=0), np.repeat(y, 8, axis=0)


def slow_probe(monkeypatch, tick, name, seconds):
    """Each call of `probes.<name>` moves the clock by `seconds`."""
    real = getattr(probes, name)

    def timed(*args, **kwargs):
        tick(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(probes, name, timed)


def epoch_timer(tick):
    return keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: tick(EPOCH_SECONDS))


def test_schedule_rule_and_arguments():
    assert probes.measurement_due(spent=1.0, trained=100.0, cost=1.0, budget=0.02)
    assert not probes.measurement_due(spent=1.5, trained=100.0, cost=1.0, budget=0.02)
    every_third = probes.Schedule(3)
    assert [every_third.due(epoch) for epoch in range(6)] == [False, False, True] * 2
    for bad in (0, -1, True, 1.5, "sometimes", None):
        with pytest.raises(ValueError, match='every must be a positive integer or "auto"'):
            probes.Schedule(bad)


def test_bias_variance_measures_within_the_budget_under_fit(clock, monkeypatch):
    _, tick = clock
    slow_probe(monkeypatch, tick, "predict", 1.0)  # train and dev: 2 s a measurement
    model, x, y = a_net()
    callback = BiasVarianceCallback((x, y), (x, y))
    history = model.fit(x, y, epochs=40, verbose=0, callbacks=[epoch_timer(tick), callback])
    # Its one-batch estimate takes no fake time: the first epoch is measured at cost 0.
    measured = expected_epochs(cost=2.0, epochs=40)
    assert callback.history["epoch"] == measured
    assert measured[0] == 0 and 0 < len(measured) - 2 < 38  # some in between, not all
    assert len(history.history["dev_error"]) == len(measured)
    assert callback.diagnosis.train_error == callback.history["train_error"][-1]


def test_gradient_logger_measures_within_the_budget_under_fit(clock, monkeypatch):
    _, tick = clock
    slow_probe(monkeypatch, tick, "gradient_norms", 2.0)
    model, x, y = a_net()
    logger = GradientNormLogger((x[:64], y[:64]))
    history = model.fit(x, y, epochs=40, verbose=0, callbacks=[epoch_timer(tick), logger])
    # The measurement before training gives the cost and counts as spent.
    measured = expected_epochs(cost=2.0, epochs=40, spent=2.0, first=None)
    assert logger.epochs == [-1, *measured]
    assert 1 < len(measured) < 40
    assert len(history.history[next(iter(logger.history))]) == len(measured)


def test_an_integer_every_still_measures_on_its_epochs(clock, monkeypatch):
    _, tick = clock
    slow_probe(monkeypatch, tick, "predict", 100.0)  # far over any budget
    model, x, y = a_net()
    callback = BiasVarianceCallback((x, y), (x, y), every=1)
    logger = GradientNormLogger((x, y), every=1)
    model.fit(x, y, epochs=4, verbose=0, callbacks=[epoch_timer(tick), callback, logger])
    assert callback.history["epoch"] == [0, 1, 2, 3]
    assert logger.epochs == [-1, 0, 1, 2, 3]


def test_a_stopped_fit_measures_its_last_epoch(clock, monkeypatch):
    _, tick = clock
    slow_probe(monkeypatch, tick, "predict", 100.0)
    slow_probe(monkeypatch, tick, "gradient_norms", 100.0)
    model, x, y = a_net()
    callback = BiasVarianceCallback((x, y), (x, y))
    logger = GradientNormLogger((x, y))
    stop = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", epoch == 5)
    )
    model.fit(x, y, epochs=40, verbose=0, callbacks=[epoch_timer(tick), callback, logger, stop])
    assert callback.history["epoch"] == [0, 5]  # the first (no cost known yet), the last run
    assert logger.epochs == [-1, 5]


def test_train_measures_every_interval_by_default():
    # `train` computes small probes inside its interval call: the course's curves keep
    # every interval.
    model, x, y = a_net()
    callback = BiasVarianceCallback((x, y), (x, y))
    logger = GradientNormLogger((x, y))
    history = train(model, x, y, iterations=40, log_every=10, callbacks=[callback, logger])
    assert callback.history["epoch"] == [0, 1, 2, 3]
    assert logger.epochs == [-1, 0, 1, 2, 3]
    assert len(history.history["dev_error"]) == 4


def test_convnet_fit_logs_the_last_epoch_by_default():
    # A public example's convnet on its own data: whatever the machine's speed, the last
    # epoch's errors and norms are in the logs and the diagnosis is of the trained model.
    x, y = mnist_like(300)
    model = mnist_convnet()
    callback = BiasVarianceCallback((x[:200], y[:200]), (x[200:], y[200:]))
    logger = GradientNormLogger((x[:64], y[:64]))
    history = model.fit(
        x[:200], y[:200], epochs=3, batch_size=64, verbose=0, callbacks=[callback, logger]
    )
    assert callback.history["epoch"][-1] == 2 and logger.epochs[-1] == 2
    predicted = model.predict(x[200:], verbose=0).argmax(-1) != y[200:].argmax(-1)
    assert callback.diagnosis.dev_error == pytest.approx(predicted.mean())
    assert history.history["dev_error"][-1] == pytest.approx(predicted.mean())
