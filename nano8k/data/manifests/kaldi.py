"""Kaldi data folders: wav.scp + text, optional segments, reco2file_and_channel, utt2dur, utt2lang."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from nano8k.data.audio import file_problem
from nano8k.data.badsamples import BadSample
from nano8k.data.manifests.textfile import read_lines
from nano8k.data.manifests.utterance import ManifestContents, Utterance, resolve_audio, seconds
from nano8k.errors import DataError


@dataclass
class Table:
    """A Kaldi ``key value`` file (TAB or space separated): first line per key, duplicated keys, bad lines."""

    path: Path
    rows: dict[str, tuple[int, str]] = field(default_factory=dict)
    duplicates: dict[str, list[int]] = field(default_factory=dict)
    bad: list[BadSample] = field(default_factory=list)
    undecodable: dict[str, tuple[int, str]] = field(default_factory=dict)  # key -> (line, "not UTF-8 ...")

    def where(self, key: str) -> str:
        lines = [self.rows[key][0], *self.duplicates.get(key, [])]
        return ", ".join(f"{self.path}:{n}" for n in lines)

    def problem(self, key: str) -> str | None:
        """Why ``key``'s entry cannot be used: it is repeated, or its line is not UTF-8; None when it can."""
        if key in self.undecodable:
            lineno, error = self.undecodable[key]
            return f"{self.path}:{lineno}: {error}"
        if key not in self.duplicates:
            return None
        return f"duplicate key {key!r} in {self.path.name} (lines {self.where(key)})"


def read_table(path: Path, required: bool = False) -> Table:
    """Parse ``path``; a missing optional file gives an empty table. One that is there but cannot be read (a
    dangling symlink, a symlink loop, a FIFO, a directory, not readable) is a ``DataError`` saying what it is."""
    table = Table(path)
    if not os.path.lexists(path):
        if required:
            raise DataError(f"{path.parent}: Kaldi data folder has no {path.name}")
        return table
    problem = file_problem(path, "Kaldi table file")
    if problem:
        raise DataError(problem)
    for lineno, text, error in read_lines(path):
        parts = text.strip().split(maxsplit=1)
        if error is not None:
            if len(parts) == 2 and "\ufffd" not in parts[0]:  # the key is readable: report it once, on its entry
                table.undecodable[parts[0]] = (lineno, error)
            else:
                table.bad.append(BadSample(error, str(path), lineno))
            continue
        if not parts:
            continue
        key, value = parts[0], parts[1].strip() if len(parts) > 1 else ""
        if key in table.rows:
            table.duplicates.setdefault(key, []).append(lineno)
        else:
            table.rows[key] = (lineno, value)
    return table


def kaldi_channel(side: str) -> int:
    """A ``reco2file_and_channel`` side as a 0-based channel: A, B, … or 1, 2, … (Kaldi's conventions)."""
    if len(side) == 1 and side.isalpha():
        return ord(side.upper()) - ord("A")
    if side.isdigit() and int(side) >= 1:
        return int(side) - 1
    raise ValueError(f"channel {side!r} is neither A, B, … nor 1, 2, …")


class _Folder:
    def __init__(self, folder: Path, transcripts: bool = True) -> None:
        self.folder, self.transcripts = folder, transcripts
        self.scp = read_table(folder / "wav.scp", required=True)
        self.text = read_table(folder / "text")
        self.durs = read_table(folder / "utt2dur")
        self.langs = read_table(folder / "utt2lang")
        self.segments = read_table(folder / "segments")
        self.reco2file = read_table(folder / "reco2file_and_channel")
        self.bad: list[BadSample] = [
            b for t in (self.scp, self.text, self.durs, self.langs, self.segments, self.reco2file) for b in t.bad
        ]

    def audio_of(self, reco: str) -> tuple[Path | None, int | None, str | None]:
        """(audio file, channel, problem) of a recording id, through reco2file_and_channel when it names it."""
        channel = None
        scp_key = reco
        if reco in self.reco2file.rows:
            lineno, value = self.reco2file.rows[reco]
            parts = value.split()
            where = f"{self.reco2file.path}:{lineno}"
            if len(parts) != 2:
                return None, None, f"{where}: expected '<recording> <file> <channel>', got {value!r}"
            try:
                channel = kaldi_channel(parts[1])
            except ValueError as exc:
                return None, None, f"{where}: {exc}"
            if reco not in self.scp.rows:
                scp_key = parts[0]  # wav.scp may be keyed by the file id of reco2file_and_channel
        for table in (self.scp, self.reco2file):
            problem = table.problem(scp_key if table is self.scp else reco)
            if problem:
                return None, None, problem
        if scp_key not in self.scp.rows:
            return None, None, f"recording {reco!r} is not in {self.scp.path}"
        value = self.scp.rows[scp_key][1]
        if not value:
            return None, None, f"{self.scp.path}:{self.scp.rows[scp_key][0]}: no audio path"
        if value.endswith("|"):
            return (
                None,
                None,
                f"{self.scp.path}:{self.scp.rows[scp_key][0]}: piped wav.scp commands are not "
                f"supported ({value}); point wav.scp at the audio file",
            )
        return resolve_audio(value, self.folder), channel, None

    def transcript(self, key: str) -> tuple[str | None, str | None]:
        """(transcript, problem) of ``key``; without ``transcripts`` a key with none (or no text file) has ""."""
        problem = self.text.problem(key) or self.langs.problem(key)
        if problem is None and key not in self.text.rows:
            if not self.transcripts:
                return "", None
            problem = (
                f"no transcript for this key in {self.text.path}"
                if self.text.path.is_file()
                else f"{self.text.path} does not exist (a Kaldi folder's transcripts)"
            )
        return self.text.rows.get(key, (0, None))[1], problem


