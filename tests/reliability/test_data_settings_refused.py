"""TelephoneDataModule refuses unusable data.* settings when built, naming the key, the value and what is allowed."""

from __future__ import annotations

import math

import pytest

from nano8k.data.pipeline.datamodule import TelephoneDataModule


def test_frontend_sample_rate_12000_is_refused_with_key_value_and_allowed_rates():
    with pytest.raises(ValueError) as refused:
        TelephoneDataModule(frontend_sample_rate=12000)
    message = str(refused.value)
    assert "data.frontend_sample_rate" in message and "12000" in message
    assert "8000" in message and "16000" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_frames_per_batch", 0),
        ("max_frames_per_batch", -100),
        ("max_tokens_per_batch", 0),
        ("max_batch_size", 0),
        ("num_workers", -1),
        ("sort_window", -5),  # a negative window silently dropped every utterance from the epoch
        ("telephone_prob", 1.5),
        ("telephone_prob", -0.1),
        ("telephone_prob", math.nan),
        ("max_bad_fraction", 2.0),
        ("dither", -1.0),
        ("min_duration", -0.5),
        ("max_duration", 0.05),  # not above the default min_duration 0.1
        ("feature_cache_mb", -1.0),
        ("telephone_max_input_rate", 0),
        ("language", "xx"),
    ],
)
def test_unusable_setting_is_refused_naming_data_key_and_value(key, value):
    with pytest.raises(ValueError) as refused:
        TelephoneDataModule(**{key: value})
    message = str(refused.value)
    assert f"data.{key}" in message, message
    assert repr(value) in message, message


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"frontend_sample_rate": 8000},
        {"max_batch_size": None, "max_tokens_per_batch": 6000, "sort_window": None, "num_workers": 0},
        {"sort_window": 0, "telephone_prob": 0.0, "max_bad_fraction": 1.0, "dither": 0.0},
        {"telephone_max_input_rate": None, "language": "manifest"},
        {"language": "zh"},
    ],
)
def test_usable_settings_are_accepted(settings):
    datamodule = TelephoneDataModule(**settings)
    assert datamodule.frontend.sample_rate == settings.get("frontend_sample_rate", 16000)
