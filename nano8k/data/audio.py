"""Audio I/O: decode with soundfile to float32 mono, probe headers, resample with the model frontend's resampler."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from nano8k.data.badsamples import DataError
from nano8k.model.features import resample

__all__ = ["AudioError", "AudioInfo", "load_audio", "probe_audio", "resample"]


class AudioError(DataError):
    """An audio file that cannot be used (missing, undecodable, empty, non-finite); names the file."""


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file."""

    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def probe_audio(path: str | Path) -> AudioInfo:
    """Read the header only (cheap); raise ``AudioError`` if the file is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as exc:
        raise AudioError(f"cannot read audio header of {path}: {exc}") from exc
    return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames), str(info.format))


def load_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Decode ``path`` (wav/flac/ogg/mp3 as libsndfile allows) to a float32 mono tensor in [-1, 1] and its rate.

    Multi-channel audio is averaged (as the reference loader does). Raises ``AudioError`` naming the file for a
    missing, undecodable, zero-length or non-finite (NaN/Inf) file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as exc:
        raise AudioError(f"cannot decode audio {path}: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioError(f"zero-length audio (0 samples): {path}")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise AudioError(f"audio contains NaN/Inf samples: {path}")
    return torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32)), int(rate)
