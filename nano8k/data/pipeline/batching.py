"""Length-bucketed dynamic batches: frame/token budgets, per-epoch seeded shuffle, DDP shards, mid-epoch resume."""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from nano8k.model.batch import padded_length

logger = logging.getLogger("nano8k.data")
EPOCH_SLACK = 0.02  # extra batches (of epoch 0's count) every epoch gets when lengths change per epoch


class BucketBatchSampler:
    """Batch sampler packing similar lengths together under a padded budget.

    A batch's cost is ``len(batch) * max(lengths in batch)`` (what padding really occupies); it stays at or below
    ``max_frames`` (and ``max_tokens`` for ``token_lengths``). Each epoch: shuffle with (seed, epoch), sort inside
    windows of ``sort_window`` utterances, pack greedily, shuffle batch order, then deal batches round-robin to
    ``world_size`` ranks, dropping the last ``< world_size`` batches so every rank runs the same number of steps on a
    disjoint shard (``drop_uneven=False`` keeps them, e.g. for evaluation). ``yield_epoch`` makes it yield ``(index,
    epoch, frontend_rate)`` triples so datasets can seed augmentation per epoch and follow a frontend-rate switch made
    in the main process mid-epoch (``frontend_rate``, read per batch). An utterance longer than a whole budget gets a
    batch of its own. ``epoch_lengths(epoch)`` gives an epoch's own (lengths, token_lengths) when they change per epoch
    (speed perturbation; ``lengths``/``token_lengths`` are then the unperturbed ones). Every epoch then has the same
    number of batches, as Lightning reads it once: epoch 0's plan plus ``EPOCH_SLACK`` (and a batch per rank), reached
    by halving the largest batches of each epoch's plan.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        *,
        token_lengths: Sequence[int] | None = None,
        max_tokens: int | None = None,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        sort_window: int | None = 1000,
        rank: int = 0,
        world_size: int = 1,
        yield_epoch: bool = False,
        drop_uneven: bool = True,
        epoch_lengths: Callable[[int], tuple[Sequence[int], Sequence[int] | None]] | None = None,
    ) -> None:
        if max_frames <= 0:
            raise ValueError(f"max_frames must be > 0, got {max_frames}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        if (token_lengths is None) != (max_tokens is None):
            raise ValueError("give token_lengths and max_tokens together")
        if token_lengths is not None and len(token_lengths) != len(lengths):
            raise ValueError("token_lengths and lengths differ in size")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.token_lengths = None if token_lengths is None else np.asarray(token_lengths, dtype=np.int64)
        self.max_frames, self.max_tokens, self.max_batch_size = int(max_frames), max_tokens, max_batch_size
        self.shuffle, self.seed, self.sort_window = shuffle, int(seed), sort_window
        self.rank, self.world_size, self.yield_epoch = int(rank), int(world_size), yield_epoch
        self.drop_uneven = drop_uneven
        self.epoch_lengths = epoch_lengths
        self.epoch = 0
        self.frontend_rate: int | None = None  # None: the dataset's own rate
        self._resume: tuple[int, int] | None = None  # (epoch, batches already consumed on this rank)
        self._cache: tuple[int, list[list[int]]] | None = None
        self._count: int | None = None  # batches per epoch under epoch_lengths (see _epoch_count)

    # -- epoch plan -------------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def sampler(self) -> BucketBatchSampler:
        """Lightning calls ``set_epoch`` on ``dataloader.batch_sampler.sampler`` (not on the batch sampler itself)
        at every epoch start: pointing it here makes each epoch reshuffle and keeps the resume position per epoch."""
        return self

    def _fits(self, count: int, frames: int, tokens: int) -> bool:
        if count * frames > self.max_frames:
            return False
        if self.max_tokens is not None and count * tokens > self.max_tokens:
            return False
        return self.max_batch_size is None or count <= self.max_batch_size

    def lengths_of(self, epoch: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(frame lengths, token lengths) of ``epoch``."""
        if self.epoch_lengths is None:
            return self.lengths, self.token_lengths
        lengths, tokens = self.epoch_lengths(epoch)
        return np.asarray(lengths, dtype=np.int64), None if tokens is None else np.asarray(tokens, dtype=np.int64)

    def all_batches(self, epoch: int | None = None) -> list[list[int]]:
        """Every batch of ``epoch`` (all ranks), in the order they are dealt out."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        batches = self._plan(epoch)
        if self.epoch_lengths is not None:
            batches = self._to_count(batches, self._epoch_count(), epoch)
        usable = (len(batches) // self.world_size) * self.world_size if self.drop_uneven else len(batches)
        self._cache = (epoch, batches[:usable])
        return self._cache[1]

    def _epoch_count(self) -> int:
        """Batches in every epoch when lengths change per epoch: epoch 0's plan + EPOCH_SLACK, a multiple of the
        world size."""
        if self._count is None:
            wanted = math.ceil(len(self._plan(0)) * (1 + EPOCH_SLACK)) + self.world_size
            self._count = math.ceil(wanted / self.world_size) * self.world_size
        return self._count

    def _to_count(self, batches: list[list[int]], count: int, epoch: int) -> list[list[int]]:
        batches = split_to_count(batches, count)
        if len(batches) > count:
            logger.warning(
                "epoch %d plans %d batches, more than the %d each epoch has (Lightning counts them once): "
                "its last %d batches are not run; raise nano8k.data.pipeline.batching.EPOCH_SLACK",
                epoch,
                len(batches),
                count,
                len(batches) - count,
            )
        return batches

    def _plan(self, epoch: int) -> list[list[int]]:
        """Epoch ``epoch``'s batches, shuffled, before any count adjustment or uneven drop."""
        lengths, token_lengths = self.lengths_of(epoch)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(lengths)) if self.shuffle else np.arange(len(lengths))
        window = len(order) if not self.sort_window else self.sort_window
        batches: list[list[int]] = []
        for start in range(0, len(order), max(window, 1)):
            chunk = order[start : start + window]
            batches += self.pack(chunk[np.argsort(lengths[chunk], kind="stable")], lengths, token_lengths)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def pack(self, rows: np.ndarray, lengths: np.ndarray, token_lengths: np.ndarray | None) -> list[list[int]]:
        """``rows`` (sorted by length) packed greedily, in order, into batches within the budgets."""
        batches: list[list[int]] = []
        batch: list[int] = []
        frames = tokens = 0
        for idx in rows.tolist():
            new_frames = max(frames, int(lengths[idx]))
            new_tokens = max(tokens, int(token_lengths[idx])) if token_lengths is not None else 0
            if batch and not self._fits(len(batch) + 1, new_frames, new_tokens):
                batches.append(batch)
                batch, new_frames = [], int(lengths[idx])
                new_tokens = int(token_lengths[idx]) if token_lengths is not None else 0
            batch.append(idx)
            frames, tokens = new_frames, new_tokens
        if batch:
            batches.append(batch)
        return batches

    def rank_batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches for ``epoch`` (before any resume offset)."""
        return self.all_batches(epoch)[self.rank :: self.world_size]

    # -- iteration / resume -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Batches in the whole epoch, also when resuming mid-epoch: Lightning counts a resumed epoch's batches from
        the restored position up to ``len``, so a shortened length would end the epoch early (or, at 0, the fit)."""
        return len(self.rank_batches())

    def __iter__(self) -> Iterator[list[Any]]:
        epoch = self.epoch
        skip = 0
        if self._resume is not None:
            if self._resume[0] == epoch:
                skip = self._resume[1]
            self._resume = None
        for batch in self.rank_batches(epoch)[skip:]:
            yield [(i, epoch, self.frontend_rate) for i in batch] if self.yield_epoch else list(batch)

    def state_dict(self, batches_consumed: int = 0) -> dict[str, int]:
        """Position to resume from: epoch and how many of this rank's batches were already consumed."""
        return {
            "epoch": self.epoch,
            "batches_consumed": int(batches_consumed),
            "seed": self.seed,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Make the next iteration of ``state['epoch']`` start after the consumed batches."""
        if state.get("world_size", self.world_size) != self.world_size or state.get("seed", self.seed) != self.seed:
            raise ValueError(
                f"cannot resume a batch plan made with seed={state.get('seed')}, world_size={state.get('world_size')} "
                f"using seed={self.seed}, world_size={self.world_size}"
            )
        self.epoch = int(state["epoch"])
        self._resume = (self.epoch, int(state["batches_consumed"]))

    # -- statistics -------------------------------------------------------------------------------------------
    def padding_waste(self, epoch: int | None = None) -> float:
        """Fraction of padded frames in the epoch's batches: 1 - real / (batch size x longest)."""
        epoch = self.epoch if epoch is None else epoch
        return padding_waste(self.all_batches(epoch), self.lengths_of(epoch)[0])


def split_to_count(batches: list[list[int]], count: int) -> list[list[int]]:
    """``batches`` made ``count`` long by halving the largest one (the first of equals) again and again; halves stay
    within every budget and take their batch's place in the order. Returns fewer when only single utterances are
    left, and ``batches`` unchanged when there are already ``count`` or more."""
    # a heap of (-size, place): a place is a tuple, and a halved batch's halves get place + (0,) and place + (1,),
    # which sort where the batch was, so the order survives without shifting the list
    heap = [(-len(batch), (i,), batch) for i, batch in enumerate(batches)]
    heapq.heapify(heap)
    while len(heap) < count and heap and -heap[0][0] >= 2:
        size, place, batch = heapq.heappop(heap)
        half = -size // 2
        heapq.heappush(heap, (-half, place + (0,), batch[:half]))
        heapq.heappush(heap, (-(len(batch) - half), place + (1,), batch[half:]))
    return [batch for _, _, batch in sorted(heap, key=lambda entry: entry[1])]


def padding_waste(batches: Sequence[Sequence[int]], lengths: Sequence[int] | np.ndarray) -> float:
    """1 - sum(lengths) / sum(len(batch) * max length in batch) over ``batches``."""
    lengths = np.asarray(lengths)
    real = padded = 0
    for batch in batches:
        lens = lengths[list(batch)]
        real += int(lens.sum())
        padded += len(batch) * int(lens.max())
    return 1.0 - real / padded if padded else 0.0


def plan_digest(batches: Sequence[Sequence[int]]) -> str:
    """A SHA-256 of a batch plan (each batch's size, then every index in order): equal digests, the same batches."""
    sizes = np.fromiter((len(batch) for batch in batches), dtype=np.int64, count=len(batches))
    rows = np.fromiter(itertools.chain.from_iterable(batches), dtype=np.int64, count=int(sizes.sum()))
    return hashlib.sha256(sizes.tobytes() + b"|" + rows.tobytes()).hexdigest()


def padded_lengths(
    frames: Sequence[int] | np.ndarray, tokens: Sequence[int] | np.ndarray | None, multiples: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Frame and token lengths as ``collate`` pads a batch's widths (``multiples``: frames, tokens): what a batch
    then costs."""
    frames = padded_length(np.asarray(frames, dtype=np.int64), multiples[0])
    return frames, None if tokens is None else padded_length(np.asarray(tokens, dtype=np.int64), multiples[1])


def estimated_lfr_frames(duration: float, lfr_n: int = 6) -> int:
    """LFR rows of a ``duration``-second clip (25 ms window, 10 ms shift, snip_edges) — the batch cost unit."""
    frames = max(1, 1 + math.floor((duration * 1000.0 - 25.0) / 10.0))
    return math.ceil(frames / lfr_n)


def estimated_lfr_frames_of(durations: np.ndarray, lfr_n: int = 6) -> np.ndarray:
    """``estimated_lfr_frames`` of every duration (NaN counts as 0 s)."""
    ms = np.nan_to_num(np.asarray(durations, dtype=np.float64), nan=0.0) * 1000.0
    frames = np.maximum(1, 1 + np.floor((ms - 25.0) / 10.0)).astype(np.int64)
    return -(-frames // lfr_n)
