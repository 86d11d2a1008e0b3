"""``python -m nano8k.average CKPT... --out DIR``: average n checkpoints' weights and export FunASR + HF layouts."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ArgumentParser

from nano8k.errors import command


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m nano8k.average", description=__doc__)
    parser.add_argument("checkpoints", nargs="+", help="Lightning .ckpt files of one run (e.g. the top-k by val/cer)")
    parser.add_argument("--out", required=True, help="output folder: <out>/funasr, <out>/hf (and <out>/averaged.ckpt)")
    parser.add_argument("--model_dir", default=None, help="base model folder if the one in the checkpoint moved")
    parser.add_argument("--no_ckpt", action="store_true", help="do not write <out>/averaged.ckpt")
    args = parser.parse_args(argv)
    from nano8k.training.checkpointing import average_and_export  # torch: only once there is work (-h is quick)

    written = average_and_export(args.checkpoints, Path(args.out), args.model_dir, write_ckpt=not args.no_ckpt)
    print(f"[average] {len(args.checkpoints)} checkpoint(s) -> {written['funasr']} and {written['hf']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
