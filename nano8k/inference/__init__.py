"""Decoding with a loaded model, fed as its ``Feeding`` says.

- ``featurize``: ``Request`` (a file, a span and channel of one, or samples; its own prompt options) and the
  ``Featurizer`` (audio -> encoder input, no augmentation; dither only when asked, seeded per key)
- ``decode``: ``DecodeOptions``, ``decode_feeding`` (overrides by Feeding field, with notices),
  ``transcribe_requests`` / ``transcribe_utterances`` (batched, left-padded, label-free), ``decode_and_score``
- ``api``: the front door, ``load_model(...)`` -> ``Model.transcribe(inputs)`` / ``Model.score(manifest)``
- ``arguments``: the options ``transcribe`` and ``evaluate`` share (UserError kinds, never SystemExit)
"""

from nano8k.errors import PromptError
from nano8k.inference.api import (
    Model,
    Speech,
    Transcription,
    examples,
    examples_manifest,
    load_for_inference,
    load_model,
)
from nano8k.inference.decode import (
    DECODE_OVERRIDES,
    DecodeOptions,
    Transcript,
    decode_and_score,
    decode_feeding,
    transcribe_requests,
    transcribe_utterances,
)
from nano8k.inference.featurize import Featurizer, Request

__all__ = [
    "DECODE_OVERRIDES",
    "DecodeOptions",
    "Featurizer",
    "Model",
    "PromptError",
    "Request",
    "Speech",
    "Transcript",
    "Transcription",
    "decode_and_score",
    "decode_feeding",
    "examples",
    "examples_manifest",
    "load_for_inference",
    "load_model",
    "transcribe_requests",
    "transcribe_utterances",
]
