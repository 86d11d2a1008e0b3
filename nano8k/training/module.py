"""``NanoASRModule``: the Lightning wrapper of ``NanoASR`` (freezing, LoRA, AdamW groups, schedules, NaN guard)."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from typing import Any, Mapping, Sequence

import lightning as L
import torch

from nano8k.data.badsamples import BadSample, bad_sample_report, distinct
from nano8k.errors import RESUME_ADVICE, ConfigError, resume_changes, resume_refused
from nano8k.model.batch import SpeechBatch
from nano8k.model.checkpoint import load_pretrained
from nano8k.model.locate import resolve_model_dir
from nano8k.model.nano import NanoASR, NanoOutput
from nano8k.model.feeding import CHECKPOINT_KEY, Feeding
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
from nano8k.training.optim import OptimizerImpl, SchedulerName, adamw_impl, build_adamw, build_scheduler
from nano8k.training.rng import rng_states, set_rng_states

log = logging.getLogger(__name__)

STATE_KEY = "nano8k_stage"
RNG_KEY = "nano8k_rng"  # every rank's global random states (nano8k.training.rng), in rank order
FEEDING_FIELDS_ON_RESUME = ("audio_tokens", "weights")  # a resume's model folder must record them as the checkpoint

# hyperparameters a resume may change; every other difference from the checkpoint is refused (ResumeConfigError)
APPLIED_ON_RESUME = {
    "lr": "the schedule continues from the checkpoint's step with the new peak value",
    "max_new_tokens": "decoding length only",
    "max_consecutive_nonfinite": "a guard, not part of the optimizer state",
    "gradient_checkpointing": "memory only; the same gradients",
    "optimizer_impl": "the AdamW kernel only; the same update (the restored state is moved to it)",
    "model_dir": "the weights come from the checkpoint; the folder gives config and tokenizer (its audio token rule "
                 "and weight lineage must be the checkpoint's)",
}

class NanoASRModule(L.LightningModule):
    """Fine-tunes Fun-ASR-Nano: per-module freezing, optional LoRA, AdamW groups per module, warm-up schedules.

    ``lr_multipliers`` / ``weight_decay_overrides`` are keyed by group (encoder, adaptor, llm, lora); biases and norm
    weights get no weight decay unless ``decay_norm_and_bias``. ``optimizer_impl`` picks torch's AdamW kernel
    (``auto``: fused where the device has it, foreach under a 16-mixed GradScaler; the same update in each).

    The training step asks the device nothing: the decisions are tensors on the device and the host reads them once
    per logging interval (``trainer.log_every_n_steps``), at the end of an epoch and when a checkpoint is written.
    A micro-batch that is non-finite on any rank, or a batch of bad samples only on any rank, adds nothing on every
    rank (one all-reduce of two flags, on the device); an optimizer step whose accumulation window had a non-finite
    micro-batch, or none that trained, leaves weights and optimizer state alone (the fused kernel's ``found_inf``;
    with the foreach/for-loop kernels this costs one host sync per step). Non-finite micro-batches are counted
    (``nonfinite_steps``, logged ``train/nonfinite_steps``); ``max_consecutive_nonfinite`` in a row stop training
    with a RuntimeError at the next host read. Bad samples of every rank are gathered at those reads, kept in
    checkpoints, logged (``train/bad_samples``, ``data/bad_samples_<split>``) and listed at the end of fit.

    Resuming (``ckpt_path``) with hyperparameters that differ from the checkpoint's raises ``ResumeConfigError``
    listing each key, except those in ``APPLIED_ON_RESUME`` (a new ``lr`` rescales the restored schedule: it
    continues from the checkpoint's step with the new peak value); so does a model folder whose audio token rule or
    weight lineage is not the checkpoint's record. Checkpoints keep every rank's global random states (torch CPU and
    CUDA, numpy, python), restored at train start, so a resume draws the dropout masks the interrupted run would have.
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
        optimizer_impl: OptimizerImpl = "auto",
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
        positive = {"max_consecutive_nonfinite": max_consecutive_nonfinite, "max_new_tokens": max_new_tokens}
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"model.{name} must be >= 1, got {value}")
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
        self.bad_samples: dict[str, dict[tuple, BadSample]] = {"train": {}, "val": {}}  # all ranks, kept on resume
        self._new_val_bad: list[BadSample] = []
        self._pending_bad: list[BadSample] = []  # this rank's training bad samples since the last host read
        # on the device, read by the host only in _read_guard(): [non-finite micro-batches, consecutive ones,
        # micro-batches skipped because some rank had bad samples only, the longest run since the last read]
        self._guard = torch.zeros(4)
        self._empty_skips = 0  # the last value the host read of _guard[2]
        self._window = torch.zeros(2)  # this accumulation window: [a non-finite micro-batch, micro-batches trained]
        self._val_sums = torch.zeros(3, dtype=torch.float64)  # reset on each validation's device
        self._resume_lr: tuple[float, float] | None = None  # (checkpoint lr, new lr) when a resume changed model.lr
        self._resume_rng: dict[str, Any] | None = None  # this rank's random states from a checkpoint, for train start
        self.trainable = self._apply_stage(freeze, lr)
        self.train()

    # -- freezing and stages ----------------------------------------------------------------------------------
    def _apply_stage(self, freeze: FreezeConfig, lr: float) -> dict[str, int]:
        counts = apply_freezing(self.model, freeze)
        self.model.forget_prefix_states()
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
            self.model.forget_prefix_states()
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
        optimizer = build_adamw(self.param_groups(), self.stage_lr, tuple(hp.betas), self._optimizer_impl())
        if adamw_impl(optimizer) != "fused" and "deepspeed" in type(self.trainer.strategy).__name__.lower():
            raise ConfigError("under DeepSpeed a skipped step needs the fused AdamW (DeepSpeed keeps its own "
                              "gradients): set model.optimizer_impl auto or fused")
        total = None
        if hp.scheduler == "cosine":
            total = max(1, int(self.trainer.estimated_stepping_batches) - self.schedule_start)
        scheduler = build_scheduler(optimizer, hp.scheduler, hp.warmup_steps, total, hp.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def _optimizer_impl(self) -> str:
        """``model.optimizer_impl`` resolved for this trainer: auto is foreach under a GradScaler (it unscales before
        clipping only for non-fused optimizers), else fused (foreach where the device has no fused kernel)."""
        impl = self.hparams.optimizer_impl
        if self._scaler() is not None and impl == "auto":
            return "foreach"
        if self._scaler() is not None and impl == "fused" and self.trainer.gradient_clip_val:
            raise ConfigError("model.optimizer_impl fused with trainer.precision 16-mixed cannot clip gradients "
                              "(they are still scaled when clipped): use optimizer_impl auto or foreach, or bf16-mixed")
        return impl

    def _use_optimizer_impl(self) -> None:
        """A resumed optimizer steps with the state dict's kernel flags: set the configured ones again, with the
        step counters where that kernel keeps them (fused: on the parameter's device, float32)."""
        for optimizer in self.trainer.optimizers:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            wanted = adamw_impl(build_adamw([{"params": params}], 1.0, (0.9, 0.999), self._optimizer_impl()))
            if adamw_impl(optimizer) == wanted:
                continue
            for group in optimizer.param_groups:
                group["fused"], group["foreach"] = (True, None) if wanted == "fused" else (None, wanted == "foreach")
                for param in group["params"]:
                    state = optimizer.state.get(param, {})
                    if "step" in state:
                        state["step"] = (state["step"].to(param.device, torch.float32) if wanted == "fused"
                                         else state["step"].to("cpu", torch.float32))

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Lightning refuses to clip for a fused optimizer under mixed precision, though without a GradScaler the
        gradients are not scaled: there (single device, DDP) they are clipped here, with no host sync."""
        from lightning.pytorch.plugins.precision import MixedPrecision

        plain = type(self.trainer.precision_plugin) is MixedPrecision and self._scaler() is None
        if not gradient_clip_val or adamw_impl(optimizer) != "fused" or not plain:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val, foreach=True)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val, foreach=True)

    def _scaler(self) -> Any:
        return getattr(self.trainer.precision_plugin, "scaler", None)

    # -- steps -------------------------------------------------------------------------------------------------
    def forward(self, batch: SpeechBatch) -> NanoOutput:
        return self.model(batch)

    @staticmethod
    def _gather_objects(items: list[Any]) -> list[Any]:
        """Every rank's ``items``, concatenated in rank order (a collective under DDP)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return list(items)
        gathered: list[list[Any] | None] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, list(items))
        return [item for part in gathered for item in (part or [])]

    def _check_bad_fraction(self, split: str) -> None:
        """The data module's max_bad_fraction over every rank's bad samples (the same list on each rank)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "check_bad_fraction"):
            datamodule.check_bad_fraction(split, list(self.bad_samples.get(split, {}).values()))

    def _record_bad(self, split: str, items: Sequence[BadSample]) -> None:
        for bad in items:
            self.bad_samples.setdefault(split, {}).setdefault(bad.ident, bad)

    def training_step(self, batch: SpeechBatch | Any, batch_idx: int) -> torch.Tensor:
        """Loss of one micro-batch; what to skip is decided on the device (see the class docstring)."""
        speech = batch if isinstance(batch, SpeechBatch) else None  # else a SkippedBatch (or None): nothing to train
        self._pending_bad.extend(BadSample(**record) for record in getattr(batch, "skipped", None) or ())
        if self._guard.device != self.device:
            self._guard, self._window = self._guard.to(self.device), self._window.to(self.device)
        if speech is None:
            loss, flags = self._zero_loss(), torch.zeros(2, device=self.device)
            flags[0] = 1.0  # a fill on the device, not a copy from the host
        else:
            out = self.model(speech)
            loss = out.loss
            flags = torch.stack([torch.zeros_like(loss), (~torch.isfinite(loss.detach())).float()])
            size = len(speech)
            # device tensors only, none on the progress bar: Lightning reads progress-bar values every step
            self.log("train/loss", loss, batch_size=size)  # NaN when non-finite: it is skipped
            self.log("train/acc", out.token_accuracy(), batch_size=size)
        # [ranks with bad samples only, ranks with a non-finite loss]: one all-reduce, queued on the device
        # (Lightning's strategy.reduce puts a barrier first: a host wait)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(flags)
        empty, nonfinite = flags.unbind()
        skip, counted = (empty + nonfinite) > 0, (nonfinite > 0) & (empty == 0)
        # a micro-batch with bad samples only on some rank is skipped by all; only a non-empty one counts
        consecutive = torch.where(counted, self._guard[1] + 1, torch.where(empty > 0, self._guard[1], 0.0))
        self._guard = torch.stack([self._guard[0] + counted.float(), consecutive, self._guard[2] + (empty > 0).float(),
                                   torch.maximum(self._guard[3], consecutive)])
        self._window = self._window + torch.stack([(nonfinite > 0).float(), (~skip).float()])
        self.log("train/nonfinite_steps", self._guard[0], batch_size=len(speech) if speech is not None else 1)
        if speech is None:
            return loss
        # skipped: zero upstream gradient (a non-finite loss can still leave NaN gradients; the step is then skipped)
        return torch.where(skip, torch.zeros_like(loss), loss)

    def _zero_loss(self) -> torch.Tensor:
        """Zero over every trainable parameter: backward (with DDP's gradient all-reduce) runs on every rank as usual
        and gives exactly zero gradients (Lightning refuses ``None`` from ``training_step`` under DDP)."""
        return torch.stack([p.sum() for p in self.parameters() if p.requires_grad]).sum() * 0.0

    def _window_skip(self) -> torch.Tensor:
        """Whether this optimizer step must leave weights and state alone (device bool); starts the next window."""
        skip = (self._window[0] > 0) | (self._window[1] == 0)
        self._window = torch.zeros_like(self._window)
        return skip

    def on_after_backward(self) -> None:
        """16-mixed: an inf gradient makes the GradScaler skip the step (as on overflow); it looks before
        ``on_before_optimizer_step``, so this is done after the window's last backward."""
        loop = self.trainer.fit_loop.epoch_loop
        if self._scaler() is None or getattr(loop, "_should_accumulate", lambda: False)():
            return
        skip = self._window_skip()
        grads = [p.grad for p in self.parameters() if p.requires_grad and p.grad is not None]
        if grads:
            grads[0].copy_(torch.where(skip, float("inf"), grads[0]))

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Skip the update without a host sync where the kernel allows it: fused AdamW's ``found_inf``."""
        if self._scaler() is not None:
            return  # on_after_backward
        skip = self._window_skip()
        base = getattr(optimizer, "optimizer", optimizer)  # DeepSpeed wraps the torch optimizer
        if adamw_impl(base) == "fused":
            base.found_inf = skip.float()  # read around AdamW.step (as GradScaler does), cleared in optimizer_step
        elif bool(skip):  # foreach / for-loop kernels: one host read per step
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        for optimizer in self.trainer.optimizers:
            getattr(optimizer, "optimizer", optimizer).__dict__.pop("found_inf", None)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """At Lightning's own logging points (optimizer steps counted across epochs, as it counts them)."""
        loop, every = self.trainer.fit_loop.epoch_loop, int(self.trainer.log_every_n_steps)
        if every and not loop._should_accumulate() and (loop._batches_that_stepped + 1) % every == 0:
            self._read_guard()
            # a host number becomes a device tensor in self.log (a copy that waits): logged here, not every step
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=1)

    def on_train_epoch_end(self) -> None:
        self._read_guard()

    def _read_guard(self, log_count: bool = True) -> None:
        """The host's read of the device counters and every rank's new bad samples (a collective under DDP: every
        rank calls this at the same batch): warns, logs, and stops a run that is only producing non-finite losses."""
        total, consecutive, empty, longest = (int(v) for v in self._guard.tolist())
        self._guard[3] = self._guard[1]  # the next interval's longest run starts from the current one
        new, new_empty = total - self.nonfinite_steps, empty - self._empty_skips
        self.nonfinite_steps, self.consecutive_nonfinite, self._empty_skips = total, consecutive, empty
        if new_empty:
            log.warning("%d micro-batch(es) before step %d skipped on every rank: a rank had a batch of bad samples "
                        "only", new_empty, self.global_step)
        if new:
            log.warning("%d non-finite loss(es) before step %d: skipped (%d so far)", new, self.global_step, total)
        if longest >= self.hparams.max_consecutive_nonfinite:
            raise RuntimeError(
                f"{longest} consecutive non-finite losses (limit model.max_consecutive_nonfinite="
                f"{self.hparams.max_consecutive_nonfinite}) at step {self.global_step}. Lower model.lr, check the "
                "data, or use precision 32."
            )
        pending, self._pending_bad = self._pending_bad, []
        if self.trainer.world_size > 1 or pending:
            gathered = self._gather_objects(pending)
            if gathered:
                self._record_bad("train", gathered)
                if log_count:  # Lightning refuses self.log while a checkpoint is written
                    self.log("train/bad_samples", float(len(self.bad_samples["train"])), batch_size=1)
                self._check_bad_fraction("train")

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss * n, accuracy * n, n

    def validation_step(self, batch: SpeechBatch | Any, batch_idx: int) -> None:
        self._new_val_bad.extend(BadSample(**record) for record in getattr(batch, "skipped", None) or ())
        if not isinstance(batch, SpeechBatch):
            return
        out = self.model(batch)
        size = len(batch)
        accuracy = out.token_accuracy()
        self._val_sums += torch.stack([out.loss.detach() * size, accuracy * size,
                                       torch.tensor(float(size), device=self.device)]).double()

    def on_validation_epoch_end(self) -> None:
        # summed here rather than logged per batch with sync_dist: a rank whose batches were all bad logs nothing,
        # and Lightning's per-key reduction would then wait for it forever
        loss_sum, accuracy_sum, count = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum").tolist()
        if count:
            self.log("val/loss", loss_sum / count, prog_bar=True)
            self.log("val/acc", accuracy_sum / count)
        if not self.trainer.sanity_checking:
            self._record_bad("val", self._gather_objects(self._new_val_bad))
            self._check_bad_fraction("val")
        self._new_val_bad = []

    @torch.no_grad()
    def transcribe_batch(self, batch: SpeechBatch, max_new_tokens: int | None = None) -> list[str]:
        """Batched greedy transcription with the current weights."""
        return self.model.transcribe(batch.sources(self.model.pad_id), max_new_tokens or self.hparams.max_new_tokens)

    # -- logging and checkpoint state --------------------------------------------------------------------------
    def _log_trainable(self) -> None:
        counts = {f"params/trainable_{k}": float(v) for k, v in self.trainable.items()}
        if self.trainer.is_global_zero:
            print("[params] trainable " + "  ".join(f"{k} {v:,}" for k, v in self.trainable.items()), flush=True)
        for logger in self.loggers:
            logger.log_metrics(counts, step=int(self.global_step))

    def setup(self, stage: str) -> None:
        """The data module feeds this model (``connect``), also when the caller never connected them."""
        from nano8k.model.attention_guard import guard_cudnn_sdpa  # Hopper: cuDNN SDPA backward NaN, pytorch#196678

        guard_cudnn_sdpa(self.trainer.strategy.root_device)
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "connect"):
            datamodule.connect(self.model)

    def training_feeding(self) -> Feeding:
        """How this training feeds the model: the data module's feeding (the model's, with data.* overrides), else
        the model's own. Checkpoints and exports record it; the live model keeps its own, so the "before" score and a
        validation of a loaded model are fed as the model says."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        feeding = getattr(datamodule, "feeding", None)
        return feeding if isinstance(feeding, Feeding) else self.model.feeding

    def on_train_start(self) -> None:
        if self._resume_rng is not None:  # after the loaders started, before the first dropout mask is drawn
            set_rng_states(self._resume_rng)
            self._resume_rng = None
        self._use_optimizer_impl()
        if self._resume_lr is not None:
            self._rescale_restored_lr(*self._resume_lr)
            self._resume_lr = None
        self._log_trainable()

    def _rescale_restored_lr(self, old: float, new: float) -> None:
        """A resume with a new ``model.lr``: the restored optimizer and schedule continue at the new scale."""
        if not math.isclose(self.stage_lr, old):  # the current stage's lr is StageSwitch's own, not model.lr
            if self.trainer.is_global_zero:
                print(f"[resume] model.lr {old:g} -> {new:g}: the current stage runs at its own lr {self.stage_lr:g}; "
                      "the new value applies from the next stage that uses model.lr", flush=True)
            return
        scale = new / old
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] *= scale
                if "initial_lr" in group:
                    group["initial_lr"] *= scale
        for config in self.trainer.lr_scheduler_configs:
            config.scheduler.base_lrs = [base * scale for base in config.scheduler.base_lrs]
        self.stage_lr = float(new)
        if self.trainer.is_global_zero:
            print(f"[resume] model.lr {old:g} -> {new:g}: the schedule continues from step {self.global_step} with "
                  f"the new value (lr now {self.trainer.optimizers[0].param_groups[0]['lr']:.3g})", flush=True)

    def on_train_end(self) -> None:
        """Every bad sample of the run (manifest reading, loading on any rank, before a resume too): listed, logged."""
        datamodule = getattr(self.trainer, "datamodule", None)
        by_split: dict[str, list[BadSample]] = {}
        for split in ("train", "val"):
            manifest_log = getattr(datamodule, "bad_samples", {}).get(split)  # bad lines found when data was set up
            by_split[split] = distinct(self.bad_samples.get(split, {}).values(), getattr(manifest_log, "items", ()))
        metrics = {f"data/bad_samples_{split}": float(len(items)) for split, items in by_split.items()}
        for logger in self.loggers:
            logger.log_metrics(metrics, step=int(self.global_step))
        if self.trainer.is_global_zero:
            print(bad_sample_report(by_split), flush=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._trainer is not None and self.trainer.state.fn == "fit":
            self._read_guard(log_count=False)  # every rank writes a checkpoint at the same step
        checkpoint[CHECKPOINT_KEY] = self.training_feeding()  # now: a stage switch changes the rate
        if self._trainer is not None and self.trainer.state.fn == "fit":
            checkpoint[RNG_KEY] = self._gather_objects([rng_states()])  # every rank saves at the same step
        checkpoint[STATE_KEY] = {
            "freeze": asdict(self.freeze_cfg),
            "lr": self.stage_lr,
            "schedule_start": self.schedule_start,
            "nonfinite_steps": self.nonfinite_steps,
            "bad_samples": {split: [bad.record() for bad in items.values()]
                            for split, items in self.bad_samples.items()},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        feeding = Feeding.from_checkpoint(checkpoint)
        if feeding is not None:
            self._check_resume_feeding(feeding, (checkpoint.get("hyper_parameters") or {}).get("model_dir"))
        self._check_resume_config(checkpoint.get("hyper_parameters") or {})
        self._take_rng_states(checkpoint.get(RNG_KEY))
        state = checkpoint.get(STATE_KEY)
        if state is not None:  # runs before configure_optimizers on resume: optimizer groups match the checkpoint
            self._apply_stage(FreezeConfig(**state["freeze"]), state["lr"])
            self.schedule_start = int(state["schedule_start"])
            self.nonfinite_steps = int(state["nonfinite_steps"])
            self._guard = torch.tensor([float(self.nonfinite_steps), 0.0, 0.0, 0.0])
            for split, records in (state.get("bad_samples") or {}).items():
                self._record_bad(split, [BadSample(**record) for record in records])

    def _check_resume_feeding(self, saved: Feeding, saved_model_dir: str | None) -> None:
        """Refuse a resume whose model folder says another audio token rule or weight lineage than the checkpoint's
        feeding: the run would be fed another way, and its exports would record the folder's lineage for these
        weights. (The prompt settings, fbank rate and dither are the data module's, checked there.)"""
        differ = {f"model_dir's feeding {name}": (getattr(saved, name), getattr(self.model.feeding, name))
                  for name in FEEDING_FIELDS_ON_RESUME if getattr(saved, name) != getattr(self.model.feeding, name)}
        if differ:
            source = getattr(self._trainer, "ckpt_path", None) or "the checkpoint"
            raise resume_refused(source, differ, "model.", f"model.model_dir {self.hparams.model_dir!r} is another "
                                 f"model than the checkpoint's ({saved_model_dir!r}): resume with that folder (a copy "
                                 "or move of it is fine). " + RESUME_ADVICE)

    def _take_rng_states(self, saved: list[dict[str, Any]] | None) -> None:
        """Keep this rank's random states for ``on_train_start`` (checkpoints written before nano8k kept them have
        none: dropout then draws other masks than the interrupted run would have)."""
        if not saved or self._trainer is None:
            return
        rank, world = int(self.trainer.global_rank), int(self.trainer.world_size)
        if len(saved) == world:
            self._resume_rng = saved[rank]
        elif self.trainer.is_global_zero:
            log.warning("the checkpoint holds random states of %d ranks, this run has %d: dropout draws other masks "
                        "than the interrupted run would have", len(saved), world)

    def _check_resume_config(self, saved: Mapping[str, Any]) -> None:
        """Refuse a resume whose training settings differ from the checkpoint's; note the ones applied."""
        changes = resume_changes(saved, dict(self.hparams))
        refused = {key: pair for key, pair in changes.items() if key not in APPLIED_ON_RESUME}
        source = getattr(self._trainer, "ckpt_path", None) or "the checkpoint"
        if refused:
            raise resume_refused(source, refused, "model.", RESUME_ADVICE + " A resume may change only: "
                                 + ", ".join(f"model.{k}" for k in APPLIED_ON_RESUME))
        for key, (old, new) in changes.items():
            if key == "lr":
                self._resume_lr = (float(old), float(new))
            elif self._trainer is None or self.trainer.is_global_zero:
                print(f"[resume] model.{key} {old!r} -> {new!r} ({APPLIED_ON_RESUME[key]})", flush=True)
