"""Score a model directory on a manifest: pooled CER overall and per language, as the mini results report it."""

from __future__ import annotations

import os
from pathlib import Path

from nano8k.data.manifests.io import read_utterances
from nano8k.inference import DecodeOptions, decode_and_score
from nano8k.model.checkpoint import load_pretrained


def score_model(
    model_dir: str | os.PathLike, manifest: str | os.PathLike, max_new_tokens: int = 12, normalizer: str = "basic"
) -> dict:
    """CER of ``model_dir`` (fed as its feeding record says) on every utterance of ``manifest``."""
    utts = read_utterances(manifest, "score_model")
    model = load_pretrained(Path(model_dir)).eval()
    options = DecodeOptions(batch_size=32, max_new_tokens=max_new_tokens)
    scores, _ = decode_and_score(model, utts, options, str(manifest), normalizer)
    scores["parameters"] = sum(p.numel() for p in model.network.parameters())
    return scores
