"""Finite but out-of-range float audio (±8e36) is refused naming the file, and non-finite features are a bad sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[2]
TINY_DIR = ROOT / "tests" / "fixtures" / "tiny-nano"
GOOD_WAV = TINY_DIR / "s3_8k_1p05s.wav"


def float_wav(path: Path, peak: float, seconds: float = 1.0) -> Path:
    """A float WAV: a tone scaled so its largest sample is ``peak``."""
    t = np.arange(int(seconds * 8000)) / 8000
    wave = np.sin(2 * np.pi * 440 * t)
    sf.write(str(path), (peak * wave / np.abs(wave).max()).astype(np.float32), 8000, subtype="FLOAT")
    return path


@pytest.fixture
def huge(tmp_path) -> Path:
    return float_wav(tmp_path / "huge.wav", 8e36)


def test_load_audio_refuses_out_of_range_samples_and_keeps_headroom(huge, tmp_path):
    from nano8k.data.audio import load_audio
    from nano8k.errors import AudioError

    with pytest.raises(AudioError, match=r"out of range: peak \|sample\| 8e\+36 > 2\.0.*huge\.wav"):
        load_audio(huge)
    wave, _ = load_audio(float_wav(tmp_path / "hot.wav", 1.5))  # a slightly clipped float file is still audio
    assert float(wave.abs().max()) == pytest.approx(1.5)


def test_validate_reports_out_of_range_audio_as_a_bad_entry(huge, tmp_path, capsys):
    from nano8k.commands.validate import main

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"key": k, "source": str(w), "target": "hi"}) + "\n"
            for k, w in (("good", GOOD_WAV), ("huge", huge))
        )
    )
    assert main([str(manifest)]) == 1
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "m.jsonl:2" in errors[0] and "key=huge" in errors[0] and "8e+36" in errors[0]


def test_transcribe_reports_the_out_of_range_file_and_exits_1(huge, capsys):
    from nano8k.commands import transcribe

    rc = transcribe.main(
        [str(GOOD_WAV), str(huge), "--model_dir", str(TINY_DIR), "--max_new_tokens", "4", "--device", "cpu"]
    )
    captured = capsys.readouterr()
    assert rc == 1
    assert [line.split("\t")[0] for line in captured.out.strip().splitlines()] == [GOOD_WAV.stem]
    assert any(line.startswith("huge:") and "out of range" in line for line in captured.err.splitlines())


def _dataset(utts, policy: str):
    from nano8k.data.badsamples import BadSampleLog
    from nano8k.data.pipeline.datamodule import load_tokenizer
    from nano8k.data.pipeline.dataset import SpeechDataset
    from nano8k.model.features import FrontendConfig
    from nano8k.model.prompt import PromptEncoder

    log = BadSampleLog(policy, 1.0, name="train")
    return SpeechDataset(utts, PromptEncoder(load_tokenizer(TINY_DIR)), FrontendConfig(), bad_log=log), log


def test_dataset_skips_out_of_range_audio_naming_the_file(huge):
    from nano8k.data.manifests.io import Utterance
    from nano8k.data.pipeline.dataset import Skipped

    dataset, log = _dataset([Utterance("good", GOOD_WAV, "hi"), Utterance("huge", huge, "hi")], "skip")
    item = dataset[1]
    assert isinstance(item, Skipped) and "out of range" in item.bad.reason and item.bad.audio == str(huge)
    assert bool(torch.isfinite(dataset[0].feats).all())
    assert log.count == 1


class RawUtterance:
    """Mixin: audio handed over as it is, bypassing ``load_audio``'s range check (e.g. from another loader)."""

    def load(self, multichannel="error"):
        return torch.full((8000,), 8e36), 8000


def test_non_finite_features_are_a_bad_sample():
    from nano8k.data.manifests.io import Utterance
    from nano8k.data.pipeline.dataset import Skipped
    from nano8k.errors import DataError

    Raw = type("Raw", (RawUtterance, Utterance), {})
    dataset, log = _dataset([Raw("raw", GOOD_WAV, "hi", line=7, manifest=Path("m.jsonl"))], "skip")
    item = dataset[0]
    assert isinstance(item, Skipped), "NaN features went into a batch"
    assert "non-finite features" in item.bad.reason and item.bad.describe().startswith("m.jsonl:7")
    assert log.count == 1 and log.items[0].key == "raw"
    strict, _ = _dataset([Raw("raw", GOOD_WAV, "hi")], "error")
    with pytest.raises(DataError, match=r"non-finite features.*key=raw"):
        strict[0]
