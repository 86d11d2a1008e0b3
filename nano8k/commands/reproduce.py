"""``python -m nano8k.reproduce``: the telephone recipe's claims measured at mini scale (nano8k.mini.reproduction)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jsonargparse import ArgumentParser

from nano8k.errors import command
from nano8k.mini import reproduction
from nano8k.mini.reproduction import STEPS, reproduce
from nano8k.scoring.normalizers import NORMALIZERS


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m nano8k.reproduce", description=reproduction.__doc__)
    parser.add_argument("--work", default="runs/reproduce", help="rendered data and one run folder per fine-tune")
    parser.add_argument("--out", default="docs/results", help="where mini_reproduction.md and its PNG go")
    parser.add_argument(
        "--telephone_dir",
        default=None,
        help="the 8 kHz digit corpus (default: data_manifests/telephone-digits as nano8k ships it)",
    )
    parser.add_argument("--steps", type=int, default=STEPS, help="optimizer steps per fine-tune")
    parser.add_argument("--val_every", type=int, default=150)
    parser.add_argument("--wideband_per_lang", type=int, default=400)
    parser.add_argument("--real", type=int, default=100, help="real-voice test strings")
    parser.add_argument("--only", nargs="*", default=None, help="run only these variants (names)")
    parser.add_argument(
        "--normalizer",
        default="basic",
        choices=list(NORMALIZERS),
        help="text normalization before scoring (nano8k.scoring.normalizers)",
    )
    args = parser.parse_args(argv)
    command_line = "python -m nano8k.reproduce" + (" " + " ".join(argv) if argv else "")
    return reproduce(
        args.work,
        args.out,
        args.telephone_dir,
        args.steps,
        args.val_every,
        args.wideband_per_lang,
        args.real,
        args.only,
        args.normalizer,
        command_line,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
