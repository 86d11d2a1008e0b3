"""``python -m nano8k.preflight CONFIG [--skip NAME ...] [--data.x v ...]``: the pre-training checklist as checks."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jsonargparse import ArgumentParser

from nano8k.checks import CHECKS, failed, format_results, run_preflight, troubleshooting_table
from nano8k.errors import command, fail
from nano8k.training.config import parse_file, split_overrides


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Check a config as ``nano8k.fit`` would train it; exit 1 on a failed check (or a warning under --strict)."""
    parser = ArgumentParser(prog="python -m nano8k.preflight", description=__doc__)
    parser.add_argument("config", nargs="?", help="LightningCLI YAML config (e.g. configs/telephone.yaml)")
    parser.add_argument("--troubleshooting", action="store_true", help="print the checks as a markdown table")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=list(CHECKS),
        metavar="NAME",
        help=f"checks to skip: {', '.join(CHECKS)}",
    )
    parser.add_argument(
        "--gpu_memory",
        type=float,
        default=None,
        metavar="GIB",
        help="compare the memory estimate with a GPU of this size instead of the local one",
    )
    parser.add_argument("--strict", action="store_true", help="exit non-zero on warnings too")
    parser.epilog = (
        "Any nano8k.fit override may follow (--model.lr 1e-4, --data.max_frames_per_batch 4000, ...): the "
        "config is checked as fit would train it."
    )
    own, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(own)
    if args.troubleshooting:
        print(troubleshooting_table(), end="")
        return 0
    if args.config is None:
        parser.error("give a CONFIG")
    try:
        config = parse_file(args.config, overrides)  # exactly what nano8k.fit would build
        results = run_preflight(config, skip=args.skip, gpu_memory_gb=args.gpu_memory)
    except (OSError, ValueError) as err:
        fail(str(err))
    print(format_results(results))
    if failed(results) or (args.strict and any(r.status == "warn" for r in results)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
