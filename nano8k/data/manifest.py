"""Manifests: read FunASR ChatML jsonl, simple {key,source,target} jsonl, Kaldi folders and Lhotse; write ChatML."""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

from nano8k.data.audio import MAX_OVERSHOOT, AudioError, AudioInfo, MultichannelPolicy, channel_problem, probe_audio
from nano8k.data.badsamples import BadSample, BadSampleLog, DataError, logger
from nano8k.data.kaldi import read_kaldi
from nano8k.data.textfile import first_json_object, json_line, read_lines
from nano8k.data.utterance import (ManifestContents, Utterance, parse_channel, parse_span, resolve_audio,
                                   unread_span_fields)
from nano8k.model.prompt import DEFAULT_SYSTEM_PROMPT, task_prompt

__all__ = ["ManifestContents", "ManifestFormat", "Utterance", "check_utterance", "detect_format",
           "flag_duplicate_keys", "iter_chatml", "load_utterances", "read_entries", "read_manifest", "read_utterances",
           "speech_length", "write_chatml"]

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
    from nano8k.data import lhotse_io

    return "lhotse" if lhotse_io.kind(obj) else None


def detect_format(path: str | Path) -> str:
    """``kaldi`` for a directory or ``wav.scp``; else ``chatml``/``jsonl``/``lhotse`` from the first JSON object."""
    path = Path(path)
    if path.is_dir() or path.name in ("wav.scp", "segments"):
        return "kaldi"
    found = first_json_object(path, _json_kind)
    if found is None:
        raise DataError(f"{path}: cannot detect the manifest format (no line with 'messages', 'source', or a Lhotse "
                        "cut/supervision)")
    return found


def _chatml_entry(obj: dict[str, Any], base: Path, lineno: int) -> Utterance:
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
    if assistant is None or not isinstance(assistant.get("content"), str):
        raise ValueError("no assistant message with the transcript")
    audio = found.group(1).strip()
    unread_span_fields(obj)
    duration = obj.get("duration")
    if duration is None and isinstance(obj.get("speech_length"), (int, float)):  # the span's, for a segment
        duration = (float(obj["speech_length"]) - 1) * 0.010 + 0.025
    offset, duration = parse_span(obj.get("offset"), duration)
    if offset is not None and not obj.get("key"):
        raise ValueError("a segment ('offset') needs a 'key': the audio file's name is shared by its segments")
    prompt = user["content"][: found.start()]
    return Utterance(
        key=str(obj.get("key") or Path(audio).stem), audio=resolve_audio(audio, base), target=assistant["content"],
        duration=duration, lang=obj.get("lang"), prompt=prompt or None, line=lineno, offset=offset,
        channel=parse_channel(obj.get("channel")),
    )


def _simple_entry(obj: dict[str, Any], base: Path, lineno: int) -> Utterance:
    missing = [name for name in ("key", "source", "target") if name not in obj]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    if not isinstance(obj["source"], str) or not isinstance(obj["target"], str):
        raise ValueError("fields 'source' and 'target' must be strings")
    lang = obj.get("lang") or obj.get("text_language")
    unread_span_fields(obj)
    offset, duration = parse_span(obj.get("offset"), obj.get("duration"))
    return Utterance(
        key=str(obj["key"]), audio=resolve_audio(obj["source"], base), target=obj["target"], duration=duration,
        lang=None if lang is None else str(lang).strip("<|>"), prompt=obj.get("prompt"), line=lineno, offset=offset,
        channel=parse_channel(obj.get("channel")),
    )


def _read_jsonl(path: Path, fmt: str) -> ManifestContents:
    contents = ManifestContents(path, fmt)
    base = path.parent
    for lineno, text, error in read_lines(path):
        if error is not None:
            contents.bad.append(BadSample(error, str(path), lineno))
            continue
        if not text.strip():
            continue
        obj, error = json_line(text)
        if error is not None:
            contents.bad.append(BadSample(error, str(path), lineno))
            continue
        if not isinstance(obj, dict):
            contents.bad.append(BadSample("line is not a JSON object", str(path), lineno))
            continue
        kind = "chatml" if "messages" in obj else "jsonl" if "source" in obj else fmt
        try:
            utt = (_chatml_entry if kind == "chatml" else _simple_entry)(obj, base, lineno)
        except (ValueError, TypeError) as exc:
            contents.bad.append(BadSample(f"bad {kind} entry: {exc}", str(path), lineno, obj.get("key")))
            continue
        contents.utterances.append(replace(utt, manifest=path))
    return contents


