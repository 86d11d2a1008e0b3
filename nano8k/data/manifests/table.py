"""Utterances stored by column (numpy arrays, one UTF-8 buffer per text field): compact, shareable, memory-mappable.

A million-line manifest as ``Utterance`` objects costs about a kilobyte each on every rank and in every loader worker
(reference counts touch every object, so forked workers copy the pages). ``UtteranceTable`` keeps the same facts in
a handful of arrays: about 150 bytes per utterance plus the text, saved once as ``.npy`` files and memory-mapped by
every process that reads the manifest, so the ranks of a node share one read-only copy through the page cache.
Indexing a table gives an ``Utterance`` built on demand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np

from nano8k.data.manifests.utterance import Utterance

TEXT_FIELDS = ("key", "audio", "target", "prompt", "lang", "manifest")
CHUNK_ROWS = 65536  # rows a builder keeps as Python objects before packing them into arrays


class TextColumn:
    """Strings (or None) packed into one UTF-8 byte array with row offsets."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray, present: np.ndarray | None = None) -> None:
        self.data, self.offsets, self.present = data, offsets, present

    @classmethod
    def from_strings(cls, values: Sequence[str | None]) -> TextColumn:
        encoded = [b"" if v is None else v.encode("utf-8") for v in values]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        present = None if all(v is not None for v in values) else np.array([v is not None for v in values])
        return cls(data, offsets, present)

    @classmethod
    def concat(cls, columns: Sequence[TextColumn]) -> TextColumn:
        if len(columns) == 1:
            return columns[0]
        shifts = np.cumsum([0] + [len(c.data) for c in columns[:-1]])
        offsets = np.concatenate([columns[0].offsets[:1]] + [c.offsets[1:] + s for c, s in zip(columns, shifts)])
        present = None
        if any(c.present is not None for c in columns):
            present = np.concatenate([np.ones(len(c), bool) if c.present is None else c.present for c in columns])
        return cls(np.concatenate([c.data for c in columns]), offsets, present)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row: int) -> str | None:
        if self.present is not None and not self.present[row]:
            return None
        return self.data[self.offsets[row] : self.offsets[row + 1]].tobytes().decode("utf-8")

    def raw(self, rows: np.ndarray | None = None) -> list[bytes]:
        """The UTF-8 bytes of ``rows`` (all rows for None), one slice of one buffer each (fast for millions)."""
        if rows is None:
            starts, ends = self.offsets[:-1], self.offsets[1:]
        else:
            rows = np.asarray(rows)
            starts, ends = self.offsets[rows], self.offsets[rows + 1]
        blob = self.data.tobytes()
        return [blob[a:b] for a, b in zip(starts.tolist(), ends.tolist())]

    def byte_lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


