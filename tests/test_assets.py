"""Bundled models: the tiny template's seeded random init is reproducible; the shipped mini model is the only weight
file in the package, small, in the release layout, and carries its feeding record and scores."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

import nano8k
from nano8k.model.bundled import MINI_MODEL_DIR, TINY_TEMPLATE_DIR, mini_model_dir, tiny_model_dir
from nano8k.model.checkpoint import load_pretrained, read_model_configs
from nano8k.model.feeding import Feeding
from tests.conftest import TINY_DIR

WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")


def test_the_package_ships_only_the_mini_models_weights():
    package = Path(nano8k.__file__).resolve().parent
    weights = [p for p in package.rglob("*") if p.suffix in WEIGHT_SUFFIXES]
    assert weights == [MINI_MODEL_DIR / "model.pt"]
    assert sum(p.stat().st_size for p in MINI_MODEL_DIR.rglob("*") if p.is_file()) <= 5e6
    assert (TINY_TEMPLATE_DIR / "config.yaml").is_file() and (
        TINY_TEMPLATE_DIR / "Qwen3-0.6B" / "tokenizer.json"
    ).is_file()


def test_the_mini_model_carries_its_feeding_and_scores():
    assert mini_model_dir() == MINI_MODEL_DIR
    assert Feeding.from_funasr(read_model_configs(MINI_MODEL_DIR)[0]) == Feeding(
        "all_frames", "self-pretrained", dither=0.0
    )
    config = yaml.safe_load((MINI_MODEL_DIR / "config.yaml").read_text())
    assert config["audio_adaptor_conf"]["use_low_frame_rate"] is False
    scores = json.loads((MINI_MODEL_DIR / "scores.json").read_text())
    readme = (MINI_MODEL_DIR / "README.md").read_text()
    assert f"{scores['clean_test']['cer']:.3f}" in readme and "python scripts/make_mini_release.py" in readme
    state = torch.load(MINI_MODEL_DIR / "model.pt", weights_only=True)["state_dict"]
    fixture = torch.load(TINY_DIR / "model.pt", weights_only=True)["state_dict"]
    assert list(state) == list(fixture) and all(state[k].dtype == torch.bfloat16 for k in state)


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
    assert model.feeding == Feeding(audio_tokens="low_frame_rate", weights="random-init", dither=0.0)
