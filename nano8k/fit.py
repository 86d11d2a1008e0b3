"""``python -m nano8k.fit --config configs/X.yaml [--model.lr 1e-4 ...] [--ckpt_path last]``: LightningCLI training."""

from __future__ import annotations

import netrc
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from nano8k.data.pipeline.datamodule import TelephoneDataModule
from nano8k.errors import TRACEBACK_ENV, ConfigError, UserError, report
from nano8k.model.checkpoint import CheckpointError
from nano8k.paths import project_file, shipped_config
from nano8k.training.checkpointing import (  # also registers config dataclasses as safe to unpickle
    LastCheckpoint,
    check_resume_checkpoint,
)
from nano8k.training.module import NanoASRModule
from nano8k.training.outputs import RunLock, output_folders, require_writable

PROG = "python -m nano8k.fit"  # the usage line's program name (also run as ``nano8k fit``)
DEMO_CONFIG = "demo.yaml"  # the default run: configs/demo.yaml as the package ships it (nano8k.paths)
PREEMPTED_EXIT = 143  # 128 + SIGTERM: what schedulers expect from a job stopped by SIGTERM
# LightningCLI's own optimizer options: nano8k leaves them out of its parser (NanoASRModule.configure_optimizers builds
# the AdamW groups and the schedule from model.*), and names the model.* keys to anyone who gives them
LIGHTNING_OPTIMIZER_OPTIONS = ("--optimizer", "--lr_scheduler")
OPTIMIZER_KEYS = ("model.lr", "model.weight_decay", "model.lr_multipliers", "model.weight_decay_overrides",
                  "model.decay_norm_and_bias", "model.betas", "model.optimizer_impl", "model.scheduler",
                  "model.warmup_steps", "model.min_lr_ratio")

warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")  # frozen parts
warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter is intended to run from within Python.*")


def refuse_optimizer_options(args: Sequence[str]) -> None:
    """Refuse LightningCLI's ``--optimizer`` / ``--lr_scheduler`` (and their ``.init_args``) with the keys that do
    configure nano8k's optimizer: they would replace its AdamW groups, weight decay rules and warm-up."""
    given = sorted({arg.split("=", 1)[0].split(".", 1)[0] for arg in args} & set(LIGHTNING_OPTIMIZER_OPTIONS))
    if given:
        raise ConfigError(f"{' and '.join(given)}: not an option of nano8k fit, which builds AdamW (one group per "
                          "module, no weight decay on biases and norms) and its learning-rate schedule itself; "
                          f"configure them with {', '.join(OPTIMIZER_KEYS)}")


class NanoCLI(LightningCLI):
    """LightningCLI without subcommands: parses one config, then runs ``trainer.fit``. Lightning's
    ``--optimizer`` / ``--lr_scheduler`` are not offered (``refuse_optimizer_options``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        refuse_optimizer_options([str(a) for a in (kwargs.get("args") or sys.argv[1:])])
        super().__init__(*args, auto_configure_optimizers=False, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="checkpoint to resume from; 'last' = newest last.ckpt in the ModelCheckpoint dirpath",
        )
        parser.add_argument("--preflight", type=bool, default=True, help="run nano8k.preflight checks before fit")
        parser.add_argument("--preflight_skip", type=list[str], default=[], help="preflight checks to skip")

    def before_instantiate_classes(self) -> None:
        """Preflight reads the config only, so it speaks before the model is built (a wrong model_dir, say); an
        output folder that cannot be written is refused then too, with or without preflight."""
        if self.config.get("preflight", True):
            from nano8k.preflight import enforce

            enforce(self.config, skip=self.config.get("preflight_skip") or [],
                    print_fn=print if rank_zero_only.rank == 0 else (lambda _: None))
        require_writable(output_folders(self.config.as_dict()))

    def instantiate_classes(self) -> None:
        """Build model, data and trainer; a constructor's refusal of a value becomes a ``ConfigError``."""
        try:
            super().instantiate_classes()
        except UserError:
            raise
        except (ValueError, FileNotFoundError) as err:  # our constructors validate their arguments this way
            raise ConfigError(str(err)) from err


class ConfigOnlyCLI(NanoCLI):
    """Parses a config exactly as ``nano8k.fit`` does (overrides included) and builds nothing."""

    def before_instantiate_classes(self) -> None:
        return

    def instantiate_classes(self) -> None:
        return


def parse_config(args: Sequence[str]) -> Any:
    """The jsonargparse Namespace ``nano8k.fit`` would train with for ``args`` (``--config X --data.y v ...``)."""
    return ConfigOnlyCLI(NanoASRModule, TelephoneDataModule, subclass_mode_model=False, run=False,
                         args=list(args)).config