class UtteranceTable(Sequence[Utterance]):
    """Utterances by column; ``rows`` (optional) selects and orders rows of the stored columns without copying them.

    Numbers: ``duration`` and ``offset`` (seconds, NaN for None), ``line`` (-1 for None), ``channel`` (-1 for None,
    -2 for a channel list, kept in ``channel_sets``).
    """

    def __init__(
        self,
        text: dict[str, TextColumn],
        numbers: dict[str, np.ndarray],
        channel_sets: dict[int, tuple[int, ...]] | None = None,
        rows: np.ndarray | None = None,
    ) -> None:
        self.text, self.numbers = text, numbers
        self.channel_sets = channel_sets or {}
        self.rows = rows

    # -- building -------------------------------------------------------------------------------------------------
    @classmethod
    def from_utterances(cls, utterances: Iterable[Utterance]) -> UtteranceTable:
        builder = TableBuilder()
        for utt in utterances:
            builder.append(utt)
        return builder.build()

    @classmethod
    def concat(cls, tables: Sequence[UtteranceTable]) -> UtteranceTable:
        tables = [t.compact() for t in tables]
        if len(tables) == 1:
            return tables[0]
        text = {name: TextColumn.concat([t.text[name] for t in tables]) for name in TEXT_FIELDS}
        numbers = {name: np.concatenate([t.numbers[name] for t in tables]) for name in tables[0].numbers}
        sets, start = {}, 0
        for table in tables:
            sets.update({start + row: value for row, value in table.channel_sets.items()})
            start += len(table)
        return cls(text, numbers, sets)

    def compact(self) -> UtteranceTable:
        """The same rows with their own columns (no ``rows`` selection)."""
        if self.rows is None:
            return self
        return UtteranceTable.from_utterances(self)

    def take(self, rows: Sequence[int] | np.ndarray) -> UtteranceTable:
        """A view of ``rows`` (positions in this table), sharing the columns."""
        rows = np.asarray(rows, dtype=np.int64)
        return UtteranceTable(
            self.text, self.numbers, self.channel_sets, rows if self.rows is None else self.rows[rows]
        )

    def with_durations(self, durations: np.ndarray) -> UtteranceTable:
        """This table with ``durations`` (one per row of this table, NaN for None) as its duration column."""
        numbers = dict(self.numbers)
        column = np.array(self.numbers["duration"], dtype=np.float64)
        column[self._physical()] = durations
        numbers["duration"] = column
        return UtteranceTable(self.text, numbers, self.channel_sets, self.rows)

    # -- reading --------------------------------------------------------------------------------------------------
    def _physical(self) -> np.ndarray | slice:
        return slice(None) if self.rows is None else self.rows

    def __len__(self) -> int:
        return len(self.numbers["line"]) if self.rows is None else len(self.rows)

    @overload
    def __getitem__(self, index: int) -> Utterance: ...
    @overload
    def __getitem__(self, index: slice) -> UtteranceTable: ...
    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        row = int(index if self.rows is None else self.rows[index])
        text, numbers = self.text, self.numbers
        duration, offset = float(numbers["duration"][row]), float(numbers["offset"][row])
        line, channel = int(numbers["line"][row]), int(numbers["channel"][row])
        manifest = text["manifest"][row]
        return Utterance(
            key=text["key"][row],
            audio=Path(text["audio"][row]),
            target=text["target"][row],
            duration=None if math.isnan(duration) else duration,
            lang=text["lang"][row],
            prompt=text["prompt"][row],
            line=None if line < 0 else line,
            manifest=None if manifest is None else Path(manifest),
            offset=None if math.isnan(offset) else offset,
            channel=None if channel == -1 else self.channel_sets[row] if channel == -2 else channel,
        )

    def __iter__(self) -> Iterator[Utterance]:
        for index in range(len(self)):
            yield self[index]

    def column(self, name: str) -> np.ndarray:
        """A number column (``duration``, ``offset``, ``line``, ``channel``) for these rows."""
        return self.numbers[name][self._physical()]

    @property
    def durations(self) -> np.ndarray:
        """Seconds per row, NaN where unknown."""
        return self.column("duration")

    def strings(self, name: str) -> list[str | None]:
        """A text column for these rows, decoded."""
        column = self.text[name]
        values = [raw.decode("utf-8") for raw in column.raw(self.rows)]
        if column.present is not None:
            present = column.present[self._physical()]
            values = [v if p else None for v, p in zip(values, present.tolist())]
        return values

    def blank_targets(self) -> np.ndarray:
        """Rows whose transcript is empty or only white space (decoding only those that start with a byte that can
        begin a space character)."""
        column = self.text["target"]
        lengths = self.byte_lengths("target")
        first = np.zeros(len(lengths), dtype=np.uint8)  # each transcript's first byte (0 for an empty one)
        filled = lengths > 0
        first[filled] = column.data[column.offsets[:-1][self._physical()][filled]]
        # ASCII spaces and separators (\t-\r, \x1c-\x20) and the lead bytes of Unicode spaces (U+0085, U+00A0,
        # U+1680, U+2000-U+205F, U+3000)
        maybe = (
            (lengths == 0)
            | ((first >= 0x09) & (first <= 0x0D))
            | ((first >= 0x1C) & (first <= 0x20))
            | np.isin(first, (0xC2, 0xE1, 0xE2, 0xE3))
        )
        rows = np.flatnonzero(maybe)
        physical = rows if self.rows is None else self.rows[rows]
        texts = column.raw(physical)
        return rows[[not raw.decode("utf-8").strip() for raw in texts]] if len(rows) else rows

    def byte_lengths(self, name: str) -> np.ndarray:
        return self.text[name].byte_lengths()[self._physical()]

    # -- storage --------------------------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write the columns as ``.npy`` files (and ``table.json``) into ``folder``."""
        table = self.compact()
        folder.mkdir(parents=True, exist_ok=True)
        for name, column in table.text.items():
            np.save(folder / f"{name}.data.npy", column.data)
            np.save(folder / f"{name}.offsets.npy", column.offsets)
            if column.present is not None:
                np.save(folder / f"{name}.present.npy", column.present)
        for name, values in table.numbers.items():
            np.save(folder / f"{name}.npy", values)
        (folder / "table.json").write_text(
            json.dumps({"rows": len(table), "channel_sets": {str(k): list(v) for k, v in table.channel_sets.items()}})
        )

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> UtteranceTable:
        """A table saved by ``save``, memory-mapped (read-only) unless ``mmap`` is False."""
        mode = "r" if mmap else None
        meta = json.loads((folder / "table.json").read_text())
        text = {}
        for name in TEXT_FIELDS:
            present = folder / f"{name}.present.npy"
            text[name] = TextColumn(
                _load(folder / f"{name}.data.npy", mode),
                _load(folder / f"{name}.offsets.npy", mode),
                np.load(present) if present.exists() else None,
            )
        numbers = {name: _load(folder / f"{name}.npy", mode) for name in ("duration", "offset", "line", "channel")}
        sets = {int(k): tuple(v) for k, v in meta["channel_sets"].items()}
        return cls(text, numbers, sets)


