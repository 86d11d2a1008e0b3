"""The resume policy: which ``model.*`` changes a resume may make, and what it restores at train start."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from nano8k.errors import RESUME_ADVICE, resume_changes, resume_refused
from nano8k.training.rng import set_rng_states

log = logging.getLogger(__name__)

RNG_KEY = "nano8k_rng"  # checkpoint entry: every rank's global random states (nano8k.training.rng), in rank order

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


class ResumePolicy:
    """Checks a checkpoint's ``model.*`` settings against this run's (docs/training.md, "Resuming") and keeps what
    must wait for train start: this rank's random states and a changed ``model.lr``."""

    def __init__(self) -> None:
        self.lr_change: tuple[float, float] | None = None  # (checkpoint lr, new lr) when a resume changed model.lr
        self.rng: dict[str, Any] | None = None  # this rank's random states from the checkpoint

    def check_config(self, saved: Mapping[str, Any], now: Mapping[str, Any], source: str, announce: bool) -> None:
        """Refuse a resume whose settings differ from the checkpoint's (``ResumeConfigError`` listing each key)
        unless ``APPLIED_ON_RESUME`` allows them; note the applied ones (printed when ``announce``)."""
        changes = resume_changes(saved, dict(now))
        refused = {key: pair for key, pair in changes.items() if key not in APPLIED_ON_RESUME}
        if refused:
            raise resume_refused(
                source,
                refused,
                "model.",
                RESUME_ADVICE + " A resume may change only: " + ", ".join(f"model.{k}" for k in APPLIED_ON_RESUME),
            )
        for key, (old, new) in changes.items():
            if key == "lr":
                self.lr_change = (float(old), float(new))
            elif announce:
                print(f"[resume] model.{key} {old!r} -> {new!r} ({APPLIED_ON_RESUME[key]})", flush=True)

    def take_rng_states(self, saved: list[dict[str, Any]] | None, rank: int, world: int, announce: bool) -> None:
        """Keep this rank's random states for ``restore_rng`` (checkpoints written before nano8k kept them have
        none: dropout then draws other masks than the interrupted run would have)."""
        if not saved:
            return
        if len(saved) == world:
            self.rng = saved[rank]
        elif announce:
            log.warning(
                "the checkpoint holds random states of %d ranks, this run has %d: dropout draws other masks "
                "than the interrupted run would have",
                len(saved),
                world,
            )

    def restore_rng(self) -> None:
        """After the loaders started, before the first dropout mask is drawn."""
        if self.rng is not None:
            set_rng_states(self.rng)
            self.rng = None

    def apply_lr_change(self, trainer: Any, stage_lr: float) -> float:
        """A resume with a new ``model.lr``: the restored optimizer and schedule continue at the new scale; returns
        the stage's lr from now on."""
        if self.lr_change is None:
            return stage_lr
        (old, new), self.lr_change = self.lr_change, None
        if not math.isclose(stage_lr, old):  # the current stage's lr is StageSwitch's own, not model.lr
            if trainer.is_global_zero:
                print(
                    f"[resume] model.lr {old:g} -> {new:g}: the current stage runs at its own lr {stage_lr:g}; "
                    "the new value applies from the next stage that uses model.lr",
                    flush=True,
                )
            return stage_lr
        scale = new / old
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] *= scale
                if "initial_lr" in group:
                    group["initial_lr"] *= scale
        for config in trainer.lr_scheduler_configs:
            config.scheduler.base_lrs = [base * scale for base in config.scheduler.base_lrs]
        if trainer.is_global_zero:
            print(
                f"[resume] model.lr {old:g} -> {new:g}: the schedule continues from step {trainer.global_step} with "
                f"the new value (lr now {trainer.optimizers[0].param_groups[0]['lr']:.3g})",
                flush=True,
            )
        return float(new)
