"""The demo model ships as config + tokenizer only; its seeded random-init weights are generated reproducibly."""

from __future__ import annotations

from pathlib import Path

import torch

import nano8k
from nano8k.assets import TINY_TEMPLATE_DIR, tiny_model_dir
from nano8k.model.checkpoint import load_pretrained
from tests.conftest import TINY_DIR

WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")


def test_the_package_ships_no_weight_files():
    package = Path(nano8k.__file__).resolve().parent
    assert not [p for p in package.rglob("*") if p.suffix in WEIGHT_SUFFIXES]
    assert (TINY_TEMPLATE_DIR / "config.yaml").is_file() and (TINY_TEMPLATE_DIR / "Qwen3-0.6B" / "tokenizer.json").is_file()


def test_generated_tiny_model_is_reproducible_and_release_shaped(tmp_path, monkeypatch):
    first = tiny_model_dir()
    monkeypatch.setenv("NANO8K_CACHE_DIR", str(tmp_path))
    second = tiny_model_dir()
    assert first != second and second.parent == tmp_path
    a = torch.load(first / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(second / "model.pt", weights_only=True)["state_dict"]
    fixture = torch.load(TINY_DIR / "model.pt", weights_only=True)["state_dict"]
    assert list(a) == list(b) == list(fixture)  # the released key order
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == torch.bfloat16 and a[k].shape == fixture[k].shape for k in a)
    assert not all(torch.equal(a[k], fixture[k]) for k in a)  # random, not a copy of the fixture
    assert tiny_model_dir() == second  # generated once, then reused
    model = load_pretrained(second)
    assert model.frontend.dither == 0.0 and model.tokenizer.convert_tokens_to_ids("<|im_end|>") == 402
