"""The bundled models: the tiny random-init one (weights generated on first use) and the shipped mini model."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from nano8k.atomic import atomic_torch_save
from nano8k.model.checkpoint import build_network, read_model_configs
from nano8k.model.convert import Layout, build_config, key_plan, to_funasr_state_dict
from nano8k.model.feeding import Feeding
from nano8k.paths import cache_root

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"  # nano8k/assets: data only
TINY_TEMPLATE_DIR = ASSETS_DIR / "tiny-nano"  # config.yaml, Qwen3-0.6B/ tokenizer; no weights
MINI_MODEL_DIR = ASSETS_DIR / "mini-nano"  # our self-pretrained mini wideband "release" (scripts/make_mini_release.py)
TINY_SEED = 20251215
TINY_FEEDING = Feeding(audio_tokens="low_frame_rate", weights="random-init", dither=0.0)  # the template's fbank


def tiny_model_path() -> Path:
    """Where the generated tiny model lives: keyed by the template's config files, the seed and the feeding."""
    digest = hashlib.sha1(str(TINY_SEED).encode())
    for name in ("config.yaml", "Qwen3-0.6B/config.json"):
        digest.update((TINY_TEMPLATE_DIR / name).read_bytes())
    digest.update(json.dumps(TINY_FEEDING.section(), sort_keys=True).encode())
    return cache_root() / f"tiny-nano-{digest.hexdigest()[:12]}"


def tiny_model_dir() -> Path:
    """The tiny random-init model in the release layout, generated (seeded, bf16 model.pt) on first use."""
    target = tiny_model_path()
    if not (target / "model.pt").is_file():
        write_random_init(TINY_TEMPLATE_DIR, target, TINY_SEED, TINY_FEEDING)
    return target


def mini_model_dir() -> Path:
    """The shipped mini wideband model (release layout, ``all_frames``, self-pretrained); see its README."""
    if not (MINI_MODEL_DIR / "model.pt").is_file():
        raise FileNotFoundError(
            f"{MINI_MODEL_DIR / 'model.pt'} is missing; rebuild it with `python scripts/make_mini_release.py`"
        )
    return MINI_MODEL_DIR


def write_random_init(template: Path, target: Path, seed: int, feeding: Feeding) -> Path:
    """A seeded random-init model of ``template``'s dimensions in the release layout at ``target``, fed as
    ``feeding`` says.

    Written to a staging folder and renamed into place, so a concurrent process (another DDP rank) never sees a
    half-written model; the one that loses the race keeps the winner's copy.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        shutil.copytree(
            template, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns("README.md", "model.pt", "*.tmp")
        )
        funasr, qwen = read_model_configs(staging)
        funasr = feeding.written_into(funasr)
        (staging / "config.yaml").write_text(
            yaml.safe_dump(funasr, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        config = build_config(funasr, qwen, source=str(template / "config.yaml"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            network = build_network(config, random_init=True)
        plan = key_plan(Layout.from_config(config))
        state = {
            k: v.detach().to(torch.bfloat16).contiguous()
            for k, v in to_funasr_state_dict(plan, network.state_dict()).items()
        }
        atomic_torch_save({"state_dict": state}, staging / "model.pt")
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "model.pt").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
