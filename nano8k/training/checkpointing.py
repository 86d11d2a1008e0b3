"""Checkpoint files: atomic writes, n-best weight averaging, and export of the best/averaged model after fit."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from nano8k.data.specaugment import SpecAugment
from nano8k.data.telephone import TelephoneChannel
from nano8k.model.checkpoint import atomic_torch_save, copy_release_extras, export_funasr, export_hf
from nano8k.training.freezing import FreezeConfig, LoraConfig

if TYPE_CHECKING:
    from nano8k.training.module import NanoASRModule

log = logging.getLogger(__name__)

# config dataclasses that land in checkpoints' (datamodule_)hyper_parameters; allowed for torch.load(weights_only=True)
torch.serialization.add_safe_globals([SpecAugment, TelephoneChannel, FreezeConfig, LoraConfig])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that never leaves a half-written checkpoint under the final name."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not support storage_options")
        atomic_torch_save(checkpoint, path)


def load_checkpoint_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load a Lightning checkpoint file on CPU with a clear error for directories (DeepSpeed) and bad files."""
    path = Path(path)
    if path.is_dir():  # DeepSpeed writes a folder per checkpoint: consolidate it into one fp32 file first
        from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

        single = path.with_name(path.name + ".fp32.ckpt")
        if not single.exists():
            try:
                convert_zero_checkpoint_to_fp32_state_dict(str(path), str(single))
            except Exception as err:
                raise ValueError(f"{path}: cannot consolidate the DeepSpeed checkpoint folder ({err})") from err
        path = single
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises several types for a damaged file
        raise ValueError(f"{path}: cannot be read as a checkpoint ({err})") from err
    if "state_dict" not in checkpoint:
        raise ValueError(f"{path}: no 'state_dict' entry; not a Lightning checkpoint")
    return checkpoint


def average_state_dicts(state_dicts: Sequence[dict[str, torch.Tensor]]) -> "OrderedDict[str, torch.Tensor]":
    """Element-wise mean of floating-point tensors (in fp32, cast back); other tensors come from the last one."""
    if not state_dicts:
        raise ValueError("nothing to average: no checkpoints given")
    keys = list(state_dicts[0])
    for index, state in enumerate(state_dicts[1:], start=1):
        if list(state) != keys:
            diff = sorted(set(keys) ^ set(state))[:5]
            raise ValueError(f"checkpoint #{index} has other parameters than #0 (e.g. {diff}); cannot average")
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


def module_from_checkpoint(checkpoint: dict[str, Any], model_dir: str | None = None) -> "NanoASRModule":
    """A fresh CPU ``NanoASRModule`` with the checkpoint's hyperparameters and weights (``model_dir`` overrides)."""
    from nano8k.training.module import NanoASRModule

    hparams = {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if not k.startswith("_")}
    if not hparams and model_dir is None:
        raise ValueError("checkpoint has no hyper_parameters; pass model_dir (the base Fun-ASR-Nano folder)")
    if model_dir is not None:
        hparams["model_dir"] = model_dir
    module = NanoASRModule(**hparams)
    module.load_state_dict(checkpoint["state_dict"])
    return module


def export_module(module: Any, out_dir: str | os.PathLike, frontend_rate: int | None = None) -> dict[str, Path]:
    """Merge LoRA and write ``<out>/funasr`` (release layout) and ``<out>/hf`` (save_pretrained layout).

    ``frontend_rate`` is the fbank rate training ended with; the exports record it (``frontend_conf.fs``).
    """
    from nano8k.training.module import resolve_model_dir

    if frontend_rate is not None:
        module.model.frontend = replace(module.model.frontend, sample_rate=int(frontend_rate))
    module.merge_lora()
    out = Path(out_dir)
    funasr_dir = export_funasr(module.model, out / "funasr")
    copy_release_extras(resolve_model_dir(module.hparams.model_dir), funasr_dir)
    hf_dir = export_hf(module.model, out / "hf")
    return {"funasr": funasr_dir, "hf": hf_dir}


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
        if not paths and callback.last_model_path and Path(callback.last_model_path).exists():
            paths = [callback.last_model_path]
        return paths

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.interrupted:
            return
        self.sources = self._sources(trainer)
        if trainer.is_global_zero:
            out = Path(self.out_dir or Path(trainer.default_root_dir) / "export")
            frontend = getattr(trainer.datamodule, "frontend", None)  # TelephoneDataModule: the rate training ended at
            rate = getattr(frontend, "sample_rate", None)
            if self.sources:
                checkpoint = (average_checkpoints(self.sources) if len(self.sources) > 1
                              else load_checkpoint_file(self.sources[0]))
                self.exported = export_module(module_from_checkpoint(checkpoint), out, rate)
                what = f"mean of {len(self.sources)} best" if len(self.sources) > 1 else self.sources[0]
            else:
                log.warning("ExportOnFitEnd: no checkpoint file; exporting the final in-memory weights")
                self.exported = export_module(pl_module, out, rate)
                what = "final weights"
            print(f"[export] {what} -> {self.exported['funasr']} and {self.exported['hf']}", flush=True)
        trainer.strategy.barrier("nano8k-export")
