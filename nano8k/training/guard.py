"""The step guard: which micro-batches and optimizer steps to skip, decided on the device, read at logging points."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from nano8k.training.collectives import all_reduce_sum
from nano8k.training.optim import adamw_impl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuardSettings:
    """``model.max_consecutive_nonfinite``: non-finite losses in a row that stop training."""

    max_consecutive_nonfinite: int = 10

    def __post_init__(self) -> None:
        if self.max_consecutive_nonfinite < 1:
            raise ValueError(f"model.max_consecutive_nonfinite must be >= 1, got {self.max_consecutive_nonfinite}")


class StepGuard:
    """Skips a micro-batch that is non-finite, or empty (bad samples only), on any rank, and an optimizer step whose
    accumulation window had such a batch or none that trained; the rules are in docs/training.md.

    Every decision is a device tensor: a step asks the device nothing, and the host reads the counters only in
    ``read()`` (at logging points, epoch ends and checkpoints), so the GPU never waits for the host.
    """

    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings
        # [non-finite micro-batches, consecutive ones, micro-batches skipped because some rank had bad samples only,
        # the longest run since the last read]
        self.counters = torch.zeros(4)
        self.window = torch.zeros(2)  # this accumulation window: [a non-finite micro-batch, micro-batches trained]
        self.nonfinite_steps = 0  # what the host last read of counters[0], counters[1] and counters[2]
        self.consecutive_nonfinite = 0
        self.empty_skips = 0

    def check(self, loss: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """Record one micro-batch (``loss`` None: this rank has nothing to train) and return whether every rank
        skips it (a device bool); under DDP one all-reduce of two flags, queued on the device."""
        if self.counters.device != device:
            self.counters, self.window = self.counters.to(device), self.window.to(device)
        if loss is None:
            flags = torch.zeros(2, device=device)
            flags[0] = 1.0  # a fill on the device, not a copy from the host
        else:
            flags = torch.stack([torch.zeros_like(loss), (~torch.isfinite(loss.detach())).float()])
        empty, nonfinite = all_reduce_sum(flags).unbind()  # [ranks with bad samples only, ranks with a non-finite loss]
        skip, counted = (empty + nonfinite) > 0, (nonfinite > 0) & (empty == 0)
        # a micro-batch with bad samples only on some rank is skipped by all; only a non-empty one counts
        run = self.counters[1]
        consecutive = torch.where(counted, run + 1, torch.where(empty > 0, run, 0.0))
        total, skipped_empty = self.counters[0] + counted.float(), self.counters[2] + (empty > 0).float()
        self.counters = torch.stack([total, consecutive, skipped_empty, torch.maximum(self.counters[3], consecutive)])
        self.window = self.window + torch.stack([(nonfinite > 0).float(), (~skip).float()])
        return skip

    @property
    def nonfinite_count(self) -> torch.Tensor:
        """Non-finite micro-batches so far, on the device (logged every step without a host read)."""
        return self.counters[0]

    def end_window(self) -> torch.Tensor:
        """Whether this optimizer step must leave weights and state alone (device bool); starts the next window."""
        skip = (self.window[0] > 0) | (self.window[1] == 0)
        self.window = torch.zeros_like(self.window)
        return skip

    def skip_scaled_step(self, grads: list[torch.Tensor]) -> None:
        """16-mixed: an inf in a gradient makes the GradScaler skip the step (as on overflow)."""
        skip = self.end_window()
        if grads:
            grads[0].copy_(torch.where(skip, float("inf"), grads[0]))

    def skip_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Without a GradScaler: fused AdamW's ``found_inf`` (no host sync); the foreach / for-loop kernels drop the
        gradients instead (one host read per step)."""
        skip = self.end_window()
        base = getattr(optimizer, "optimizer", optimizer)  # DeepSpeed wraps the torch optimizer
        if adamw_impl(base) == "fused":
            base.found_inf = skip.float()  # read around AdamW.step (as GradScaler does), cleared by clear_found_inf
        elif bool(skip):
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None

    @staticmethod
    def clear_found_inf(optimizers: list[torch.optim.Optimizer]) -> None:
        """Drop the ``found_inf`` flag after the step, so no other step reads it."""
        for optimizer in optimizers:
            getattr(optimizer, "optimizer", optimizer).__dict__.pop("found_inf", None)

    def read(self, step: int) -> None:
        """The host's read of the counters: warns about new skips and raises ``RuntimeError`` once
        ``max_consecutive_nonfinite`` non-finite losses came in a row."""
        total, consecutive, empty, longest = (int(v) for v in self.counters.tolist())
        self.counters[3] = self.counters[1]  # the next interval's longest run starts from the current one
        new, new_empty = total - self.nonfinite_steps, empty - self.empty_skips
        self.nonfinite_steps, self.consecutive_nonfinite, self.empty_skips = total, consecutive, empty
        if new_empty:
            log.warning(
                "%d micro-batch(es) before step %d skipped on every rank: a rank had a batch of bad samples only",
                new_empty,
                step,
            )
        if new:
            log.warning("%d non-finite loss(es) before step %d: skipped (%d so far)", new, step, total)
        limit = self.settings.max_consecutive_nonfinite
        if longest >= limit:
            raise RuntimeError(
                f"{longest} consecutive non-finite losses (limit model.max_consecutive_nonfinite={limit}) at step "
                f"{step}. Lower model.lr, check the data, or use precision 32."
            )

    def restore(self, nonfinite_steps: int) -> None:
        """Continue a checkpoint's count of non-finite micro-batches."""
        self.nonfinite_steps = int(nonfinite_steps)
        self.counters = torch.tensor([float(self.nonfinite_steps), 0.0, 0.0, 0.0])
