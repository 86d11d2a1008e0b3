"""Manifest checks: every line read, its audio probed (or decoded), problems and warnings counted by kind."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from nano8k.data.audio import SILENCE_PEAK_DBFS, AudioInfo, MultichannelPolicy, peak_dbfs
from nano8k.data.badsamples import BadSample
from nano8k.data.manifests.io import Utterance, check_utterance, entries_headers, header_dict, read_unique, rows_to_open
from nano8k.errors import AudioError

LISTED_FILES = 20  # multi-channel files listed one by one in the report
# Transcript length (characters) above which validate and preflight warn: 120 s of fast speech at ~8 characters/s
# is ~1,000, so a longer one is most likely several utterances' text joined or a line matched to the wrong audio.
MAX_TRANSCRIPT_CHARS = 1000
LISTED_CHARACTERS = 5  # control/invisible characters named one by one in a transcript's error or warning


@dataclass
class FileLayout:
    """One audio file's channels and which channels its utterances use (``None``: no channel named)."""

    sample_rate: int
    channels: int
    used: Counter = field(default_factory=Counter)

    def describe(self) -> str:
        uses = ", ".join(
            f"{'no channel' if c is None else f'channel {c}'} x{n}"
            for c, n in sorted(self.used.items(), key=lambda kv: str(kv[0]))
        )
        return f"{self.channels} channels @ {self.sample_rate} Hz; utterances: {uses}"


@dataclass
class Report:
    """Outcome of validating manifests: good utterances, problems and statistics."""

    good: list[Utterance] = field(default_factory=list)
    problems: list[BadSample] = field(default_factory=list)
    warnings: list[BadSample] = field(default_factory=list)
    rates: Counter = field(default_factory=Counter)
    files: dict[Path, FileLayout] = field(default_factory=dict)
    ignored: list[BadSample] = field(default_factory=list)
    seconds: float = 0.0
    trusted: int = 0  # good entries whose declared duration was taken without opening the audio (``sample``)

    @property
    def total(self) -> int:
        return len(self.good) + len(self.problems)


def transcript_warning(utt: Utterance) -> str | None:
    """Why ``utt``'s transcript looks wrong (longer than ``MAX_TRANSCRIPT_CHARS``), or None; a warning, not an error."""
    chars = len(utt.target)
    if chars <= MAX_TRANSCRIPT_CHARS:
        return None
    audio = f" for {utt.duration:.1f} s of audio" if utt.duration is not None else ""
    return (
        f"long transcript: {chars} characters{audio} > {MAX_TRANSCRIPT_CHARS}; several utterances' text joined, "
        "or a line matched to the wrong audio?"
    )


def _listed(found: list[tuple[int, str]]) -> str:
    """``U+200B ZERO WIDTH SPACE at column 3, ...``: the first ``LISTED_CHARACTERS`` of ``found`` and how many more."""
    named = [
        f"U+{ord(ch):04X}{' ' + unicodedata.name(ch) if unicodedata.name(ch, '') else ''} at column {column}"
        for column, ch in found[:LISTED_CHARACTERS]
    ]
    more = f" and {len(found) - LISTED_CHARACTERS} more" if len(found) > LISTED_CHARACTERS else ""
    return ", ".join(named) + more


