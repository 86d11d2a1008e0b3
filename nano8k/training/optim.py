"""AdamW and its implementation (fused, foreach, per-tensor); learning-rate schedules as LambdaLR factors."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from torch.optim.lr_scheduler import LambdaLR

from nano8k.training.freezing import GROUPS

SchedulerName = Literal["warmuplr", "cosine", "constant"]
# torch's AdamW kernels: one fused kernel per step, a loop of multi-tensor (foreach) ops, or a loop per tensor;
# auto: fused where every parameter's device has the kernel, else foreach
OptimizerImpl = Literal["auto", "fused", "foreach", "for_loop"]


@dataclass(frozen=True)
class OptimizerSettings:
    """``model.*`` AdamW settings. ``lr_multipliers`` / ``weight_decay_overrides`` are keyed by group (encoder,
    adaptor, llm, lora); biases and norm weights get no weight decay unless ``decay_norm_and_bias``; ``impl`` is
    ``model.optimizer_impl`` (the same update in each kernel)."""

    lr: float = 5e-5
    weight_decay: float = 0.01
    lr_multipliers: Mapping[str, float] = field(default_factory=dict)
    weight_decay_overrides: Mapping[str, float] = field(default_factory=dict)
    decay_norm_and_bias: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    impl: OptimizerImpl = "auto"

    def __post_init__(self) -> None:
        for name in ("lr_multipliers", "weight_decay_overrides"):
            unknown = sorted(set(getattr(self, name)) - set(GROUPS))
            if unknown:
                raise ValueError(f"model.{name}: unknown group(s) {unknown}; use {list(GROUPS)}")

    def param_groups(self, named: Iterable[tuple[str, str, torch.nn.Parameter]], lr: float) -> list[dict[str, Any]]:
        """AdamW groups per module group (and a no-decay group for biases/norms) over the trainable parameters of
        ``named`` (``freezing.named_group_parameters``), at the stage's peak ``lr``."""
        buckets: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
        for group, _, param in named:
            if param.requires_grad:
                decay = self.decay_norm_and_bias or param.ndim >= 2
                buckets.setdefault((group, decay), []).append(param)
        groups = []
        for group in GROUPS:
            for decay in (True, False):
                params = buckets.get((group, decay))
                if params:
                    wd = self.weight_decay_overrides.get(group, self.weight_decay) if decay else 0.0
                    groups.append(
                        {
                            "params": params,
                            "lr": lr * self.lr_multipliers.get(group, 1.0),
                            "weight_decay": wd,
                            "name": group if decay else f"{group}_no_decay",
                        }
                    )
        return groups


@dataclass(frozen=True)
class ScheduleSettings:
    """``model.scheduler``, ``model.warmup_steps`` and ``model.min_lr_ratio`` (cosine's floor)."""

    name: SchedulerName = "warmuplr"
    warmup_steps: int = 2500
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in get_args(SchedulerName):
            raise ValueError(f"model.scheduler must be 'warmuplr', 'cosine' or 'constant', got {self.name!r}")

    def build(self, optimizer: torch.optim.Optimizer, total_steps: int | None = None) -> LambdaLR:
        return build_scheduler(optimizer, self.name, self.warmup_steps, total_steps, self.min_lr_ratio)


def build_adamw(
    param_groups: Sequence[dict[str, Any]], lr: float, betas: tuple[float, float], impl: OptimizerImpl = "auto"
) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over ``param_groups`` with the named implementation (the same update in each)."""
    if impl not in get_args(OptimizerImpl):
        raise ValueError(
            f"optimizer implementation must be {', '.join(get_args(OptimizerImpl)[:-1])} or for_loop, got {impl!r}"
        )
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}
    if impl != "auto":
        return torch.optim.AdamW(param_groups, lr=lr, betas=betas, **flags[impl])
    try:
        return torch.optim.AdamW(param_groups, lr=lr, betas=betas, fused=True)
    except RuntimeError:  # a device (or dtype) without the fused kernel
        return torch.optim.AdamW(param_groups, lr=lr, betas=betas, foreach=True)


def adamw_impl(optimizer: torch.optim.Optimizer) -> str:
    """Which implementation the optimizer's first group steps with (a resumed state dict brings its own flags)."""
    group = optimizer.param_groups[0]
    return "fused" if group.get("fused") else "foreach" if group.get("foreach") else "for_loop"


def use_adamw_impl(optimizers: Iterable[torch.optim.Optimizer], impl: OptimizerImpl) -> None:
    """Make restored optimizers step with ``impl`` (a state dict brings its own kernel flags), moving the step
    counters where that kernel keeps them (fused: on the parameter's device, float32)."""
    for optimizer in optimizers:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        wanted = adamw_impl(build_adamw([{"params": params}], 1.0, (0.9, 0.999), impl))
        if adamw_impl(optimizer) == wanted:
            continue
        for group in optimizer.param_groups:
            group["fused"], group["foreach"] = (True, None) if wanted == "fused" else (None, wanted == "foreach")
            for param in group["params"]:
                state = optimizer.state.get(param, {})
                if "step" in state:
                    state["step"] = (
                        state["step"].to(param.device, torch.float32)
                        if wanted == "fused"
                        else state["step"].to("cpu", torch.float32)
                    )


def warmuplr_factor(warmup_steps: int) -> Callable[[int], float]:
    """FunASR/ESPnet ``WarmupLR``: lr_t = lr * w^0.5 * min(t^-0.5, t * w^-1.5), t = step + 1 (peak lr at t = w)."""
    if warmup_steps <= 0:
        raise ValueError(f"warmuplr needs warmup_steps > 0, got {warmup_steps}")
    w = float(warmup_steps)

    def factor(step: int) -> float:
        t = step + 1
        return w**0.5 * min(t**-0.5, t * w**-1.5)

    return factor


def cosine_factor(warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> Callable[[int], float]:
    """Linear warm-up to the peak over ``warmup_steps``, then cosine decay to ``min_ratio`` at ``total_steps``."""
    if total_steps <= 0:
        raise ValueError(f"cosine schedule needs total_steps > 0, got {total_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def constant_factor(warmup_steps: int = 0) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_steps`` (none when 0), then constant."""

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: SchedulerName,
    warmup_steps: int,
    total_steps: int | None = None,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """A per-optimizer-step ``LambdaLR`` applying the same factor to every parameter group."""
    if name == "warmuplr":
        factor = warmuplr_factor(warmup_steps)
    elif name == "cosine":
        if total_steps is None:
            raise ValueError("scheduler 'cosine' needs total_steps (Trainer max_steps or max_epochs)")
        factor = cosine_factor(warmup_steps, total_steps, min_lr_ratio)
    elif name == "constant":
        factor = constant_factor(warmup_steps)
    else:
        raise ValueError(f"scheduler must be 'warmuplr', 'cosine' or 'constant', got {name!r}")
    return LambdaLR(optimizer, factor)
