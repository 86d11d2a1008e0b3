"""Learning-rate schedules as LambdaLR factors: the reference ``warmuplr``, linear-warmup cosine, warmup-constant."""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch.optim.lr_scheduler import LambdaLR

SchedulerName = Literal["warmuplr", "cosine", "constant"]


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
