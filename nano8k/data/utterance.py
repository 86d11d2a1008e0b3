"""One manifest entry (an audio file, or a span and channel of one) and what reading a manifest returned."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nano8k.data.audio import MultichannelPolicy, load_audio
from nano8k.data.badsamples import BadSample

Channel = int | tuple[int, ...] | None


def resolve_audio(audio: str, base: Path) -> Path:
    """An audio path from a manifest: ``~`` expanded, relative paths taken from the manifest's folder ``base``."""
    path = Path(os.path.expanduser(audio))
    return path if path.is_absolute() else (base / path).resolve()


@dataclass(frozen=True)
class Utterance:
    """One manifest entry; ``audio`` is absolute, ``line`` is 1-based in ``manifest``.

    ``offset`` None means the whole file and ``duration`` is then the file's; with an ``offset`` (seconds) the
    utterance is the span [offset, offset + duration) of the file (``duration`` None: to the file's end).
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

    def load(self, multichannel: MultichannelPolicy = "error") -> tuple[torch.Tensor, int]:
        """Decode this utterance's span and channel (see ``load_audio``)."""
        return load_audio(self.audio, offset=self.offset, duration=self.duration if self.is_segment else None,
                          channel=self.channel, multichannel=multichannel)


@dataclass
class ManifestContents:
    """What one manifest holds: good entries, bad lines (with reasons), and the number of entries seen."""

    path: Path
    format: str
    utterances: list[Utterance] = field(default_factory=list)
    bad: list[BadSample] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.utterances) + len(self.bad)


def parse_channel(value: object) -> Channel:
    """A manifest's ``channel`` field: a 0-based int, or a non-empty list of them; raises ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                        for v in value):
        return value[0] if len(value) == 1 else tuple(value)
    raise ValueError(f"field 'channel' must be a 0-based channel number or a list of them, got {value!r}")


def parse_span(offset: object, duration: object) -> tuple[float | None, float | None]:
    """A manifest's ``offset``/``duration`` fields as seconds; raises ``ValueError`` naming the field."""
    out = []
    for name, value in (("offset", offset), ("duration", duration)):
        if value is None:
            out.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"field '{name}' must be a number of seconds, got {value!r}")
        if value < 0 or (name == "duration" and value == 0):
            raise ValueError(f"field '{name}' must be {'>= 0' if name == 'offset' else '> 0'} s, got {value!r}")
        out.append(float(value))
    return out[0], out[1]
