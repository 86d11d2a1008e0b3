"""Fit the tiny model on the demo corpus, logging each step's batch keys; killed with SIGKILL and resumed by tests.

Usage: killable_fit.py ROOT MAX_STEPS [last]   (writes ROOT/steps.jsonl and, on train start, ROOT/start.json)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from nano8k.data.pipeline.datamodule import TelephoneDataModule
from nano8k.data.pipeline.specaugment import SpecAugment
from nano8k.training.callbacks import StageSwitch
from nano8k.training.checkpointing import AtomicCheckpointIO
from nano8k.training.freezing import FreezeConfig
from nano8k.training.module import NanoASRModule

REPO = Path(__file__).resolve().parents[3]
STAGE1 = FreezeConfig(encoder=False, adaptor=True, llm=True)
MAIN = FreezeConfig(encoder=False, adaptor=False, llm=False)


class Recorder(Callback):
    def __init__(self, root: Path, delay: float) -> None:
        self.root, self.delay = root, delay

    def on_train_start(self, trainer, pl_module) -> None:
        stage = next(cb for cb in trainer.callbacks if isinstance(cb, StageSwitch)).stage
        state = {
            "global_step": trainer.global_step,
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "stage": stage,
            "freeze": vars(pl_module.freeze_cfg),
            "frontend_rate": trainer.datamodule.frontend.sample_rate,
        }
        (self.root / "start.json").write_text(json.dumps(state))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with open(self.root / "steps.jsonl", "a") as handle:
            handle.write(
                json.dumps({"step": trainer.global_step, "epoch": trainer.current_epoch, "keys": batch.keys}) + "\n"
            )
        time.sleep(self.delay)


def main(root: Path, max_steps: int, resume: bool) -> None:
    L.seed_everything(0)
    module = NanoASRModule("tiny", freeze=MAIN, lr=2e-3, scheduler="warmuplr", warmup_steps=4)
    data = TelephoneDataModule(
        train_manifests=str(REPO / "data_manifests/demo/train.jsonl"),
        dither=0.0,
        telephone=None,
        max_frames_per_batch=120,
        num_workers=0,
        seed=7,
        specaugment=SpecAugment(),  # hparams hold dataclasses
    )
    data.set_tokenizer(module.model.tokenizer)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        use_distributed_sampler=False,
        plugins=[AtomicCheckpointIO()],
        callbacks=[
            StageSwitch(stage1_steps=2, stage1_freeze=STAGE1, stage1_lr=1e-3, main_freeze=MAIN),
            Recorder(root, delay=0.0 if resume else 0.25),
            ModelCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=3, save_top_k=-1, save_last=True),
        ],
    )
    trainer.fit(module, datamodule=data, ckpt_path="last" if resume else None)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), len(sys.argv) > 3 and sys.argv[3] == "last")
