"""``NanoASRModule``: the Lightning wrapper of ``NanoASR`` (freezing, LoRA, AdamW groups, schedules, NaN guard)."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch

from nano8k.assets import mini_model_dir, tiny_model_dir
from nano8k.model.batch import SpeechBatch
from nano8k.model.checkpoint import load_pretrained
from nano8k.model.nano import NanoASR, NanoOutput
from nano8k.model.prompt import IGNORE_INDEX
from nano8k.training.freezing import (
    GROUPS,
    FreezeConfig,
    LoraConfig,
    add_lora,
    apply_freezing,
    merge_lora,
    named_group_parameters,
    set_frozen_eval,
)
from nano8k.training.optim import SchedulerName, build_scheduler

log = logging.getLogger(__name__)

MODEL_DIR_ENV = "NANO8K_MODEL_DIR"
TINY_ALIAS = "tiny"  # model_dir value that selects the bundled random-init tiny model
MINI_ALIAS = "mini"  # model_dir value that selects the shipped self-pretrained mini wideband model
STATE_KEY = "nano8k_stage"


def resolve_model_dir(value: str | os.PathLike | None) -> Path:
    """``value``, else ``$NANO8K_MODEL_DIR``; ``tiny`` / ``mini`` are the bundled models. Clear error if unset."""
    value = value if value not in (None, "") else os.environ.get(MODEL_DIR_ENV)
    if not value:
        raise ValueError(
            f"model.model_dir is not set: pass --model.model_dir DIR or export {MODEL_DIR_ENV}=DIR (the "
            f"Fun-ASR-Nano-2512 folder with model.pt, config.yaml, Qwen3-0.6B/); '{MINI_ALIAS}' selects the bundled "
            f"mini wideband model, '{TINY_ALIAS}' a random-init tiny one"
        )
    if str(value) == TINY_ALIAS:
        return tiny_model_dir()
    if str(value) == MINI_ALIAS:
        return mini_model_dir()
    path = Path(value).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"model.model_dir={value!r} (or ${MODEL_DIR_ENV}): directory not found")
    return path


def token_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Teacher-forced next-token accuracy over labelled positions (the HF loss's shift)."""
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    correct = (logits[:, :-1].argmax(-1) == target) & mask
    return correct.sum().float() / mask.sum().clamp(min=1)


