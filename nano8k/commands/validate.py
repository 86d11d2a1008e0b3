"""``nano8k validate MANIFEST...``: check every manifest line; convert the valid ones to ChatML or Lhotse."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jsonargparse import ArgumentParser

from nano8k.data.audio import MULTICHANNEL_POLICIES
from nano8k.data.manifests.io import write_chatml
from nano8k.data.manifests.validate import Report, format_report, validate
from nano8k.errors import command, fail


def _convert(report: Report, args: argparse.Namespace) -> None:
    if args.convert_format == "lhotse":
        from nano8k.data.manifests.lhotse_io import write_lhotse

        written = write_lhotse(report.good, args.convert)
        print(f"wrote {written} Lhotse cuts to {args.convert}")
        return
    count_tokens = None
    if args.tokenizer:
        from nano8k.data.pipeline.datamodule import load_tokenizer

        tok = load_tokenizer(args.tokenizer)
        count_tokens = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    written = write_chatml(report.good, args.convert, count_tokens=count_tokens)
    print(f"wrote {written} ChatML lines to {args.convert}")


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m nano8k.data.validate", description=__doc__)
    parser.add_argument(
        "manifests",
        nargs="+",
        help="ChatML jsonl, {key,source,target} jsonl, Kaldi dir/wav.scp, or Lhotse cuts/supervisions",
    )
    parser.add_argument("--format", default="auto", choices=["auto", "chatml", "jsonl", "kaldi", "lhotse"])
    parser.add_argument("--min_duration", type=float, default=0.1)
    parser.add_argument("--max_duration", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=None, help="require this sample rate")
    parser.add_argument("--mono", action="store_true", help="treat multi-channel audio as an error")
    parser.add_argument(
        "--multichannel",
        choices=MULTICHANNEL_POLICIES,
        default="error",
        help="a multi-channel file whose utterance names no channel: error (as data.multichannel's "
        "default), first, or mix",
    )
    parser.add_argument(
        "--duration_tolerance",
        type=float,
        default=0.05,
        help="allowed |declared - actual| duration in seconds (whole-file entries)",
    )
    parser.add_argument(
        "--header_only", action="store_true", help="read headers only (skip full decode and the silence check)"
    )
    parser.add_argument("--convert", metavar="OUT", help="write the valid entries (spans and channels kept)")
    parser.add_argument(
        "--convert_format",
        choices=["chatml", "lhotse"],
        default="chatml",
        help="chatml: FunASR ChatML jsonl; lhotse: a Lhotse CutSet (.jsonl or .jsonl.gz; needs lhotse)",
    )
    parser.add_argument("--tokenizer", help="tokenizer dir for ChatML text_length (else character count)")
    parser.add_argument("--allow_errors", action="store_true", help="convert even if some entries are bad")
    parser.add_argument(
        "--max_listed",
        type=int,
        default=20,
        help="list at most this many errors/warnings of each kind (0: all); the summary counts all",
    )
    args = parser.parse_args(argv)
    if args.convert and args.convert_format == "lhotse" and not args.convert.endswith((".jsonl", ".jsonl.gz")):
        fail(f"--convert {args.convert}: a Lhotse CutSet is written as .jsonl or .jsonl.gz; name the file so")
    try:
        report = validate(
            args.manifests,
            fmt=args.format,
            decode=not args.header_only,
            min_duration=args.min_duration,
            max_duration=args.max_duration,
            rate=args.rate,
            mono=args.mono,
            duration_tolerance=args.duration_tolerance,
            multichannel=args.multichannel,
        )
        print(format_report(report, args.max_listed))
        if args.convert:
            if report.problems and not args.allow_errors:
                print(
                    f"not converting: {len(report.problems)} bad entries (use --allow_errors to drop them)",
                    file=sys.stderr,
                )
                return 1
            try:
                _convert(report, args)
            except OSError as exc:  # read-only, missing folder, full disk
                fail(f"--convert {args.convert}: cannot be written ({exc.strerror or exc})")
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return 1
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
