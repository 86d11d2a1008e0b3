"""``python -m nano8k.fit --config configs/X.yaml [--model.lr 1e-4 ...] [--ckpt_path last]``: LightningCLI training."""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from nano8k.checks import enforce
from nano8k.data.pipeline.datamodule import TelephoneDataModule
from nano8k.errors import TRACEBACK_ENV, CheckpointError, UserError, report
from nano8k.paths import project_file, shipped_config
from nano8k.training.checkpointing import (  # also registers config dataclasses as safe to unpickle
    LastCheckpoint,
    check_resume_checkpoint,
)
from nano8k.training.config import NanoCLI, check_config_files
from nano8k.training.module import NanoASRModule
from nano8k.training.outputs import RunLock, default_wandb_offline, output_folders, resume_file

PROG = "python -m nano8k.fit"  # the usage line's program name (also run as ``nano8k fit``)
DEMO_CONFIG = "demo.yaml"  # the default run: configs/demo.yaml as the package ships it (nano8k.paths)
PREEMPTED_EXIT = 143  # 128 + SIGTERM: what schedulers expect from a job stopped by SIGTERM
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")  # frozen parts
warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter is intended to run from within Python.*")


def preflight(config: Any) -> None:
    """The checks on the parsed config before anything is built (``--preflight false`` skips them); a failure
    raises ``PreflightError`` (exit 1). Only global rank 0 prints the report."""
    enforce(
        config,
        skip=config.get("preflight_skip") or [],
        print_fn=print if rank_zero_only.rank == 0 else (lambda _: None),
    )


def _fit(cli: NanoCLI) -> None:
    """``trainer.fit`` holding the run's output folders (global rank 0 takes them; the other ranks write into rank
    0's), after the checkpoint to resume from is found readable."""
    folders = output_folders(cli.config.as_dict()) if rank_zero_only.rank == 0 else []
    with RunLock(folders) as lock:
        for folder in lock.empty:  # the lock file alone is no old checkpoint to warn about
            warnings.filterwarnings(
                "ignore", message=f"Checkpoint directory {re.escape(str(folder))} exists and is not empty"
            )
        _fit_unlocked(cli)


def _fit_unlocked(cli: NanoCLI) -> None:
    datamodule = cli.datamodule
    datamodule.connect(cli.model.model)  # the model's feeding (data.* overrides it), tokenizer, length limit
    ckpt_path = cli.config.get("ckpt_path")
    resume = resume_file(cli.trainer, ckpt_path)
    if ckpt_path == "last" and resume is None and cli.trainer.is_global_zero:
        print(
            "[resume] --ckpt_path last: no last.ckpt in the checkpoint folders yet; training starts at step 0",
            file=sys.stderr,
            flush=True,
        )
    if resume is not None and os.path.isdir(resume) and not (Path(resume) / "latest").is_file():
        inside = sorted(p.name for p in Path(resume).glob("*.ckpt"))  # a DeepSpeed checkpoint folder has 'latest'
        raise CheckpointError(
            f"--ckpt_path {ckpt_path}: {resume} is a folder, not a checkpoint; "
            + (f"name one of its checkpoints: {', '.join(inside)}" if inside else "it holds none")
        )
    if resume is not None and not os.path.isdir(resume):
        check_resume_checkpoint(resume, ckpt_path)  # missing, empty, truncated, not a checkpoint: named, with siblings
    try:
        cli.trainer.fit(cli.model, datamodule=datamodule, ckpt_path=ckpt_path)
    except SIGTERMException:
        keepers = [cb for cb in cli.trainer.callbacks if isinstance(cb, LastCheckpoint)]
        if cli.trainer.is_global_zero and not any(cb.sigterm_step is not None for cb in keepers):
            why = (
                "before the first training step, or during validation under DDP"
                if keepers
                else "the config has no LastCheckpoint callback"
            )
            print(f"[preempt] SIGTERM: no checkpoint written ({why})", file=sys.stderr)
        raise SystemExit(PREEMPTED_EXIT) from None
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # a live gloo group aborts the interpreter at exit


def run(args: Sequence[str] | None = None) -> NanoCLI:
    """Parse ``args`` (default: sys.argv; the shipped demo config when no ``--config`` is given), fit, return the CLI.

    Exits 1 when preflight fails, 2 (``error: ...``, no traceback unless ``NANO8K_TRACEBACK=1``) for a config, data,
    checkpoint or output error (an output folder another fit holds, say), 143 after SIGTERM (``last.ckpt`` written
    by ``LastCheckpoint``).
    """
    default_wandb_offline()
    given = list(sys.argv[1:] if args is None else args)
    if not any(a == "--config" or a.startswith("--config=") or a in ("-h", "--help") for a in given):
        print(
            f"[fit] no --config given: the demo, configs/{DEMO_CONFIG} as nano8k ships it "
            f"({project_file('configs/' + DEMO_CONFIG)}); outputs go to ./runs/demo",
            file=sys.stderr,
            flush=True,
        )
        args = ["--config", shipped_config(DEMO_CONFIG), *given]
    try:
        check_config_files(list(sys.argv[1:] if args is None else args))
        cli = NanoCLI(
            NanoASRModule,
            TelephoneDataModule,
            subclass_mode_model=False,
            run=False,
            args=args,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": PROG},
            preflight=preflight,
        )
        _fit(cli)
    except (UserError, MisconfigurationException) as err:  # ConfigError, DataError, ...; Lightning's refusals of
        if os.environ.get(TRACEBACK_ENV) == "1":  # trainer.* values (an accelerator this machine lacks)
            raise
        raise SystemExit(report(err)) from None
    return cli


def main(args: Sequence[str] | None = None) -> int:
    """``python -m nano8k.fit``: :func:`run`, then exit status 0 (its SystemExit 1, 2 and 143 pass through)."""
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