class NanoASRModule(L.LightningModule):
    """Fine-tunes Fun-ASR-Nano: per-module freezing, optional LoRA, AdamW groups per module, warm-up schedules.

    ``lr_multipliers`` / ``weight_decay_overrides`` are keyed by group (encoder, adaptor, llm, lora); biases and norm
    weights get no weight decay unless ``decay_norm_and_bias``. A non-finite loss skips the step (counted in
    ``nonfinite_steps``); ``max_consecutive_nonfinite`` in a row stop training with a RuntimeError.
    """

    def __init__(
        self,
        model_dir: str | None = None,
        freeze: FreezeConfig | None = None,
        lora: LoraConfig | None = None,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        lr_multipliers: dict[str, float] | None = None,
        weight_decay_overrides: dict[str, float] | None = None,
        decay_norm_and_bias: bool = False,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: SchedulerName = "warmuplr",
        warmup_steps: int = 2500,
        min_lr_ratio: float = 0.0,
        gradient_checkpointing: bool = False,
        max_consecutive_nonfinite: int = 10,
        llm_dtype: str | None = None,
        max_new_tokens: int = 128,
    ) -> None:
        super().__init__()
        freeze = FreezeConfig(**freeze) if isinstance(freeze, dict) else (freeze or FreezeConfig())
        lora = LoraConfig(**lora) if isinstance(lora, dict) else lora
        for name, table in (("lr_multipliers", lr_multipliers), ("weight_decay_overrides", weight_decay_overrides)):
            unknown = sorted(set(table or {}) - set(GROUPS))
            if unknown:
                raise ValueError(f"model.{name}: unknown group(s) {unknown}; use {list(GROUPS)}")
        if max_consecutive_nonfinite < 1:
            raise ValueError(f"model.max_consecutive_nonfinite must be >= 1, got {max_consecutive_nonfinite}")
        self.save_hyperparameters()
        # the model's own frontend stays deterministic (dither 0); training dither is the data module's `dither`
        # plain dicts in the checkpoint so it loads with torch.load(weights_only=True)
        self.hparams["freeze"] = asdict(freeze)
        self.hparams["lora"] = asdict(lora) if lora is not None else None
        self.model: NanoASR = load_pretrained(resolve_model_dir(model_dir), llm_dtype=llm_dtype, dither=0.0)
        # the peft tuner wraps self.model.llm in place; kept out of the module tree (no duplicate state-dict keys)
        object.__setattr__(self, "lora_tuner", add_lora(self.model, lora) if lora is not None else None)
        if gradient_checkpointing:
            self.model.network.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.freeze_cfg = freeze
        self.stage_lr = lr
        self.schedule_start = 0  # global step at which the current optimizer/schedule was built
        self.nonfinite_steps = 0
        self.consecutive_nonfinite = 0
        self.trainable = self._apply_stage(freeze, lr)
        self.train()

    # -- freezing and stages ----------------------------------------------------------------------------------
    def _apply_stage(self, freeze: FreezeConfig, lr: float) -> dict[str, int]:
        counts = apply_freezing(self.model, freeze)
        upcast: set[str] = set()
        for group, _, param in named_group_parameters(self.model):
            if param.requires_grad and param.dtype != torch.float32:  # fp32 master weights for trainable parts
                param.data = param.data.float()
                upcast.add(group)
        if upcast:
            log.warning("trainable %s weights were not fp32 (llm_dtype=%s): upcast to fp32 master weights",
                        sorted(upcast), self.hparams.llm_dtype)
        self.freeze_cfg, self.stage_lr, self.trainable = freeze, float(lr), counts
        return counts

    def set_stage(self, freeze: FreezeConfig, lr: float | None = None) -> dict[str, int]:
        """Re-freeze for a new stage; the next ``configure_optimizers()`` uses ``lr`` and restarts the schedule."""
        counts = self._apply_stage(freeze, self.stage_lr if lr is None else lr)
        self.schedule_start = int(self.global_step) if self._trainer is not None else 0
        if self._trainer is not None:
            self._log_trainable()
        return counts

    def train(self, mode: bool = True) -> "NanoASRModule":
        """Lightning toggles modes; parts with no trainable parameter always stay in eval mode (no dropout)."""
        super().train(mode)
        if mode:
            set_frozen_eval(self.model)
        return self

    def merge_lora(self) -> None:
        """Merge LoRA adapters into the LLM and drop them (the released key set); no-op without LoRA."""
        if self.lora_tuner is not None:
            merge_lora(self.model, self.lora_tuner)
            object.__setattr__(self, "lora_tuner", None)

    # -- optimizer ---------------------------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """AdamW groups per module group (and a no-decay group for biases/norms), trainable parameters only."""
        hp = self.hparams
        mults, wd_over = hp.lr_multipliers or {}, hp.weight_decay_overrides or {}
        buckets: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
        for group, _, param in named_group_parameters(self.model):
            if param.requires_grad:
                decay = hp.decay_norm_and_bias or param.ndim >= 2
                buckets.setdefault((group, decay), []).append(param)
        groups = []
        for group in GROUPS:
            for decay in (True, False):
                params = buckets.get((group, decay))
                if params:
                    wd = wd_over.get(group, hp.weight_decay) if decay else 0.0
                    groups.append({"params": params, "lr": self.stage_lr * mults.get(group, 1.0),
                                   "weight_decay": wd, "name": group if decay else f"{group}_no_decay"})
        return groups

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.param_groups(), lr=self.stage_lr, betas=tuple(hp.betas))
        total = None
        if hp.scheduler == "cosine":
            total = max(1, int(self.trainer.estimated_stepping_batches) - self.schedule_start)
        scheduler = build_scheduler(optimizer, hp.scheduler, hp.warmup_steps, total, hp.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # -- steps -------------------------------------------------------------------------------------------------
    def forward(self, batch: SpeechBatch) -> NanoOutput:
        return self.model(batch)

    def _nonfinite(self, loss: torch.Tensor) -> bool:
        finite = bool(torch.isfinite(loss.detach()).all())
        # every rank must take the same decision or DDP would hang in the gradient all-reduce
        return not self.trainer.strategy.reduce_boolean_decision(finite, all=True)

    def training_step(self, batch: SpeechBatch | None, batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every utterance of the batch was skipped by the data layer
            return None
        out = self.model(batch)
        if self._nonfinite(out.loss):
            self.nonfinite_steps += 1
            self.consecutive_nonfinite += 1
            log.warning("non-finite loss %s at step %d (batch %s): step skipped (%d so far)",
                        out.loss.item(), self.global_step, batch.keys[:4], self.nonfinite_steps)
            self.log("train/nonfinite_steps", float(self.nonfinite_steps), batch_size=len(batch))
            if self.consecutive_nonfinite >= self.hparams.max_consecutive_nonfinite:
                raise RuntimeError(
                    f"{self.consecutive_nonfinite} consecutive non-finite losses (limit model.max_consecutive_"
                    f"nonfinite={self.hparams.max_consecutive_nonfinite}) at step {self.global_step}; last batch "
                    f"keys {batch.keys}. Lower model.lr, check the data, or use precision 32."
                )
            return None
        self.consecutive_nonfinite = 0
        size = len(batch)
        self.log("train/loss", out.loss, prog_bar=True, batch_size=size)
        self.log("train/acc", token_accuracy(out.logits.detach(), batch.labels), batch_size=size)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], prog_bar=True, batch_size=size)
        self.log("train/nonfinite_steps", float(self.nonfinite_steps), batch_size=size)
        return out.loss

    def validation_step(self, batch: SpeechBatch | None, batch_idx: int) -> None:
        if batch is None:
            return
        out = self.model(batch)
        size = len(batch)
        self.log("val/loss", out.loss, prog_bar=True, batch_size=size, sync_dist=True)
        self.log("val/acc", token_accuracy(out.logits, batch.labels), batch_size=size, sync_dist=True)

    @torch.no_grad()
    def transcribe_batch(self, batch: SpeechBatch, max_new_tokens: int | None = None) -> list[str]:
        """Batched greedy transcription with the current weights."""
        return self.model.transcribe(batch, max_new_tokens or self.hparams.max_new_tokens)

    # -- logging and checkpoint state --------------------------------------------------------------------------
    def _log_trainable(self) -> None:
        counts = {f"params/trainable_{k}": float(v) for k, v in self.trainable.items()}
        if self.trainer.is_global_zero:
            print("[params] trainable " + "  ".join(f"{k} {v:,}" for k, v in self.trainable.items()), flush=True)
        for logger in self.loggers:
            logger.log_metrics(counts, step=int(self.global_step))

    def setup(self, stage: str) -> None:
        """The data module feeds this model as its recipe says, also when the caller never called ``use_model``."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "set_audio_tokens"):
            datamodule.set_audio_tokens(self.model.recipe.audio_tokens)

    def on_train_start(self) -> None:
        self._log_trainable()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[STATE_KEY] = {
            "freeze": asdict(self.freeze_cfg),
            "lr": self.stage_lr,
            "schedule_start": self.schedule_start,
            "nonfinite_steps": self.nonfinite_steps,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(STATE_KEY)
        if state is not None:  # runs before configure_optimizers on resume: optimizer groups match the checkpoint
            self._apply_stage(FreezeConfig(**state["freeze"]), state["lr"])
            self.schedule_start = int(state["schedule_start"])
            self.nonfinite_steps = int(state["nonfinite_steps"])
