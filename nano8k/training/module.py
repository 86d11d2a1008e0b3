"""``NanoASRModule``: the Lightning wrapper of ``NanoASR`` (freezing, LoRA, AdamW groups, schedules, step guard)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import lightning as L
import torch

from nano8k.data.badsamples import BadSample
from nano8k.errors import RESUME_ADVICE, ConfigError, resume_refused
from nano8k.model.batch import SpeechBatch
from nano8k.model.checkpoint import load_pretrained
from nano8k.model.feeding import CHECKPOINT_KEY, Feeding
from nano8k.model.locate import resolve_model_dir
from nano8k.model.nano import NanoASR, NanoOutput
from nano8k.training.bad_samples import BadSampleTally
from nano8k.training.collectives import gather_objects
from nano8k.training.freezing import (
    FreezeConfig,
    LoraConfig,
    add_lora,
    apply_freezing,
    merge_lora,
    named_group_parameters,
    set_frozen_eval,
)
from nano8k.training.guard import GuardSettings, StepGuard
from nano8k.training.optim import (
    OptimizerImpl,
    OptimizerSettings,
    SchedulerName,
    ScheduleSettings,
    adamw_impl,
    build_adamw,
    use_adamw_impl,
)
from nano8k.training.resume import RNG_KEY, ResumePolicy
from nano8k.training.rng import rng_states

log = logging.getLogger(__name__)

STATE_KEY = "nano8k_stage"  # checkpoint entry: the stage (freezing, lr, schedule start), guard count, bad samples
FEEDING_FIELDS_ON_RESUME = ("audio_tokens", "weights")  # a resume's model folder must record them as the checkpoint


class NanoASRModule(L.LightningModule):
    """Fine-tunes Fun-ASR-Nano: per-module freezing, optional LoRA, AdamW groups per module, warm-up schedules.

    ``training_step`` is the loss; three components keep the rules (docs/training.md): a ``StepGuard`` decides on the
    device which micro-batches and optimizer steps to skip, a ``BadSampleTally`` gathers every rank's bad samples, a
    ``ResumePolicy`` says what a resume may change and restores random states and lr at train start.
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
        # the model.* keys stay flat (configs, --model.lr in sweeps); inside, each group checks its own values
        self.optimizer_settings = OptimizerSettings(
            lr=lr,
            weight_decay=weight_decay,
            lr_multipliers=dict(lr_multipliers or {}),
            weight_decay_overrides=dict(weight_decay_overrides or {}),
            decay_norm_and_bias=decay_norm_and_bias,
            betas=tuple(betas),
            impl=optimizer_impl,
        )
        self.schedule_settings = ScheduleSettings(name=scheduler, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio)
        self.guard = StepGuard(GuardSettings(max_consecutive_nonfinite=max_consecutive_nonfinite))
        if max_new_tokens < 1:
            raise ValueError(f"model.max_new_tokens must be >= 1, got {max_new_tokens}")
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
        self.bad_sample_tally = BadSampleTally()
        self.resume = ResumePolicy()
        self._val_sums = torch.zeros(3, dtype=torch.float64)  # reset on each validation's device
        self.trainable = self._apply_stage(freeze, lr)
        self.train()

    @property
    def bad_samples(self) -> dict[str, dict[tuple, BadSample]]:
        """Every rank's bad samples per split, as gathered so far (kept in checkpoints)."""
        return self.bad_sample_tally.by_split

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
            log.warning(
                "trainable %s weights were not fp32 (llm_dtype=%s): upcast to fp32 master weights",
                sorted(upcast),
                self.hparams.llm_dtype,
            )
        self.freeze_cfg, self.stage_lr, self.trainable = freeze, float(lr), counts
        return counts

    def set_stage(self, freeze: FreezeConfig, lr: float | None = None) -> dict[str, int]:
        """Re-freeze for a new stage; the next ``configure_optimizers()`` uses ``lr`` and restarts the schedule."""
        counts = self._apply_stage(freeze, self.stage_lr if lr is None else lr)
        self.schedule_start = int(self.global_step) if self._trainer is not None else 0
        if self._trainer is not None:
            self._log_trainable()
        return counts

    def train(self, mode: bool = True) -> NanoASRModule:
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
        return self.optimizer_settings.param_groups(named_group_parameters(self.model), self.stage_lr)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_adamw(
            self.param_groups(), self.stage_lr, self.optimizer_settings.betas, self._optimizer_impl()
        )
        if adamw_impl(optimizer) != "fused" and "deepspeed" in type(self.trainer.strategy).__name__.lower():
            raise ConfigError(
                "under DeepSpeed a skipped step needs the fused AdamW (DeepSpeed keeps its own "
                "gradients): set model.optimizer_impl auto or fused"
            )
        total = None
        if self.schedule_settings.name == "cosine":
            total = max(1, int(self.trainer.estimated_stepping_batches) - self.schedule_start)
        scheduler = self.schedule_settings.build(optimizer, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def _optimizer_impl(self) -> OptimizerImpl:
        """``model.optimizer_impl`` resolved for this trainer: auto is foreach under a GradScaler (it unscales before
        clipping only for non-fused optimizers), else fused (foreach where the device has no fused kernel)."""
        impl = self.optimizer_settings.impl
        if self._scaler() is not None and impl == "auto":
            return "foreach"
        if self._scaler() is not None and impl == "fused" and self.trainer.gradient_clip_val:
            raise ConfigError(
                "model.optimizer_impl fused with trainer.precision 16-mixed cannot clip gradients "
                "(they are still scaled when clipped): use optimizer_impl auto or foreach, or bf16-mixed"
            )
        return impl

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
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

    # -- training ----------------------------------------------------------------------------------------------
    def forward(self, batch: SpeechBatch) -> NanoOutput:
        return self.model(batch)

    def training_step(self, batch: SpeechBatch | Any, batch_idx: int) -> torch.Tensor:
        """Loss of one micro-batch; one the guard skips (non-finite or empty on some rank) gives zero gradients."""
        self.bad_sample_tally.note("train", batch)
        if not isinstance(batch, SpeechBatch):  # a SkippedBatch (or None): this rank has nothing to train
            self.guard.check(None, self.device)
            self.log("train/nonfinite_steps", self.guard.nonfinite_count, batch_size=1)
            return self._zero_loss()
        out = self.model(batch)
        skip = self.guard.check(out.loss, self.device)
        # device tensors only, none on the progress bar: Lightning reads progress-bar values every step
        self.log("train/loss", out.loss, batch_size=len(batch))  # NaN when non-finite: it is skipped
        self.log("train/acc", out.token_accuracy(), batch_size=len(batch))
        self.log("train/nonfinite_steps", self.guard.nonfinite_count, batch_size=len(batch))
        # a skipped loss gets a zero upstream gradient (a non-finite one can still leave NaN gradients: the guard
        # then skips the optimizer step)
        return torch.where(skip, torch.zeros_like(out.loss), out.loss)

    def _zero_loss(self) -> torch.Tensor:
        """Zero over every trainable parameter: backward (with DDP's gradient all-reduce) runs on every rank as usual
        and gives exactly zero gradients (Lightning refuses ``None`` from ``training_step`` under DDP)."""
        return torch.stack([p.sum() for p in self.parameters() if p.requires_grad]).sum() * 0.0

    def on_after_backward(self) -> None:
        """16-mixed: the guard's skip goes through the GradScaler, which looks before ``on_before_optimizer_step``:
        so here, after the window's last backward."""
        loop = self.trainer.fit_loop.epoch_loop
        if self._scaler() is None or getattr(loop, "_should_accumulate", lambda: False)():
            return
        self.guard.skip_scaled_step([p.grad for p in self.parameters() if p.requires_grad and p.grad is not None])

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._scaler() is None:  # else on_after_backward
            self.guard.skip_optimizer_step(optimizer)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.guard.clear_found_inf(self.trainer.optimizers)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """At Lightning's own logging points (optimizer steps counted across epochs, as it counts them)."""
        loop, every = self.trainer.fit_loop.epoch_loop, int(self.trainer.log_every_n_steps)
        if every and not loop._should_accumulate() and (loop._batches_that_stepped + 1) % every == 0:
            self._read_device_state()
            # a host number becomes a device tensor in self.log (a copy that waits): logged here, not every step
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=1)

    def on_train_epoch_end(self) -> None:
        self._read_device_state()

    def _read_device_state(self, log_count: bool = True) -> None:
        """The host's read of the guard and of every rank's new bad samples (a collective under DDP: every rank
        calls this at the same batch)."""
        self.guard.read(self.global_step)
        if self.bad_sample_tally.gather("train", self.trainer.world_size):
            if log_count:  # Lightning refuses self.log while a checkpoint is written
                self.log("train/bad_samples", float(len(self.bad_samples["train"])), batch_size=1)
            self.bad_sample_tally.check_fraction(getattr(self.trainer, "datamodule", None), "train")

    # -- validation and decoding -------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss * n, accuracy * n, n

    def validation_step(self, batch: SpeechBatch | Any, batch_idx: int) -> None:
        self.bad_sample_tally.note("val", batch)
        if not isinstance(batch, SpeechBatch):
            return
        out = self.model(batch)
        size = len(batch)
        accuracy = out.token_accuracy()
        self._val_sums += torch.stack(
            [out.loss.detach() * size, accuracy * size, torch.tensor(float(size), device=self.device)]
        ).double()

    def on_validation_epoch_end(self) -> None:
        # summed here rather than logged per batch with sync_dist: a rank whose batches were all bad logs nothing,
        # and Lightning's per-key reduction would then wait for it forever
        loss_sum, accuracy_sum, count = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum").tolist()
        if count:
            self.log("val/loss", loss_sum / count, prog_bar=True)
            self.log("val/acc", accuracy_sum / count)
        if self.trainer.sanity_checking:
            self.bad_sample_tally.drop_pending("val")
            return
        self.bad_sample_tally.gather("val")
        self.bad_sample_tally.check_fraction(getattr(self.trainer, "datamodule", None), "val")

    @torch.no_grad()
    def transcribe_batch(self, batch: SpeechBatch, max_new_tokens: int | None = None) -> list[str]:
        """Batched greedy transcription with the current weights."""
        return self.model.transcribe(batch.sources(self.model.pad_id), max_new_tokens or self.hparams.max_new_tokens)

    # -- logging, train start and end ---------------------------------------------------------------------------
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
        self.resume.restore_rng()  # after the loaders started, before the first dropout mask is drawn
        use_adamw_impl(self.trainer.optimizers, self._optimizer_impl())  # a restored optimizer: the configured kernel
        self.stage_lr = self.resume.apply_lr_change(self.trainer, self.stage_lr)
        self._log_trainable()

    def on_train_end(self) -> None:
        """Every bad sample of the run (manifest reading, loading on any rank, before a resume too): listed, logged."""
        by_split = self.bad_sample_tally.final(getattr(self.trainer, "datamodule", None))
        metrics, report = self.bad_sample_tally.report(by_split)
        for logger in self.loggers:
            logger.log_metrics(metrics, step=int(self.global_step))
        if self.trainer.is_global_zero:
            print(report, flush=True)

    # -- checkpoint state --------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        fitting = self._trainer is not None and self.trainer.state.fn == "fit"
        if fitting:
            self._read_device_state(log_count=False)  # every rank writes a checkpoint at the same step
        checkpoint[CHECKPOINT_KEY] = self.training_feeding()  # now: a stage switch changes the rate
        if fitting:
            checkpoint[RNG_KEY] = gather_objects([rng_states()])  # every rank saves at the same step
        checkpoint[STATE_KEY] = {
            "freeze": asdict(self.freeze_cfg),
            "lr": self.stage_lr,
            "schedule_start": self.schedule_start,
            "nonfinite_steps": self.guard.nonfinite_steps,
            "bad_samples": self.bad_sample_tally.state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        feeding = Feeding.from_checkpoint(checkpoint)
        if feeding is not None:
            self._check_resume_feeding(feeding, (checkpoint.get("hyper_parameters") or {}).get("model_dir"))
        global_zero = self._trainer is None or self.trainer.is_global_zero
        source = getattr(self._trainer, "ckpt_path", None) or "the checkpoint"
        self.resume.check_config(checkpoint.get("hyper_parameters") or {}, self.hparams, source, global_zero)
        if self._trainer is not None:
            self.resume.take_rng_states(
                checkpoint.get(RNG_KEY), int(self.trainer.global_rank), int(self.trainer.world_size), global_zero
            )
        state = checkpoint.get(STATE_KEY)
        if state is not None:  # runs before configure_optimizers on resume: optimizer groups match the checkpoint
            self._apply_stage(FreezeConfig(**state["freeze"]), state["lr"])
            self.schedule_start = int(state["schedule_start"])
            self.guard.restore(state["nonfinite_steps"])
            self.bad_sample_tally.restore(state.get("bad_samples"))

    def _check_resume_feeding(self, saved: Feeding, saved_model_dir: str | None) -> None:
        """Refuse a resume whose model folder says another audio token rule or weight lineage than the checkpoint's
        feeding: the run would be fed another way, and its exports would record the folder's lineage for these
        weights. (The prompt settings, fbank rate and dither are the data module's, checked there.)"""
        differ = {
            f"model_dir's feeding {name}": (getattr(saved, name), getattr(self.model.feeding, name))
            for name in FEEDING_FIELDS_ON_RESUME
            if getattr(saved, name) != getattr(self.model.feeding, name)
        }
        if differ:
            source = getattr(self._trainer, "ckpt_path", None) or "the checkpoint"
            raise resume_refused(
                source,
                differ,
                "model.",
                f"model.model_dir {self.hparams.model_dir!r} is another "
                f"model than the checkpoint's ({saved_model_dir!r}): resume with that folder (a copy "
                "or move of it is fine). " + RESUME_ADVICE,
            )
