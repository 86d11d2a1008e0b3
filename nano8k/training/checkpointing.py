"""Checkpoint files: atomic writes, n-best weight averaging, and export of the best/averaged model after fit."""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from nano8k.atomic import atomic_torch_save
from nano8k.data.channel.telephone import TelephoneChannel
from nano8k.data.pipeline.specaugment import SpecAugment
from nano8k.data.pipeline.speed import SpeedPerturb
from nano8k.errors import CheckpointError, ConfigError, UserError, one_line
from nano8k.model.checkpoint import (
    copy_release_extras,
    describe_checkpoint_file,
    export_funasr,
    export_hf,
    load_torch_file,
)
from nano8k.training.freezing import FreezeConfig, LoraConfig

if TYPE_CHECKING:
    from nano8k.training.module import NanoASRModule

log = logging.getLogger(__name__)

# config dataclasses that land in checkpoints' (datamodule_)hyper_parameters; allowed for torch.load(weights_only=True)
torch.serialization.add_safe_globals([SpecAugment, SpeedPerturb, TelephoneChannel, FreezeConfig, LoraConfig])
# the names checkpoints written before the data layer's sub-packages (nano8k 0.1, issue 26) give the same classes
LEGACY_NAMES = {
    "nano8k.data.specaugment.SpecAugment": SpecAugment,
    "nano8k.data.speed.SpeedPerturb": SpeedPerturb,
    "nano8k.data.telephone.TelephoneChannel": TelephoneChannel,
}
torch.serialization.add_safe_globals([(cls, name) for name, cls in LEGACY_NAMES.items()])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that never leaves a half-written checkpoint under the final name."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not support storage_options")
        atomic_torch_save(checkpoint, path)


