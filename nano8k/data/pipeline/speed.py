"""Speed and tempo perturbation: a factor per (seed, key, epoch), the same for the audio and for batch planning."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torchaudio.functional

from nano8k.data.channel.settings import from_mapping

DEFAULT_FACTORS = (0.9, 1.0, 1.1)


@dataclass(frozen=True)
class SpeedPerturb:
    """Play utterances faster or slower by a factor drawn per (seed, key, epoch).

    ``factors`` are the choices (default Kaldi's, ESPnet's and FunASR's 0.9/1.0/1.1), or ``factor_range`` (lo, hi) a
    uniform range, rounded to whole percents; ``prob`` of perturbing at all. ``mode`` speed resamples (duration and
    pitch change together, as sox ``speed``); tempo time-stretches with librosa's phase vocoder (pitch kept, slower). A
    factor f makes the audio 1/f as long; transcripts stay, and the batch planner uses the same factor, so frame and
    token budgets hold for the perturbed audio.
    """

    factors: tuple[float, ...] | None = None
    factor_range: tuple[float, float] | None = None
    prob: float = 1.0
    mode: Literal["speed", "tempo"] = "speed"

    def __post_init__(self) -> None:
        if self.factors is not None and self.factor_range is not None:
            raise ValueError("give either factors (e.g. [0.9, 1.0, 1.1]) or factor_range (e.g. [0.9, 1.1]), not both")
        if self.factors is None and self.factor_range is None:
            object.__setattr__(self, "factors", DEFAULT_FACTORS)

        def numbers(value: Any) -> bool:
            return isinstance(value, (tuple, list)) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0.5 <= v <= 2.0 for v in value
            )

        if self.factors is not None and not (numbers(self.factors) and self.factors):
            raise ValueError(
                f"factors must be a list of speed factors in [0.5, 2.0], e.g. [0.9, 1.0, 1.1], got {self.factors!r}"
            )
        if self.factor_range is not None and not (
            numbers(self.factor_range) and len(self.factor_range) == 2 and self.factor_range[0] <= self.factor_range[1]
        ):
            raise ValueError(f"factor_range must be a [low, high] pair within [0.5, 2.0], got {self.factor_range!r}")
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {self.prob}")
        if self.mode not in ("speed", "tempo"):
            raise ValueError(f"mode must be speed or tempo, got {self.mode!r}")

    @classmethod
    def from_config(cls, value: Any) -> SpeedPerturb:
        """From a config value: a mapping of the fields, or an instance (unknown keys are named)."""
        return from_mapping(cls, value)

    def describe(self) -> str:
        """One line for people (preflight): the factors or range, the probability and the mode."""
        drawn = (
            f"factors {', '.join(f'{f:g}' for f in self.factors)}"
            if self.factors
            else f"factors uniform in [{self.factor_range[0]:g}, {self.factor_range[1]:g}]"
        )
        return f"{drawn}, applied with p={self.prob:g}, {self.mode} mode"

    def factor(self, seed: int, key: str, epoch: int) -> float:
        """The factor of utterance ``key`` in ``epoch`` (1.0: unchanged).

        Two uniform draws come straight from a hash of (seed, key, epoch): the batch planner computes every
        utterance's factor each epoch: ~4 us per key, where a seeded generator cost ~40 us (40 s per million)."""
        digest = hashlib.blake2b(f"{seed}\x1f{key}\x1f{epoch}\x1fspeed".encode(), digest_size=16).digest()
        apply, pick = (int.from_bytes(digest[i : i + 8], "little") / 2**64 for i in (0, 8))
        if apply >= self.prob:
            return 1.0
        if self.factors:
            value = float(self.factors[int(pick * len(self.factors))])
        else:
            low, high = self.factor_range
            value = low + pick * (high - low)
        return round(value * 100) / 100  # whole percents: ``apply`` resamples by at most 200/100

    def factors_for(self, seed: int, keys: list[str], epoch: int) -> np.ndarray:
        return np.array([self.factor(seed, key, epoch) for key in keys])

    def apply(self, waveform: torch.Tensor, rate: int, factor: float) -> torch.Tensor:
        """``waveform`` played ``factor`` times as fast (about ``len / factor`` samples)."""
        if factor == 1.0 or waveform.numel() == 0:
            return waveform
        if self.mode == "tempo":
            import librosa

            stretched = torch.from_numpy(librosa.effects.time_stretch(waveform.numpy(), rate=factor).astype(np.float32))
            gain = waveform.pow(2).mean().sqrt() / stretched.pow(2).mean().sqrt().clamp_min(1e-12)
            return stretched * gain  # the phase vocoder loses ~3 dB; keep the level
        percent = int(round(factor * 100))  # play at rate * factor: resample by percent / 100, whatever the rate
        common = math.gcd(percent, 100)
        return torchaudio.functional.resample(waveform, percent // common, 100 // common)
