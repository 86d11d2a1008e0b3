"""Two-process CPU DDP (gloo) fit of the tiny model; rank 0 writes REPORT with per-rank parameter checksums.

Usage: ddp_fit.py REPORT [--stage_switch]   (run as a script: Lightning's DDP launcher re-executes it for rank 1)

With ``--stage_switch`` the run trains the encoder only, then switches to the adaptor only after step 2
(``StageSwitch``): the adaptor's gradients are all-reduced only if DDP was re-wrapped for the new trainable set.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from nano8k.training.callbacks import StageSwitch  # noqa: E402
from nano8k.training.freezing import FreezeConfig  # noqa: E402
from nano8k.training.module import NanoASRModule  # noqa: E402
from tests.training.scripts.synthetic import SyntheticDataModule  # noqa: E402


class Report(Callback):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.initial = 0.0

    @staticmethod
    def checksums(module) -> list[float]:
        """Whole model, encoder, adaptor."""
        parts = [module, module.model.encoder, module.model.adaptor]
        return [sum(float(p.detach().double().sum()) for p in part.parameters()) for part in parts]

    def on_fit_start(self, trainer, pl_module) -> None:
        self.initial = self.checksums(pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        gathered = pl_module.all_gather(torch.tensor(self.checksums(pl_module), dtype=torch.float64)).tolist()
        if trainer.is_global_zero:
            self.path.write_text(
                json.dumps(
                    {
                        "world_size": trainer.world_size,
                        "global_step": trainer.global_step,
                        "strategy": type(trainer.strategy).__name__,
                        "checksums": [row[0] for row in gathered],
                        "initial": self.initial[0],
                        "parts_per_rank": gathered,
                        "initial_parts": self.initial,
                        "trainable": pl_module.trainable,
                        "backend": torch.distributed.get_backend(),
                    }
                )
            )


def main(report: Path, stage_switch: bool = False) -> None:
    L.seed_everything(0)
    module = NanoASRModule(
        "tiny",
        freeze=FreezeConfig(encoder=False, adaptor=False, llm=True),
        lr=1e-3,
        scheduler="constant",
        warmup_steps=0,
    )
    callbacks: list[Callback] = [Report(report)]
    if stage_switch:
        callbacks.append(
            StageSwitch(
                stage1_steps=2,
                stage1_freeze=FreezeConfig(encoder=False, adaptor=True, llm=True),
                stage1_lr=1e-3,
                main_freeze=FreezeConfig(encoder=True, adaptor=False, llm=True),
                main_lr=1e-2,
            )
        )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=4 if stage_switch else 3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    trainer.fit(module, datamodule=SyntheticDataModule(n_train=16, n_val=4, batch_size=2))
    if torch.distributed.is_initialized():  # an undestroyed gloo group aborts the interpreter at exit
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--stage_switch" in sys.argv[2:])
