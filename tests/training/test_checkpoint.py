"""Checkpoint files: atomic writes survive a crash mid-write, n-best averaging, export after fit (LoRA merged)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from nano8k.commands import average
from nano8k.errors import OutputError
from nano8k.model.bundled import tiny_model_dir
from nano8k.model.checkpoint import load_pretrained
from nano8k.training import checkpointing
from nano8k.training.checkpointing import AtomicCheckpointIO, ExportOnFitEnd, average_state_dicts
from nano8k.training.freezing import FreezeConfig, LoraConfig
from nano8k.training.module import NanoASRModule
from tests.training.scripts.synthetic import SyntheticDataModule


def fit(tmp_path: Path, steps: int, module: NanoASRModule, *callbacks) -> tuple[L.Trainer, ModelCheckpoint]:
    ckpt = ModelCheckpoint(
        dirpath=tmp_path / "ckpt",
        monitor="val/loss",
        save_top_k=2,
        save_last=True,
        every_n_train_steps=2,
        filename="s{step}",
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        plugins=[AtomicCheckpointIO()],
        callbacks=[ckpt, *callbacks],
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=SyntheticDataModule(n_train=8, n_val=2, batch_size=2))
    return trainer, ckpt


def test_interrupted_write_keeps_previous_last_ckpt(tmp_path, monkeypatch):
    trainer, ckpt = fit(tmp_path, 4, NanoASRModule("tiny", lr=1e-3, freeze=FreezeConfig()))
    last = Path(ckpt.last_model_path)
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 4
    real_save = torch.save

    partial_sizes = []

    def crash_midway(obj, handle, *args, **kwargs):  # a full disk / kill after part of the bytes reached the disk
        target = Path(handle.name)  # a real file in the checkpoint folder, not an in-memory buffer
        assert target.parent == last.parent and target != last
        real_save(obj, handle, *args, **kwargs)
        handle.truncate(handle.tell() // 2)
        handle.flush()
        partial_sizes.append(target.stat().st_size)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash_midway)
    trainer.fit_loop.epoch_loop._batches_that_stepped += 1  # make the next checkpoint differ
    with pytest.raises(OutputError, match="the disk is full"):  # named, with the free space (atomic_torch_save)
        trainer.save_checkpoint(last)
    monkeypatch.setattr(torch, "save", real_save)
    assert partial_sizes and 0 < partial_sizes[0] < last.stat().st_size
    reloaded = torch.load(last, weights_only=True)
    assert reloaded["global_step"] == 4
    for key, value in saved["state_dict"].items():
        assert torch.equal(reloaded["state_dict"][key], value)
    assert not last.with_name(last.name + ".tmp").exists()
    NanoASRModule("tiny").load_state_dict(reloaded["state_dict"])


def test_average_state_dicts_is_elementwise_mean():
    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([1.0], dtype=torch.bfloat16), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "h": torch.tensor([2.0], dtype=torch.bfloat16), "n": torch.tensor(5)}
    out = average_state_dicts([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and out["h"].dtype == torch.bfloat16
    assert float(out["h"]) == 1.5 and int(out["n"]) == 5
    with pytest.raises(ValueError, match="other parameters"):
        average_state_dicts([a, {"w": a["w"]}])


def test_average_cli_exports_both_layouts(tmp_path):
    _, ckpt = fit(tmp_path, 4, NanoASRModule("tiny", lr=1e-2, freeze=FreezeConfig(adaptor=False, llm=False)))
    paths = sorted(ckpt.best_k_models)
    assert len(paths) == 2
    assert average.main([*paths, "--out", str(tmp_path / "avg")]) == 0
    written = {layout: tmp_path / "avg" / layout for layout in ("funasr", "hf")}
    assert (tmp_path / "avg" / "averaged.ckpt").exists()
    states = [torch.load(p, weights_only=True)["state_dict"] for p in paths]
    key = "model.network.model.multi_modal_projector.linear_1.weight"
    assert not torch.equal(states[0][key], states[1][key])
    expected = (states[0][key] + states[1][key]) / 2
    for folder in (written["funasr"], written["hf"]):
        model = load_pretrained(folder)
        got = model.network.model.multi_modal_projector.linear_1.weight
        torch.testing.assert_close(got, expected, atol=1e-2 if folder == written["funasr"] else 0, rtol=1e-2)
    assert (written["funasr"] / "multilingual.tiktoken").exists()


def test_export_on_fit_end_merges_lora_to_release_keys(tmp_path):
    module = NanoASRModule("tiny", lr=1e-2, freeze=FreezeConfig(), lora=LoraConfig(r=2, alpha=4, dropout=0.0))
    export = ExportOnFitEnd(out_dir=str(tmp_path / "export"), average_top_k=2)
    fit(tmp_path, 4, module, export)
    assert len(export.sources) == 2
    released = torch.load(tiny_model_dir() / "model.pt", weights_only=True)["state_dict"]
    exported = torch.load(export.exported["funasr"] / "model.pt", weights_only=True)["state_dict"]
    assert list(exported) == list(released)
    config = yaml.safe_load((export.exported["funasr"] / "config.yaml").read_text())
    assert config == yaml.safe_load((tiny_model_dir() / "config.yaml").read_text())
    averaged = checkpointing.average_checkpoints(export.sources)["state_dict"]
    lora_keys = [k for k in averaged if "lora_B" in k]
    assert lora_keys and any(averaged[k].abs().sum() > 0 for k in lora_keys)
    reloaded = load_pretrained(export.exported["hf"])
    assert all("lora" not in k for k in reloaded.network.state_dict())
    q = "model.network.model.language_model.layers.0.self_attn.q_proj"
    merged = (
        averaged[f"{q}.base_layer.weight"]
        + (4 / 2) * averaged[f"{q}.lora_B.default.weight"] @ averaged[f"{q}.lora_A.default.weight"]
    )
    torch.testing.assert_close(reloaded.llm.layers[0].self_attn.q_proj.weight, merged)


def test_checkpoints_and_exports_record_how_training_fed_the_model(tmp_path):
    """The data module's fbank rate, dither and prompt settings reach the checkpoint and both export layouts."""
    from dataclasses import replace
    from types import SimpleNamespace

    from nano8k.model.feeding import CHECKPOINT_KEY
    from nano8k.training.checkpointing import export_module, module_from_checkpoint

    module = NanoASRModule("tiny")
    data = SimpleNamespace(
        feeding=replace(module.model.feeding, frontend_rate=8000, dither=0.5, context_header=True, language="manifest")
    )
    object.__setattr__(module, "_trainer", SimpleNamespace(datamodule=data, state=SimpleNamespace(fn="validate")))
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    object.__setattr__(module, "_trainer", None)
    assert checkpoint[CHECKPOINT_KEY] == data.feeding != module.model.feeding  # the live model keeps its own
    written = export_module(module_from_checkpoint(checkpoint), tmp_path / "export")
    config = yaml.safe_load((written["funasr"] / "config.yaml").read_text())
    assert (config["frontend_conf"]["fs"], config["frontend_conf"]["dither"]) == (8000, 0.5)
    for layout in ("funasr", "hf"):
        reloaded = load_pretrained(written[layout])
        assert reloaded.feeding == data.feeding
        assert (reloaded.frontend.sample_rate, reloaded.frontend.dither) == (8000, 0.5)
