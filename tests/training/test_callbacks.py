"""StageSwitch (switch step, optimizer groups, fbank rate, resume) and WEREvaluation (numbers equal jiwer)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import jiwer
import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader, Dataset

from nano8k.data.audio import load_audio
from nano8k.model.batch import SpeechBatch, SpeechItem, collate
from nano8k.model.features import FrontendConfig, extract_features
from nano8k.model.prompt import PromptEncoder, audio_token_count
from nano8k.scoring.metrics import text_language, tokenize_for_mer
from nano8k.scoring.normalizers import basic_normalize as normalize_text
from nano8k.training.callbacks import StageSwitch, WEREvaluation
from nano8k.training.freezing import FreezeConfig
from nano8k.training.module import NanoASRModule

WAVS = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "tiny-nano").glob("*.wav"))
TARGETS = ["请帮我转人工服务。", "My account number is 4572.", "我想查 Credit Card 的账单", "。"]
STAGE1 = FreezeConfig(encoder=False, adaptor=True, llm=True)
MAIN = FreezeConfig(encoder=True, adaptor=False, llm=True)


class _RateDataset(Dataset):
    """Features at the data module's *current* rate, computed per item (so a rate switch shows in the keys)."""

    def __init__(self, dm: RecordingDataModule, targets: list[str]):
        self.dm, self.targets = dm, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> SpeechItem:
        rate = self.dm.rate
        wav, sr = self.dm.waves[index % len(self.dm.waves)]
        feats = extract_features(wav, sr, FrontendConfig(sample_rate=rate))
        target = self.targets[index]
        prompt = self.dm.prompts.encode(audio_token_count(feats.shape[0]), target)
        return SpeechItem(key=f"utt{index}@{rate}", feats=feats, prompt=prompt, target=target)


class RecordingDataModule(L.LightningDataModule):
    """Tiny in-memory data module that records every ``set_frontend_rate`` call."""

    def __init__(self, module: NanoASRModule, train_size: int = 3, val_targets: list[str] | None = None):
        super().__init__()
        self.prompts = PromptEncoder(module.model.tokenizer, module.model.feeding.prompt)
        self.pad_id = module.model.pad_id
        self.waves = [load_audio(path) for path in WAVS]
        self.rate, self.rate_calls = 16000, []
        self.train_targets = ["hello world"] * train_size
        self.val_targets = val_targets

    def set_frontend_rate(self, rate: int) -> None:
        self.rate_calls.append(rate)
        self.rate = rate

    def _loader(self, targets: list[str], batch_size: int) -> DataLoader:
        return DataLoader(
            _RateDataset(self, targets),
            batch_size=batch_size,
            shuffle=False,
            collate_fn=lambda items: collate(items, self.pad_id),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_targets, 1)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_targets or [], 2)


class Probe(Callback):
    """Records, at every training batch start: step, optimizer groups, optimizer identity/state, batch rate."""

    def __init__(self):
        self.rows: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        opt = trainer.optimizers[0]
        self.rows.append(
            {
                "step": trainer.global_step,
                "groups": sorted(g["name"] for g in opt.param_groups),
                "optimizer": id(opt),
                "has_state": len(opt.state) > 0,
                "rate": int(batch.keys[0].split("@")[1]),
                "trainable": dict(pl_module.trainable),
            }
        )


def _fit(tmp_path: Path, max_steps: int, ckpt_path: str | None = None, **length: int):
    torch.manual_seed(0)
    module = NanoASRModule(model_dir="tiny", lr=1e-3, warmup_steps=1, scheduler="constant")
    dm = RecordingDataModule(module)
    switch = StageSwitch(
        **(length or {"stage1_steps": 4}), stage1_freeze=STAGE1, stage1_lr=1e-3, main_freeze=MAIN, main_lr=5e-4
    )
    probe = Probe()
    ckpt = ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=1, save_top_k=-1)
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[switch, probe, ckpt],
    )
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module, dm, switch, probe


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stage")
    return tmp, _fit(tmp, max_steps=6)


