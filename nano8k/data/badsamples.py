"""Bad-input policy: clear errors naming file and line, or counted, logged, capped skips (never substitution)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from nano8k.errors import DataError

logger = logging.getLogger("nano8k.data")

BadSamplePolicy = Literal["error", "skip"]


@dataclass(frozen=True)
class BadSample:
    """One rejected utterance or manifest line and why."""

    reason: str
    manifest: str | None = None
    line: int | None = None
    key: str | None = None
    audio: str | None = None

    @property
    def where(self) -> str:
        """``manifest:line``, the manifest alone, or ``<memory>``."""
        return f"{self.manifest}:{self.line}" if self.manifest and self.line else (self.manifest or "<memory>")

    def describe(self) -> str:
        parts = [f"{self.where}: {self.reason}"]
        if self.key:
            parts.append(f"key={self.key}")
        if self.audio:
            parts.append(f"audio={self.audio}")
        return " | ".join(parts)

    @property
    def ident(self) -> tuple[str | None, int | None, str | None]:
        return (self.manifest, self.line, self.key)

    def record(self) -> dict[str, Any]:
        """Plain dict (checkpoint-safe); ``BadSample(**record)`` restores it."""
        return asdict(self)


def distinct(*groups: Iterable[BadSample]) -> list[BadSample]:
    """The samples of ``groups`` in order, each (manifest, line, key) once."""
    seen: dict[tuple, BadSample] = {}
    for group in groups:
        for bad in group:
            seen.setdefault(bad.ident, bad)
    return list(seen.values())


def bad_sample_report(by_split: Mapping[str, Sequence[BadSample]], limit: int = 20) -> str:
    """``[data] bad samples skipped: train 3, val 0`` and the first ``limit`` of each split, one per line."""
    head = "[data] bad samples skipped: " + ", ".join(f"{split} {len(items)}" for split, items in by_split.items())
    lines = [head]
    for split, items in by_split.items():
        lines += [f"  [{split}] {bad.describe()}" for bad in items[:limit]]
        if len(items) > limit:
            lines.append(f"  [{split}] ... and {len(items) - limit} more")
    return "\n".join(lines)


class BadSampleLog:
    """Counts and names every skipped sample; raises at once under ``error`` or past ``max_bad_fraction``."""

    def __init__(self, policy: BadSamplePolicy = "error", max_bad_fraction: float = 0.0, name: str = "data") -> None:
        if policy not in ("error", "skip"):
            raise ValueError(f"on_bad_sample must be 'error' or 'skip', got {policy!r}")
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        self.policy: BadSamplePolicy = policy
        self.max_bad_fraction = float(max_bad_fraction)
        self.name = name
        self.defer_cap = False  # True: add() never raises for the cap; the trainer checks it on all ranks' samples
        self._items: dict[tuple, BadSample] = {}

    @property
    def items(self) -> list[BadSample]:
        return list(self._items.values())

    @property
    def count(self) -> int:
        return len(self._items)

    def add(self, bad: BadSample, total: int) -> None:
        """Record ``bad`` out of ``total`` samples; raise ``DataError`` under ``error`` or when over the cap."""
        if self.policy == "error":
            raise DataError(f"[{self.name}] bad sample (on_bad_sample=error): {bad.describe()}")
        if bad.ident in self._items:  # the same file failing again in a later epoch counts once
            return
        self._items[bad.ident] = bad
        logger.warning("[%s] skipping bad sample %d: %s", self.name, self.count, bad.describe())
        if not self.defer_cap:
            self.check(total)

    def check(self, total: int, more: Sequence[BadSample] = ()) -> None:
        """Raise if the skipped fraction of ``total`` (these and ``more``) exceeds ``max_bad_fraction``."""
        found = distinct(self._items.values(), more)
        if total <= 0:
            if found:
                raise DataError(f"[{self.name}] all samples are bad; first: {found[0].describe()}")
            return
        if len(found) / total > self.max_bad_fraction:
            listing = "\n  ".join(b.describe() for b in found[:20])
            raise DataError(
                f"[{self.name}] {len(found)} of {total} samples are bad ({len(found) / total:.1%} > "
                f"max_bad_fraction={self.max_bad_fraction:.1%}):\n  {listing}"
            )

    def summary(self) -> str:
        return f"[{self.name}] {self.count} bad sample(s) skipped" + "".join(f"\n  {b.describe()}" for b in self.items)
