"""SpecAugment masks: shapes, telephone-band restriction and determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nano8k.data.pipeline.specaugment import SpecAugment, band_bins, kaldi_mel_centres


def test_band_bins_follow_mel_centres():
    lo, hi = band_bins(80, 16000, (300.0, 3400.0))
    centres = kaldi_mel_centres(80, 16000)
    assert centres[lo] >= 300 > centres[lo - 1] and centres[hi - 1] <= 3400 < centres[hi]
    assert 80 - (hi - lo) in range(30, 40)  # ~35 of 80 bins lie outside the band at 16 kHz
    lo8, hi8 = band_bins(80, 8000, (300.0, 3400.0))
    assert (hi8 - lo8) > (hi - lo)


def test_masks_change_values_with_the_utterance_mean():
    feats = torch.arange(200 * 80, dtype=torch.float32).reshape(200, 80) / 1000
    aug = SpecAugment(
        num_freq_masks=2, freq_mask_max_width=10, num_time_masks=2, time_mask_max_width=20, time_mask_max_ratio=0.2
    )
    out = aug(feats, np.random.default_rng(0))
    assert out.shape == feats.shape and not torch.equal(out, feats)
    changed = out != feats
    assert torch.allclose(out[changed], feats.mean().expand(int(changed.sum())))
    assert torch.equal(aug(feats, np.random.default_rng(0)), out)


@pytest.mark.parametrize("rate", [16000, 8000])
def test_telephone_band_only_keeps_frequency_masks_inside(rate):
    feats = torch.randn(100, 80) + 10
    lo, hi = band_bins(80, rate, (300.0, 3400.0))
    aug = SpecAugment(num_freq_masks=3, freq_mask_max_width=15, num_time_masks=0, telephone_band_only=True)
    touched = torch.zeros(80, dtype=torch.bool)
    for seed in range(50):
        touched |= (aug(feats, np.random.default_rng(seed), rate) != feats).any(dim=0)
    assert touched.any()
    assert not touched[:lo].any() and not touched[hi:].any()


def test_time_masks_respect_ratio():
    feats = torch.randn(50, 80)
    aug = SpecAugment(num_freq_masks=0, num_time_masks=1, time_mask_max_width=40, time_mask_max_ratio=0.1)
    for seed in range(30):
        rows = (aug(feats, np.random.default_rng(seed)) != feats).any(dim=1)
        assert int(rows.sum()) <= 5
