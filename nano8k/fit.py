"""``python -m nano8k.fit --config configs/X.yaml [--model.lr 1e-4 ...] [--ckpt_path last]``: LightningCLI training."""

from __future__ import annotations

import netrc
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

import nano8k.training.checkpointing  # noqa: F401  (registers config dataclasses as safe to unpickle on resume)
from nano8k.data.datamodule import TelephoneDataModule
from nano8k.training.module import NanoASRModule

DEMO_CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "demo.yaml")

warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")  # frozen parts


class NanoCLI(LightningCLI):
    """LightningCLI without subcommands: parses one config, then runs ``trainer.fit``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="checkpoint to resume from; 'last' = newest last.ckpt in the ModelCheckpoint dirpath",
        )
        parser.add_argument("--preflight", type=bool, default=True, help="run nano8k.preflight checks before fit")
        parser.add_argument("--preflight_skip", type=list[str], default=[], help="preflight checks to skip")


def wandb_api_key_known() -> bool:
    """True when W&B can authenticate: WANDB_API_KEY, or a key saved by ``wandb login`` in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def default_wandb_offline() -> None:
    """W&B runs offline (``wandb sync`` later) unless a key is known or WANDB_MODE is set explicitly."""
    if not os.environ.get("WANDB_MODE") and not wandb_api_key_known():
        os.environ["WANDB_MODE"] = "offline"
        print("[wandb] no API key found: logging offline (sync later with `wandb sync <run dir>`)")


def main(args: Sequence[str] | None = None) -> NanoCLI:
    """Parse ``args`` (default: sys.argv; ``--config configs/demo.yaml`` when none is given) and fit."""
    default_wandb_offline()
    given = list(sys.argv[1:] if args is None else args)
    if not any(a == "--config" or a.startswith("--config=") or a in ("-h", "--help") for a in given):
        args = ["--config", DEMO_CONFIG, *given]
    cli = NanoCLI(
        NanoASRModule,
        TelephoneDataModule,
        subclass_mode_model=False,
        run=False,
        args=args,
        save_config_kwargs={"overwrite": True},
    )
    datamodule = cli.datamodule
    datamodule.use_model(cli.model.model)  # the model's tokenizer and audio token rule (its recipe record)
    if cli.config.get("preflight", True):
        from nano8k.preflight import enforce

        enforce(cli.config, skip=cli.config.get("preflight_skip") or [],
                print_fn=print if cli.trainer.is_global_zero else (lambda _: None))
    try:
        cli.trainer.fit(cli.model, datamodule=datamodule, ckpt_path=cli.config.get("ckpt_path"))
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # a live gloo group aborts the interpreter at exit
    return cli


if __name__ == "__main__":
    main()
