"""``python -m nano8k.average CKPT... --out DIR``: average n checkpoints' weights and export FunASR + HF layouts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from nano8k.errors import UserError, command, one_line


def average_and_export(checkpoints: Sequence[str], out: Path, model_dir: str | None = None,
                       write_ckpt: bool = True) -> dict[str, Path]:
    """Average ``checkpoints``, write ``<out>/averaged.ckpt`` (if ``write_ckpt``) and both export layouts.

    A checkpoint that is missing, unreadable, not a Lightning checkpoint of nano8k, or whose weights do not fit its
    model raises ``CheckpointError`` naming it and why.
    """
    from nano8k.atomic import atomic_torch_save  # torch: only once there is work (``-h`` stays quick)
    from nano8k.model.checkpoint import CheckpointError
    from nano8k.training.checkpointing import average_checkpoints, export_module, module_from_checkpoint

    for path in checkpoints:
        if not Path(path).exists():
            raise CheckpointError(f"{path}: checkpoint not found")
    averaged = average_checkpoints(checkpoints)  # CheckpointError naming the file (or the checkpoints' index), why
    try:
        module = module_from_checkpoint(averaged, model_dir)
    except UserError:
        raise
    except (ValueError, RuntimeError) as err:  # hyperparameters or weights that do not fit the model: name the file
        raise CheckpointError(f"{checkpoints[-1]}: cannot rebuild its model ({one_line(err)})") from err
    if write_ckpt:
        atomic_torch_save(averaged, out / "averaged.ckpt")
    return export_module(module, out)


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nano8k.average", description=__doc__)
    parser.add_argument("checkpoints", nargs="+", help="Lightning .ckpt files of one run (e.g. the top-k by val/cer)")
    parser.add_argument("--out", required=True, help="output folder: <out>/funasr, <out>/hf (and <out>/averaged.ckpt)")
    parser.add_argument("--model_dir", default=None, help="base model folder if the one in the checkpoint moved")
    parser.add_argument("--no_ckpt", action="store_true", help="do not write <out>/averaged.ckpt")
    args = parser.parse_args(argv)
    written = average_and_export(args.checkpoints, Path(args.out), args.model_dir, write_ckpt=not args.no_ckpt)
    print(f"[average] {len(args.checkpoints)} checkpoint(s) -> {written['funasr']} and {written['hf']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
