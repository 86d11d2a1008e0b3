"""Silent audio and overlong transcripts: counted warnings naming key and file (validate, preflight), not errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from nano8k.training.config import layered_config  # a shipped config with its base: one file

ROOT = Path(__file__).resolve().parents[2]
LONG_TEXT = "please call me back " * 75  # 1,500 characters for two seconds of audio
NORMAL_TEXT = "please call me back " * 10  # 200 characters: a long but plausible utterance


def wav(path: Path, peak: float, seconds: float = 2.0) -> Path:
    t = np.arange(int(seconds * 8000)) / 8000
    sf.write(str(path), (peak * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000, subtype="FLOAT")  # exact peaks
    return path


@pytest.fixture
def manifest(tmp_path) -> Path:
    rows = [
        ("good", wav(tmp_path / "good.wav", 0.3), NORMAL_TEXT),
        ("silent", wav(tmp_path / "silent.wav", 0.0), "hello"),  # digital silence
        ("quiet", wav(tmp_path / "quiet.wav", 1e-4), "hello"),  # -80 dBFS: a muted leg of the call
        ("soft", wav(tmp_path / "soft.wav", 0.003), "hello"),  # -50 dBFS: quiet, but speech can be that quiet
        ("long", wav(tmp_path / "long.wav", 0.3), LONG_TEXT),
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"key": k, "source": str(w), "target": t}) + "\n" for k, w, t in rows))
    return path


def _warned(out: str) -> dict[str, str]:
    """key -> WARN line."""
    lines = [line for line in out.splitlines() if line.startswith("WARN")]
    return {line.split("key=")[1].split(" |")[0]: line for line in lines}


def test_validate_warns_about_silent_audio_and_long_transcripts_and_exits_0(manifest, tmp_path, capsys):
    from nano8k.commands.validate import main

    assert main([str(manifest)]) == 0  # warnings only: good data keeps exit status 0
    out = capsys.readouterr().out
    warned = _warned(out)
    assert sorted(warned) == ["long", "quiet", "silent"]
    assert "silent audio" in warned["silent"] and "-inf dBFS" in warned["silent"]
    assert str(tmp_path / "silent.wav") in warned["silent"] and "m.jsonl:2" in warned["silent"]
    assert "silent audio" in warned["quiet"] and "-80.0 dBFS" in warned["quiet"]
    assert "long transcript: 1500 characters" in warned["long"] and str(tmp_path / "long.wav") in warned["long"]
    assert "5 entries, 5 ok, 0 with errors, 3 warnings" in out
    assert main([str(manifest), "--convert", str(tmp_path / "clean.jsonl")]) == 0  # warnings do not block conversion
    assert len((tmp_path / "clean.jsonl").read_text().splitlines()) == 5


def test_validate_header_only_still_warns_about_long_transcripts(manifest, capsys):
    from nano8k.commands.validate import main

    assert main([str(manifest), "--header_only"]) == 0
    assert sorted(_warned(capsys.readouterr().out)) == ["long"]  # no decoding, no silence check


def test_preflight_warns_about_long_transcripts_without_failing(manifest, monkeypatch):
    from nano8k.checks import CHECKS, run_preflight

    monkeypatch.chdir(ROOT)
    config = layered_config(ROOT / "configs" / "demo.yaml")
    config["data"]["train_manifests"] = str(manifest)
    results = run_preflight(config, skip=[c for c in CHECKS if c != "manifests"])
    assert [r.name for r in results] == ["manifests"]
    result = results[0]
    assert result.status == "warn", result.message
    assert "train: 1 long transcripts" in result.message and "key=long" in result.message
    assert str(manifest.parent / "long.wav") in result.message and "1500 characters" in result.message
