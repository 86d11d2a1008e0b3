"""``python -m nano8k.evaluate``: decode a manifest and report CER / WER / MER, overall and per group."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from jsonargparse import ArgumentParser

from nano8k.atomic import unwritable_reason
from nano8k.errors import DataError, command, fail
from nano8k.inference.api import load_for_inference
from nano8k.inference.arguments import add_decode_arguments, choice_of, decode_options, utterances_from_manifest
from nano8k.inference.decode import decode_feeding, transcribe_utterances
from nano8k.inference.evaluation import evaluation_report, group_fields, write_report
from nano8k.model.locate import resolve_model_dir
from nano8k.scoring.normalizers import NORMALIZERS
from nano8k.scoring.report import summary_lines


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
