"""Waveform to Fun-ASR-Nano encoder input: x32768, Kaldi fbank, LFR stacking (no CMVN)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torchaudio

INT16_SCALE = 32768.0  # the reference scales [-1, 1] audio to the int16 range before the fbank
FRONTEND_RATES = (8000, 16000)  # fbank rates: 16000 the resampled main stage, 8000 native telephone features
# LFR frames the release encoder takes (``NanoASR.max_frames``): its sinusoid table has max_position_embeddings 2049
# rows and position 0 is unused; at 60 ms a frame that is 122.9 s. A model's own limit comes from its encoder config.
RELEASE_MAX_FRAMES = 2048


@dataclass(frozen=True)
class FrontendConfig:
    """Settings of the reference ``WavFrontend``; ``sample_rate`` is the rate the fbank runs at."""

    sample_rate: int = 16000  # 16000: resampled main stage; 8000: native telephone features
    n_mels: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    lfr_m: int = 7
    lfr_n: int = 6
    dither: float = 0.0  # the reference runtime default is 1.0; keep 0.0 for evaluation and tests
    window: str = "hamming"

    def __post_init__(self) -> None:
        if self.sample_rate not in FRONTEND_RATES:
            raise ValueError(f"frontend sample_rate must be 8000 or 16000, got {self.sample_rate}")
        if self.lfr_m < 1 or self.lfr_n < 1:
            raise ValueError(f"lfr_m and lfr_n must be >= 1, got {self.lfr_m}, {self.lfr_n}")

    @property
    def feature_dim(self) -> int:
        return self.n_mels * self.lfr_m

    @property
    def lfr_frame_seconds(self) -> float:
        """Seconds of audio per LFR frame (0.06 s for the release: 6 fbank frames of 10 ms)."""
        return self.frame_shift_ms * self.lfr_n / 1000.0

    @classmethod
    def from_funasr(cls, frontend_conf: Mapping[str, Any], **overrides: Any) -> FrontendConfig:
        """Build from ``config.yaml``'s ``frontend_conf``; an absent ``dither`` means the reference's 1.0."""
        if frontend_conf.get("cmvn_file"):
            raise ValueError(
                f"frontend_conf.cmvn_file={frontend_conf['cmvn_file']!r}: Fun-ASR-Nano uses no CMVN and nano8k does "
                "not apply one; remove the key or set it to null"
            )
        values = dict(
            sample_rate=int(frontend_conf.get("fs", 16000)),
            n_mels=int(frontend_conf.get("n_mels", 80)),
            frame_length_ms=float(frontend_conf.get("frame_length", 25)),
            frame_shift_ms=float(frontend_conf.get("frame_shift", 10)),
            lfr_m=int(frontend_conf.get("lfr_m", 7)),
            lfr_n=int(frontend_conf.get("lfr_n", 6)),
            dither=float(frontend_conf.get("dither", 1.0)),
            window=str(frontend_conf.get("window", "hamming")),
        )
        values.update(overrides)
        return cls(**values)


@functools.lru_cache(maxsize=16)
def _resampler(orig_rate: int, new_rate: int) -> torchaudio.transforms.Resample:
    # torchaudio defaults (sinc_interp_hann, lowpass width 6, rolloff 0.99) are what the reference uses.
    return torchaudio.transforms.Resample(orig_rate, new_rate)


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Resample a float waveform ``[..., N]`` exactly as the reference loader does."""
    if orig_rate == new_rate:
        return waveform
    return _resampler(int(orig_rate), int(new_rate))(waveform.to(torch.float32))


def fbank(waveform: torch.Tensor, config: FrontendConfig = FrontendConfig()) -> torch.Tensor:
    """Kaldi log-mel fbank ``[T, n_mels]`` of a mono ``[-1, 1]`` waveform sampled at ``config.sample_rate``."""
    if waveform.dim() != 1:
        raise ValueError(f"fbank expects a 1-D mono waveform, got shape {tuple(waveform.shape)}")
    if waveform.numel() == 0:
        raise ValueError("fbank got an empty waveform (0 samples)")
    duration_ms = 1000.0 * waveform.numel() / config.sample_rate
    return torchaudio.compliance.kaldi.fbank(
        (waveform.to(torch.float32) * INT16_SCALE).unsqueeze(0),
        num_mel_bins=config.n_mels,
        frame_length=min(config.frame_length_ms, duration_ms),
        frame_shift=config.frame_shift_ms,
        dither=config.dither,
        energy_floor=0.0,
        window_type=config.window,
        sample_frequency=config.sample_rate,
        snip_edges=True,
    )


def lfr_length(num_frames: int, lfr_n: int = 6) -> int:
    """Number of LFR rows for ``num_frames`` fbank frames: ceil(T / n)."""
    return math.ceil(num_frames / lfr_n)


def apply_lfr(fbank: torch.Tensor, lfr_m: int = 7, lfr_n: int = 6) -> torch.Tensor:
    """Stack ``lfr_m`` frames every ``lfr_n`` (reference padding: (m-1)//2 copies of frame 0 in front, last frame
    after)."""
    num_frames, n_mels = fbank.shape
    rows = lfr_length(num_frames, lfr_n)
    left = fbank[:1].expand((lfr_m - 1) // 2, n_mels)
    padded = torch.cat([left, fbank])
    needed = (rows - 1) * lfr_n + lfr_m
    if padded.shape[0] < needed:
        padded = torch.cat([padded, fbank[-1:].expand(needed - padded.shape[0], n_mels)])
    windows = padded.unfold(0, lfr_m, lfr_n)[:rows]  # [rows, n_mels, m]
    return windows.transpose(1, 2).reshape(rows, lfr_m * n_mels)


def extract_features(
    waveform: torch.Tensor, sample_rate: int, config: FrontendConfig = FrontendConfig(), dither_seed: int | None = None
) -> torch.Tensor:
    """Encoder input ``[L, n_mels * lfr_m]`` from a mono waveform at any rate (resampled to the frontend rate).

    ``dither_seed`` seeds the fbank's dither (the global torch RNG is left alone), so it draws the same noise for an
    utterance whatever else was decoded before."""
    waveform = resample(waveform, sample_rate, config.sample_rate)
    if dither_seed is None or not config.dither:
        return apply_lfr(fbank(waveform, config), config.lfr_m, config.lfr_n)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(dither_seed)
        return apply_lfr(fbank(waveform, config), config.lfr_m, config.lfr_n)
