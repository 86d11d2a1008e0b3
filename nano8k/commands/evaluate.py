"""``python -m nano8k.evaluate``: decode a manifest and report CER / WER / MER, overall and per group."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser

from nano8k.atomic import unwritable_reason
from nano8k.data.badsamples import DataError
from nano8k.data.manifests.fields import entry_fields
from nano8k.data.manifests.utterance import Utterance
from nano8k.errors import command, fail
from nano8k.inference.api import load_for_inference
from nano8k.inference.arguments import add_decode_arguments, choice_of, decode_options, utterances_from_manifest
from nano8k.inference.decode import Transcript, decode_feeding, transcribe_utterances
from nano8k.model.locate import resolve_model_dir
from nano8k.scoring.metrics import utterance_language
from nano8k.scoring.normalizers import NORMALIZERS
from nano8k.scoring.plots import plot_groups
from nano8k.scoring.report import Scored, build_report, markdown, summary_lines


def group_fields(utts: Sequence[Utterance], group_by: Sequence[str]) -> list[dict[str, str]]:
    """Each utterance's value of every ``group_by`` field; ``lang`` is the entry's language, else its reference's."""
    others = [name for name in group_by if name != "lang"]
    rows = entry_fields(utts, others) if others else [{} for _ in utts]
    if "lang" in group_by:
        for row, utt in zip(rows, utts):
            row["lang"] = utterance_language(utt.lang, utt.target)
    return [{name: row[name] for name in group_by} for row in rows]


def evaluation_report(
    results: Sequence[Transcript],
    fields: Sequence[dict[str, str]],
    group_by: Sequence[str],
    normalizer: str,
    num_worst: int = 10,
    num_substitutions: int = 20,
) -> dict[str, Any]:
    """``build_report`` of the decoded results; utterances whose audio failed are listed under ``failed``."""
    items = [Scored(r.utt.key, r.utt.target, r.text, f) for r, f in zip(results, fields) if r.error is None]
    report = build_report(items, group_by, normalizer, num_substitutions, num_worst)
    report["failed"] = [
        {"key": r.utt.key, "audio": str(r.utt.audio), "error": r.error} for r in results if r.error is not None
    ]
    return report


def write_report(report: dict[str, Any], out_dir: str | Path, title: str) -> list[Path]:
    """``report.json`` (without the per-utterance rows), ``utterances.jsonl``, ``report.md``, ``cer_by_group.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in report.items() if k != "utterances"}
    (out / "report.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    with open(out / "utterances.jsonl", "w", encoding="utf-8") as handle:
        for row in report["utterances"]:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "report.md").write_text(markdown(report, title), encoding="utf-8")
    return [
        out / "report.json",
        out / "utterances.jsonl",
        out / "report.md",
        plot_groups(report, out / "cer_by_group.png"),
    ]


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m nano8k.evaluate", description=__doc__)
    parser.add_argument(
        "--manifest", type=str, required=True, help="ChatML / {key,source,target} jsonl / Kaldi / Lhotse"
    )
    parser.add_argument(
        "--group_by",
        type=str,
        default="lang",
        help="comma-separated manifest fields to break the scores down by, e.g. lang,channel_type,"
        "speaker,domain (lang: the entry's language, else detected from the reference; Kaldi: "
        "utt2<field> files, utt2spk for speaker; Lhotse: supervision fields and custom)",
    )
    parser.add_argument(
        "--normalizer",
        type=choice_of(NORMALIZERS),
        default="basic",
        help="basic (nano8k's), funasr (Fun-ASR's evaluation recipe, comparable with its published "
        "numbers) or none; see nano8k.scoring.normalizers",
    )
    parser.add_argument(
        "--report_dir",
        type=str | None,
        default=None,
        help="write report.json, report.md, utterances.jsonl and cer_by_group.png here",
    )
    parser.add_argument("--num_worst", type=int, default=10, help="the report's worst utterances listed")
    parser.add_argument("--num_substitutions", type=int, default=20, help="the report's most frequent substitutions")
    add_decode_arguments(parser)
    args = parser.parse_args(argv)
    options = decode_options(args)
    group_by = [name.strip() for name in args.group_by.split(",") if name.strip()]
    if args.report_dir and (reason := unwritable_reason(Path(args.report_dir))) is not None:
        fail(f"--report_dir {args.report_dir}: cannot write there ({reason}); name a folder you can write")
    utts = utterances_from_manifest(args.manifest)
    if not utts:
        fail(f"{args.manifest} holds no utterance")
    try:
        fields = group_fields(utts, group_by)  # before decoding: a misspelt field fails now
    except DataError as err:
        fail(f"--group_by: {err}")
    model = load_for_inference(args.model_dir, args.device, args.llm_dtype)
    feeding, notices = decode_feeding(model, options)
    for notice in notices:
        print(f"notice: --{notice}", file=sys.stderr)
    results = transcribe_utterances(model, utts, options)
    report = evaluation_report(results, fields, group_by, args.normalizer, args.num_worst, args.num_substitutions)
    report["settings"] = {
        "manifest": str(Path(args.manifest).resolve()),
        "model_dir": str(resolve_model_dir(args.model_dir)),
        "group_by": group_by,
        "frontend_rate": feeding.frontend_rate,
        "prompt": asdict(feeding.prompt),
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(options).items()},
    }
    print("\n".join(summary_lines(report)))
    if report["failed"]:
        print(f"{len(report['failed'])} utterance(s) failed to load (see 'failed' in the report)")
    if args.report_dir:
        try:
            written = write_report(report, args.report_dir, f"Evaluation of {Path(args.manifest).name}")
        except OSError as exc:  # a full disk after decoding: the summary above is printed already
            fail(f"--report_dir {args.report_dir}: writing the report failed ({exc.strerror or exc})")
        print("wrote " + ", ".join(str(p) for p in written))
    if not report["overall"]["utterances"]:
        fail(
            f"{args.manifest}: nothing was scored: of {len(utts)} utterance(s), {report['overall']['empty_refs']} "
            f"have an empty reference after the {args.normalizer} normalizer and {len(report['failed'])} failed to "
            "load; give transcripts (or --normalizer none if the normalizer empties them)"
        )
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
