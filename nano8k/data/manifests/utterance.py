"""One manifest entry (an audio file, or a span and channel of one) and what reading a manifest returned."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nano8k.data.audio import MultichannelPolicy, load_audio, probe_audio, span_frames
from nano8k.data.badsamples import BadSample

Channel = int | tuple[int, ...] | None


def resolve_audio(audio: str, base: Path) -> Path:
    """An audio path from a manifest: ``~`` expanded, relative paths taken from the manifest's folder ``base``."""
    return Path(audio_path(audio, str(base)))


def audio_path(audio: str, base: str) -> str:
    """``resolve_audio`` as a string, without a system call (a million-line manifest on network storage)."""
    if audio.startswith("~"):
        audio = os.path.expanduser(audio)
    path = audio if audio.startswith("/") else f"{base}/{audio}"
    return os.path.normpath(path) if "/." in path or "//" in path else path


@dataclass(frozen=True)
class Utterance:
    """One manifest entry; ``audio`` is absolute, ``line`` is 1-based in ``manifest``.

    ``offset`` None means the whole file and ``duration`` is then the file's; with an ``offset`` (seconds) the
    utterance is the span [offset, offset + duration) of the file (``duration`` None, from a Kaldi segment ending at
    -1: to the file's end).
    ``channel`` is 0-based (a tuple: those channels averaged); None means the file's only channel, or the
    multichannel policy for a multi-channel file.
    """

    key: str
    audio: Path
    target: str
    duration: float | None = None
    lang: str | None = None
    prompt: str | None = None
    line: int | None = None
    manifest: Path | None = None
    offset: float | None = None
    channel: Channel = None

    def bad(self, reason: str) -> BadSample:
        return BadSample(reason, str(self.manifest) if self.manifest else None, self.line, self.key, str(self.audio))

    @property
    def is_segment(self) -> bool:
        return self.offset is not None

    def header_seconds(self) -> float:
        """Seconds of audio ``load`` would decode (the span, cut at the file's end), from the file's header alone;
        raises ``AudioError`` for a missing or unreadable file, as ``load`` would."""
        info = probe_audio(self.audio)
        start, count = span_frames(info.sample_rate, self.offset, self.duration if self.is_segment else None)
        available = max(info.frames - start, 0)
        samples = available if count is None else min(count, available)
        return samples / info.sample_rate if info.sample_rate else 0.0

    def load(self, multichannel: MultichannelPolicy = "error") -> tuple[torch.Tensor, int]:
        """Decode this utterance's span and channel (see ``load_audio``)."""
        return load_audio(
            self.audio,
            offset=self.offset,
            duration=self.duration if self.is_segment else None,
            channel=self.channel,
            multichannel=multichannel,
        )


@dataclass
class ManifestContents:
    """What one manifest holds: good entries, bad lines (with reasons), and entries that are not utterances.

    ``ignored`` lists entries with nothing to transcribe that are not errors either (a Lhotse cut without a
    supervision, a supervision repeated by overlapping cuts); they are reported, not counted as bad.
    """

    path: Path
    format: str
    utterances: Sequence[Utterance] = field(default_factory=list)  # a list, or an UtteranceTable once read
    bad: list[BadSample] = field(default_factory=list)
    ignored: list[BadSample] = field(default_factory=list)
    cache: Any = None  # the ManifestCache it came from, if any

    @property
    def total(self) -> int:
        return len(self.utterances) + len(self.bad)


def parse_key(value: object, name: str = "field 'key'") -> str:
    """An entry's key (a string, or an integer written as one); raises ``ValueError`` naming ``name`` for any other
    value and for an empty or blank key: the key is what results, bad-sample reports and duplicates are known by."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{name} must be a string, got {value!r}")
    key = str(value)
    if not key.strip():
        raise ValueError(f"{name} is {'empty' if not key else f'blank ({key!r})'}: give the entry a key that names it")
    return key


def parse_channel(value: object) -> Channel:
    """A manifest's ``channel`` field: a 0-based int, or a non-empty list of them; raises ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        return value[0] if len(value) == 1 else tuple(value)
    raise ValueError(f"field 'channel' must be a 0-based channel number or a list of them, got {value!r}")


def seconds(name: str, value: object, *, positive: bool = False) -> float:
    """A time field in seconds (a number or a numeric string); raises ``ValueError`` naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"field '{name}' must be a number of seconds, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"field '{name}' must be a number of seconds, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise ValueError(f"field '{name}' must be a finite number {'> 0' if positive else '>= 0'} s, got {value!r}")
    return number


UNREAD_SPAN_FIELDS = (
    "start",
    "end",
    "start_time",
    "end_time",
    "begin",
    "begin_time",
    "offset_s",
    "channels",
    "channel_id",
)  # names other tools use for a span or channel; read silently, they'd be ignored


def unread_span_fields(obj: dict) -> None:
    """Raise ``ValueError`` for span/channel fields under names nano8k does not read (the span would be ignored)."""
    found = [name for name in UNREAD_SPAN_FIELDS if name in obj]
    if found:
        raise ValueError(
            f"field(s) {', '.join(repr(f) for f in found)} are not read: a span is 'offset' + 'duration' "
            "(seconds) and a channel is 'channel' (0-based)"
        )


def parse_span(offset: object, duration: object) -> tuple[float | None, float | None]:
    """A manifest's ``offset``/``duration`` fields as seconds; an ``offset`` needs a ``duration`` (its length)."""
    if offset is not None and duration is None:
        raise ValueError("field 'offset' needs 'duration', the segment's length in seconds")
    return (
        None if offset is None else seconds("offset", offset),
        None if duration is None else seconds("duration", duration, positive=True),
    )
