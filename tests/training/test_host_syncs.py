"""The training step reads nothing back from the device except once per logging interval (no GPU stall per step).

On a CPU there is no device to wait for, so the test counts the operations that would make the host wait on a GPU:
reading a value (``item``, ``bool``, ``int``, ``float``, ``tolist``, ``numpy``) and the ops whose output size
depends on the data (``nonzero``, boolean-mask indexing, ``masked_select``, ``unique``). It counts them over whole
loop iterations of a Lightning fit (hooks, forward, backward, clipping, the fused AdamW step, logging), with a
non-finite micro-batch among them, and fails if any iteration between two logging points has one.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader

from nano8k.training.freezing import FreezeConfig
from nano8k.training.module import NanoASRModule
from tests.training.scripts.synthetic import make_batch

aten = torch.ops.aten
READS = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.equal.default}
DATA_SIZED = {
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.repeat_interleave.Tensor,
}
INTERVAL = 4
NAN_AT = 5  # the non-finite micro-batch


class HostSyncCounter(TorchDispatchMode):
    """Names of the ops that would wait for a GPU, in the order they ran."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        masked = func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default) and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ())
        )
        if func in READS or func in DATA_SIZED or masked:
            self.seen.append(str(func))
        return func(*args, **kwargs)


class CountPerIteration(Callback):
    """Counts from one ``on_train_batch_start`` to the next: the whole iteration, Lightning's logging included."""

    def __init__(self) -> None:
        self.counts: list[list[str]] = []
        self._mode: HostSyncCounter | None = None
        self._patched: dict[str, Any] = {}

    def _stop(self) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            for name, method in self._patched.items():
                setattr(torch.Tensor, name, method)
            self.counts.append(self._mode.seen)
            self._mode = None

    def _start(self) -> None:
        mode = HostSyncCounter()
        for name in ("tolist", "numpy"):  # host reads that do not pass through the dispatcher
            method = self._patched[name] = getattr(torch.Tensor, name)

            def counted(tensor, *args, _method=method, _name=name, **kwargs):
                mode.seen.append(f"Tensor.{_name}")
                return _method(tensor, *args, **kwargs)

            setattr(torch.Tensor, name, counted)
        self._mode = mode.__enter__()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._stop()
        self._start()

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop()


class NaNAt(Callback):
    def __init__(self, index: int) -> None:
        self.index = index

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.index:
            batch.feats = batch.feats * float("nan")


@pytest.mark.parametrize("optimizer_impl", ["auto", "for_loop"])
def test_no_host_sync_between_logging_points(tmp_path, optimizer_impl, one_torch_thread):
    """auto (fused AdamW): none between logging points. The per-tensor kernel cannot skip a step on the device, so
    there the step reads its skip flag once: the counter must see exactly that read besides torch's own."""
    batches = [make_batch(2, seed=i) for i in range(3 * INTERVAL)]  # collated beforehand: data prep is host work
    module = NanoASRModule(
        "tiny",
        freeze=FreezeConfig(encoder=False, adaptor=False, llm=True),
        lr=1e-3,
        scheduler="constant",
        warmup_steps=0,
        optimizer_impl=optimizer_impl,
    )
    counter = CountPerIteration()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=len(batches),
        logger=CSVLogger(tmp_path),
        log_every_n_steps=INTERVAL,
        gradient_clip_val=1.0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[NaNAt(NAN_AT), counter],
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    fused = bool(module.trainer.optimizers[0].param_groups[0]["fused"])
    assert fused == (optimizer_impl == "auto"), "auto did not pick the fused AdamW on this CPU"
    assert module.guard.nonfinite_steps == 1 and len(counter.counts) == len(batches)
    # for_loop: torch's per-tensor AdamW reads each parameter's step count (a host tensor on a GPU too, so no wait
    # there), and nano8k reads its skip flag once a step (a real wait on a GPU: the cost of not using fused)
    trainable = sum(1 for p in module.parameters() if p.requires_grad)
    for index, seen in enumerate(counter.counts):
        reads = 0 if fused else 1 if index == NAN_AT else trainable + 1  # a skipped step: no AdamW call
        if (index + 1) % INTERVAL:  # not a logging point
            assert seen == ["aten._local_scalar_dense.default"] * reads, (
                f"iteration {index} (not a logging point) read the device: {seen}"
            )
    # the counter sees reads: the logging points do read (the guard's counters, Lightning's metrics)
    assert all(counter.counts[i] for i in range(INTERVAL - 1, len(batches), INTERVAL))
