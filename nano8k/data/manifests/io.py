"""Manifests: read FunASR ChatML jsonl, simple {key,source,target} jsonl, Kaldi folders and Lhotse; write ChatML."""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nano8k.data.audio import MAX_OVERSHOOT, AudioInfo, MultichannelPolicy, channel_problem, file_problem, probe_audio
from nano8k.data.badsamples import BadSample, BadSampleLog, logger
from nano8k.data.manifests.cache import Headers, ManifestCache
from nano8k.data.manifests.kaldi import read_kaldi
from nano8k.data.manifests.table import TableBuilder, UtteranceTable
from nano8k.data.manifests.textfile import first_json_object, json_line, read_lines, refuse_json_array
from nano8k.data.manifests.utterance import (
    ManifestContents,
    Utterance,
    audio_path,
    parse_channel,
    parse_key,
    parse_span,
    unread_span_fields,
)
from nano8k.errors import AudioError, DataError
from nano8k.model.prompt import DEFAULT_SYSTEM_PROMPT, task_prompt

__all__ = [
    "ManifestContents",
    "ManifestFormat",
    "Utterance",
    "check_utterance",
    "detect_format",
    "entries_headers",
    "flag_duplicate_keys",
    "header_dict",
    "iter_chatml",
    "load_utterances",
    "manifest_path",
    "read_entries",
    "read_manifest",
    "read_unique",
    "read_utterances",
    "rows_to_open",
    "speech_length",
    "write_chatml",
]

ManifestFormat = Literal["auto", "chatml", "jsonl", "kaldi", "lhotse"]
SPEECH_RE = re.compile(r"<\|startofspeech\|>!(.*?)<\|endofspeech\|>", re.S)
DEFAULT_SYSTEM = DEFAULT_SYSTEM_PROMPT
DEFAULT_PROMPT = task_prompt()  # 语音转写：


def speech_length(duration: float) -> int:
    """FunASR ``speech_length``: 10 ms fbank frames of a ``duration``-second clip, floor((ms - 25) / 10) + 1."""
    return max(0, math.floor((duration * 1000.0 - 25.0) / 10.0) + 1)