def _load(path: Path, mode: str | None) -> np.ndarray:
    """An array from ``path``; memory-mapped, it is a plain ndarray view of the map (np.memmap indexing is slow)."""
    array = np.load(path, mmap_mode=mode)
    return array.view(np.ndarray) if isinstance(array, np.memmap) else array


class TableBuilder:
    """Collects utterances row by row and packs them into arrays every ``CHUNK_ROWS`` rows."""

    def __init__(self) -> None:
        self._chunks: list[UtteranceTable] = []
        self._rows: dict[str, list] = {}
        self._sets: dict[int, tuple[int, ...]] = {}
        self._count = 0
        self._reset()

    def _reset(self) -> None:
        self._rows = {name: [] for name in (*TEXT_FIELDS, "duration", "offset", "line", "channel")}
        self._sets = {}

    def __len__(self) -> int:
        return self._count

    def append(self, utt: Utterance) -> None:
        self.add(
            utt.key,
            str(utt.audio),
            utt.target,
            utt.duration,
            utt.lang,
            utt.prompt,
            utt.line,
            utt.offset,
            utt.channel,
            manifest=None if utt.manifest is None else str(utt.manifest),
        )

    def add(
        self,
        key: str,
        audio: str,
        target: str,
        duration: float | None,
        lang: str | None,
        prompt: str | None,
        line: int | None,
        offset: float | None,
        channel: int | tuple[int, ...] | None,
        *,
        manifest: str | None,
    ) -> None:
        """One row from its fields (an ``Utterance``'s, paths as strings)."""
        rows = self._rows
        rows["key"].append(key)
        rows["audio"].append(audio)
        rows["target"].append(target)
        rows["prompt"].append(prompt)
        rows["lang"].append(lang)
        rows["manifest"].append(manifest)
        rows["duration"].append(math.nan if duration is None else duration)
        rows["offset"].append(math.nan if offset is None else offset)
        rows["line"].append(-1 if line is None else line)
        if isinstance(channel, tuple):
            self._sets[len(rows["line"]) - 1] = channel
            rows["channel"].append(-2)
        else:
            rows["channel"].append(-1 if channel is None else channel)
        self._count += 1
        if len(rows["line"]) >= CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        rows = self._rows
        if not rows["line"]:
            return
        text = {name: TextColumn.from_strings(rows[name]) for name in TEXT_FIELDS}
        numbers = {
            "duration": np.array(rows["duration"], dtype=np.float64),
            "offset": np.array(rows["offset"], dtype=np.float64),
            "line": np.array(rows["line"], dtype=np.int64),
            "channel": np.array(rows["channel"], dtype=np.int16),
        }
        self._chunks.append(UtteranceTable(text, numbers, self._sets))
        self._reset()

    def build(self) -> UtteranceTable:
        self._flush()
        if not self._chunks:
            self._flush_empty()
        table = UtteranceTable.concat(self._chunks)
        self._chunks = [table]
        return table

    def _flush_empty(self) -> None:
        empty = TextColumn(np.zeros(0, np.uint8), np.zeros(1, np.int64))
        self._chunks.append(
            UtteranceTable(
                {name: empty for name in TEXT_FIELDS},
                {
                    "duration": np.zeros(0),
                    "offset": np.zeros(0),
                    "line": np.zeros(0, np.int64),
                    "channel": np.zeros(0, np.int16),
                },
            )
        )
