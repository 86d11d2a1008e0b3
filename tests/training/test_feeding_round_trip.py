"""One feeding record end to end: data overrides -> checkpoint -> export (both layouts) -> load_model -> decode."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

import nano8k
from nano8k.data.pipeline.datamodule import TelephoneDataModule
from nano8k.inference.decode import DecodeOptions, decode_feeding
from nano8k.model.bundled import tiny_model_dir
from nano8k.model.checkpoint import load_torch_file, read_model_configs
from nano8k.model.feeding import CHECKPOINT_KEY, Feeding
from nano8k.training.checkpointing import export_module, module_from_checkpoint
from nano8k.training.module import NanoASRModule

DIGITS = Path(__file__).resolve().parents[2] / "data_manifests" / "telephone-digits"
# not one default: every token, a lineage of our own, an English prompt without ITN, native 8 kHz fbank with dither
FED = Feeding(
    audio_tokens="all_frames", weights="self-pretrained", language="en", itn=False, frontend_rate=8000, dither=0.3
)


def _subset(tmp_path: Path, split: str, n: int) -> str:
    rows = [json.loads(line) for line in (DIGITS / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:n]]
    for row in rows:
        row["source"] = str(DIGITS / row["source"])
    path = tmp_path / f"{split}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _model_folder(tmp_path: Path) -> Path:
    """The tiny model, recorded as an all_frames self-pretrained model (its fbank and prompts the release's)."""
    folder = tmp_path / "tiny-all-frames"
    shutil.copytree(tiny_model_dir(), folder)
    funasr = Feeding(audio_tokens="all_frames", weights="self-pretrained", dither=0.0).written_into(
        read_model_configs(folder)[0]
    )
    (folder / "config.yaml").write_text(yaml.safe_dump(funasr, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return folder


def test_the_feeding_is_the_same_record_from_training_to_decoding(tmp_path):
    module = NanoASRModule(
        model_dir=str(_model_folder(tmp_path)), scheduler="constant", warmup_steps=1, max_new_tokens=4
    )
    own = module.model.feeding
    assert (own.audio_tokens, own.weights, own.frontend_rate, own.language) == (
        "all_frames",
        "self-pretrained",
        16000,
        None,
    )
    data = TelephoneDataModule(
        _subset(tmp_path, "train", 4),
        _subset(tmp_path, "val", 2),
        telephone=None,
        specaugment=None,
        num_workers=0,
        max_frames_per_batch=400,
        frontend_sample_rate=8000,
        dither=0.3,
        language="en",
        itn=False,
    )
    data.connect(module.model)  # the model's token rule and lineage, the data's fbank and prompt settings
    assert data.feeding == FED and module.model.feeding == own
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        use_distributed_sampler=False,
        default_root_dir=str(tmp_path),
        callbacks=[checkpoints],
    )
    trainer.fit(module, datamodule=data)
    assert module.model.feeding == own  # the live model keeps its own record ("before" scores, validation)

    checkpoint = load_torch_file(tmp_path / "ckpt" / "last.ckpt", lightning=True)  # weights_only=True
    assert type(checkpoint[CHECKPOINT_KEY]) is Feeding and Feeding.from_checkpoint(checkpoint) == FED
    rebuilt = module_from_checkpoint(checkpoint)
    assert rebuilt.model.feeding == FED
    written = export_module(rebuilt, tmp_path / "export")
    transcripts = {}
    for layout, config in (("funasr", "config.yaml"), ("hf", "nano8k_funasr_config.yaml")):
        funasr = yaml.safe_load((written[layout] / config).read_text(encoding="utf-8"))
        assert (funasr["frontend_conf"]["fs"], funasr["frontend_conf"]["dither"]) == (8000, 0.3)  # FunASR reads these
        assert funasr["audio_adaptor_conf"]["use_low_frame_rate"] is False
        assert Feeding.from_funasr(funasr) == FED
        loaded = nano8k.load_model(written[layout], device="cpu")
        assert loaded.feeding == FED and loaded.network.frontend.sample_rate == 8000
        assert decode_feeding(loaded.network, DecodeOptions(dither=FED.dither))[0] == FED  # decoding reads it as is
        results = loaded.transcribe([DIGITS / "wav" / "tel_test_en_00000.wav"], dither=FED.dither, max_new_tokens=4)
        assert results[0].error is None
        transcripts[layout] = results
    assert transcripts["funasr"] == transcripts["hf"]