def test_stage_switch_happens_at_the_configured_step(fresh_run):
    _, (module, dm, switch, probe) = fresh_run
    assert (switch.stage, switch.switch_step) == ("main", 4)
    assert [row["step"] for row in probe.rows] == list(range(6))
    before, after = probe.rows[:4], probe.rows[4:]
    # stage 1: only encoder groups, native 8 kHz features; main: only adaptor groups, 16 kHz
    assert all(g.startswith("encoder") for row in before for g in row["groups"])
    assert all(g.startswith("adaptor") for row in after for g in row["groups"])
    assert {row["rate"] for row in before} == {8000} and {row["rate"] for row in after} == {16000}
    assert dm.rate_calls == [8000, 16000]
    assert len({row["optimizer"] for row in before}) == 1 and len({row["optimizer"] for row in after}) == 1
    assert before[0]["optimizer"] != after[0]["optimizer"]
    assert before[0]["trainable"]["encoder"] > 0 and before[0]["trainable"]["adaptor"] == 0
    assert after[0]["trainable"]["adaptor"] > 0 and after[0]["trainable"]["encoder"] == 0
    assert module.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(5e-4)


def test_resume_after_the_switch_starts_in_the_main_stage(fresh_run):
    tmp, _ = fresh_run
    module, dm, switch, probe = _fit(tmp / "resume_main", max_steps=6, ckpt_path=str(tmp / "step=5.ckpt"))
    assert switch.stage == "main" and switch.switch_step == 4
    assert [row["step"] for row in probe.rows] == [5]
    first = probe.rows[0]
    assert all(g.startswith("adaptor") for g in first["groups"]) and first["rate"] == 16000
    assert first["has_state"]  # the saved main-stage optimizer state loaded into matching groups
    assert dm.rate_calls[-1] == 16000  # setup() applies stage 1, then the restored state moves to main


def test_resume_before_the_switch_still_switches_at_the_configured_step(fresh_run):
    tmp, _ = fresh_run
    module, dm, switch, probe = _fit(tmp / "resume_s1", max_steps=6, ckpt_path=str(tmp / "step=2.ckpt"))
    assert [row["step"] for row in probe.rows] == [2, 3, 4, 5]
    assert switch.switch_step == 4
    assert [row["rate"] for row in probe.rows] == [8000, 8000, 16000, 16000]
    assert all(g.startswith("encoder") for g in probe.rows[1]["groups"])
    assert all(g.startswith("adaptor") for g in probe.rows[2]["groups"])


def test_epoch_based_switch_lands_on_the_epoch_boundary(tmp_path):
    _, dm, switch, probe = _fit(tmp_path, max_steps=5, stage1_epochs=1)  # 3 batches per epoch
    assert (switch.switch_step, switch.switch_epoch) == (3, 0)
    assert [row["rate"] for row in probe.rows] == [8000, 8000, 8000, 16000, 16000]
    assert all(g.startswith("adaptor") for g in probe.rows[3]["groups"])


def test_stage_switch_rejects_bad_arguments():
    with pytest.raises(ValueError, match="exactly one of"):
        StageSwitch(stage1_steps=3, stage1_epochs=1)
    with pytest.raises(ValueError, match="8000 or 16000"):
        StageSwitch(stage1_steps=3, main_frontend_rate=44100)


