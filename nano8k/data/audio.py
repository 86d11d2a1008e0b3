"""Audio I/O: decode a file or a span of it with soundfile, pick channels by policy, probe headers, resample."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch

from nano8k.errors import AudioError
from nano8k.model.features import resample

__all__ = [
    "AudioError",
    "AudioInfo",
    "INT16_PEAK",
    "MAX_SAMPLE_MAGNITUDE",
    "MULTICHANNEL_POLICIES",
    "MultichannelPolicy",
    "NARROWBAND_RATE",
    "SILENCE_PEAK_DBFS",
    "channel_list",
    "channel_problem",
    "clip_int16",
    "file_problem",
    "load_audio",
    "peak_dbfs",
    "probe_audio",
    "resample",
    "span_frames",
]

MultichannelPolicy = Literal["error", "mix", "first"]
MULTICHANNEL_POLICIES = ("error", "mix", "first")
MAX_OVERSHOOT = 0.5  # s a span may run past its file's end (then cut there): Kaldi extract-segments' --max-overshoot
UNSEEKABLE_SUBTYPES = ("GSM610",)  # libsndfile 1.2 cannot seek in these (WAV GSM 6.10); others seek
_BLOCK = 1 << 16  # frames per read when a format cannot seek (GSM 6.10 WAV): decode and discard up to the span
# Largest |sample| load_audio accepts. Decoded audio is nominally in [-1, 1] (integer PCM always is); a float WAV may
# overshoot a little (2.0 is +6 dB of headroom), but values far outside (e.g. ±8e36 from a wrong scale or corrupt data)
# overflow the fbank's x32768 int16 scaling into NaN features, so they are refused, naming the file and the peak.
MAX_SAMPLE_MAGNITUDE = 2.0
# Peak level (dBFS, 0 dBFS = |sample| 1.0) below which validate warns that an utterance is silent: -60 dBFS is a peak
# of 0.001, about 33 on the int16 scale, far below any speech; digital silence (all zeros) is -inf dBFS.
SILENCE_PEAK_DBFS = -60.0
NARROWBAND_RATE = 8000  # telephone audio: every channel effect and codec runs at this rate
INT16_PEAK = 32767 / 32768  # the largest float an int16 sample holds: what a codec's 16-bit input clips to


def clip_int16(x: np.ndarray) -> np.ndarray:
    """``x`` clipped to the range an int16 sample can hold, [-1, 32767/32768]."""
    return np.clip(x, -1.0, INT16_PEAK)


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file."""

    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str = ""

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    @property
    def seekable(self) -> bool:
        """Whether libsndfile can seek in this file (GSM 6.10 in WAV cannot: spans are decoded from the start)."""
        return self.subtype not in UNSEEKABLE_SUBTYPES


_NOT_FILES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def file_problem(path: Path, what: str = "audio file") -> str | None:
    """Why ``path`` cannot be read as a ``what``, said by what it is (missing, a dangling symlink, a symlink loop, a
    directory, a FIFO, a device, not readable), or None for a readable regular file. Nothing is opened: a FIFO would
    block its reader."""
    not_a = f"not a{'n' if what[0] in 'aeiou' else ''} {what}"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"a dangling symlink, {not_a}: {path} -> {os.readlink(path)} (the target does not exist)"
        return f"{what} not found: {path}"
    except PermissionError:
        return f"{what} not reachable (permission denied on a folder above it): {path}"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"a symlink loop, {not_a}: {path} (its symlinks point at each other)"
        return f"cannot reach {what} {path}: {exc.strerror or exc}"
    for is_kind, kind in _NOT_FILES:
        if is_kind(mode):
            return f"{kind}, {not_a}: {path}"
    if not os.access(path, os.R_OK):
        return f"{what} not readable (permission denied): {path}"
    return None


def _check_file(path: Path) -> None:
    problem = file_problem(path)
    if problem:
        raise AudioError(problem)


def probe_audio(path: str | Path) -> AudioInfo:
    """Read the header only (cheap); raise ``AudioError`` if the file is missing or unreadable."""
    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as exc:
        raise AudioError(f"cannot read audio header of {path}: {exc}") from exc
    return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames), str(info.format), str(info.subtype))


def peak_dbfs(waveform: torch.Tensor) -> float:
    """Peak level of a [-1, 1] waveform in dBFS (``-inf`` for digital silence)."""
    peak = float(waveform.abs().max()) if waveform.numel() else 0.0
    return 20.0 * float(np.log10(peak)) if peak > 0 else float("-inf")


def span_frames(rate: int, offset: float | None, duration: float | None) -> tuple[int, int | None]:
    """First sample and sample count of a span: ``round(offset * rate)``, ``round(duration * rate)`` (None: all)."""
    start = int(round((offset or 0.0) * rate))
    return start, None if duration is None else int(round(duration * rate))