def _unseen(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(column, character) of the control characters of ``text`` that are not whitespace (NUL, BEL, ESC, ...), and of
    its format characters (Unicode Cf) and whitespace controls (TAB, newline)."""
    controls, invisible = [], []
    if text.isprintable():
        return controls, invisible
    for column, ch in enumerate(text, start=1):
        category = unicodedata.category(ch)
        if category == "Cc" and not ch.isspace():
            controls.append((column, ch))
        elif category in ("Cc", "Cf"):
            invisible.append((column, ch))
    return controls, invisible


def control_character_error(utt: Utterance) -> str | None:
    """Why ``utt``'s transcript is bad text: control characters that are not whitespace (NUL, BEL, ESC, DEL ...),
    which no language writes: corrupt text or a wrong encoding, which the model would learn to write. None if none."""
    controls, _ = _unseen(utt.target)
    if not controls:
        return None
    return (
        f"control character(s) in the transcript: {_listed(controls)} (corrupt text or a wrong encoding; remove them)"
    )


def invisible_character_warning(utt: Utterance) -> str | None:
    """A warning naming the format characters (Unicode Cf: U+200B zero-width space, U+FEFF byte-order mark, U+200D
    joiner, U+202E bidi override ...) and whitespace controls (TAB, newline) of ``utt``'s transcript, or None.

    A warning, not an error: a zero-width joiner or non-joiner is part of the spelling of Persian, Indic scripts and
    emoji, and the scoring normalizers drop them all; but the model learns to write what the transcript holds, so a
    stray one is worth cleaning."""
    _, invisible = _unseen(utt.target)
    if not invisible:
        return None
    return (
        f"invisible character(s) in the transcript: {_listed(invisible)} (training targets keep them, scoring "
        "drops them; remove stray ones)"
    )


def validate_utterance(
    utt: Utterance,
    *,
    decode: bool,
    min_duration: float,
    max_duration: float,
    rate: int | None,
    mono: bool,
    duration_tolerance: float,
    multichannel: MultichannelPolicy = "error",
    headers: dict[Path, AudioInfo | AudioError] | None = None,
) -> tuple[Utterance, str | None, list[str], AudioInfo | None]:
    """Check one entry; returns (utterance with measured duration, error or None, warnings, header if read).

    A transcript with control characters that are not whitespace (NUL, BEL) is an error
    (``control_character_error``). Warnings (the entry stays good): a transcript longer than ``MAX_TRANSCRIPT_CHARS``
    or with invisible characters (``invisible_character_warning``), and with ``decode`` silent
    audio (peak below ``SILENCE_PEAK_DBFS``); also segments past the file's end, unseekable files, unnamed channels.

    Under ``multichannel`` first/mix, an utterance on a multi-channel file comes back with the channels the policy
    picked (0, or all of them), so a converted manifest says what training read.
    """
    warnings: list[str] = []
    declared = None if utt.is_segment else utt.duration  # a segment's duration is its length, not the file's
    requested = utt.duration
    utt, error, info = check_utterance(
        utt,
        min_duration=min_duration,
        max_duration=max_duration,
        probe=True,
        multichannel=multichannel,
        headers=headers,
    )
    if error is not None:
        return utt, error, warnings, info
    bad_text = control_character_error(utt)
    if bad_text:
        return utt, bad_text, warnings, info
    warnings.extend(w for w in (transcript_warning(utt), invisible_character_warning(utt)) if w)
    if decode:
        try:
            waveform, _ = utt.load(multichannel)  # raises for undecodable, NaN/Inf or out-of-range audio, in its span
        except AudioError as exc:
            return utt, str(exc), warnings, info
        level = peak_dbfs(waveform)
        if level < SILENCE_PEAK_DBFS:
            warnings.append(
                f"silent audio: peak {level:.1f} dBFS < {SILENCE_PEAK_DBFS:g} dBFS (a muted channel, the "
                "wrong channel, or a blank file?)"
            )
    if rate is not None and info.sample_rate != rate:
        return utt, f"sample rate {info.sample_rate} Hz != required {rate} Hz", warnings, info
    if utt.is_segment and requested is not None and utt.offset + requested > info.duration:
        warnings.append(
            f"segment ends {utt.offset + requested - info.duration:.3f} s past the end of the file "
            f"({info.duration:.3f} s): cut there"
        )
    if utt.is_segment and not info.seekable:
        warnings.append(
            f"{info.subtype} in {info.format} cannot seek: every segment of this file is decoded from its "
            "start; convert long recordings once (e.g. to FLAC or μ-law WAV) before training"
        )
    if info.channels != 1:
        if mono:
            return utt, f"{info.channels} channels, mono required", warnings, info
        if utt.channel is None:
            warnings.append(f"{info.channels} channels, no channel named (multichannel={multichannel})")
            utt = replace(utt, channel=0 if multichannel == "first" else tuple(range(info.channels)))
    if declared is not None and abs(declared - info.duration) > duration_tolerance:
        return (
            utt,
            (
                f"declared duration {declared:.3f} s != file duration {info.duration:.3f} s "
                f"(tolerance {duration_tolerance} s)"
            ),
            warnings,
            info,
        )
    return utt, None, warnings, info


def validate(
    manifests: Sequence[str | Path],
    *,
    fmt: str = "auto",
    decode: bool = True,
    min_duration: float = 0.1,
    max_duration: float = 30.0,
    rate: int | None = None,
    mono: bool = False,
    duration_tolerance: float = 0.05,
    multichannel: MultichannelPolicy = "error",
    sample: int | None = None,
    seed: int = 0,
) -> Report:
    """Validate every line of ``manifests`` (see ``validate_utterance``).

    With ``sample`` (what preflight does, as fit's start-up does), only ``sample`` entries that declare a duration
    (seeded by ``seed``) and every entry that does not are checked against their audio; the other lines are parsed
    and counted good with their declared duration (``Report.trusted``). Headers read for entries without a duration
    are kept in a large manifest's cache, which fit reads too.

    Keys must be unique across ``manifests``: every copy of a repeated key is a problem naming all its lines, which
    is what training does with them (``load_utterances``). The file layout counts every utterance whose header was
    read, good or bad.
    """
    report = Report()
    entries, report.problems, report.ignored, parts = read_unique(manifests, fmt)  # type: ignore[arg-type]
    opened = rows_to_open(entries, sample, seed)
    headers = header_dict(entries, opened, *entries_headers(parts, entries, opened))
    opened_rows = set(opened.tolist())
    for row, utt in enumerate(entries):
        if row not in opened_rows:
            report.good.append(utt)
            report.trusted += 1
            report.seconds += utt.duration or 0.0
            continue
        original_channel = utt.channel
        utt, error, warns, info = validate_utterance(
            utt,
            decode=decode,
            min_duration=min_duration,
            max_duration=max_duration,
            rate=rate,
            mono=mono,
            duration_tolerance=duration_tolerance,
            multichannel=multichannel,
            headers=headers,
        )
        report.warnings.extend(utt.bad(w) for w in warns)
        if info is not None:
            layout = report.files.setdefault(utt.audio, FileLayout(info.sample_rate, info.channels))
            layout.used[original_channel] += 1
        if error is not None:
            report.problems.append(utt.bad(error))
            continue
        report.good.append(utt)
        report.rates[info.sample_rate] += 1
        report.seconds += utt.duration or 0.0
    report.problems.sort(key=lambda b: (b.manifest or "", b.line or 0))
    return report


def reason_kind(reason: str) -> str:
    """A reason with its paths, quoted names and numbers blanked, so that like problems group together."""
    kind = re.sub(r"(?<![\w.])/\S+?(?=[:\s,)]|$)", "<file>", reason)
    kind = re.sub(r"'[^']*'", "'…'", kind)
    kind = re.sub(r"\b0x[0-9a-f]+\b|(?<![-\w])\d+(\.\d+)?\b", "N", kind)
    return kind[:160]


def _listing(label: str, items: list[BadSample], max_listed: int) -> list[str]:
    """``label`` lines for ``items``, at most ``max_listed`` of each kind of reason (0: all)."""
    shown: Counter = Counter()
    lines = []
    for item in items:
        kind = reason_kind(item.reason)
        shown[kind] += 1
        if not max_listed or shown[kind] <= max_listed:
            lines.append(f"{label} {item.describe()}")
    for kind, count in shown.items():
        if max_listed and count > max_listed:
            lines.append(f"{label} ... and {count - max_listed} more like: {kind}")
    return lines


def format_report(report: Report, max_listed: int = 0) -> str:
    """The report: problems and warnings (at most ``max_listed`` of each kind, 0: all), then the summary."""
    lines = _listing("ERROR", report.problems, max_listed) + _listing("WARN ", report.warnings, max_listed)
    reasons = Counter(reason_kind(b.reason) for b in report.problems)
    lines.append(
        f"summary: {report.total} entries, {len(report.good)} ok, {len(report.problems)} with errors, "
        f"{len(report.warnings)} warnings; {report.seconds / 3600:.3f} h of usable audio"
    )
    lines.append("  sample rates: " + (", ".join(f"{r} Hz x{n}" for r, n in sorted(report.rates.items())) or "-"))
    per_file = Counter(layout.channels for layout in report.files.values())
    lines.append(
        f"  audio files: {len(report.files)}; by channel count: "
        + (", ".join(f"{c} ch x{n}" for c, n in sorted(per_file.items())) or "-")
    )
    multi = [(path, layout) for path, layout in report.files.items() if layout.channels > 1]
    for path, layout in multi[:LISTED_FILES]:
        lines.append(f"    {path}: {layout.describe()}")
    if len(multi) > LISTED_FILES:
        lines.append(f"    ... and {len(multi) - LISTED_FILES} more multi-channel files")
    for reason, count in reasons.most_common():
        lines.append(f"  {count:6d} x {reason}")
    for reason, count in Counter(reason_kind(b.reason) for b in report.ignored).most_common():
        lines.append(f"  ignored (not utterances): {count} x {reason}")
    return "\n".join(lines)