def check_config_files(args: Sequence[str]) -> None:
    """Read each config file ``--config`` / ``-c`` names in ``args`` first: a file that is not valid YAML is a
    ``ConfigError`` naming it and the line (jsonargparse's own message says ``"<unicode string>"``)."""
    from nano8k.align import load_config

    named = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg in ("--config", "-c")]
    named += [arg.split("=", 1)[1] for arg in args if arg.startswith("--config=")]
    for path in named:
        if os.path.isfile(path):  # otherwise jsonargparse reads the value as inline YAML or names it missing
            try:
                load_config(path)
            except ValueError as err:
                raise ConfigError(str(err)) from err


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


def resume_file(trainer: Any, ckpt_path: str | None) -> str | None:
    """The file ``--ckpt_path`` resumes from as Lightning picks it: a path as given, ``last`` the newest ``last*.ckpt``
    of the checkpoint callbacks' folders; None for no resume, no last.ckpt yet, or the other keywords."""
    if ckpt_path in (None, "best", "hpc") or str(ckpt_path).startswith(("http://", "https://")):
        return None
    if ckpt_path != "last":
        return ckpt_path
    found = {path for callback in trainer.checkpoint_callbacks if isinstance(callback, ModelCheckpoint)
             for path in _last_checkpoints(callback, trainer)}
    return max(found, key=os.path.getmtime) if found else None


def _last_checkpoints(callback: ModelCheckpoint, trainer: Any) -> list[str]:
    """Lightning's own rule for 'last' (a private method of 2.6); where a release lacks it, ``last*.ckpt`` in the
    callback's folder, as that rule reads it."""
    find = getattr(callback, "_find_last_checkpoints", None)
    if find is not None:
        return list(find(trainer))
    folder = Path(callback.dirpath) if callback.dirpath else None
    return [str(path) for path in folder.glob("last*.ckpt")] if folder and folder.is_dir() else []


def _fit(cli: NanoCLI) -> None:
    """``trainer.fit`` holding the run's output folders (global rank 0 takes them; the other ranks write into rank
    0's), after the checkpoint to resume from is found readable."""
    folders = output_folders(cli.config.as_dict()) if rank_zero_only.rank == 0 else []
    with RunLock(folders) as lock:
        for folder in lock.empty:  # the lock file alone is no old checkpoint to warn about
            warnings.filterwarnings("ignore", message=f"Checkpoint directory {re.escape(str(folder))} exists and "
                                    "is not empty")
        _fit_unlocked(cli)


def _fit_unlocked(cli: NanoCLI) -> None:
    datamodule = cli.datamodule
    datamodule.connect(cli.model.model)  # the model's feeding (data.* overrides it), tokenizer, length limit
    ckpt_path = cli.config.get("ckpt_path")
    resume = resume_file(cli.trainer, ckpt_path)
    if ckpt_path == "last" and resume is None and cli.trainer.is_global_zero:
        print("[resume] --ckpt_path last: no last.ckpt in the checkpoint folders yet; training starts at step 0",
              file=sys.stderr, flush=True)
    if resume is not None and os.path.isdir(resume) and not (Path(resume) / "latest").is_file():
        inside = sorted(p.name for p in Path(resume).glob("*.ckpt"))  # a DeepSpeed checkpoint folder has 'latest'
        raise CheckpointError(f"--ckpt_path {ckpt_path}: {resume} is a folder, not a checkpoint; "
                              + (f"name one of its checkpoints: {', '.join(inside)}" if inside else "it holds none"))
    if resume is not None and not os.path.isdir(resume):
        check_resume_checkpoint(resume, ckpt_path)  # missing, empty, truncated, not a checkpoint: named, with siblings
    try:
        cli.trainer.fit(cli.model, datamodule=datamodule, ckpt_path=ckpt_path)
    except SIGTERMException:
        keepers = [cb for cb in cli.trainer.callbacks if isinstance(cb, LastCheckpoint)]
        if cli.trainer.is_global_zero and not any(cb.sigterm_step is not None for cb in keepers):
            why = ("before the first training step, or during validation under DDP" if keepers
                   else "the config has no LastCheckpoint callback")
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
        print(f"[fit] no --config given: the demo, configs/{DEMO_CONFIG} as nano8k ships it "
              f"({project_file('configs/' + DEMO_CONFIG)}); outputs go to ./runs/demo", file=sys.stderr, flush=True)
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
        )
        _fit(cli)
    except (UserError, MisconfigurationException) as err:  # ConfigError, DataError, ...; Lightning's refusals of
        if os.environ.get(TRACEBACK_ENV) == "1":          # trainer.* values (an accelerator this machine lacks)
            raise
        raise SystemExit(report(err)) from None
    return cli


def main(args: Sequence[str] | None = None) -> int:
    """``python -m nano8k.fit``: :func:`run`, then exit status 0 (its SystemExit 1, 2 and 143 pass through)."""
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
