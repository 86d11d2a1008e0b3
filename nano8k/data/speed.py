"""Speed and tempo perturbation: a factor per (seed, key, epoch), the same for the audio and for batch planning."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torchaudio.functional




@dataclass(frozen=True)
class SpeedPerturb:
    """Play utterances faster or slower by a factor drawn per (seed, key, epoch).

    ``factors`` are the choices (Kaldi's, ESPnet's and FunASR's 0.9/1.0/1.1), or ``factor_range`` (lo, hi) a uniform
    range, rounded to whole percents; ``prob`` of perturbing at all. ``mode`` speed resamples (duration and pitch
    change together, as sox ``speed``); tempo time-stretches with librosa's phase vocoder (pitch kept, slower).
    A factor f makes the audio 1/f as long; transcripts stay, and the batch planner uses the same factor, so frame
    and token budgets hold for the perturbed audio.
    """

    factors: tuple[float, ...] | None = (0.9, 1.0, 1.1)
    factor_range: tuple[float, float] | None = None
    prob: float = 1.0
    mode: Literal["speed", "tempo"] = "speed"

    def __post_init__(self) -> None:
        if (self.factors is None) == (self.factor_range is None):
            raise ValueError("give either factors (e.g. [0.9, 1.0, 1.1]) or factor_range (e.g. [0.9, 1.1])")
        values = self.factors or self.factor_range
        if not values or any(not 0.5 <= float(f) <= 2.0 for f in values):
            raise ValueError(f"speed factors must lie in [0.5, 2.0], got {list(values or [])}")
        if self.factor_range is not None and self.factor_range[0] > self.factor_range[1]:
            raise ValueError(f"factor_range must be (low, high), got {list(self.factor_range)}")
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {self.prob}")
        if self.mode not in ("speed", "tempo"):
            raise ValueError(f"mode must be speed or tempo, got {self.mode!r}")

    def factor(self, seed: int, key: str, epoch: int) -> float:
        """The factor of utterance ``key`` in ``epoch`` (1.0: unchanged).

        Two uniform draws come straight from a hash of (seed, key, epoch): the batch planner computes every
        utterance's factor each epoch, ~1 us per key where a seeded generator costs ~30 us (30 s per million)."""
        digest = hashlib.blake2b(f"{seed}\x1f{key}\x1f{epoch}\x1fspeed".encode("utf-8"), digest_size=16).digest()
        apply, pick = (int.from_bytes(digest[i : i + 8], "little") / 2**64 for i in (0, 8))
        if apply >= self.prob:
            return 1.0
        if self.factors:
            value = float(self.factors[int(pick * len(self.factors))])
        else:
            low, high = self.factor_range
            value = low + pick * (high - low)
        return round(value * 100) / 100  # whole percents: a resampling ratio of small integers (7920 -> 8000 Hz)

    def factors_for(self, seed: int, keys: list[str], epoch: int) -> np.ndarray:
        return np.array([self.factor(seed, key, epoch) for key in keys])

    def apply(self, waveform: torch.Tensor, rate: int, factor: float) -> torch.Tensor:
        """``waveform`` played ``factor`` times as fast (about ``len / factor`` samples)."""
        if factor == 1.0 or waveform.numel() == 0:
            return waveform
        if self.mode == "tempo":
            import librosa

            return torch.from_numpy(librosa.effects.time_stretch(waveform.numpy(), rate=factor).astype(np.float32))
        source = int(round(rate * factor))
        common = math.gcd(source, rate)
        return torchaudio.functional.resample(waveform, source // common, rate // common)
