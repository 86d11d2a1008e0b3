"""CLI: ``python -m nano8k.data.validate MANIFEST...`` checks every line; ``--convert OUT`` writes ChatML jsonl."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from nano8k.data.audio import AudioError, load_audio
from nano8k.data.badsamples import BadSample, DataError
from nano8k.data.manifest import Utterance, check_utterance, read_manifest, write_chatml


@dataclass
class Report:
    """Outcome of validating manifests: good utterances, problems and statistics."""

    good: list[Utterance] = field(default_factory=list)
    problems: list[BadSample] = field(default_factory=list)
    warnings: list[BadSample] = field(default_factory=list)
    rates: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return len(self.good) + len(self.problems)


def validate_utterance(
    utt: Utterance, *, decode: bool, min_duration: float, max_duration: float, rate: int | None,
    mono: bool, duration_tolerance: float,
) -> tuple[Utterance, str | None, list[str], tuple[int, int] | None]:
    """Check one entry; returns (utterance with measured duration, error or None, warnings, (rate, channels))."""
    warnings: list[str] = []
    declared = utt.duration
    utt, error, info = check_utterance(utt, min_duration=min_duration, max_duration=max_duration, probe=True)
    if error is not None:
        return utt, error, warnings, None
    if decode:
        try:
            load_audio(utt.audio)  # raises for undecodable and NaN/Inf audio
        except AudioError as exc:
            return utt, str(exc), warnings, None
    if rate is not None and info.sample_rate != rate:
        return utt, f"sample rate {info.sample_rate} Hz != required {rate} Hz", warnings, None
    if info.channels != 1:
        if mono:
            return utt, f"{info.channels} channels, mono required", warnings, None
        warnings.append(f"{info.channels} channels (will be downmixed)")
    if declared is not None and abs(declared - info.duration) > duration_tolerance:
        return utt, (f"declared duration {declared:.3f} s != file duration {info.duration:.3f} s "
                     f"(tolerance {duration_tolerance} s)"), warnings, None
    return utt, None, warnings, (info.sample_rate, info.channels)


def validate(
    manifests: Sequence[str | Path], *, fmt: str = "auto", decode: bool = True, min_duration: float = 0.1,
    max_duration: float = 30.0, rate: int | None = None, mono: bool = False, duration_tolerance: float = 0.05,
) -> Report:
    """Validate every line of ``manifests`` (see ``validate_utterance``); duplicate keys are problems too."""
    report = Report()
    seen: dict[str, str] = {}
    for manifest in manifests:
        contents = read_manifest(manifest, fmt)  # type: ignore[arg-type]
        report.problems.extend(contents.bad)
        for utt in contents.utterances:
            utt, error, warns, header = validate_utterance(
                utt, decode=decode, min_duration=min_duration, max_duration=max_duration, rate=rate, mono=mono,
                duration_tolerance=duration_tolerance)
            if error is None and utt.key in seen:
                error = f"duplicate key (first at {seen[utt.key]})"
            report.warnings.extend(utt.bad(w) for w in warns)
            if error is not None:
                report.problems.append(utt.bad(error))
                continue
            seen[utt.key] = f"{utt.manifest}:{utt.line}"
            report.good.append(utt)
            report.rates[header[0]] += 1
            report.channels[header[1]] += 1
            report.seconds += utt.duration or 0.0
    report.problems.sort(key=lambda b: (b.manifest or "", b.line or 0))
    return report


def format_report(report: Report) -> str:
    lines = [f"ERROR {b.describe()}" for b in report.problems]
    lines += [f"WARN  {b.describe()}" for b in report.warnings]
    reasons = Counter(b.reason.split(":")[0] for b in report.problems)
    lines.append(
        f"summary: {report.total} entries, {len(report.good)} ok, {len(report.problems)} with errors, "
        f"{len(report.warnings)} warnings; {report.seconds / 3600:.3f} h of usable audio"
    )
    lines.append("  sample rates: " + (", ".join(f"{r} Hz x{n}" for r, n in sorted(report.rates.items())) or "-"))
    lines.append("  channels: " + (", ".join(f"{c} x{n}" for c, n in sorted(report.channels.items())) or "-"))
    for reason, count in reasons.most_common():
        lines.append(f"  {count:6d} x {reason}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nano8k.data.validate", description=__doc__)
    parser.add_argument("manifests", nargs="+", help="ChatML jsonl, {key,source,target} jsonl, or Kaldi dir/wav.scp")
    parser.add_argument("--format", default="auto", choices=["auto", "chatml", "jsonl", "kaldi"])
    parser.add_argument("--min-duration", type=float, default=0.1)
    parser.add_argument("--max-duration", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=None, help="require this sample rate")
    parser.add_argument("--mono", action="store_true", help="treat multi-channel audio as an error")
    parser.add_argument("--duration-tolerance", type=float, default=0.05,
                        help="allowed |declared - actual| duration in seconds")
    parser.add_argument("--header-only", action="store_true", help="read headers only (skip full decode)")
    parser.add_argument("--convert", metavar="OUT.jsonl", help="write the valid entries as FunASR ChatML jsonl")
    parser.add_argument("--tokenizer", help="tokenizer dir for ChatML text_length (else character count)")
    parser.add_argument("--allow-errors", action="store_true", help="convert even if some entries are bad")
    args = parser.parse_args(argv)
    try:
        report = validate(args.manifests, fmt=args.format, decode=not args.header_only,
                          min_duration=args.min_duration, max_duration=args.max_duration, rate=args.rate,
                          mono=args.mono, duration_tolerance=args.duration_tolerance)
    except DataError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.convert:
        if report.problems and not args.allow_errors:
            print(f"not converting: {len(report.problems)} bad entries (use --allow-errors to drop them)",
                  file=sys.stderr)
            return 1
        count_tokens = None
        if args.tokenizer:
            from nano8k.data.datamodule import load_tokenizer

            tok = load_tokenizer(args.tokenizer)
            count_tokens = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
        written = write_chatml(report.good, args.convert, count_tokens=count_tokens)
        print(f"wrote {written} ChatML lines to {args.convert}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
