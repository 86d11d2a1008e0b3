"""Sharded streaming input: WebDataset tar shards written from manifests, read in order, split over ranks and workers.

Layout (WebDataset's: plain POSIX tar, members grouped by the name before the first dot, readable by ``tar``,
the ``webdataset`` package and Hugging Face ``datasets``): ``shard-000000.tar`` … each holding ``000017.flac`` (the
utterance's span and channel, 16-bit FLAC at its own rate) and ``000017.json`` (key, target, lang, prompt,
duration, sample_rate); ``index.jsonl`` (one line per utterance in shard order, a nano8k jsonl manifest whose
``source`` is the shard) and ``shards.json`` (shard names and sizes). Utterances are shuffled once when written.

Reading (``ShardStream``): the epoch's shard order is a seeded shuffle; the readers (``world_size`` ranks x
``num_workers`` loader workers) take shards round-robin, so they are disjoint; a shard is read start to end, its
utterances sorted by length and packed under the batch budgets (the shard is the bucketing buffer), and its batches
shuffled. The plan comes from the index, so every rank knows every rank's batch count: ranks with fewer batches halve
their largest ones until all have the same (DDP needs equal steps), and every utterance is seen exactly once per
epoch. Resume: the position is (epoch, batches consumed on this rank); a resumed reader skips the shards it
finished without opening them and re-reads the one it was in, from its start: **a resume re-reads at most one shard
per loader worker** (its batches already trained on are dropped, not trained twice).

Locations are folders or any fsspec URL (``s3://…``, ``gs://…``, ``https://…`` with the user's fsspec backend).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import soundfile as sf
import torch
from torch.utils.data import IterableDataset, get_worker_info

from nano8k.data.audio import MultichannelPolicy
from nano8k.data.badsamples import BadSampleLog
from nano8k.data.manifests.io import read_manifest
from nano8k.data.manifests.utterance import Utterance
from nano8k.data.pipeline.batching import BucketBatchSampler, padded_lengths, split_to_count
from nano8k.data.pipeline.dataset import Skipped
from nano8k.errors import AudioError, DataError
from nano8k.paths import cache_root

logger = logging.getLogger("nano8k.data")
FORMAT = "nano8k-webdataset-1"
INDEX, SHARDS = "index.jsonl", "shards.json"


# -- writing --------------------------------------------------------------------------------------------------------
def _tar_add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size, member.mtime, member.mode = len(payload), 0, 0o644
    tar.addfile(member, io.BytesIO(payload))


def write_shards(
    utts: Sequence[Utterance],
    out_dir: str | Path,
    *,
    shard_size: int = 1000,
    seed: int = 0,
    multichannel: MultichannelPolicy = "error",
    log: BadSampleLog | None = None,
) -> dict[str, Any]:
    """Write ``utts`` (shuffled with ``seed``) as tar shards of ``shard_size`` utterances into ``out_dir``; returns
    ``shards.json``'s content. Audio that cannot be decoded goes to ``log`` (default: an error naming it)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = log or BadSampleLog("error")
    order = np.random.default_rng(seed).permutation(len(utts))
    shards: list[dict[str, Any]] = []
    written, start = 0, time.monotonic()
    with open(out / f"{INDEX}.tmp", "w", encoding="utf-8") as index:
        for first in range(0, len(order), shard_size):
            name = f"shard-{len(shards):06d}.tar"
            count = 0
            with tarfile.open(out / f"{name}.tmp", "w", format=tarfile.USTAR_FORMAT) as tar:
                for row in order[first : first + shard_size].tolist():
                    utt = utts[row]
                    try:
                        waveform, rate = utt.load(multichannel)
                    except AudioError as exc:
                        log.add(utt.bad(str(exc)), len(utts))
                        continue
                    flac = io.BytesIO()
                    sf.write(flac, waveform.numpy(), rate, format="FLAC", subtype="PCM_16")
                    duration = round(waveform.numel() / rate, 6)
                    meta = {
                        "key": utt.key,
                        "target": utt.target,
                        "lang": utt.lang,
                        "prompt": utt.prompt,
                        "duration": duration,
                        "sample_rate": rate,
                    }
                    _tar_add(tar, f"{count:06d}.json", json.dumps(meta, ensure_ascii=False).encode())
                    _tar_add(tar, f"{count:06d}.flac", flac.getvalue())
                    index.write(
                        json.dumps(
                            {
                                "key": utt.key,
                                "source": name,
                                "target": utt.target,
                                "duration": duration,
                                "lang": utt.lang,
                                "prompt": utt.prompt,
                            },
                            ensure_ascii=False,
                        )
                        + "\n"
                    )
                    count += 1
            (out / f"{name}.tmp").replace(out / name)
            shards.append({"name": name, "count": count})
            written += count
            logger.info(
                "%s: %d utterances (%d / %d, %.0f s)", name, count, written, len(utts), time.monotonic() - start
            )
    (out / f"{INDEX}.tmp").replace(out / INDEX)
    summary = {"format": FORMAT, "utterances": written, "shard_size": shard_size, "seed": seed, "shards": shards}
    (out / SHARDS).write_text(json.dumps(summary, indent=1))
    return summary


