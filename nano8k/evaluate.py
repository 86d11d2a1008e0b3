"""CLI: ``python -m nano8k.evaluate`` — decode a manifest and report CER / WER / MER (overall, per language, worst)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

from jsonargparse import ArgumentParser

from nano8k.training.metrics import RATE_NAMES, UNITS, error_counts, language_groups
from nano8k.training.module import resolve_model_dir
from nano8k.inference import Transcript, transcribe_utterances
from nano8k.transcribe import add_decode_arguments, decode_options, load_model, utterances_from_manifest

def score(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, Any]:
    """CER/WER/MER with their edit and reference-unit counts (empty references dropped and counted)."""
    report: dict[str, Any] = {}
    for unit in UNITS:
        counts = error_counts(refs, hyps, unit)
        report[RATE_NAMES[unit]] = counts.rate if counts.ref_units else None
        report[f"{RATE_NAMES[unit]}_counts"] = {
            "edits": counts.edits, "ref_units": counts.ref_units, "substitutions": counts.substitutions,
            "deletions": counts.deletions, "insertions": counts.insertions,
        }
        report["utterances"], report["empty_refs"] = counts.utterances, counts.empty_refs
    return report


def build_report(results: Sequence[Transcript], num_worst: int = 10) -> dict[str, Any]:
    """Overall and per-language scores plus the ``num_worst`` utterances by MER (then by edits)."""
    decoded = [r for r in results if r.error is None]
    refs, hyps = [r.utt.target for r in decoded], [r.text for r in decoded]
    report: dict[str, Any] = {"overall": score(refs, hyps), "failed": [
        {"key": r.utt.key, "audio": str(r.utt.audio), "error": r.error} for r in results if r.error is not None]}
    groups = language_groups(refs, [r.utt.lang for r in decoded])
    report["by_language"] = {lang: score([refs[i] for i in idx], [hyps[i] for i in idx]) for lang, idx in groups.items()}
    rows = []
    for r in decoded:
        counts = error_counts([r.utt.target], [r.text], "mixed")
        if counts.ref_units:
            rows.append({"key": r.utt.key, "mer": counts.rate, "edits": counts.edits, "ref": r.utt.target,
                         "hyp": r.text})
    rows.sort(key=lambda row: (-row["mer"], -row["edits"], row["key"]))
    report["worst"] = rows[:num_worst]
    return report


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.4f}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Human-readable table: one line overall and one per language."""
    lines = [f"{'set':<10}{'utts':>7}{'CER':>9}{'WER':>9}{'MER':>9}"]
    for name, block in [("overall", report["overall"]), *report["by_language"].items()]:
        lines.append(f"{name:<10}{block['utterances']:>7}{_fmt(block['cer']):>9}{_fmt(block['wer']):>9}"
                     f"{_fmt(block['mer']):>9}")
    if report["overall"]["empty_refs"]:
        lines.append(f"{report['overall']['empty_refs']} utterance(s) with an empty reference were not scored")
    if report["failed"]:
        lines.append(f"{len(report['failed'])} utterance(s) failed to load (see 'failed' in the report)")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m nano8k.evaluate", description=__doc__)
    parser.add_argument("--manifest", type=str, required=True, help="ChatML / {key,source,target} jsonl / Kaldi / Lhotse")
    parser.add_argument("--output", type=str | None, default=None, help="write the JSON report here")
    parser.add_argument("--hyps_output", type=str | None, default=None, help="write {key, ref, hyp} jsonl here")
    parser.add_argument("--num_worst", type=int, default=10)
    add_decode_arguments(parser)
    args = parser.parse_args(argv)
    options = decode_options(args)
    utts = utterances_from_manifest(args.manifest)
    if not utts:
        raise SystemExit(f"error: {args.manifest} holds no utterance")
    model = load_model(args.model_dir, args.device, args.llm_dtype, args.dither)
    results = transcribe_utterances(model, utts, options)
    report = build_report(results, args.num_worst)
    report["settings"] = {"manifest": str(Path(args.manifest).resolve()), "model_dir": str(resolve_model_dir(args.model_dir)),
                          **{k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(options).items()}}
    print("\n".join(summary_lines(report)))
    if args.output:
        Path(args.output).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if args.hyps_output:
        with open(args.hyps_output, "w", encoding="utf-8") as handle:
            for r in results:
                handle.write(json.dumps({"key": r.utt.key, "ref": r.utt.target, "hyp": r.text, "error": r.error},
                                        ensure_ascii=False) + "\n")
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
