"""Two-process CPU DDP fit in which rank 1 reads only audio files that are not audio (on_bad_sample skip).

Usage: ddp_bad_rank.py WORKDIR   (rank 0 writes WORKDIR/report.json; Lightning's launcher re-executes this for rank 1)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from nano8k.data.pipeline.datamodule import TelephoneDataModule  # noqa: E402
from nano8k.training.freezing import FreezeConfig  # noqa: E402
from nano8k.training.module import NanoASRModule  # noqa: E402
from tests.reliability.runs import DEMO, manifest_with_bad_audio  # noqa: E402


class Report(Callback):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.steps: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(int(trainer.global_step))

    def on_fit_end(self, trainer, pl_module) -> None:
        checksum = sum(float(p.detach().double().sum()) for p in pl_module.parameters())
        counts = torch.tensor(
            [checksum, len(self.steps), len(pl_module.bad_samples["train"]), len(pl_module.bad_samples["val"])],
            dtype=torch.float64,
        )
        gathered = pl_module.all_gather(counts).tolist()
        if trainer.is_global_zero:
            self.path.write_text(
                json.dumps(
                    {
                        "world_size": trainer.world_size,
                        "global_step": trainer.global_step,
                        "per_rank": gathered,
                        "train_bad_keys": sorted(b.key for b in pl_module.bad_samples["train"].values()),
                    }
                )
            )


def main(work: Path) -> None:
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    L.seed_everything(0)
    bad = rank == 1
    train, _ = manifest_with_bad_audio(work / f"rank{rank}", None, "train", DEMO / "train.jsonl", all_bad=bad)
    val, _ = manifest_with_bad_audio(work / f"rank{rank}", None, "val", DEMO / "val.jsonl", all_bad=bad)
    module = NanoASRModule(
        "tiny",
        freeze=FreezeConfig(encoder=False, adaptor=False, llm=True),
        lr=1e-3,
        scheduler="constant",
        warmup_steps=0,
        max_new_tokens=2,
    )
    data = TelephoneDataModule(
        train_manifests=str(train),
        val_manifests=str(val),
        dither=0.0,
        telephone=None,
        specaugment=None,
        max_frames_per_batch=120,
        num_workers=0,
        seed=7,
        on_bad_sample="skip",
        max_bad_fraction=1.0,
        probe_audio=False,
    )
    data.connect(module.model)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=4,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=2,
        val_check_interval=2,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        callbacks=[Report(work / "report.json")],
    )
    trainer.fit(module, datamodule=data)
    if torch.distributed.is_initialized():  # an undestroyed gloo group aborts the interpreter at exit
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
