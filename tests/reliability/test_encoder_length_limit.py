"""The encoder's length limit (2,048 LFR frames, 122.9 s): a bad sample in fit, a per-file error in transcribe,
checked against data.max_duration by preflight."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from nano8k.training.config import layered_config  # a shipped config with its base: one file

ROOT = Path(__file__).resolve().parents[2]
TINY_DIR = ROOT / "tests" / "fixtures" / "tiny-nano"
SHORT_WAV = TINY_DIR / "s3_8k_1p05s.wav"
COMMON = ["--model_dir", str(TINY_DIR), "--max_new_tokens", "4", "--device", "cpu"]
LONG_SECONDS = 124.0  # 2067 LFR frames: past the 2048 the encoder's sinusoid table holds


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long_call.wav"
    t = np.arange(int(LONG_SECONDS * 8000)) / 8000
    sf.write(str(path), (0.1 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 8000)
    return path


def _manifest(path: Path, wavs: dict[str, Path]) -> str:
    path.write_text(
        "".join(json.dumps({"key": k, "source": str(w), "target": "hello"}) + "\n" for k, w in wavs.items())
    )
    return str(path)


def test_transcribe_reports_the_overlong_file_and_keeps_the_others(long_wav, tmp_path, capsys):
    from nano8k.commands import transcribe

    out = tmp_path / "out.jsonl"
    rc = transcribe.main([str(SHORT_WAV), str(long_wav), *COMMON, "--output", str(out)])
    captured = capsys.readouterr()
    assert rc == 1
    assert [line.split("\t")[0] for line in captured.out.strip().splitlines()] == [SHORT_WAV.stem]
    assert [json.loads(line)["key"] for line in out.read_text().splitlines()] == [SHORT_WAV.stem]
    error = next(line for line in captured.err.splitlines() if line.startswith("long_call:"))
    assert "LFR frames" in error and "2048" in error and "124.0 s" in error
    assert "1 of 2 file(s) failed" in captured.err


def _datamodule(manifest: str, policy: str):
    from nano8k.data.pipeline.datamodule import TelephoneDataModule

    return TelephoneDataModule(
        train_manifests=manifest,
        telephone=None,
        specaugment=None,
        dither=0.0,
        num_workers=0,
        max_duration=200.0,
        on_bad_sample=policy,
        max_bad_fraction=0.6,
        max_frames_per_batch=4000,
    )


def test_fit_skips_the_overlong_utterance_under_the_bad_sample_policy(tiny_model, long_wav, tmp_path):
    from nano8k.model.batch import SpeechBatch

    manifest = _manifest(tmp_path / "train.jsonl", {"short": SHORT_WAV, "long": long_wav})
    dm = _datamodule(manifest, "skip")
    dm.connect(tiny_model)
    seen = []
    with torch.no_grad():
        for batch in dm.train_dataloader():
            if not isinstance(batch, SpeechBatch):  # a batch whose every sample was bad
                continue
            tiny_model(batch)  # old code: the encoder's ValueError ends the run here
            seen += batch.keys
    assert seen == ["short"]
    log = dm.bad_samples["train"]
    assert [b.key for b in log.items] == ["long"]
    reason = log.items[0].reason
    assert "2067 LFR frames" in reason and "2048" in reason and "122.9 s" in reason
    assert log.items[0].audio == str(long_wav)


def test_fit_stops_naming_the_overlong_utterance_under_on_bad_sample_error(tiny_model, long_wav, tmp_path):
    from nano8k.errors import DataError

    manifest = _manifest(tmp_path / "train.jsonl", {"long": long_wav})
    dm = _datamodule(manifest, "error")
    dm.connect(tiny_model)
    with pytest.raises(DataError, match=r"(?s)on_bad_sample=error.*LFR frames.*key=long"):
        list(dm.train_dataloader())


def _config(**data) -> dict:
    config = layered_config(ROOT / "configs" / "demo.yaml")
    config["data"].update(data)
    return config


def _manifests_check(config: dict):
    from nano8k.checks import CHECKS, run_preflight

    results = run_preflight(config, skip=[c for c in CHECKS if c != "manifests"])
    assert [r.name for r in results] == ["manifests"]
    return results[0]


def test_preflight_fails_when_max_duration_exceeds_the_encoder(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = _manifests_check(_config(max_duration=200.0))
    assert result.status == "fail", result.message
    assert "data.max_duration=200 s" in result.message and "2048" in result.message and "122.9" in result.message
    assert _manifests_check(_config(max_duration=120.0)).status == "pass"


def test_preflight_warns_about_overlong_audio_when_max_duration_is_unlimited(long_wav, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    manifest = _manifest(tmp_path / "train.jsonl", {"short": SHORT_WAV, "long": long_wav})
    result = _manifests_check(_config(train_manifests=manifest, max_duration=float("inf")))
    assert result.status == "warn", result.message
    assert "1 utterances are longer than" in result.message and "2048 LFR frames" in result.message
    assert "key=long" in result.message and str(long_wav) in result.message and "key=short" not in result.message
