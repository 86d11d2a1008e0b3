"""Sound sources for augmentation (background noise, room impulse responses): a folder or a manifest, measured once."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nano8k.data.audio import NARROWBAND_RATE as RATE
from nano8k.data.audio import load_audio, probe_audio, resample
from nano8k.errors import AudioError, DataError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".sph", ".au", ".aiff", ".aif")
logger = logging.getLogger("nano8k.data")


@dataclass(frozen=True)
class Clip:
    """One source recording (or a span of one) and its length in seconds, measured when the pool was made."""

    audio: Path
    duration: float
    offset: float | None = None
    channel: int | tuple[int, ...] | None = None


class AudioPool:
    """Clips to draw augmentation audio from: every audio file under a folder (MUSAN's ``noise/``, the
    ``RIRS_NOISES`` folders), or the entries of a manifest in any format nano8k reads, a Kaldi folder included
    (their transcripts are not used). Durations are measured once, here (``shared_pool`` makes one per source and
    process); a missing or empty source is a ``DataError`` naming it.

    Multi-channel files are read as their first channel. Audio is returned at 8 kHz. In a folder of room impulse
    responses (``role`` "rir"), files with "noise" in their name are left out (and counted in the log):
    ``RIRS_NOISES/real_rirs_isotropic_noises`` keeps its isotropic noise recordings beside the responses.
    """

    def __init__(self, source: str | Path, role: str = "noise") -> None:
        self.source, self.role = str(source), role
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"{role} source not found: {path} (a folder of audio files or a manifest)")
        if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES:
            raise DataError(
                f"{role} source {path} is one audio file: give a folder of audio files (e.g. the one it "
                "is in) or a manifest"
            )
        clips: list[Clip] = []
        if path.is_dir() and not (path / "wav.scp").is_file():  # a Kaldi folder is a manifest
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if role == "rir":
                noises = [p for p in files if "noise" in p.name.lower()]
                if noises:
                    logger.info(
                        "rir source %s: %d files named *noise* left out (e.g. %s)", path, len(noises), noises[0].name
                    )
                files = [p for p in files if "noise" not in p.name.lower()]
            for file in files:
                info = probe_audio(file)
                if info.frames:
                    clips.append(Clip(file.resolve(), info.duration))
        else:
            from nano8k.data.manifests.io import read_entries  # manifests hold utterances; only their audio is used

            entries, bad, _ = read_entries(path)
            if bad:
                raise DataError(f"{role} source {path}: {len(bad)} bad entries, first: {bad[0].describe()}")
            headers: dict[Path, float] = {}
            for utt in entries:
                if utt.audio not in headers:
                    try:
                        headers[utt.audio] = probe_audio(utt.audio).duration
                    except AudioError as exc:
                        raise DataError(f"{role} source {utt.bad(str(exc)).describe()}") from exc
                whole = headers[utt.audio]
                duration = whole if utt.offset is None else utt.duration or max(whole - utt.offset, 0.0)
                clips.append(Clip(utt.audio, float(duration), utt.offset, utt.channel))
        if not clips:
            raise DataError(f"{role} source {path} holds no audio ({', '.join(AUDIO_SUFFIXES)})")
        self.clips = clips
        self.total_seconds = sum(c.duration for c in clips)

    def __len__(self) -> int:
        return len(self.clips)

    def __repr__(self) -> str:
        return f"AudioPool({self.source!r}: {len(self.clips)} clips, {self.total_seconds / 3600:.2f} h)"

    def _read(self, clip: Clip, offset: float, duration: float | None) -> np.ndarray:
        try:
            wave, rate = load_audio(
                clip.audio, offset=offset, duration=duration, channel=clip.channel, multichannel="first"
            )
        except AudioError as exc:
            raise DataError(f"{self.role} source {self.source}: {exc}") from exc
        return resample(wave, rate, RATE).numpy().astype(np.float64)

    def segment(self, samples: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """``samples`` of 8 kHz audio from a random clip at a random offset (looped when the clip is shorter)."""
        clip = self.clips[int(rng.integers(len(self.clips)))]
        want = samples / RATE
        start = float(rng.uniform(0.0, max(clip.duration - want, 0.0)))
        audio = self._read(clip, (clip.offset or 0.0) + start, min(want, clip.duration - start))
        if audio.size == 0:
            return np.zeros(samples), str(clip.audio)
        if audio.size < samples:
            audio = np.tile(audio, int(np.ceil(samples / audio.size)))
        return audio[:samples], str(clip.audio)

    def impulse(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """One whole clip (a room impulse response) at 8 kHz."""
        clip = self.clips[int(rng.integers(len(self.clips)))]
        return self._read(clip, clip.offset or 0.0, clip.duration if clip.offset is not None else None), str(clip.audio)


@functools.lru_cache(maxsize=8)
def shared_pool(source: str, role: str) -> AudioPool:
    """The ``AudioPool`` of ``source`` in this process: preflight, the datamodule and every profile of a channel
    measure a folder once."""
    return AudioPool(source, role)
