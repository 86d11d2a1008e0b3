"""Where a model lives: a ``model_dir`` value (a folder, ``$NANO8K_MODEL_DIR``, or a bundled model's name) as a path."""

from __future__ import annotations

import os
from pathlib import Path

from nano8k.errors import ConfigError
from nano8k.model.bundled import mini_model_dir, tiny_model_dir

MODEL_DIR_ENV = "NANO8K_MODEL_DIR"
TINY_ALIAS = "tiny"  # model_dir value that selects the bundled random-init tiny model
MINI_ALIAS = "mini"  # model_dir value that selects the shipped self-pretrained mini wideband model


def resolve_model_dir(value: str | os.PathLike | None) -> Path:
    """``value``, else ``$NANO8K_MODEL_DIR``; ``tiny`` / ``mini`` are the bundled models. Clear error if unset."""
    value = value if value not in (None, "") else os.environ.get(MODEL_DIR_ENV)
    if not value:
        raise ConfigError(
            f"model.model_dir is not set: pass --model.model_dir DIR or export {MODEL_DIR_ENV}=DIR (the "
            f"Fun-ASR-Nano-2512 folder with model.pt, config.yaml, Qwen3-0.6B/); '{MINI_ALIAS}' selects the bundled "
            f"mini wideband model, '{TINY_ALIAS}' a random-init tiny one"
        )
    if str(value) == TINY_ALIAS:
        return tiny_model_dir()
    if str(value) == MINI_ALIAS:
        return mini_model_dir()
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(f"model.model_dir={value!r} (or ${MODEL_DIR_ENV}): directory not found")
    return path