def _json_kind(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    if "messages" in obj:
        return "chatml"
    if "source" in obj:
        return "jsonl"
    from nano8k.data.manifests import lhotse_io

    return "lhotse" if lhotse_io.kind(obj) else None


def detect_format(path: str | Path) -> str:
    """``kaldi`` for a directory or ``wav.scp``; else ``chatml``/``jsonl``/``lhotse`` from the first JSON object."""
    path = Path(path)
    if path.is_dir() or path.name in ("wav.scp", "segments"):
        return "kaldi"
    found = first_json_object(path, _json_kind)
    if found is None:
        raise DataError(
            f"{path}: cannot detect the manifest format (no line with 'messages', 'source', or a Lhotse "
            "cut/supervision)"
        )
    return found


Row = tuple  # (key, audio, target, duration, lang, prompt, line, offset, channel): ``TableBuilder.add``'s fields


def _chatml_entry(obj: dict[str, Any], base: str, lineno: int, transcripts: bool = True) -> Row:
    messages = obj.get("messages")
    if not isinstance(messages, list):
        raise ValueError("field 'messages' must be a list")
    user = next((m for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
    assistant = next((m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"), None)
    if user is None or not isinstance(user.get("content"), str):
        raise ValueError("no user message with string content")
    found = SPEECH_RE.search(user["content"])
    if not found or not found.group(1).strip():
        raise ValueError("user content has no <|startofspeech|>!PATH<|endofspeech|> slot")
    if transcripts and (assistant is None or not isinstance(assistant.get("content"), str)):
        raise ValueError("no assistant message with the transcript")
    if assistant is not None and not isinstance(assistant.get("content", ""), str):
        raise ValueError("the assistant message's content must be a string")
    audio = found.group(1).strip()
    unread_span_fields(obj)
    duration = obj.get("duration")
    if duration is None and isinstance(obj.get("speech_length"), (int, float)):  # the span's, for a segment
        duration = (float(obj["speech_length"]) - 1) * 0.010 + 0.025
    offset, duration = parse_span(obj.get("offset"), duration)
    if offset is not None and not obj.get("key"):
        raise ValueError("a segment ('offset') needs a 'key': the audio file's name is shared by its segments")
    prompt = user["content"][: found.start()]
    key = parse_key(obj["key"]) if "key" in obj else os.path.splitext(os.path.basename(audio))[0]
    target = "" if assistant is None else assistant.get("content", "")
    return (
        key,
        audio_path(audio, base),
        target,
        duration,
        obj.get("lang"),
        prompt or None,
        lineno,
        offset,
        parse_channel(obj.get("channel")),
    )


def _simple_entry(obj: dict[str, Any], base: str, lineno: int, transcripts: bool = True) -> Row:
    missing = [name for name in ("key", "source", "target") if name not in obj and (transcripts or name != "target")]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    if not isinstance(obj["source"], str) or not isinstance(obj.get("target", ""), str):
        raise ValueError("fields 'source' and 'target' must be strings")
    lang = obj.get("lang") or obj.get("text_language")
    unread_span_fields(obj)
    offset, duration = parse_span(obj.get("offset"), obj.get("duration"))
    return (
        parse_key(obj["key"]),
        audio_path(obj["source"], base),
        obj.get("target", ""),
        duration,
        None if lang is None else str(lang).strip("<|>"),
        obj.get("prompt"),
        lineno,
        offset,
        parse_channel(obj.get("channel")),
    )


def _read_jsonl(path: Path, fmt: str, transcripts: bool = True) -> ManifestContents:
    contents = ManifestContents(path, fmt)
    base, manifest = str(path.parent), str(path)
    table = TableBuilder()
    refuse_json_array(path)
    for lineno, text, error in read_lines(path):
        if error is not None:
            contents.bad.append(BadSample(error, manifest, lineno))
            continue
        if not text.strip():
            continue
        obj, error = json_line(text)
        if error is not None:
            contents.bad.append(BadSample(error, manifest, lineno))
            continue
        if not isinstance(obj, dict):
            contents.bad.append(BadSample("line is not a JSON object", manifest, lineno))
            continue
        kind = "chatml" if "messages" in obj else "jsonl" if "source" in obj else fmt
        try:
            row = (_chatml_entry if kind == "chatml" else _simple_entry)(obj, base, lineno, transcripts)
        except (ValueError, TypeError) as exc:
            contents.bad.append(BadSample(f"bad {kind} entry: {exc}", manifest, lineno, obj.get("key")))
            continue
        table.add(*row, manifest=manifest)
    contents.utterances = table.build()
    return contents


def _read_any(path: Path, fmt: ManifestFormat, transcripts: bool = True) -> ManifestContents:
    """The manifest parsed by its format's reader, its utterances as an ``UtteranceTable``; without ``transcripts``
    an entry may lack its transcript (its target is empty)."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "kaldi":
        contents = read_kaldi(path, transcripts)
    elif path.is_dir():
        raise DataError(f"{path} is a directory; only a Kaldi data folder can be given as a directory")
    elif fmt == "lhotse":
        from nano8k.data.manifests.lhotse_io import read_lhotse

        contents = read_lhotse(path, transcripts)
    elif fmt in ("chatml", "jsonl"):
        return _read_jsonl(path, fmt, transcripts)
    else:
        raise DataError(f"unknown manifest format {fmt!r} (auto, chatml, jsonl, kaldi, lhotse)")
    contents.utterances = UtteranceTable.from_utterances(contents.utterances)
    return contents


def manifest_path(path: str | Path) -> Path:
    """``path`` resolved, or a ``DataError`` saying what it is when it cannot be read as a manifest (missing, a
    dangling symlink or symlink loop, a FIFO, not readable; a directory is a Kaldi data folder)."""
    path = Path(path).expanduser()
    problem = None if path.is_dir() else file_problem(path, "manifest")
    if problem:
        raise DataError(problem)
    return path.resolve()


def read_manifest(path: str | Path, fmt: ManifestFormat = "auto", transcripts: bool = True) -> ManifestContents:
    """Parse one manifest into an ``UtteranceTable``; per-line problems are returned in ``.bad`` (nothing is raised
    for them). A large manifest's parsed form is cached beside it (``nano8k.data.manifests.cache``); one read without
    ``transcripts`` (for decoding only: entries may lack them) is not, so training never sees its empty targets."""
    path = manifest_path(path)
    if not transcripts:
        return _read_any(path, fmt, transcripts=False)
    return ManifestCache.open(path, fmt).contents(lambda: _read_any(path, fmt))


def flag_duplicate_keys(utts: UtteranceTable) -> tuple[UtteranceTable, list[BadSample]]:
    """Split ``utts`` into entries with a unique key and a bad entry for every copy of a repeated key.

    A repeated key is never resolved by keeping one copy: every copy is bad, and each names all lines with the key.
    """
    keys = utts.text["key"].raw(utts.rows)  # bytes: no decoding for a million keys
    counts = Counter(keys)
    if len(counts) == len(keys):
        return utts, []
    copies: dict[str, list[int]] = defaultdict(list)
    for row, key in enumerate(keys):
        if counts[key] > 1:
            copies[key].append(row)
    bad = []
    for row in sorted(row for rows in copies.values() for row in rows):
        utt, rows = utts[row], copies[keys[row]]
        bad.append(
            utt.bad(
                f"duplicate key {utt.key!r} ({len(rows)} entries: {', '.join(utts[r].bad('').where for r in rows)})"
            )
        )
    return utts.take([row for row, key in enumerate(keys) if counts[key] == 1]), bad


def _span_problem(utt: Utterance, info: AudioInfo) -> tuple[Utterance, str | None]:
    """The utterance with its duration measured from the header, or why its span does not fit the file."""
    if not utt.is_segment:
        return replace(utt, duration=info.duration), None
    if utt.offset >= info.duration:
        return utt, f"segment offset {utt.offset:.3f} s is past the end of the file ({info.duration:.3f} s)"
    duration = utt.duration if utt.duration is not None else info.duration - utt.offset
    if utt.offset + duration > info.duration + MAX_OVERSHOOT:
        return utt, (
            f"segment {utt.offset:.3f}-{utt.offset + duration:.3f} s ends after the end of the file "
            f"({info.duration:.3f} s)"
        )
    return replace(utt, duration=min(duration, info.duration - utt.offset)), None


def check_utterance(
    utt: Utterance,
    *,
    min_duration: float = 0.0,
    max_duration: float = float("inf"),
    probe: bool = True,
    multichannel: MultichannelPolicy = "error",
    headers: dict[Path, AudioInfo | AudioError] | None = None,
) -> tuple[Utterance, str | None, AudioInfo | None]:
    """Cheap checks (transcript, file, header, span, channel, duration bounds).

    Returns the utterance (duration measured from the header when ``probe``: the file's, or the segment's), the reason
    it is bad or None, and the header read (None without ``probe`` or when it could not be read). ``headers`` keeps
    each file's header (or its error) across calls, so the many segments of one recording read it once.
    """
    if not utt.target.strip():
        return utt, "empty transcript", None
    info = None
    if probe:
        headers = {} if headers is None else headers
        if utt.audio not in headers:
            try:
                headers[utt.audio] = probe_audio(utt.audio)
            except AudioError as exc:
                headers[utt.audio] = exc
        info = headers[utt.audio]
        if isinstance(info, AudioError):
            return utt, str(info), None
        if info.frames == 0:
            return utt, "zero-length audio (0 samples)", info
        utt, problem = _span_problem(utt, info)
        problem = problem or channel_problem(utt.audio, info.channels, utt.channel, multichannel)
        if problem:
            return utt, problem, info
    elif (problem := file_problem(utt.audio)) is not None:
        return utt, problem, None
    if utt.duration is not None:
        if utt.duration < min_duration:
            return utt, f"too short: {utt.duration:.3f} s < min_duration {min_duration} s", info
        if utt.duration > max_duration:
            return utt, f"too long: {utt.duration:.3f} s > max_duration {max_duration} s", info
    return utt, None, info


def read_entries(
    paths: str | Path | Sequence[str | Path], fmt: ManifestFormat = "auto", transcripts: bool = True
) -> tuple[UtteranceTable, list[BadSample], list[BadSample]]:
    """The entries of ``paths`` with unique keys; the bad lines and every copy of a repeated key; and the entries
    that are not utterances (``ManifestContents.ignored``, also logged with their count). Without ``transcripts``
    an entry may lack its transcript (``read_manifest``)."""
    table, bad, ignored, _ = read_unique(paths, fmt, transcripts)
    return table, bad, ignored


def read_unique(
    paths: str | Path | Sequence[str | Path], fmt: ManifestFormat = "auto", transcripts: bool = True
) -> tuple[UtteranceTable, list[BadSample], list[BadSample], list[ManifestContents]]:
    """``read_entries``, and each manifest's contents (with its cache, for ``entries_headers``)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    resolved = [manifest_path(p) for p in paths]
    twice = sorted({str(p) for p in resolved if resolved.count(p) > 1})
    if twice:
        raise DataError(f"manifest(s) given more than once: {', '.join(twice)} (every key would be a duplicate)")
    parts: list[ManifestContents] = []
    bad: list[BadSample] = []
    ignored: list[BadSample] = []
    for path in paths:
        contents = read_manifest(path, fmt, transcripts)
        parts.append(contents)
        bad.extend(contents.bad)
        ignored.extend(contents.ignored)
        if contents.ignored:
            logger.warning(
                "%s: %d entries are not utterances and are ignored, first: %s",
                path,
                len(contents.ignored),
                contents.ignored[0].describe(),
            )
    table, duplicates = flag_duplicate_keys(UtteranceTable.concat([c.utterances for c in parts]))
    return table, bad + duplicates, ignored, parts


def read_utterances(path: str | Path, user: str, transcripts: bool = True) -> UtteranceTable:
    """All utterances of one manifest for decoding or scoring, or a ``DataError`` naming ``user`` and the first bad
    lines (unreadable lines, repeated keys). Without ``transcripts`` (decoding only) an entry may lack its
    transcript."""
    entries, bad, _ = read_entries(path, transcripts=transcripts)
    if bad:
        reasons = "\n  ".join(b.describe() for b in bad[:10])
        raise DataError(f"{user}: {len(bad)} bad line(s) in {path}:\n  {reasons}")
    return entries


def entries_headers(
    parts: Sequence[ManifestContents], entries: UtteranceTable, rows: np.ndarray
) -> tuple[Headers, np.ndarray]:
    """The headers of the audio of ``rows`` of ``entries`` (``read_unique``'s table), each manifest's read through
    its cache: a ``Headers`` over the rows of all the manifests' tables, and ``rows``' places in it."""
    physical = (np.arange(len(entries)) if entries.rows is None else entries.rows)[np.asarray(rows, dtype=np.int64)]
    found = Headers.empty(sum(len(c.utterances) for c in parts))
    start = 0
    for contents in parts:
        end = start + len(contents.utterances)
        local = physical[(physical >= start) & (physical < end)] - start
        if len(local):
            cache = contents.cache or ManifestCache(contents.path, None)
            found.copy_rows(cache.headers(contents.utterances, local), local, start)
        start = end
    return found, physical


def header_dict(
    entries: UtteranceTable, rows: np.ndarray, headers: Headers, physical: np.ndarray
) -> dict[Path, AudioInfo | AudioError]:
    """``entries_headers`` keyed by audio path, as ``check_utterance`` takes them."""
    return {entries[int(row)].audio: headers.info(int(phys)) for row, phys in zip(rows, physical)}


def rows_to_open(entries: UtteranceTable, spot_check: int | None, seed: int = 0) -> np.ndarray:
    """Rows whose audio header start-up reads: every entry without a duration, and ``spot_check`` (seeded; None:
    all) of those with one."""
    known = ~np.isnan(entries.durations)
    unknown = np.flatnonzero(~known)
    known_rows = np.flatnonzero(known)
    if spot_check is None or spot_check >= len(known_rows):
        return np.arange(len(entries))
    sample = np.random.default_rng(seed).choice(known_rows, size=max(int(spot_check), 0), replace=False)
    return np.union1d(unknown, sample)


def load_utterances(
    paths: str | Path | Sequence[str | Path],
    log: BadSampleLog,
    *,
    min_duration: float = 0.0,
    max_duration: float = float("inf"),
    probe: bool = True,
    fmt: ManifestFormat = "auto",
    multichannel: MultichannelPolicy = "error",
    spot_check: int | None = 1000,
    seed: int = 0,
) -> UtteranceTable:
    """Read and cheaply validate manifests; bad entries go to ``log`` (raise under ``error``, counted under ``skip``).

    With ``probe``, an entry whose duration the manifest gives is trusted without opening its audio, and
    ``spot_check`` of them (seeded by ``seed``; None: all of them) get the full header check (a file that is missing
    or unreadable there is a bad sample; a duration that disagrees with the file is counted and warned about). An
    entry without a duration has its header read, once: large manifests keep the headers in their cache. Without
    ``probe`` no header is read and only the files' existence is checked. Keys must be unique across ``paths``:
    every copy of a repeated key is bad (see ``flag_duplicate_keys``).
    """
    table, bad, _, parts = read_unique(paths, fmt)
    durations = table.durations.copy()
    unknown = np.flatnonzero(np.isnan(durations)) if probe else np.zeros(0, np.int64)
    checked = rows_to_open(table, spot_check, seed) if probe else unknown
    reasons: dict[int, str] = {}
    disagree, first_disagreeing = 0, None
    if len(checked):
        headers, physical = entries_headers(parts, table, checked)
        # the common case without a per-row check: a readable mono file (or a channel it has), not a segment
        frames, channels = headers.frames[physical], headers.channels[physical]
        wanted = table.column("channel")[checked]
        plain = (
            (frames > 0)
            & np.isnan(table.column("offset")[checked])
            & (((channels == 1) & (wanted == -1)) | ((wanted >= 0) & (wanted < channels)))
        )
        measured = frames[plain] / headers.rates[physical][plain]
        declared = durations[checked[plain]]
        off = np.flatnonzero(~np.isnan(declared) & (np.abs(measured - declared) > np.maximum(0.1, 0.02 * declared)))
        disagree = len(off)
        if disagree:
            i = int(off[0])
            first_disagreeing = (
                table[int(checked[plain][i])]
                .bad(f"manifest duration {declared[i]:.3f} s, the audio has {measured[i]:.3f} s")
                .describe()
            )
        durations[checked[plain]] = measured
        rest = np.flatnonzero(~plain)
        lookup = header_dict(table, checked[rest], headers, physical[rest])
        for row in checked[rest].tolist():
            utt = table[row]
            utt_checked, reason, _ = check_utterance(utt, probe=True, multichannel=multichannel, headers=lookup)
            if reason is not None:
                reasons[row] = reason
            else:
                durations[row] = utt_checked.duration  # the header's (a segment's is cut at the file's end)
    if not probe:
        for row, utt in enumerate(table):
            reason = check_utterance(utt, probe=False)[1]
            if reason is not None:
                reasons[row] = reason
    unknown_rows = set(unknown.tolist())
    _report_spot_check(
        len(checked) - len(unknown),
        len(table),
        sum(r not in unknown_rows for r in reasons),
        disagree,
        first_disagreeing,
    )
    for row in table.blank_targets().tolist():
        reasons.setdefault(row, "empty transcript")
    with np.errstate(invalid="ignore"):
        short = np.flatnonzero(durations < min_duration)
        long = np.flatnonzero(durations > max_duration)
    for row in short.tolist():
        reasons.setdefault(row, f"too short: {durations[row]:.3f} s < min_duration {min_duration} s")
    for row in long.tolist():
        reasons.setdefault(row, f"too long: {durations[row]:.3f} s > max_duration {max_duration} s")
    bad.extend(table[row].bad(reason) for row, reason in sorted(reasons.items()))
    table = table.with_durations(durations).take(np.setdiff1d(np.arange(len(table)), list(reasons)))
    total = len(table) + len(bad)
    for item in bad:
        log.add(item, total)
    log.check(total)
    return table


def _report_spot_check(checked: int, total: int, bad: int, disagree: int, first_disagreeing: str | None) -> None:
    if checked <= 0 or checked >= total:
        return
    if bad or disagree:
        logger.warning(
            "spot check of %d of %d entries with manifest durations: %d bad, %d with another duration "
            "than the audio's (first: %s); the rest were not opened, so about %.1f%% of the manifest may "
            "be affected: run python -m nano8k.data.validate on it",
            checked,
            total,
            bad,
            disagree,
            first_disagreeing or "-",
            100.0 * (bad + disagree) / checked,
        )
    else:
        logger.info(
            "spot check: %d of %d entries with manifest durations opened, all good (the rest are trusted)",
            checked,
            total,
        )


def _relative_audio(audio: Path, out_dir: Path) -> str:
    try:
        rel = os.path.relpath(audio, out_dir)
    except ValueError:
        return str(audio)
    return str(audio) if rel.startswith("..") else rel


def iter_chatml(
    utts: Iterable[Utterance],
    out_dir: Path,
    *,
    count_tokens: Callable[[str], int] | None = None,
    system_prompt: str = DEFAULT_SYSTEM,
    default_prompt: str = DEFAULT_PROMPT,
) -> Iterable[dict[str, Any]]:
    """ChatML records for ``utts``; audio paths relative to ``out_dir`` when below it, else absolute.

    A segment keeps ``offset`` (with ``duration`` its length) and a chosen channel keeps ``channel``: nano8k reads
    them; FunASR's own loader ignores them and would read the whole file.
    """
    for utt in utts:
        duration = utt.duration
        if duration is None:
            duration = probe_audio(utt.audio).duration - (utt.offset or 0.0)
        audio = _relative_audio(utt.audio, out_dir)
        record: dict[str, Any] = {
            "key": utt.key,
            "messages": [
                {"role": "system", "content": system_prompt},
                {"role": "user", "content": f"{utt.prompt or default_prompt}<|startofspeech|>!{audio}<|endofspeech|>"},
                {"role": "assistant", "content": utt.target},
            ],
            "speech_length": speech_length(duration),
            "text_length": count_tokens(utt.target) if count_tokens else len(utt.target),
            "duration": round(duration, 6 if utt.is_segment else 4),
        }
        if utt.offset is not None:
            record["offset"] = round(utt.offset, 6)
        if utt.channel is not None:
            record["channel"] = utt.channel if isinstance(utt.channel, int) else list(utt.channel)
        if utt.lang:
            record["lang"] = utt.lang
        yield record


def write_chatml(utts: Iterable[Utterance], out_path: str | Path, **kwargs: Any) -> int:
    """Write ``utts`` as FunASR ChatML jsonl; returns the number of lines written.

    ``text_length`` is the tokenizer count when ``count_tokens`` is given, else the character count.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(out_path, "w", encoding="utf-8") as handle:
        for record in iter_chatml(utts, out_path.parent.resolve(), **kwargs):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