def _unreadable_lines(table: Table, contents: ManifestContents) -> None:
    """The driving table's lines that are not UTF-8 (their keys were readable) as bad entries."""
    for key, (lineno, error) in table.undecodable.items():
        contents.bad.append(BadSample(error, str(table.path), lineno, key))


def _reject(
    contents: ManifestContents, table: Table, key: str, lineno: int, problem: str, audio: str | None = None
) -> None:
    """``key`` of the driving ``table`` is bad: its line and each repeated line of it, all with ``problem``."""
    contents.bad.append(BadSample(problem, str(table.path), lineno, key, audio))
    for dup in table.duplicates.get(key, []):
        contents.bad.append(BadSample(problem, str(table.path), dup, key))


def _whole_files(data: _Folder, contents: ManifestContents) -> None:
    scp = data.scp
    _unreadable_lines(scp, contents)
    for key, (lineno, value) in scp.rows.items():
        audio, channel, problem = data.audio_of(key)
        target, text_problem = data.transcript(key)
        problem = problem or text_problem or data.durs.problem(key)
        dur = data.durs.rows.get(key, (0, ""))[1]
        duration = None
        if problem is None and dur:
            try:
                duration = seconds("duration", dur, positive=True)
            except ValueError as exc:
                problem = f"{data.durs.path}:{data.durs.rows[key][0]}: {exc}"
        if problem is not None:
            _reject(contents, scp, key, lineno, problem, value or None)
            continue
        contents.utterances.append(
            Utterance(
                key,
                audio,
                target,
                duration,
                data.langs.rows.get(key, (0, None))[1],
                None,
                lineno,
                scp.path,
                channel=channel,
            )
        )


def _segments(data: _Folder, contents: ManifestContents) -> None:
    seg = data.segments
    _unreadable_lines(seg, contents)
    for key, (lineno, value) in seg.rows.items():
        parts = value.split()
        problem = seg.problem(key)
        if problem is None and len(parts) not in (3, 4):
            problem = f"expected '<utterance> <recording> <start> <end> [<channel>]', got {value!r}"
        span: tuple[float, float] = (0.0, 0.0)
        if problem is None:
            try:
                span = (float(parts[1]), float(parts[2]))
            except ValueError:
                problem = f"start/end {parts[1]!r} {parts[2]!r} are not numbers of seconds"
        if problem is None and (
            not all(map(math.isfinite, span)) or span[0] < 0 or (span[1] != -1 and span[1] <= span[0])
        ):
            problem = f"bad segment start {span[0]} end {span[1]} (end must be > start, or -1 for the file's end)"
        audio = channel = target = None
        if problem is None:
            audio, channel, problem = data.audio_of(parts[0])
        if problem is None and len(parts) == 4:  # extract-segments' optional 5th field: a 0-based channel
            if not parts[3].isdigit():
                problem = f"channel {parts[3]!r} is not a 0-based channel number"
            elif channel is not None and channel != int(parts[3]):
                problem = (
                    f"channel {parts[3]} contradicts reco2file_and_channel, which gives recording "
                    f"{parts[0]!r} channel {channel} (0-based)"
                )
            else:
                channel = int(parts[3])
        if problem is None:
            target, problem = data.transcript(key)
        if problem is not None:
            _reject(contents, seg, key, lineno, problem)
            continue
        duration = None if span[1] == -1 else round(span[1] - span[0], 6)
        contents.utterances.append(
            Utterance(
                key,
                audio,
                target,
                duration,
                data.langs.rows.get(key, (0, None))[1],
                None,
                lineno,
                seg.path,
                offset=span[0],
                channel=channel,
            )
        )


def read_kaldi(path: Path, transcripts: bool = True) -> ManifestContents:
    """Utterances of a Kaldi data folder (or its wav.scp); with ``segments`` each is a span of a recording.

    Lines may be separated by spaces or TABs. A segment's channel is its optional 5th field (0-based, as Kaldi's
    extract-segments) or its recording's in ``reco2file_and_channel`` (A/B or 1/2; wav.scp is keyed by the recording
    id, or by the file id it names). A key repeated in any file makes every
    entry with that key bad, naming all its lines; nothing is silently replaced. Without ``transcripts`` (decoding
    only) the ``text`` file may be missing or lack keys: those entries' transcripts are empty.
    """
    folder = path if path.is_dir() else path.parent
    data = _Folder(folder, transcripts)
    segmented = data.segments.path.is_file()
    contents = ManifestContents(data.segments.path if segmented else data.scp.path, "kaldi")
    contents.bad.extend(data.bad)
    (_segments if segmented else _whole_files)(data, contents)
    utterance_keys = (data.segments if segmented else data.scp).rows
    for key, (lineno, _) in data.text.rows.items():
        if key not in utterance_keys:
            contents.ignored.append(
                BadSample(f"transcript with no entry in {contents.path.name}", str(data.text.path), lineno, key)
            )
    return contents