def read_manifest(path: str | Path, fmt: ManifestFormat = "auto") -> ManifestContents:
    """Parse one manifest; per-line problems are returned in ``.bad`` (nothing is raised for them)."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise DataError(f"manifest not found: {path}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "kaldi":
        return read_kaldi(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory; only a Kaldi data folder can be given as a directory")
    if fmt == "lhotse":
        from nano8k.data.lhotse_io import read_lhotse

        return read_lhotse(path)
    if fmt not in ("chatml", "jsonl"):
        raise DataError(f"unknown manifest format {fmt!r} (auto, chatml, jsonl, kaldi, lhotse)")
    return _read_jsonl(path, fmt)


def flag_duplicate_keys(utts: Sequence[Utterance]) -> tuple[list[Utterance], list[BadSample]]:
    """Split ``utts`` into entries with a unique key and a bad entry for every copy of a repeated key.

    A repeated key is never resolved by keeping one copy: every copy is bad, and each names all lines with the key.
    """
    by_key: dict[str, list[Utterance]] = defaultdict(list)
    for utt in utts:
        by_key[utt.key].append(utt)
    good, bad = [], []
    for utt in utts:
        copies = by_key[utt.key]
        if len(copies) == 1:
            good.append(utt)
        else:
            bad.append(utt.bad(f"duplicate key {utt.key!r} ({len(copies)} entries: "
                               f"{', '.join(u.bad('').where for u in copies)})"))
    return good, bad


def _span_problem(utt: Utterance, info: AudioInfo) -> tuple[Utterance, str | None]:
    """The utterance with its duration measured from the header, or why its span does not fit the file."""
    if not utt.is_segment:
        return replace(utt, duration=info.duration), None
    if utt.offset >= info.duration:
        return utt, f"segment offset {utt.offset:.3f} s is past the end of the file ({info.duration:.3f} s)"
    duration = utt.duration if utt.duration is not None else info.duration - utt.offset
    if utt.offset + duration > info.duration + MAX_OVERSHOOT:
        return utt, (f"segment {utt.offset:.3f}-{utt.offset + duration:.3f} s ends after the end of the file "
                     f"({info.duration:.3f} s)")
    return replace(utt, duration=min(duration, info.duration - utt.offset)), None


def check_utterance(
    utt: Utterance, *, min_duration: float = 0.0, max_duration: float = float("inf"), probe: bool = True,
    multichannel: MultichannelPolicy = "error", headers: dict[Path, AudioInfo | AudioError] | None = None,
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
    elif utt.audio.is_dir():
        return utt, f"a directory, not an audio file: {utt.audio}", None
    elif not utt.audio.is_file():
        return utt, f"audio file not found: {utt.audio}", None
    if utt.duration is not None:
        if utt.duration < min_duration:
            return utt, f"too short: {utt.duration:.3f} s < min_duration {min_duration} s", info
        if utt.duration > max_duration:
            return utt, f"too long: {utt.duration:.3f} s > max_duration {max_duration} s", info
    return utt, None, info


def read_entries(paths: str | Path | Sequence[str | Path], fmt: ManifestFormat = "auto"
                 ) -> tuple[list[Utterance], list[BadSample], list[BadSample]]:
    """The entries of ``paths`` with unique keys; the bad lines and every copy of a repeated key; and the entries
    that are not utterances (``ManifestContents.ignored``, also logged with their count)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    resolved = [Path(p).expanduser().resolve() for p in paths]
    twice = sorted({str(p) for p in resolved if resolved.count(p) > 1})
    if twice:
        raise DataError(f"manifest(s) given more than once: {', '.join(twice)} (every key would be a duplicate)")
    entries: list[Utterance] = []
    bad: list[BadSample] = []
    ignored: list[BadSample] = []
    for path in paths:
        contents = read_manifest(path, fmt)
        bad.extend(contents.bad)
        entries.extend(contents.utterances)
        ignored.extend(contents.ignored)
        if contents.ignored:
            logger.warning("%s: %d entries are not utterances and are ignored, first: %s", path,
                           len(contents.ignored), contents.ignored[0].describe())
    entries, duplicates = flag_duplicate_keys(entries)
    return entries, bad + duplicates, ignored


def read_utterances(path: str | Path, user: str) -> list[Utterance]:
    """All utterances of one manifest for decoding or scoring, or a ``DataError`` naming ``user`` and the first bad
    lines (unreadable lines, repeated keys)."""
    entries, bad, _ = read_entries(path)
    if bad:
        reasons = "\n  ".join(b.describe() for b in bad[:10])
        raise DataError(f"{user}: {len(bad)} bad line(s) in {path}:\n  {reasons}")
    return entries


def load_utterances(
    paths: str | Path | Sequence[str | Path],
    log: BadSampleLog,
    *,
    min_duration: float = 0.0,
    max_duration: float = float("inf"),
    probe: bool = True,
    fmt: ManifestFormat = "auto",
    multichannel: MultichannelPolicy = "error",
) -> list[Utterance]:
    """Read and cheaply validate manifests; bad entries go to ``log`` (raise under ``error``, counted under ``skip``).

    Keys must be unique across ``paths``: every copy of a repeated key is bad (see ``flag_duplicate_keys``).
    """
    entries, bad, _ = read_entries(paths, fmt)
    good: list[Utterance] = []
    headers: dict[Path, AudioInfo | AudioError] = {}
    for utt in entries:
        utt, reason, _ = check_utterance(utt, min_duration=min_duration, max_duration=max_duration, probe=probe,
                                         multichannel=multichannel, headers=headers)
        if reason is None:
            good.append(utt)
        else:
            bad.append(utt.bad(reason))
    total = len(good) + len(bad)
    for item in bad:
        log.add(item, total)
    log.check(total)
    return good


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
