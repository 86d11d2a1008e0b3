"""Two-process CPU DDP (gloo) fit of the tiny model; rank 0 writes REPORT with per-rank parameter checksums.

Usage: ddp_fit.py REPORT   (run as a script: Lightning's DDP launcher re-executes this file for rank 1)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.training.scripts.synthetic import SyntheticDataModule  # noqa: E402

from nano8k.training.freezing import FreezeConfig  # noqa: E402
from nano8k.training.module import NanoASRModule  # noqa: E402


class Report(Callback):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.initial = 0.0

    @staticmethod
    def checksum(module) -> float:
        return sum(float(p.detach().double().sum()) for p in module.parameters())

    def on_fit_start(self, trainer, pl_module) -> None:
        self.initial = self.checksum(pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        gathered = pl_module.all_gather(torch.tensor([self.checksum(pl_module)])).flatten().tolist()
        if trainer.is_global_zero:
            self.path.write_text(json.dumps({
                "world_size": trainer.world_size, "global_step": trainer.global_step,
                "strategy": type(trainer.strategy).__name__, "checksums": gathered, "initial": self.initial,
                "backend": torch.distributed.get_backend(),
            }))


def main(report: Path) -> None:
    L.seed_everything(0)
    module = NanoASRModule("tiny", freeze=FreezeConfig(encoder=False, adaptor=False, llm=True), lr=1e-3,
                           scheduler="constant", warmup_steps=0)
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_steps=3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1, num_sanity_val_steps=0,
        callbacks=[Report(report)],
    )
    trainer.fit(module, datamodule=SyntheticDataModule(n_train=16, n_val=4, batch_size=2))
    if torch.distributed.is_initialized():  # an undestroyed gloo group aborts the interpreter at exit
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
