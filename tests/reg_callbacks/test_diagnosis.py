"""Tier 1: the course's bias/variance table, exactly."""

import math

import pytest

from reg_callbacks import LABELS, diagnose
from reg_callbacks.diagnosis import BIAS_REMEDIES, VARIANCE_REMEDIES


@pytest.mark.parametrize(
    ("train", "dev", "label"),
    [
        (0.01, 0.11, "high variance"),
        (0.15, 0.16, "high bias"),
        (0.15, 0.30, "high bias & high variance"),
        (0.005, 0.01, "low bias & low variance"),
    ],
)
def test_course_cat_classifier_table(train, dev, label):
    result = diagnose(train, dev, bayes_error=0.0)
    assert result.label == label
    assert math.isclose(result.avoidable_bias, train)
    assert math.isclose(result.variance, dev - train)


def test_blurry_images_bayes_15_percent_is_low_both():
    result = diagnose(0.15, 0.16, bayes_error=0.15)
    assert result.label == "low bias & low variance"
    assert result.avoidable_bias == pytest.approx(0.0)
    assert result.remedies == ()


def test_remedies_follow_the_basic_recipe_bias_first():
    assert diagnose(0.15, 0.16).remedies == BIAS_REMEDIES
    assert diagnose(0.01, 0.11).remedies == VARIANCE_REMEDIES
    both = diagnose(0.15, 0.30).remedies
    assert both[: len(BIAS_REMEDIES)] == BIAS_REMEDIES
    assert both.count("different architecture") == 1
    assert "more data (or data augmentation)" in both


def test_thresholds_are_parameters():
    assert diagnose(0.03, 0.06).label == "low bias & low variance"
    assert diagnose(0.03, 0.06, bias_threshold=0.02, variance_threshold=0.02).label == LABELS[2]


def test_dev_below_train_and_train_below_bayes_count_as_low():
    result = diagnose(0.12, 0.10, bayes_error=0.14)
    assert result.variance == pytest.approx(-0.02)
    assert result.avoidable_bias == pytest.approx(-0.02)
    assert result.label == "low bias & low variance"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_error": -0.1, "dev_error": 0.1}, "train_error must be a fraction in \\[0, 1\\]"),
        ({"train_error": 0.1, "dev_error": 1.5}, "dev_error must be a fraction"),
        ({"train_error": 0.1, "dev_error": 11.0}, "11 % is 0.11"),
        ({"train_error": float("nan"), "dev_error": 0.1}, "train_error must be a finite"),
        ({"train_error": 0.1, "dev_error": 0.1, "bayes_error": 2}, "bayes_error"),
        ({"train_error": "0.1", "dev_error": 0.1}, "train_error"),
        ({"train_error": 0.1, "dev_error": 0.1, "bias_threshold": 0}, "bias_threshold"),
    ],
)
def test_invalid_input_names_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        diagnose(**kwargs)


def test_importing_diagnose_does_not_import_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys, reg_callbacks; reg_callbacks.diagnose(0.1, 0.2); "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
