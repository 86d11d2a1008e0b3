"""Manifests: read FunASR ChatML jsonl, simple {key,source,target} jsonl and Kaldi wav.scp+text; write ChatML."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

from nano8k.data.audio import AudioError, AudioInfo, probe_audio
from nano8k.data.badsamples import BadSample, BadSampleLog, DataError
from nano8k.model.prompt import DEFAULT_SYSTEM_PROMPT, task_prompt

ManifestFormat = Literal["auto", "chatml", "jsonl", "kaldi"]
SPEECH_RE = re.compile(r"<\|startofspeech\|>!(.*?)<\|endofspeech\|>", re.S)
DEFAULT_SYSTEM = DEFAULT_SYSTEM_PROMPT
DEFAULT_PROMPT = task_prompt()  # 语音转写：


@dataclass(frozen=True)
class Utterance:
    """One manifest entry; ``audio`` is absolute, ``line`` is 1-based in ``manifest``."""

    key: str
    audio: Path
    target: str
    duration: float | None = None
    lang: str | None = None
    prompt: str | None = None
    line: int | None = None
    manifest: Path | None = None

    def bad(self, reason: str) -> BadSample:
        return BadSample(reason, str(self.manifest) if self.manifest else None, self.line, self.key, str(self.audio))


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


def _resolve(audio: str, base: Path) -> Path:
    path = Path(os.path.expanduser(audio))
    return path if path.is_absolute() else (base / path).resolve()


def speech_length(duration: float) -> int:
    """FunASR ``speech_length``: 10 ms fbank frames of a ``duration``-second clip, floor((ms - 25) / 10) + 1."""
    return max(0, math.floor((duration * 1000.0 - 25.0) / 10.0) + 1)


def detect_format(path: str | Path) -> str:
    """``kaldi`` for a directory or ``wav.scp``; otherwise ``chatml``/``jsonl`` from the first parseable JSON line."""
    path = Path(path)
    if path.is_dir() or path.name == "wav.scp":
        return "kaldi"
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and "messages" in obj:
                return "chatml"
            if isinstance(obj, dict) and "source" in obj:
                return "jsonl"
    raise DataError(f"{path}: cannot detect the manifest format (no line with 'messages' or 'source')")


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
    duration = obj.get("duration")
    if duration is None and isinstance(obj.get("speech_length"), (int, float)):
        duration = (float(obj["speech_length"]) - 1) * 0.010 + 0.025
    prompt = user["content"][: found.start()]
    return Utterance(
        key=str(obj.get("key") or Path(audio).stem),
        audio=_resolve(audio, base),
        target=assistant["content"],
        duration=None if duration is None else float(duration),
        lang=obj.get("lang"),
        prompt=prompt or None,
        line=lineno,
    )


def _simple_entry(obj: dict[str, Any], base: Path, lineno: int) -> Utterance:
    missing = [name for name in ("key", "source", "target") if name not in obj]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    if not isinstance(obj["source"], str) or not isinstance(obj["target"], str):
        raise ValueError("fields 'source' and 'target' must be strings")
    lang = obj.get("lang") or obj.get("text_language")
    return Utterance(
        key=str(obj["key"]),
        audio=_resolve(obj["source"], base),
        target=obj["target"],
        duration=None if obj.get("duration") is None else float(obj["duration"]),
        lang=None if lang is None else str(lang).strip("<|>"),
        prompt=obj.get("prompt"),
        line=lineno,
    )


def _read_jsonl(path: Path, fmt: str) -> ManifestContents:
    contents = ManifestContents(path, fmt)
    base = path.parent
    with open(path, encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                contents.bad.append(BadSample(f"bad JSON: {exc.msg} (column {exc.colno})", str(path), lineno))
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


def _read_table(path: Path) -> dict[str, tuple[int, str]]:
    table: dict[str, tuple[int, str]] = {}
    with open(path, encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if raw.strip():
                key, _, value = raw.strip().partition(" ")
                table[key] = (lineno, value.strip())
    return table


def _read_kaldi(path: Path) -> ManifestContents:
    folder = path if path.is_dir() else path.parent
    scp = folder / "wav.scp"
    contents = ManifestContents(scp, "kaldi")
    if not scp.is_file():
        raise DataError(f"{folder}: Kaldi data folder has no wav.scp")
    if (folder / "segments").exists():
        raise DataError(f"{folder}/segments: Kaldi segments are not supported; cut the audio into files first")
    text_path = folder / "text"
    texts = _read_table(text_path) if text_path.is_file() else {}
    durs = _read_table(folder / "utt2dur") if (folder / "utt2dur").is_file() else {}
    langs = _read_table(folder / "utt2lang") if (folder / "utt2lang").is_file() else {}
    for key, (lineno, value) in _read_table(scp).items():
        if not value:
            contents.bad.append(BadSample("wav.scp line has no audio path", str(scp), lineno, key))
        elif value.endswith("|"):
            contents.bad.append(BadSample(f"piped wav.scp commands are not supported: {value}", str(scp), lineno, key))
        elif key not in texts:
            contents.bad.append(BadSample(f"no transcript for this key in {text_path}", str(scp), lineno, key, value))
        else:
            dur = durs.get(key, (0, ""))[1]
            contents.utterances.append(
                Utterance(key, _resolve(value, folder), texts[key][1], float(dur) if dur else None,
                          langs.get(key, (0, None))[1], None, lineno, scp)
            )
    return contents


def read_manifest(path: str | Path, fmt: ManifestFormat = "auto") -> ManifestContents:
    """Parse one manifest; per-line problems are returned in ``.bad`` (nothing is raised for them)."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise DataError(f"manifest not found: {path}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "kaldi":
        return _read_kaldi(path)
    if fmt not in ("chatml", "jsonl"):
        raise DataError(f"unknown manifest format {fmt!r} (auto, chatml, jsonl, kaldi)")
    return _read_jsonl(path, fmt)


