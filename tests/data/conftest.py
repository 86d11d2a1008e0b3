"""Shared helpers for data-layer tests: fixture paths, a tokenizer, and writers for (bad) audio files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
SPEECH = ROOT / "tests" / "fixtures" / "speech"
DATA_FIXTURES = ROOT / "tests" / "fixtures" / "data"
TOKENIZER_DIR = ROOT / "tests" / "fixtures" / "tiny-nano"
DEMO = ROOT / "data_manifests" / "demo"


@pytest.fixture(scope="session")
def tokenizer():
    from nano8k.data.pipeline.datamodule import load_tokenizer

    return load_tokenizer(TOKENIZER_DIR)


def tone(
    path: Path, seconds: float, rate: int = 8000, freq: float = 440.0, channels: int = 1, subtype: str = "PCM_16"
) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    if channels > 1:
        wave = np.stack([wave] * channels, axis=1)
    sf.write(str(path), wave, rate, subtype=subtype)
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(row if isinstance(row, str) else json.dumps(row, ensure_ascii=False))
            handle.write("\n")
    return path


def fixture_rows(tmp_path: Path, n: int = 6) -> list[dict]:
    """``n`` simple-jsonl rows over the real speech fixtures (absolute paths)."""
    meta = json.loads((SPEECH / "fixtures.json").read_text())
    rows = []
    for i in range(n):
        entry = meta[i % len(meta)]
        wav = sorted(SPEECH.glob(f"{entry['key']}.*.wav"))[0]
        rows.append(
            {"key": f"u{i:02d}_{entry['key']}", "source": str(wav), "target": entry["target"], "lang": entry["lang"]}
        )
    return rows
