"""The demo model: a tiny Fun-ASR-Nano config + tokenizer shipped as text; its random-init weights are generated."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch

TINY_TEMPLATE_DIR = Path(__file__).resolve().parent / "tiny-nano"  # config.yaml, Qwen3-0.6B/ tokenizer; no weights
TINY_SEED = 20251215
CACHE_ENV = "NANO8K_CACHE_DIR"


def _cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "nano8k").expanduser()


def tiny_model_path() -> Path:
    """Where the generated tiny model lives: keyed by the template's config files and the seed."""
    digest = hashlib.sha1(str(TINY_SEED).encode())
    for name in ("config.yaml", "Qwen3-0.6B/config.json"):
        digest.update((TINY_TEMPLATE_DIR / name).read_bytes())
    return _cache_root() / f"tiny-nano-{digest.hexdigest()[:12]}"


def tiny_model_dir() -> Path:
    """The tiny random-init model in the release layout, generated (seeded, bf16 model.pt) on first use."""
    target = tiny_model_path()
    if (target / "model.pt").is_file():
        return target
    from nano8k.model.checkpoint import atomic_torch_save, build_network, read_model_configs
    from nano8k.model.convert import Layout, build_config, key_plan, to_funasr_state_dict

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-nano-", dir=target.parent))
    try:
        shutil.copytree(TINY_TEMPLATE_DIR, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns("README.md"))
        funasr, qwen = read_model_configs(staging)
        config = build_config(funasr, qwen, source=str(TINY_TEMPLATE_DIR / "config.yaml"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            network = build_network(config, random_init=True)
        plan = key_plan(Layout.from_config(config))
        state = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in to_funasr_state_dict(plan, network.state_dict()).items()}
        atomic_torch_save({"state_dict": state}, staging / "model.pt")
        try:
            os.rename(staging, target)  # atomic: a concurrent process (another DDP rank) may have won the race
        except OSError:
            if not (target / "model.pt").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