# -- reading --------------------------------------------------------------------------------------------------------
@dataclass
class ShardIndex:
    """A shard set: where it is, its shards (name, utterance count) and its utterances in shard order."""

    location: str
    shards: list[tuple[str, int]]
    utterances: Any  # UtteranceTable, rows in shard order
    starts: np.ndarray  # first row of each shard

    @classmethod
    def open(cls, location: str | Path) -> ShardIndex:
        """Read ``shards.json`` and ``index.jsonl`` of the shard set at ``location`` (a folder or an fsspec URL)."""
        location = str(location).rstrip("/")
        try:
            with fsspec.open(posixpath.join(location, SHARDS), "r", encoding="utf-8") as handle:
                summary = json.load(handle)
        except (OSError, ValueError) as exc:
            raise DataError(
                f"{location}: not a nano8k shard set (cannot read {SHARDS}: {exc}); write one with "
                "python -m nano8k.data.shards MANIFEST --out DIR"
            ) from exc
        if summary.get("format") != FORMAT:
            raise DataError(f"{location}/{SHARDS}: format {summary.get('format')!r}, expected {FORMAT!r}")
        index_path = Path(location) / INDEX
        if "://" in location:  # a remote index is copied once to the local cache, where it is read like a manifest
            index_path = _local_copy(posixpath.join(location, INDEX))
        contents = read_manifest(index_path, "jsonl")
        if contents.bad:
            raise DataError(f"{index_path}: {len(contents.bad)} bad lines, first: {contents.bad[0].describe()}")
        shards = [(item["name"], int(item["count"])) for item in summary["shards"]]
        counts = np.array([count for _, count in shards], dtype=np.int64)
        if int(counts.sum()) != len(contents.utterances):
            raise DataError(
                f"{location}: {SHARDS} lists {int(counts.sum())} utterances, {INDEX} has "
                f"{len(contents.utterances)}; the shard set is incomplete (rewrite it)"
            )
        return cls(location, shards, contents.utterances, np.concatenate([[0], np.cumsum(counts)[:-1]]))

    def url(self, shard: int) -> str:
        return posixpath.join(self.location, self.shards[shard][0])


def _local_copy(url: str) -> Path:
    target = cache_root() / "shards" / hashlib.sha1(url.encode()).hexdigest()[:16] / INDEX
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with fsspec.open(url, "rb") as source:
            target.with_suffix(".tmp").write_bytes(source.read())
        target.with_suffix(".tmp").replace(target)
    return target


def read_shard(url: str) -> Iterator[tuple[dict[str, Any], bytes]]:
    """(metadata, FLAC bytes) of each utterance of one shard, streamed in order."""
    pending: dict[str, dict[str, Any]] = {}
    with fsspec.open(url, "rb") as handle, tarfile.open(fileobj=handle, mode="r|") as tar:
        for member in tar:
            stem, _, ext = member.name.partition(".")
            payload = tar.extractfile(member).read()
            if ext == "json":
                pending[stem] = json.loads(payload)
            elif ext == "flac":
                yield pending.pop(stem), payload


def decode_flac(payload: bytes, where: str) -> tuple[torch.Tensor, int]:
    try:
        samples, rate = sf.read(io.BytesIO(payload), dtype="float32")
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"cannot decode the audio of {where}: {exc}") from exc
    return torch.from_numpy(samples), int(rate)


