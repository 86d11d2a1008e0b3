"""Decoding with a loaded model, fed as its ``Feeding`` says.

- ``featurize``: ``Request`` (a file, a span and channel of one, or samples; its own prompt options) and the
  ``Featurizer`` (audio -> encoder input, no augmentation; dither only when asked, seeded per key)
- ``decode``: ``DecodeOptions``, ``decode_feeding`` (overrides by Feeding field, with notices),
  ``transcribe_requests`` / ``transcribe_utterances`` (batched, left-padded, label-free), ``decode_and_score``
- ``api``: the front door, ``load_model(...)`` -> ``Model.transcribe(inputs)`` / ``Model.score(manifest)``
- ``arguments``: the options ``transcribe`` and ``evaluate`` share (UserError kinds, never SystemExit)
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it; imported on first use, so ``nano8k.inference.featurize`` alone stays light
_HOMES = {
    "Model": "api",
    "Speech": "api",
    "Transcription": "api",
    "examples": "api",
    "examples_manifest": "api",
    "load_for_inference": "api",
    "load_model": "api",
    "DECODE_OVERRIDES": "decode",
    "DecodeOptions": "decode",
    "Transcript": "decode",
    "decode_and_score": "decode",
    "decode_feeding": "decode",
    "transcribe_requests": "decode",
    "transcribe_utterances": "decode",
    "Featurizer": "featurize",
    "Request": "featurize",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
