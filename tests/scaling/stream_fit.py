"""Fit the tiny model from demo shards on 2 CPU processes (gloo), logging each rank's steps: keys and loss.

Usage: stream_fit.py SHARDS ROOT MAX_STEPS WORKERS [last]
Run it once for one node with 2 processes (Lightning's launcher re-executes it for rank 1), or once per "node" with
``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` and ``NANO8K_TEST_NODES=2`` set (1 process per node), as a cluster
launcher would. Writes ROOT/steps-rank{R}.jsonl and checkpoints every 2 steps into ROOT/checkpoints.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from nano8k.data.pipeline.datamodule import TelephoneDataModule
from nano8k.training.checkpointing import AtomicCheckpointIO
from nano8k.training.freezing import FreezeConfig
from nano8k.training.module import NanoASRModule


class Steps(Callback):
    def __init__(self, root: Path, delay: float) -> None:
        self.root, self.delay = root, delay

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        with open(self.root / f"steps-rank{trainer.global_rank}.jsonl", "a") as handle:
            handle.write(
                json.dumps(
                    {
                        "step": trainer.global_step,
                        "epoch": trainer.current_epoch,
                        "keys": batch.keys,
                        "loss": float(loss),
                    }
                )
                + "\n"
            )
        time.sleep(self.delay)


def main(shards: str, root: Path, max_steps: int, workers: int, resume: bool) -> None:
    torch.set_num_threads(1)
    L.seed_everything(0)
    nodes = int(os.environ.get("NANO8K_TEST_NODES", "1"))
    module = NanoASRModule(
        "tiny",
        freeze=FreezeConfig(encoder=False, adaptor=False, llm=True),
        lr=1e-3,
        scheduler="constant",
        warmup_steps=0,
    )
    data = TelephoneDataModule(
        train_shards=shards,
        telephone=None,
        specaugment=None,
        dither=0.0,
        max_frames_per_batch=300,
        num_workers=workers,
        seed=3,
    )
    data.set_tokenizer(module.model.tokenizer)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2 // nodes,
        num_nodes=nodes,
        strategy="ddp",
        max_steps=max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        use_distributed_sampler=False,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(root),
        callbacks=[
            Steps(root, 0.0 if resume else 0.3),
            ModelCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=2, save_top_k=-1, save_last=True),
        ],
    )
    trainer.fit(module, datamodule=data, ckpt_path="last" if resume else None)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:] == ["last"])
