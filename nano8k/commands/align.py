"""``python -m nano8k.align CONFIG [--against OTHER] [--format md|table|json]``: a config's alignment table."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ArgumentParser

from nano8k.errors import command, fail
from nano8k.training.alignment import DEFAULT_AGAINST, FORMATTERS, TAGS, align_files


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Print (or write with -o) the alignment table of a config against the reference."""
    parser = ArgumentParser(prog="python -m nano8k.align", description=__doc__)
    parser.add_argument("config", help="LightningCLI YAML config (e.g. configs/telephone.yaml)")
    parser.add_argument(
        "--against",
        default=None,
        help=f"reference config (default {DEFAULT_AGAINST}, as nano8k ships it; any other config compares directly)",
    )
    parser.add_argument("--format", choices=sorted(FORMATTERS), default="md")
    parser.add_argument("--all", action="store_true", help="also list trainer/callback keys at default in both")
    parser.add_argument("--only", nargs="*", choices=TAGS, help="keep only rows with these tags")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")
    args = parser.parse_args(argv)
    try:
        alignment = align_files(args.config, args.against, include_all=args.all)
    except (OSError, ValueError) as err:
        fail(str(err))
    if args.only:
        alignment.rows = [r for r in alignment.rows if r.tag in args.only]
    text = FORMATTERS[args.format](alignment)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
