"""nano8k: fine-tune Fun-ASR-Nano-2512 for 8 kHz telephone speech; ``nano8k.load_model(...)`` to transcribe."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nano8k.inference.api import Model, Speech, examples, examples_manifest, load_model

__all__ = ["Model", "Speech", "examples", "examples_manifest", "load_model"]


def __getattr__(name: str) -> Any:
    """The front door, imported on first use so ``import nano8k`` stays cheap (no torch)."""
    if name in __all__:
        from nano8k.inference import api

        return getattr(api, name)
    raise AttributeError(f"module 'nano8k' has no attribute {name!r}")