class LastCheckpoint(ModelCheckpoint):
    """Keeps ``<dirpath>/last.ckpt`` fresh: at most ``every_n_steps`` optimizer steps and ``every_n_minutes`` old,
    rewritten after every validation and when training ends, and written on SIGTERM before the run stops.

    ``ModelCheckpoint(save_last=True)`` rewrites ``last.ckpt`` only when it also writes a top-k file, so once the
    monitored metric stops improving ``--ckpt_path last`` would go back to the last improvement. This callback owns
    ``last.ckpt``: keep ``save_last: false`` on the top-k ``ModelCheckpoint`` (``setup`` refuses two writers).
    SIGTERM (SLURM, Kubernetes, spot instances warn with it before killing): Lightning notes it; the checkpoint is
    written at the end of the step that is running, Lightning then stops the fit and ``nano8k.fit`` exits 143.
    Under DDP one all-reduce per step shares the clock and SIGTERM decisions (a signal on any rank counts), so
    every rank saves, and stops, at the same step.
    """

    def __init__(
        self, dirpath: str | os.PathLike, every_n_steps: int | None = 500, every_n_minutes: float | None = 30.0
    ) -> None:
        if every_n_steps is None and every_n_minutes is None:
            raise ConfigError("LastCheckpoint: give every_n_steps, every_n_minutes or both")
        if every_n_steps is not None and every_n_steps < 1:
            raise ConfigError(f"LastCheckpoint.every_n_steps must be >= 1 or null, got {every_n_steps}")
        if every_n_minutes is not None and not every_n_minutes > 0:
            raise ConfigError(f"LastCheckpoint.every_n_minutes must be > 0 or null, got {every_n_minutes}")
        super().__init__(dirpath=dirpath, save_top_k=0, save_last=True, enable_version_counter=False)
        self.every_n_steps, self.every_n_minutes = every_n_steps, every_n_minutes
        self.sigterm_step: int | None = None  # the step at which SIGTERM's checkpoint was written
        self._written: tuple[int, str] = (-1, "")  # (step, phase) last.ckpt holds
        self._saved_step = 0
        self._saved_time = time.monotonic()

    @property
    def state_key(self) -> str:
        return self._generate_state_key()  # one per run; moving the run folder keeps the key

    @property
    def last_path(self) -> Path:
        return Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        ranked = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.save_top_k != 0]
        if ranked and trainer.checkpoint_callback is self:
            raise ConfigError(
                "LastCheckpoint is listed before the top-k ModelCheckpoint in trainer.callbacks: put it "
                "after, so 'best' and ExportOnFitEnd use the ranked checkpoints"
            )
        for other in trainer.checkpoint_callbacks:
            if (
                other is not self
                and isinstance(other, ModelCheckpoint)
                and other.save_last
                and other.dirpath
                and Path(other.dirpath).resolve() == Path(self.dirpath).resolve()
            ):
                raise ConfigError(
                    f"{type(other).__name__}(save_last=True) and LastCheckpoint both write last.ckpt in {self.dirpath}:"
                    f" set save_last: false on the {type(other).__name__} (LastCheckpoint keeps last.ckpt fresh)"
                )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._saved_step, self._saved_time = int(trainer.global_step), time.monotonic()

    def write_last(self, trainer: L.Trainer, why: str, phase: str = "train") -> None:
        """Write ``last.ckpt`` now unless it already holds this step and ``phase`` (``train``: the end of a training
        batch; ``val``: after validation). The decision uses only the step and phase, the same on every rank, because
        the save ends in a barrier that every rank must reach."""
        where = (int(trainer.global_step), phase)
        if self._written != where:
            self.last_model_path = str(self.last_path)
            self._save_checkpoint(trainer, str(self.last_path))
            self._written = where
            log.info("LastCheckpoint: %s at step %d (%s)", self.last_path, trainer.global_step, why)
        self._saved_step, self._saved_time = int(trainer.global_step), time.monotonic()

    def _any_rank(self, trainer: L.Trainer, pl_module: L.LightningModule, *flags: bool) -> list[bool]:
        """Each flag true on any rank (one all-reduce under DDP), so every rank takes the same decision."""
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            tensor = torch.tensor([int(f) for f in flags], device=pl_module.device)
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
            return [bool(v) for v in tensor.tolist()]
        return list(flags)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        step = int(trainer.global_step)
        accumulating = getattr(trainer.fit_loop.epoch_loop, "_should_accumulate", lambda: False)()
        due = self.every_n_steps is not None and step - self._saved_step >= self.every_n_steps and not accumulating
        late = (
            self.every_n_minutes is not None
            and not accumulating
            and time.monotonic() - self._saved_time >= 60 * self.every_n_minutes
        )
        sigterm, late = self._any_rank(trainer, pl_module, bool(trainer.received_sigterm), late)
        if sigterm:
            # every rank stops after this step (Lightning checks its own rank's flag), whichever rank was signalled
            trainer._signal_connector.received_sigterm = True
            self.write_last(trainer, "SIGTERM")
            self.sigterm_step = step
            if trainer.is_global_zero:
                print(
                    f"[preempt] SIGTERM: wrote {self.last_path} at step {step}"
                    + (
                        " (inside a gradient-accumulation window: its partial gradient is not kept)"
                        if accumulating
                        else ""
                    )
                    + "; resume with --ckpt_path last",
                    flush=True,
                )
        elif due or late:
            self.write_last(trainer, "every_n_steps" if due else "every_n_minutes")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and not trainer.fast_dev_run and trainer.state.fn == "fit":
            self.write_last(trainer, "after validation", phase="val")  # a resume then does not redo this validation

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        return  # saves by step, time, validation, the end of training and SIGTERM only

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.fast_dev_run and self._written[0] != trainer.global_step:
            self.write_last(trainer, "end of training")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """SIGTERM outside a training step (during validation, say), single process: write ``last.ckpt`` before the
        run stops. Under DDP the ranks may be in different places then, so nothing is written (a save would wait in
        a barrier); ``last.ckpt`` is at most ``every_n_steps`` / ``every_n_minutes`` old anyway."""
        if (
            isinstance(exception, SIGTERMException)
            and self.sigterm_step is None
            and trainer.world_size == 1
            and not trainer.fast_dev_run
            and not trainer.sanity_checking
            and trainer.global_step > 0
        ):
            self.write_last(trainer, "SIGTERM", phase="exception")
            self.sigterm_step = int(trainer.global_step)
            print(
                f"[preempt] SIGTERM: wrote {self.last_path} at step {trainer.global_step}; resume with "
                "--ckpt_path last",
                flush=True,
            )