def check_utterance(
    utt: Utterance, *, min_duration: float = 0.0, max_duration: float = float("inf"), probe: bool = True
) -> tuple[Utterance, str | None, AudioInfo | None]:
    """Cheap checks (transcript, file, header, duration bounds).

    Returns the utterance (duration measured from the header when ``probe``), the reason it is bad or None, and the
    header read (None without ``probe`` or when it could not be read).
    """
    if not utt.target.strip():
        return utt, "empty transcript", None
    info = None
    if probe:
        try:
            info = probe_audio(utt.audio)
        except AudioError as exc:
            return utt, str(exc), None
        if info.frames == 0:
            return utt, "zero-length audio (0 samples)", info
        utt = replace(utt, duration=info.duration)
    elif not utt.audio.is_file():
        return utt, f"audio file not found: {utt.audio}", None
    if utt.duration is not None:
        if utt.duration < min_duration:
            return utt, f"too short: {utt.duration:.3f} s < min_duration {min_duration} s", info
        if utt.duration > max_duration:
            return utt, f"too long: {utt.duration:.3f} s > max_duration {max_duration} s", info
    return utt, None, info


def load_utterances(
    paths: str | Path | Sequence[str | Path],
    log: BadSampleLog,
    *,
    min_duration: float = 0.0,
    max_duration: float = float("inf"),
    probe: bool = True,
    fmt: ManifestFormat = "auto",
) -> list[Utterance]:
    """Read and cheaply validate manifests; bad entries go to ``log`` (raise under ``error``, counted under ``skip``)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    good: list[Utterance] = []
    bad: list[BadSample] = []
    for path in paths:
        contents = read_manifest(path, fmt)
        bad.extend(contents.bad)
        for utt in contents.utterances:
            utt, reason, _ = check_utterance(utt, min_duration=min_duration, max_duration=max_duration, probe=probe)
            if reason is None:
                good.append(utt)
            else:
                bad.append(utt.bad(reason))
    total = len(good) + len(bad)
    for item in bad:
        log.add(item, total)
    log.check(total)
    return good


def iter_chatml(
    utts: Iterable[Utterance],
    out_dir: Path,
    *,
    count_tokens: Callable[[str], int] | None = None,
    system_prompt: str = DEFAULT_SYSTEM,
    default_prompt: str = DEFAULT_PROMPT,
) -> Iterable[dict[str, Any]]:
    """ChatML records for ``utts``; audio paths relative to ``out_dir`` when below it, else absolute."""
    for utt in utts:
        duration = utt.duration if utt.duration is not None else probe_audio(utt.audio).duration
        try:
            audio = os.path.relpath(utt.audio, out_dir)
            audio = str(utt.audio) if audio.startswith("..") else audio
        except ValueError:
            audio = str(utt.audio)
        record: dict[str, Any] = {
            "key": utt.key,
            "messages": [
                {"role": "system", "content": system_prompt},
                {"role": "user", "content": f"{utt.prompt or default_prompt}<|startofspeech|>!{audio}<|endofspeech|>"},
                {"role": "assistant", "content": utt.target},
            ],
            "speech_length": speech_length(duration),
            "text_length": count_tokens(utt.target) if count_tokens else len(utt.target),
            "duration": round(duration, 4),
        }
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
