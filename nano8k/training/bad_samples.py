"""Every rank's bad samples of a run: gathered at host reads, capped, kept in checkpoints, listed at the end of fit."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nano8k.data.badsamples import BadSample, bad_sample_report, distinct
from nano8k.training.collectives import gather_objects

SPLITS = ("train", "val")


class BadSampleTally:
    """The bad samples loader workers skipped (a batch's ``skipped`` records), on every rank.

    Each rank notes its own as batches arrive; ``gather`` collects every rank's at the same point on all ranks (a
    collective under DDP), so every rank holds the same list and the data module's ``max_bad_fraction`` stops them
    together.
    """

    def __init__(self) -> None:
        self.by_split: dict[str, dict[tuple, BadSample]] = {split: {} for split in SPLITS}  # all ranks, kept on resume
        self._pending: dict[str, list[BadSample]] = {split: [] for split in SPLITS}  # this rank's, since the last read

    def note(self, split: str, batch: Any) -> None:
        """This rank's bad samples of ``batch`` (a ``SpeechBatch`` or ``SkippedBatch``; None has none)."""
        self._pending[split].extend(BadSample(**record) for record in getattr(batch, "skipped", None) or ())

    def gather(self, split: str, world_size: int | None = None) -> bool:
        """Collect every rank's noted samples of ``split``; True when some were recorded. With ``world_size`` (the
        training split) a single process with nothing noted skips the collective."""
        pending, self._pending[split] = self._pending[split], []
        if world_size is not None and world_size <= 1 and not pending:
            return False
        gathered = gather_objects(pending)
        self.record(split, gathered)
        return bool(gathered)

    def drop_pending(self, split: str) -> None:
        """Forget this rank's noted samples of ``split`` (a sanity check's validation)."""
        self._pending[split] = []

    def record(self, split: str, items: Iterable[BadSample]) -> None:
        for bad in items:
            self.by_split.setdefault(split, {}).setdefault(bad.ident, bad)

    def items(self, split: str) -> list[BadSample]:
        return list(self.by_split.get(split, {}).values())

    def check_fraction(self, datamodule: Any, split: str) -> None:
        """The data module's ``max_bad_fraction`` over every rank's bad samples (the same list on each rank)."""
        if datamodule is not None and hasattr(datamodule, "check_bad_fraction"):
            datamodule.check_bad_fraction(split, self.items(split))

    def final(self, datamodule: Any) -> dict[str, list[BadSample]]:
        """Every bad sample of the run per split: loading on any rank (before a resume too) and the bad manifest
        lines the data module found when it was set up."""
        by_split: dict[str, list[BadSample]] = {}
        for split in SPLITS:
            manifest_log = getattr(datamodule, "bad_samples", {}).get(split)
            by_split[split] = distinct(self.items(split), getattr(manifest_log, "items", ()))
        return by_split

    @staticmethod
    def report(by_split: Mapping[str, Sequence[BadSample]]) -> tuple[dict[str, float], str]:
        """The end-of-fit metrics (``data/bad_samples_<split>``) and printed listing of ``final()``."""
        metrics = {f"data/bad_samples_{split}": float(len(items)) for split, items in by_split.items()}
        return metrics, bad_sample_report(by_split)

    def state(self) -> dict[str, list[dict[str, Any]]]:
        """Plain records per split, for the checkpoint."""
        return {split: [bad.record() for bad in items.values()] for split, items in self.by_split.items()}

    def restore(self, state: Mapping[str, Sequence[Mapping[str, Any]]] | None) -> None:
        for split, records in (state or {}).items():
            self.record(split, [BadSample(**record) for record in records])
