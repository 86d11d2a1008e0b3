"""SpecAugment frequency/time masks on fbank [T, n_mels] before LFR stacking (training only)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def kaldi_mel_centres(n_mels: int, sample_rate: int, low_freq: float = 20.0, high_freq: float = 0.0) -> np.ndarray:
    """Centre frequency (Hz) of each Kaldi mel bin (mel = 1127 ln(1 + f/700); high_freq <= 0 means Nyquist + it)."""
    nyquist = sample_rate / 2
    high = nyquist + high_freq if high_freq <= 0 else high_freq
    mel = lambda f: 1127.0 * np.log1p(f / 700.0)  # noqa: E731
    lo, hi = mel(low_freq), mel(high)
    delta = (hi - lo) / (n_mels + 1)
    centres_mel = lo + delta * np.arange(1, n_mels + 1)
    return 700.0 * (np.exp(centres_mel / 1127.0) - 1.0)


def band_bins(n_mels: int, sample_rate: int, band_hz: tuple[float, float]) -> tuple[int, int]:
    """[first, last+1) mel bins whose centre lies inside ``band_hz`` at this fbank rate."""
    centres = kaldi_mel_centres(n_mels, sample_rate)
    inside = np.flatnonzero((centres >= band_hz[0]) & (centres <= band_hz[1]))
    if inside.size == 0:
        raise ValueError(f"no mel bin centre lies in {band_hz} Hz at {sample_rate} Hz")
    return int(inside[0]), int(inside[-1]) + 1


@dataclass(frozen=True)
class SpecAugment:
    """Masks for training features. Widths are drawn uniformly in [0, max]; fill is the utterance mean.

    ``time_mask_max_ratio`` caps each time mask at that fraction of the utterance (0 disables the cap).
    ``telephone_band_only`` keeps frequency masks inside the bins whose centre lies in ``band_hz`` at the fbank
    rate (with 8 kHz audio upsampled to a 16 kHz fbank, ~35 of 80 bins lie outside 300-3400 Hz and carry nothing).
    """

    num_freq_masks: int = 2
    freq_mask_max_width: int = 10
    num_time_masks: int = 2
    time_mask_max_width: int = 40  # fbank frames (10 ms)
    time_mask_max_ratio: float = 0.05
    telephone_band_only: bool = False
    band_hz: tuple[float, float] = (300.0, 3400.0)

    def __post_init__(self) -> None:
        if min(self.num_freq_masks, self.freq_mask_max_width, self.num_time_masks, self.time_mask_max_width) < 0:
            raise ValueError("SpecAugment mask counts and widths must be >= 0")
        if not 0.0 <= self.time_mask_max_ratio <= 1.0:
            raise ValueError(f"time_mask_max_ratio must be in [0, 1], got {self.time_mask_max_ratio}")

    def __call__(self, feats: torch.Tensor, rng: np.random.Generator, sample_rate: int = 16000) -> torch.Tensor:
        """Return a masked copy of fbank ``feats`` [T, n_mels] computed at ``sample_rate``."""
        frames, n_mels = feats.shape
        out = feats.clone()
        fill = float(feats.mean()) if feats.numel() else 0.0
        lo, hi = band_bins(n_mels, sample_rate, self.band_hz) if self.telephone_band_only else (0, n_mels)
        for _ in range(self.num_freq_masks):
            width = int(rng.integers(0, min(self.freq_mask_max_width, hi - lo) + 1))
            start = int(rng.integers(lo, hi - width + 1))
            out[:, start : start + width] = fill
        max_t = self.time_mask_max_width
        if self.time_mask_max_ratio > 0:
            max_t = min(max_t, math.floor(self.time_mask_max_ratio * frames))
        for _ in range(self.num_time_masks):
            width = int(rng.integers(0, min(max_t, frames) + 1))
            start = int(rng.integers(0, frames - width + 1))
            out[start : start + width, :] = fill
        return out
