"""AdamW and its implementation (fused, foreach, per-tensor); learning-rate schedules as LambdaLR factors."""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, Sequence, get_args

import torch
from torch.optim.lr_scheduler import LambdaLR

SchedulerName = Literal["warmuplr", "cosine", "constant"]
# torch's AdamW kernels: one fused kernel per step, a loop of multi-tensor (foreach) ops, or a loop per tensor;
# auto: fused where every parameter's device has the kernel, else foreach
OptimizerImpl = Literal["auto", "fused", "foreach", "for_loop"]


def build_adamw(param_groups: Sequence[dict[str, Any]], lr: float, betas: tuple[float, float],
                impl: OptimizerImpl = "auto") -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over ``param_groups`` with the named implementation (the same update in each)."""
    if impl not in get_args(OptimizerImpl):
        raise ValueError(f"optimizer implementation must be {', '.join(get_args(OptimizerImpl)[:-1])} or for_loop, "
                         f"got {impl!r}")
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