def check_resume_checkpoint(path: str | os.PathLike, given: str) -> None:
    """Refuse to resume from ``path`` (``--ckpt_path given``) when it is no Lightning checkpoint that loads
    (:func:`~nano8k.model.checkpoint.describe_checkpoint_file`): ``CheckpointError`` naming the file, why, and the
    intact checkpoints beside it to resume from instead."""
    path = Path(path)
    why = describe_checkpoint_file(path, lightning=True)
    if why is None:
        return
    siblings = sorted(
        (p for p in path.parent.glob("*.ckpt") if p.resolve() != path.resolve() and p.is_file()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    intact = [p for p in siblings if describe_checkpoint_file(p, lightning=True) is None]
    instead = (
        f"intact checkpoints beside it, newest first: {', '.join(p.name for p in intact)}; resume with "
        f"--ckpt_path {intact[0]}"
        if intact
        else "no other checkpoint beside it; fit without --ckpt_path to start over"
    )
    raise CheckpointError(f"--ckpt_path {given}: {path}: {why}; {instead}")


def load_checkpoint_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load a Lightning checkpoint file on CPU (a DeepSpeed checkpoint folder is consolidated into one file first).

    Raises ``CheckpointError`` ``<path>: <why>``, the reason :func:`~nano8k.model.checkpoint.describe_checkpoint_file`
    gives (the one ``fit --ckpt_path`` gives too)."""
    path = Path(path)
    if path.is_dir():  # DeepSpeed writes a folder per checkpoint: consolidate it into one fp32 file first
        from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

        single = path.with_name(path.name + ".fp32.ckpt")
        if not single.exists():
            try:
                convert_zero_checkpoint_to_fp32_state_dict(str(path), str(single))
            except Exception as err:  # DeepSpeed raises several types for an incomplete folder
                raise CheckpointError(
                    f"{path}: cannot consolidate the DeepSpeed checkpoint folder ({one_line(err)})"
                ) from err
        path = single
    return load_torch_file(path, lightning=True)


def average_state_dicts(state_dicts: Sequence[dict[str, torch.Tensor]]) -> OrderedDict[str, torch.Tensor]:
    """Element-wise mean of floating-point tensors (in fp32, cast back); other tensors come from the last one."""
    if not state_dicts:
        raise CheckpointError("nothing to average: no checkpoints given")
    keys = list(state_dicts[0])
    for index, state in enumerate(state_dicts[1:], start=1):
        if list(state) != keys:
            diff = sorted(set(keys) ^ set(state))[:5]
            raise CheckpointError(f"checkpoint #{index} has other parameters than #0 (e.g. {diff}); cannot average")
        shapes = [key for key in keys if state[key].shape != state_dicts[0][key].shape]
        if shapes:
            raise CheckpointError(
                f"checkpoint #{index} has other shapes than #0 for {shapes[:5]} (another model "
                "configuration); cannot average"
            )
    out = OrderedDict()
    for key in keys:
        tensors = [state[key] for state in state_dicts]
        if tensors[0].is_floating_point():
            out[key] = (sum(t.float() for t in tensors) / len(tensors)).to(tensors[0].dtype)
        else:
            out[key] = tensors[-1].clone()
    return out


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """Average the model weights of Lightning checkpoints; returns the last checkpoint's dict with the mean weights."""
    checkpoints = [load_checkpoint_file(p) for p in paths]
    merged = dict(checkpoints[-1])
    merged["state_dict"] = average_state_dicts([c["state_dict"] for c in checkpoints])
    merged["averaged_from"] = [str(p) for p in paths]
    for key in ("optimizer_states", "lr_schedulers"):
        merged.pop(key, None)
    return merged


def module_from_checkpoint(checkpoint: dict[str, Any], model_dir: str | None = None) -> NanoASRModule:
    """A fresh CPU ``NanoASRModule`` with the checkpoint's hyperparameters, weights and feeding (``model_dir``
    overrides the folder)."""
    from nano8k.model.feeding import Feeding
    from nano8k.training.module import NanoASRModule

    hparams = {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if not k.startswith("_")}
    if not hparams and model_dir is None:
        raise CheckpointError("checkpoint has no hyper_parameters; pass model_dir (the base Fun-ASR-Nano folder)")
    if model_dir is not None:
        hparams["model_dir"] = model_dir
    module = NanoASRModule(**hparams)
    module.load_state_dict(checkpoint["state_dict"])
    feeding = Feeding.from_checkpoint(checkpoint)
    if feeding is not None:  # how training fed the model: its exports must record that, not the base model's
        module.model.feeding = feeding
    return module


def export_module(module: Any, out_dir: str | os.PathLike, feeding: Any = None) -> dict[str, Path]:
    """Merge LoRA and write ``<out>/funasr`` (release layout) and ``<out>/hf`` (save_pretrained layout), each
    recording the model's feeding (``module_from_checkpoint`` restores how training fed it); ``feeding`` (e.g.
    ``NanoASRModule.training_feeding()`` for in-memory weights) replaces the model's first."""
    from nano8k.model.locate import resolve_model_dir

    if feeding is not None:
        module.model.feeding = feeding
    module.merge_lora()
    out = Path(out_dir)
    funasr_dir = export_funasr(module.model, out / "funasr")
    copy_release_extras(resolve_model_dir(module.hparams.model_dir), funasr_dir)
    hf_dir = export_hf(module.model, out / "hf")
    return {"funasr": funasr_dir, "hf": hf_dir}


def average_and_export(
    checkpoints: Sequence[str], out: Path, model_dir: str | None = None, write_ckpt: bool = True
) -> dict[str, Path]:
    """Average ``checkpoints``, write ``<out>/averaged.ckpt`` (if ``write_ckpt``) and both export layouts.

    A checkpoint that is missing, unreadable, not a Lightning checkpoint of nano8k, or whose weights do not fit its
    model raises ``CheckpointError`` naming it and why.
    """
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


class ExportOnFitEnd(Callback):
    """After fit: the best checkpoint by the ModelCheckpoint monitor (or the mean of the ``average_top_k`` best),
    LoRA merged, written to ``<out_dir>/funasr`` and ``<out_dir>/hf`` (default ``<default_root_dir>/export``).

    The weights are loaded into a fresh CPU module on global rank 0, so the trained module is left as it is and any
    strategy whose checkpoints are single files (or DeepSpeed folders, consolidated) works.
    """

    def __init__(self, out_dir: str | None = None, average_top_k: int = 1) -> None:
        if average_top_k < 1:
            raise ValueError(f"average_top_k must be >= 1, got {average_top_k}")
        self.out_dir, self.average_top_k = out_dir, average_top_k
        self.exported: dict[str, Path] = {}
        self.sources: list[str] = []

    def _sources(self, trainer: L.Trainer) -> list[str]:
        callback = trainer.checkpoint_callback
        if not isinstance(callback, ModelCheckpoint):
            return []
        ranked = sorted(callback.best_k_models.items(), key=lambda kv: float(kv[1]), reverse=callback.mode == "max")
        paths = [p for p, _ in ranked if Path(p).exists()][: self.average_top_k]
        if not paths:  # no ranked file: the newest last.ckpt (LastCheckpoint's, or a save_last ModelCheckpoint's)
            lasts = [
                cb.last_model_path
                for cb in trainer.checkpoint_callbacks
                if isinstance(cb, ModelCheckpoint) and cb.last_model_path and Path(cb.last_model_path).exists()
            ]
            paths = sorted(lasts, key=lambda p: Path(p).stat().st_mtime)[-1:]
        return paths

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.interrupted:
            return
        self.sources = self._sources(trainer)
        if trainer.is_global_zero:
            out = Path(self.out_dir or Path(trainer.default_root_dir) / "export")
            if self.sources:
                checkpoint = (
                    average_checkpoints(self.sources)
                    if len(self.sources) > 1
                    else load_checkpoint_file(self.sources[0])
                )
                self.exported = export_module(module_from_checkpoint(checkpoint), out)
                what = f"mean of {len(self.sources)} best" if len(self.sources) > 1 else self.sources[0]
            else:
                log.warning("ExportOnFitEnd: no checkpoint file; exporting the final in-memory weights")
                self.exported = export_module(pl_module, out, pl_module.training_feeding())
                what = "final weights"
            print(f"[export] {what} -> {self.exported['funasr']} and {self.exported['hf']}", flush=True)
        trainer.strategy.barrier("nano8k-export")
