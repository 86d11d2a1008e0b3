"""Shared pytest fixtures: paths to the bundled golden fixture and the tiny model loaded once per session."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_DIR = FIXTURES / "tiny-nano"
SPEECH_DIR = FIXTURES / "speech"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("NANO8K_CACHE_DIR", tempfile.mkdtemp(prefix="nano8k-test-cache-"))  # the generated tiny model
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist the workers share the cores: torch (and what tests spawn) on one thread each."""
    if (getattr(config.option, "numprocesses", None) or 0) > 1:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")


@pytest.fixture(autouse=True)
def _isolate_wandb(tmp_path, monkeypatch):
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    with np.load(TINY_DIR / "golden.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def golden_meta() -> dict:
    return json.loads((TINY_DIR / "golden_meta.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def tiny_model():
    from nano8k.model.checkpoint import load_pretrained

    return load_pretrained(TINY_DIR)


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (the suite shares two cores); folders make it autouse in their conftest."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
