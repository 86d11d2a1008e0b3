"""A manifest's parsed table and measured audio headers, cached once beside it (keyed by its size and mtime).

The cache is a folder ``.<manifest name>.nano8k/`` next to the manifest (under ``$NANO8K_CACHE_DIR/manifests/``
when that folder is not writable). It holds the ``UtteranceTable`` as ``.npy`` files, memory-mapped by every process
that reads the manifest, the manifest's bad and ignored lines, and the headers (frames, rate, channels) measured for
entries without a duration. A manifest whose size or mtime changed is read and measured again; the audio files
themselves are not watched (change them and touch the manifest). Manifests under ``CACHE_MIN_BYTES`` are not cached:
reading them is quicker than the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from filelock import FileLock

from nano8k.data.audio import AudioInfo, probe_audio
from nano8k.data.badsamples import BadSample
from nano8k.data.manifests.table import UtteranceTable
from nano8k.data.manifests.utterance import ManifestContents
from nano8k.errors import AudioError
from nano8k.paths import cache_root

logger = logging.getLogger("nano8k.data")
VERSION = 1
CACHE_MIN_BYTES = 1 << 20  # about 3,000 lines
HEADER_THREADS = 16  # header reads wait on storage, not on the CPU
PROGRESS_SECONDS = 10.0


def signature(path: Path) -> dict[str, object]:
    """Size and mtime of the manifest (of every file in it, for a Kaldi folder) and the cache layout version."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return {"version": VERSION, "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file()) if path.is_dir() else path.stat().st_size


def cache_folder(path: Path) -> Path:
    """Where ``path``'s cache lives: beside it when its folder is writable, else under ``$NANO8K_CACHE_DIR``."""
    beside = path.parent / f".{path.name}.nano8k"
    if os.access(path.parent, os.W_OK):
        return beside
    return cache_root() / "manifests" / hashlib.sha1(str(path).encode()).hexdigest()[:16]


def _bad_to_json(items: Sequence[BadSample]) -> list[dict]:
    return [bad.record() for bad in items]


class ManifestCache:
    """The cache folder of one manifest; ``folder`` None for a manifest too small to cache."""

    def __init__(self, path: Path, folder: Path | None, fmt: str = "auto") -> None:
        self.path, self.folder, self.format = path, folder, fmt
        self.current = None if folder is None else folder / "current"

    @classmethod
    def open(cls, path: Path, fmt: str = "auto") -> ManifestCache:
        return cls(path, cache_folder(path) if _size(path) >= CACHE_MIN_BYTES else None, fmt)

    def _lock(self) -> FileLock:
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.folder / "lock"))

    def contents(self, read: Callable[[], ManifestContents]) -> ManifestContents:
        """The manifest's contents from the cache, or ``read()`` (stored for next time when cached)."""
        if self.folder is None:
            return read()
        wanted = {**signature(self.path), "format": self.format}
        with self._lock():
            meta_path = self.current / "meta.json"
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            if meta.get("signature") != wanted:
                meta = self._store(read(), wanted)
            return self._load(meta)

    def _store(self, contents: ManifestContents, wanted: dict) -> dict:
        """Write ``contents`` (its utterances an ``UtteranceTable``) as the current cache; returns its meta."""
        staging = self.folder / f"staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        contents.utterances.save(staging / "table")
        meta = {
            "signature": wanted,
            "format": contents.format,
            "bad": _bad_to_json(contents.bad),
            "ignored": _bad_to_json(contents.ignored),
        }
        (staging / "meta.json").write_text(json.dumps(meta, ensure_ascii=False))
        shutil.rmtree(self.current, ignore_errors=True)
        os.replace(staging, self.current)
        return meta

    def _load(self, meta: dict) -> ManifestContents:
        contents = ManifestContents(self.path, meta["format"], UtteranceTable.load(self.current / "table"))
        contents.bad = [BadSample(**item) for item in meta["bad"]]
        contents.ignored = [BadSample(**item) for item in meta["ignored"]]
        contents.cache = self
        return contents

    # -- headers ------------------------------------------------------------------------------------------------
    def headers(self, table: UtteranceTable, rows: np.ndarray) -> Headers:
        """The headers of the audio of ``rows`` of ``table`` (this manifest's whole table), measured once and kept
        in the cache."""
        path = None if self.current is None else self.current / "headers.npz"
        stored = Headers.load(path, len(table)) if path is not None and path.is_file() else Headers.empty(len(table))
        rows = np.asarray(rows, dtype=np.int64)
        missing = rows[stored.frames[rows] == Headers.UNMEASURED]
        if len(missing):
            found = measure_headers([table[int(r)].audio for r in missing], rows=missing.tolist(), name=str(self.path))
            for row, info in found.items():
                stored.set(row, info)
            if path is not None:
                with self._lock():
                    stored.save(path)
        return stored