@dataclass(frozen=True)
class ShardUtterance(Utterance):
    """An utterance whose audio came from a shard (``payload``, FLAC) instead of a file."""

    payload: bytes = b""

    def header_seconds(self) -> float:
        """Seconds of the payload (already cut to the utterance), from its FLAC header."""
        try:
            return float(sf.info(io.BytesIO(self.payload)).duration)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"cannot read the audio header of {self.audio} key {self.key}: {exc}") from exc

    def load(self, multichannel: MultichannelPolicy = "error") -> tuple[torch.Tensor, int]:
        return decode_flac(self.payload, f"{self.audio} key {self.key}")


def round_robin_taken(counts: Sequence[int], consumed: int) -> list[int]:
    """How many batches each loader worker had delivered after ``consumed`` batches, when the loader takes one from
    each worker in turn (skipping finished ones), as PyTorch's DataLoader does with an IterableDataset."""
    taken = [0] * len(counts)
    while consumed > 0 and any(t < c for t, c in zip(taken, counts)):
        for worker, count in enumerate(counts):
            if consumed > 0 and taken[worker] < count:
                taken[worker] += 1
                consumed -= 1
    return taken


class ShardStream(IterableDataset):
    """Batches of training items streamed from a shard set (see the module docstring for the plan and resume).

    ``dataset`` is a ``SpeechDataset`` over the index's utterances: it makes the items (augmentation, features,
    prompts) and gives the batch costs (``SpeechDataset.batch_lengths``). Use with ``DataLoader(stream, batch_size=None,
    collate_fn=SpeechCollator(...), num_workers=num_workers)``; ``len`` is this rank's batches per epoch.
    """

    def __init__(
        self,
        index: ShardIndex,
        dataset: Any,
        *,
        max_frames: int,
        max_tokens: int | None = None,
        max_batch_size: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        shuffle: bool = True,
        pad_multiples: tuple[int, int] = (1, 1),
    ) -> None:
        self.index, self.dataset = index, dataset
        self.seed, self.rank, self.world_size, self.shuffle = int(seed), int(rank), int(world_size), shuffle
        self.workers = max(int(num_workers), 1)
        readers = self.world_size * self.workers
        if len(index.shards) < readers:
            raise DataError(
                f"{index.location}: {len(index.shards)} shards for {self.world_size} rank(s) x "
                f"{self.workers} loader worker(s); each reader needs a shard of its own: write at least "
                f"{readers} shards (a smaller --shard_size) or use fewer data.num_workers"
            )
        lengths, tokens = dataset.batch_lengths(with_tokens=max_tokens is not None)
        # the budgets count the padding the collator adds (``data.pad_*_to_multiple``)
        lengths, tokens = padded_lengths(lengths, tokens, pad_multiples)
        self.packer = BucketBatchSampler(
            lengths, max_frames, token_lengths=tokens, max_tokens=max_tokens, max_batch_size=max_batch_size
        )
        self.lengths, self.tokens = lengths, tokens
        self.epoch = 0
        self._resume: tuple[int, int] | None = None
        self._rate = torch.multiprocessing.Value("i", 0)  # shared with forked workers: a stage switch reaches them
        self._plans: dict[int, list[list[tuple[int, list[list[int]]]]]] = {}

    # -- the plan -------------------------------------------------------------------------------------------------
    @property
    def frontend_rate(self) -> int | None:
        return self._rate.value or None

    @frontend_rate.setter
    def frontend_rate(self, rate: int | None) -> None:
        self._rate.value = int(rate or 0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _shard_batches(self, shard: int, epoch: int) -> list[list[int]]:
        first = int(self.index.starts[shard])
        rows = np.arange(first, first + self.index.shards[shard][1])
        batches = self.packer.pack(rows[np.argsort(self.lengths[rows], kind="stable")], self.lengths, self.tokens)
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch, shard]).permutation(len(batches))
            batches = [batches[i] for i in order]
        return batches

    def plan(self, epoch: int) -> list[list[tuple[int, list[list[int]]]]]:
        """Per reader (rank-major: rank r's workers are readers r*W .. r*W+W-1), its (shard, batches) in reading
        order, with every rank's batch count made equal."""
        if epoch in self._plans:
            return self._plans[epoch]
        shards = np.arange(len(self.index.shards))
        if self.shuffle:
            shards = np.random.default_rng([self.seed, epoch]).permutation(shards)
        readers = self.world_size * self.workers
        plan = [[(int(s), self._shard_batches(int(s), epoch)) for s in shards[r::readers]] for r in range(readers)]
        per_rank = [
            sum(len(b) for r in range(k * self.workers, (k + 1) * self.workers) for _, b in plan[r])
            for k in range(self.world_size)
        ]
        target = max(per_rank)
        for k, count in enumerate(per_rank):
            if count < target:
                plan[k * self.workers : (k + 1) * self.workers] = self._grow(
                    plan[k * self.workers : (k + 1) * self.workers], target, epoch
                )
        self._plans = {epoch: plan}
        return plan

    def _grow(self, readers: list[list[tuple[int, list[list[int]]]]], target: int, epoch: int):
        """One rank's readers with their largest batches halved until the rank has ``target`` batches."""
        flat = [(r, shard, batch) for r, items in enumerate(readers) for shard, batches in items for batch in batches]
        tagged = [[(r, shard, row) for row in batch] for r, shard, batch in flat]
        grown = split_to_count(tagged, target)
        if len(grown) < target:
            raise DataError(
                f"epoch {epoch}: rank batches cannot be made equal ({len(grown)} < {target}); write more, "
                "smaller shards"
            )
        out: list[list[tuple[int, list[list[int]]]]] = [[] for _ in readers]
        for batch in grown:
            r, shard = batch[0][0], batch[0][1]
            if not out[r] or out[r][-1][0] != shard:
                out[r].append((shard, []))
            out[r][-1][1].append([row for _, _, row in batch])
        return out

    def worker_counts(self, epoch: int) -> list[int]:
        """This rank's batches per loader worker in ``epoch``."""
        plan = self.plan(epoch)
        return [sum(len(b) for _, b in plan[self.rank * self.workers + w]) for w in range(self.workers)]

    def __len__(self) -> int:
        return sum(self.worker_counts(self.epoch))

    # -- resume ---------------------------------------------------------------------------------------------------
    def state_dict(self, batches_consumed: int = 0) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "batches_consumed": int(batches_consumed),
            "seed": self.seed,
            "world_size": self.world_size,
            "num_workers": self.workers,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        saved = (
            state.get("seed", self.seed),
            state.get("world_size", self.world_size),
            state.get("num_workers", self.workers),
        )
        if saved != (self.seed, self.world_size, self.workers):
            raise ValueError(
                f"cannot resume a shard plan made with seed, world_size, num_workers = {saved} using "
                f"{(self.seed, self.world_size, self.workers)}"
            )
        self.epoch = int(state["epoch"])
        self._resume = (self.epoch, int(state["batches_consumed"]))

    # -- iteration ------------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[list[Any]]:
        info = get_worker_info()
        worker = 0 if info is None else info.id
        if info is not None and info.num_workers != self.workers:
            raise RuntimeError(f"ShardStream planned for {self.workers} workers, the loader has {info.num_workers}")
        epoch = self.epoch
        skip = 0
        if self._resume is not None and self._resume[0] == epoch:
            skip = round_robin_taken(self.worker_counts(epoch), self._resume[1])[worker]
        self._resume = None
        if info is None and self.workers > 1:
            raise RuntimeError(f"ShardStream planned for {self.workers} loader workers is read without workers")
        yield from self._read(self.plan(epoch)[self.rank * self.workers + worker], skip, epoch)

    def _read(self, items: list[tuple[int, list[list[int]]]], skip: int, epoch: int) -> Iterator[list[Any]]:
        for shard, batches in items:
            if skip >= len(batches):  # finished before the resume: not opened
                skip -= len(batches)
                continue
            first = int(self.index.starts[shard])
            url = self.index.url(shard)
            payloads = {first + pos: (meta, flac) for pos, (meta, flac) in enumerate(read_shard(url))}
            for batch in batches[skip:]:
                yield [self._item(row, payloads, url, epoch) for row in batch]
            skip = 0

    def _item(self, row: int, payloads: dict[int, tuple[dict, bytes]], url: str, epoch: int) -> Any:
        utt = self.dataset.utterances[row]
        if row not in payloads:
            bad = utt.bad(f"missing from {url}")
            self.dataset.bad_log.add(bad, self.dataset.total_entries)
            return Skipped(bad)
        meta, flac = payloads[row]
        if meta.get("key") != utt.key:
            raise DataError(
                f"{url}: holds {meta.get('key')!r} where {INDEX} says {utt.key!r}: the shard set is "
                "inconsistent (write it again)"
            )
        fields = {**vars(utt), "audio": Path(url)}
        return self.dataset.item(ShardUtterance(**fields, payload=flac), epoch, self.frontend_rate)
