"""The DDP collectives the training components use, each a no-op in a single process."""

from __future__ import annotations

from typing import Any

import torch


def distributed() -> bool:
    """Whether a process group is up (DDP); single-device runs have none."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over every rank in place, queued on the device (Lightning's ``strategy.reduce`` would put a
    barrier first: a host wait)."""
    if distributed():
        torch.distributed.all_reduce(tensor)
    return tensor


def gather_objects(items: list[Any]) -> list[Any]:
    """Every rank's ``items``, concatenated in rank order (a collective under DDP)."""
    if not distributed():
        return list(items)
    gathered: list[list[Any] | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in (part or [])]