def _read_span(handle: sf.SoundFile, start: int, count: int | None) -> np.ndarray:
    """Samples [start, start + count) as float32 [frames, channels]; seeks when the format can, else decodes forward."""
    if handle.seekable():
        handle.seek(start)
        return handle.read(-1 if count is None else count, dtype="float32", always_2d=True)
    skipped = 0
    while skipped < start:  # e.g. GSM 6.10 in WAV: libsndfile cannot seek, so decode up to the span and drop it
        got = handle.read(min(_BLOCK, start - skipped), dtype="float32", always_2d=True).shape[0]
        if got == 0:
            break
        skipped += got
    wanted = handle.frames - skipped if count is None else count
    return handle.read(max(0, wanted), dtype="float32", always_2d=True)


def channel_list(channel: int | Sequence[int]) -> list[int]:
    """A channel field (one 0-based channel, or several to average) as a list."""
    return [channel] if isinstance(channel, int) else list(channel)


def channel_problem(
    path: Path, channels: int, channel: int | Sequence[int] | None, policy: MultichannelPolicy
) -> str | None:
    """Why ``channel`` (or, with none given, ``policy``) cannot be used on a file with ``channels``; None when fine."""
    if policy not in MULTICHANNEL_POLICIES:
        raise ValueError(f"multichannel must be one of {', '.join(MULTICHANNEL_POLICIES)}, got {policy!r}")
    if channel is not None:
        wanted = channel_list(channel)
        if not wanted or any(not 0 <= c < channels for c in wanted):
            return f"channel {channel} does not exist in {path} ({channels} channel(s), numbered from 0)"
        return None
    if channels > 1 and policy == "error":
        return (
            f"{path} has {channels} channels and the utterance names none: give its channel (manifests: "
            "'channel' in jsonl/ChatML, the 5th segments field or reco2file_and_channel in Kaldi, the "
            "supervision's channel in Lhotse; transcribe: --channel N), or choose a multichannel policy, 'first' "
            "or 'mix' (data.multichannel in a config, --multichannel on a command line; mix averages the "
            "channels: agent and customer in one track)"
        )
    return None


def _select(
    data: np.ndarray, path: Path, channel: int | Sequence[int] | None, policy: MultichannelPolicy
) -> np.ndarray:
    problem = channel_problem(path, data.shape[1], channel, policy)
    if problem:
        raise AudioError(problem)
    if channel is not None:
        wanted = channel_list(channel)
        return data[:, wanted[0]] if len(wanted) == 1 else data[:, wanted].mean(axis=1)
    if data.shape[1] == 1 or policy == "first":
        return data[:, 0]
    return data.mean(axis=1)


def load_audio(
    path: str | Path,
    *,
    offset: float | None = None,
    duration: float | None = None,
    channel: int | Sequence[int] | None = None,
    multichannel: MultichannelPolicy = "error",
) -> tuple[torch.Tensor, int]:
    """Decode ``path`` (any format libsndfile reads) to a float32 mono tensor in [-1, 1] and its rate.

    ``offset``/``duration`` (seconds) read only that span: the file is seeked, not decoded from the start, for every
    format libsndfile can seek (WAV PCM/μ-law/A-law, FLAC, OGG Vorbis/Opus, MP3); GSM 6.10 WAV cannot seek, so it is
    decoded up to the span's end only. ``channel`` (0-based, or a list to average) picks channels; a multi-channel file
    with no ``channel`` follows ``multichannel``: ``error`` (default: names the file and the fix), ``first``, ``mix``.
    A span may end up to ``MAX_OVERSHOOT`` s past the file's end (it is cut there). Raises ``AudioError`` naming the
    file for a missing, undecodable, zero-length or non-finite file, samples beyond ``MAX_SAMPLE_MAGNITUDE`` (float
    audio far outside [-1, 1]), a span outside the file, or a missing channel.
    """
    path = Path(path)
    _check_file(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            rate = int(handle.samplerate)
            start, count = span_frames(rate, offset, duration)
            if start < 0 or (count is not None and count <= 0):
                raise AudioError(f"bad span offset={offset} duration={duration} s in {path}")
            if start >= handle.frames > 0:
                raise AudioError(f"offset {offset} s is past the end of {path} ({handle.frames / rate:.3f} s)")
            data = _read_span(handle, start, count)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as exc:
        raise AudioError(f"cannot decode audio {path}: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioError(f"zero-length audio (0 samples): {path}")
    if count is not None and count - data.shape[0] > MAX_OVERSHOOT * rate:
        raise AudioError(
            f"span {offset or 0.0}+{duration} s ends after the end of {path} ({(start + data.shape[0]) / rate:.3f} s)"
        )
    mono = _select(data, path, channel, multichannel)
    if not np.isfinite(mono).all():
        raise AudioError(f"audio contains NaN/Inf samples: {path}")
    peak = float(np.abs(mono).max())
    if peak > MAX_SAMPLE_MAGNITUDE:
        raise AudioError(
            f"audio samples out of range: peak |sample| {peak:.3g} > {MAX_SAMPLE_MAGNITUDE} (float audio "
            f"is nominally in [-1, 1]; rescale or re-export the file): {path}"
        )
    return torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32)), rate
