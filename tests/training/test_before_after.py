"""BeforeAfterEvaluation inside a real fit: frozen parts keep eval mode, "after" is the export, resume keeps "before";
and a data module nobody called ``connect`` on still feeds the model its own token rule."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import Callback

from nano8k.data.pipeline.datamodule import TelephoneDataModule
from nano8k.training.before_after import BeforeAfterEvaluation
from nano8k.training.checkpointing import ExportOnFitEnd
from nano8k.training.module import NanoASRModule
from tests.training.test_module import ModeSpy

DIGITS = Path(__file__).resolve().parents[2] / "data_manifests" / "telephone-digits"


class SlotSpy(Callback):
    """Records whether every training batch had as many speech slots as the model's rule asks."""

    def __init__(self) -> None:
        self.checked = 0
        self.wrong = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        expected = [pl_module.model.feeding.token_count(int(n)) for n in batch.feat_lens]
        self.checked += 1
        self.wrong += batch.audio_tokens.tolist() != expected


def _subset(tmp_path: Path, split: str, n: int) -> str:
    lines = (DIGITS / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    rows = [json.loads(line) for line in lines]
    for row in rows:
        row["source"] = str(DIGITS / row["source"])
    path = tmp_path / f"{split}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_before_after_in_a_fit_with_frozen_parts(tmp_path):
    module = NanoASRModule(
        model_dir="mini",
        freeze={"encoder": True, "adaptor": False, "llm": True},
        lr=1e-3,
        scheduler="constant",
        warmup_steps=1,
        max_new_tokens=10,
    )
    data = TelephoneDataModule(
        _subset(tmp_path, "train", 8),
        _subset(tmp_path, "val", 4),
        telephone=None,
        specaugment=None,
        dither=0.0,
        num_workers=0,
        max_frames_per_batch=400,
    )
    data.set_tokenizer(module.model.tokenizer)  # no connect(): the module's setup connects them
    check = BeforeAfterEvaluation(manifest=_subset(tmp_path, "test", 6), label="subset", max_new_tokens=10)
    modes, slots = ModeSpy(), SlotSpy()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=3,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        use_distributed_sampler=False,
        default_root_dir=str(tmp_path),
        callbacks=[ExportOnFitEnd(str(tmp_path / "export")), check, modes, slots],
    )
    trainer.fit(module, datamodule=data)
    assert modes.batches == 3 and modes.offenders == []  # scoring "before" left the frozen encoder in eval mode
    assert slots.checked == 3 and slots.wrong == 0 and module.model.feeding.audio_tokens == "all_frames"
    report = json.loads((tmp_path / "before_after.json").read_text())
    assert report["after_model"] == str(tmp_path / "export" / "hf") and report["before"] == check.before
    assert report["after"]["utterances"] == 6 and set(report["after"]["by_language"]) <= {"en", "zh"}
    resumed = BeforeAfterEvaluation(manifest=check.manifest)
    resumed.load_state_dict(check.state_dict())
    assert resumed.before == check.before  # a resumed fit compares with the weights the first fit started from


def test_before_after_scores_with_its_normalizer(tmp_path):
    from nano8k.model.bundled import mini_model_dir
    from nano8k.model.checkpoint import load_pretrained
    from nano8k.scoring.metrics import cer

    clean = Path(__file__).resolve().parents[1] / "fixtures" / "digits" / "clean.jsonl"  # voices it decodes well
    rows = [json.loads(line) for line in clean.read_text().splitlines()[:8]]
    for row in rows:  # the references spelled in Chinese digit names; the model writes Arabic digits
        row["source"] = str(clean.parent / row["source"])
        row["target"] = "".join("零一二三四五六七八九"[int(d)] for d in row["target"])
    spelled = tmp_path / "spelled.jsonl"
    spelled.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    model = load_pretrained(mini_model_dir()).eval()
    scores, hyps = BeforeAfterEvaluation(str(spelled), max_new_tokens=10, normalizer="funasr").evaluate(model)
    assert scores["normalizer"] == "funasr"
    assert scores["cer"] == pytest.approx(cer([r["target"] for r in rows], hyps, normalizer="funasr"))
    basic, _ = BeforeAfterEvaluation(str(spelled), max_new_tokens=10).evaluate(model)
    assert basic["cer"] > scores["cer"] + 0.3  # 一五三 against 153: every character wrong
    with pytest.raises(ValueError, match="unknown normalizer"):
        BeforeAfterEvaluation(str(spelled), normalizer="Funasr")
