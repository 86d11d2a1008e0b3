"""Channel tests: one torch thread, real 8 kHz speech, and sound-source folders written on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SPEECH = Path(__file__).resolve().parents[1] / "fixtures" / "speech"


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def speech_8k(seconds: float = 8.0) -> np.ndarray:
    """Real telephone speech (Asterisk prompts, 8 kHz), repeated to ``seconds``."""
    clips = [sf.read(str(SPEECH / f"en_real_0{i}.8k.wav"), dtype="float64")[0] for i in (1, 2)]
    x = np.concatenate(clips)
    return np.tile(x, int(np.ceil(seconds * 8000 / x.size)))[: int(seconds * 8000)]


def write_noise_folder(root: Path, rate: int = 16000) -> Path:
    """A MUSAN-style ``noise/`` tree: two free-sound clips, one sound-bible clip, and MUSAN's non-audio files."""
    rng = np.random.default_rng(0)
    for sub, name, seconds in (
        ("free-sound", "noise-free-sound-0000.wav", 3.0),
        ("free-sound", "noise-free-sound-0001.wav", 0.7),
        ("sound-bible", "noise-sound-bible-0000.wav", 2.0),
    ):
        (root / "noise" / sub).mkdir(parents=True, exist_ok=True)
        t = np.arange(int(seconds * rate)) / rate
        babble = 0.1 * rng.standard_normal(t.size) * (1 + np.sin(2 * np.pi * 2 * t))
        sf.write(str(root / "noise" / sub / name), babble, rate, subtype="PCM_16")
        (root / "noise" / sub / "ANNOTATIONS").write_text("file source license\n")
    (root / "README").write_text("MUSAN\n")
    return root / "noise"