@dataclass
class Headers:
    """Header facts per row of a manifest: frames (``UNMEASURED``, or ``UNREADABLE`` with the reason in
    ``errors``), sample rate, channels, and the format/subtype as an index into ``kinds``."""

    UNMEASURED: ClassVar[int] = -1
    UNREADABLE: ClassVar[int] = -2
    frames: np.ndarray
    rates: np.ndarray
    channels: np.ndarray
    kind: np.ndarray
    kinds: list[str]
    errors: dict[int, str]

    @classmethod
    def empty(cls, rows: int) -> Headers:
        return cls(
            np.full(rows, cls.UNMEASURED, np.int64),
            np.zeros(rows, np.int32),
            np.zeros(rows, np.int16),
            np.zeros(rows, np.int16),
            [],
            {},
        )

    @classmethod
    def load(cls, path: Path, rows: int) -> Headers:
        with np.load(path) as arrays:
            meta = json.loads(str(arrays["meta"]))
            headers = cls(
                arrays["frames"],
                arrays["rates"],
                arrays["channels"],
                arrays["kind"],
                meta["kinds"],
                {int(k): v for k, v in meta["errors"].items()},
            )
        return headers if len(headers.frames) == rows else cls.empty(rows)

    def save(self, path: Path) -> None:
        tmp = path.with_name(f"headers.tmp{os.getpid()}.npz")
        np.savez(
            tmp,
            frames=self.frames,
            rates=self.rates,
            channels=self.channels,
            kind=self.kind,
            meta=json.dumps({"kinds": self.kinds, "errors": {str(k): v for k, v in self.errors.items()}}),
        )
        os.replace(tmp, path)

    def set(self, row: int, info: AudioInfo | AudioError) -> None:
        if isinstance(info, AudioError):
            self.frames[row], self.errors[row] = self.UNREADABLE, str(info)
            return
        kind = f"{info.format}|{info.subtype}"
        if kind not in self.kinds:
            self.kinds.append(kind)
        self.frames[row], self.rates[row], self.channels[row] = info.frames, info.sample_rate, info.channels
        self.kind[row] = self.kinds.index(kind)

    def copy_rows(self, source: Headers, rows: np.ndarray, offset: int) -> None:
        """Take ``rows`` of ``source`` as rows ``rows + offset`` of these headers."""
        for kind in source.kinds:
            if kind not in self.kinds:
                self.kinds.append(kind)
        remap = np.array([self.kinds.index(kind) for kind in source.kinds] or [0], dtype=np.int16)
        target = rows + offset
        self.frames[target], self.rates[target] = source.frames[rows], source.rates[rows]
        self.channels[target], self.kind[target] = source.channels[rows], remap[source.kind[rows]]
        wanted = set(rows.tolist())
        self.errors.update({row + offset: error for row, error in source.errors.items() if row in wanted})

    def info(self, row: int) -> AudioInfo | AudioError:
        if self.frames[row] == self.UNREADABLE:
            return AudioError(self.errors[row])
        fmt, subtype = self.kinds[int(self.kind[row])].split("|", 1)
        return AudioInfo(int(self.rates[row]), int(self.channels[row]), int(self.frames[row]), fmt, subtype)


def measure_headers(audio: Sequence[Path], rows: Sequence[int], name: str) -> dict[int, AudioInfo | AudioError]:
    """Read the headers of ``audio`` (each file once, in threads), logging progress; keyed by ``rows``."""
    unique = list(dict.fromkeys(audio))
    found: dict[Path, AudioInfo | AudioError] = {}

    def one(path: Path) -> tuple[Path, AudioInfo | AudioError]:
        try:
            return path, probe_audio(path)
        except AudioError as exc:
            return path, exc

    start = last = time.monotonic()
    with ThreadPoolExecutor(HEADER_THREADS) as pool:
        for done, (path, info) in enumerate(pool.map(one, unique), start=1):
            found[path] = info
            now = time.monotonic()
            if now - last >= PROGRESS_SECONDS:
                last = now
                logger.info(
                    "%s: measured %d / %d audio headers (%.0f files/s)", name, done, len(unique), done / (now - start)
                )
    if len(unique) > 1000:
        logger.info(
            "%s: measured %d audio headers in %.1f s (kept beside the manifest for the next start)",
            name,
            len(unique),
            time.monotonic() - start,
        )
    return {row: found[path] for row, path in zip(rows, audio)}
