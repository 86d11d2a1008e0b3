"""``python -m nano8k.average CKPT... --out DIR``: average n checkpoints' weights and export FunASR + HF layouts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from nano8k.model.checkpoint import atomic_torch_save
from nano8k.training.checkpointing import average_checkpoints, export_module, module_from_checkpoint


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(prog="python -m nano8k.average", description=__doc__)
    parser.add_argument("checkpoints", nargs="+", help="Lightning .ckpt files of one run (e.g. the top-k by val/cer)")
    parser.add_argument("--out", required=True, help="output folder: <out>/funasr, <out>/hf (and <out>/averaged.ckpt)")
    parser.add_argument("--model_dir", default=None, help="base model folder if the one in the checkpoint moved")
    parser.add_argument("--no-ckpt", action="store_true", help="do not write <out>/averaged.ckpt")
    args = parser.parse_args(argv)
    averaged = average_checkpoints(args.checkpoints)
    module = module_from_checkpoint(averaged, args.model_dir)
    out = Path(args.out)
    if not args.no_ckpt:
        atomic_torch_save(averaged, out / "averaged.ckpt")
    written = export_module(module, out)
    print(f"[average] {len(args.checkpoints)} checkpoint(s) -> {written['funasr']} and {written['hf']}")
    return written


if __name__ == "__main__":
    main()