def test_wer_callback_matches_jiwer_and_feeds_model_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    module = NanoASRModule(model_dir="tiny", lr=1e-3, warmup_steps=1, scheduler="constant")
    dm = RecordingDataModule(module, train_size=2, val_targets=TARGETS)
    wer_cb = WEREvaluation(max_new_tokens=12, num_examples=2)
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val/cer", mode="min")
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[wer_cb, ckpt],
    )
    trainer.fit(module, datamodule=dm)

    # decode the same validation batches again with the final weights (validation ran after the last step)
    module.eval()
    refs, hyps = [], []
    for batch in dm.val_dataloader():
        refs += batch.targets
        hyps += module.transcribe_batch(batch, 12)
    kept = [(normalize_text(r), normalize_text(h)) for r, h in zip(refs, hyps) if normalize_text(r)]
    assert len(kept) == len(TARGETS) - 1  # the punctuation-only reference is dropped
    r_norm, h_norm = [r for r, _ in kept], [h for _, h in kept]
    expected = {
        "cer": jiwer.cer([r.replace(" ", "") for r in r_norm], [h.replace(" ", "") for h in h_norm]),
        "wer": jiwer.wer(r_norm, h_norm),
        "mer": jiwer.wer(
            [" ".join(tokenize_for_mer(r)) for r in r_norm], [" ".join(tokenize_for_mer(h)) for h in h_norm]
        ),
    }
    for name, value in expected.items():
        assert float(trainer.callback_metrics[f"val/{name}"]) == pytest.approx(value, rel=1e-6), name
    assert float(ckpt.best_model_score) == pytest.approx(expected["cer"], rel=1e-6)
    assert [key for key, _, _ in wer_cb.examples] == ["utt0@16000", "utt1@16000"]
    out = capsys.readouterr().out
    assert f"[val] step 2  cer {expected['cer']:.3f}" in out
    for lang in ("zh", "en", "mixed"):  # each reference script on its own, as the [val] line and the logs give it
        pairs = [(r, h) for r, h in kept if text_language(r) == lang]
        assert len(pairs) == 1, lang
        value = jiwer.cer([r.replace(" ", "") for r, _ in pairs], [h.replace(" ", "") for _, h in pairs])
        assert float(trainer.callback_metrics[f"val/cer_{lang}"]) == pytest.approx(value, rel=1e-6), lang
        assert f"cer_{lang} {value:.3f}" in out


@pytest.mark.parametrize("normalizer, cer_zh, cer_en", [("basic", 0.6, 14 / 23), ("funasr", 0.0, 0.0)])
def test_wer_callback_scores_with_its_normalizer(normalizer, cer_zh, cer_en):
    cb = WEREvaluation(normalizer=normalizer, num_examples=0)
    hyps = ["分机880", "extension 8 8 0"]
    logged = {}
    trainer = SimpleNamespace(sanity_checking=False, global_step=1, is_global_zero=False)
    module = SimpleNamespace(
        device=torch.device("cpu"),
        transcribe_batch=lambda batch, n: hyps,
        log=lambda name, value, sync_dist: logged.__setitem__(name, value),
    )
    batch = SpeechBatch(
        *(torch.zeros(2, 1) for _ in range(8)), targets=["分机八八零", "extension eight eight zero"], keys=["a", "b"]
    )
    cb.on_validation_epoch_start(trainer, module)
    cb.on_validation_batch_end(trainer, module, None, batch, 0)
    cb.on_validation_epoch_end(trainer, module)
    assert logged["val/cer_zh"] == pytest.approx(cer_zh) and logged["val/cer_en"] == pytest.approx(cer_en)
    assert "val/cer_mixed" not in logged  # no reference of that script: nothing logged for it
    with pytest.raises(ValueError, match="unknown normalizer 'fun'"):
        WEREvaluation(normalizer="fun")


def test_wer_every_n_steps_schedule():
    cb = WEREvaluation(every_n_steps=100)
    trainer = SimpleNamespace(sanity_checking=False, global_step=40)
    assert cb._due(trainer)  # first validation always decodes
    cb._last_step = 40
    assert not cb._due(SimpleNamespace(sanity_checking=False, global_step=120))
    assert cb._due(SimpleNamespace(sanity_checking=False, global_step=140))
    assert not cb._due(SimpleNamespace(sanity_checking=True, global_step=500))
