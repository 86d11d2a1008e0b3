"""Helpers for the reliability tests: a demo config on the tiny model, a step recorder, manifests with bad audio."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.callbacks import Callback

from nano8k.training.config import layered_config  # a shipped config with its base: one file

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "data_manifests" / "demo"
RECORDER = "tests.reliability.runs.StepRecorder"


class StepRecorder(Callback):
    """Appends one JSON line per optimizer step to ``path``: step, lr, batch keys, skipped keys, last.ckpt's step."""

    def __init__(self, path: str, last_ckpt: str | None = None, delay: float = 0.0) -> None:
        self.path, self.last_ckpt, self.delay = Path(path), last_ckpt, delay

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        row: dict[str, Any] = {
            "step": int(trainer.global_step),
            "epoch": int(trainer.current_epoch),
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "keys": list(getattr(batch, "keys", []) or []),
            "skipped": [bad["key"] for bad in getattr(batch, "skipped", None) or ()],
        }
        if self.last_ckpt and Path(self.last_ckpt).exists():
            row["last_step"] = int(
                torch.load(self.last_ckpt, map_location="cpu", weights_only=True, mmap=True)["global_step"]
            )
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        if self.delay:
            time.sleep(self.delay)


def read_steps(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def demo_config(
    tmp_path: Path,
    *,
    recorder: dict[str, Any] | None = None,
    last_every_n_steps: int | None = 3,
    last_every_n_minutes: float | None = None,
    trainer: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> Path:
    """configs/demo.yaml on the tiny model and the 160-utterance demo corpus, writing under ``tmp_path``."""
    config = layered_config(REPO / "configs/demo.yaml")
    callbacks = []
    for callback in config["trainer"]["callbacks"]:
        if any(name in callback["class_path"] for name in ("LearningRate", "Export", "BeforeAfter")):
            continue
        args = callback.setdefault("init_args", {})
        if "dirpath" in args:
            args["dirpath"] = str(tmp_path / "ckpt")
        if callback["class_path"].endswith("LastCheckpoint"):
            args.update(every_n_steps=last_every_n_steps, every_n_minutes=last_every_n_minutes)
        callbacks.append(callback)
    if recorder is not None:
        callbacks.append({"class_path": RECORDER, "init_args": recorder})
    config["trainer"]["callbacks"] = callbacks
    config["trainer"].update(
        {
            "default_root_dir": str(tmp_path),
            "logger": False,
            "max_steps": 12,
            "val_check_interval": 4,
            "limit_val_batches": 1,
            **(trainer or {}),
        }
    )
    config["model"].update({"model_dir": "tiny", "warmup_steps": 1, "max_new_tokens": 2, **(model or {})})
    config["data"].update(
        {"train_manifests": str(DEMO / "train.jsonl"), "val_manifests": str(DEMO / "val.jsonl"), **(data or {})}
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def manifest_with_bad_audio(
    tmp_path: Path,
    bad_every: int | None,
    name: str = "train",
    source: Path = DEMO / "train.jsonl",
    all_bad: bool = False,
) -> tuple[Path, list[str]]:
    """A copy of a demo manifest (absolute audio paths) whose every ``bad_every``-th entry (or every one) points at
    a file that is not audio; returns the manifest and the bad keys."""
    (tmp_path / "garbage").mkdir(parents=True, exist_ok=True)
    lines, bad = [], []
    for index, line in enumerate(source.read_text().splitlines()):
        row = json.loads(line)
        row["source"] = str((source.parent / row["source"]).resolve())
        if all_bad or (bad_every and index % bad_every == 0):
            garbage = tmp_path / "garbage" / f"{row['key']}.wav"
            garbage.write_bytes(b"this is not a wav file" * 40)
            row["source"] = str(garbage)
            bad.append(row["key"])
        lines.append(json.dumps(row))
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, bad


def script_env() -> dict[str, str]:
    env = dict(
        os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", WANDB_MODE="offline"
    )
    env.pop("NANO8K_MODEL_DIR", None)
    return env


FIT = [sys.executable, "-m", "nano8k.fit"]
