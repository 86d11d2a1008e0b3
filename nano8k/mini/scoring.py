"""Score a model directory on a manifest: pooled CER overall and per language, as the mini results report it."""

from __future__ import annotations

import os
from pathlib import Path

from nano8k.data.manifest import read_manifest
from nano8k.inference import DecodeOptions
from nano8k.model.checkpoint import load_pretrained
from nano8k.training.before_after import decode_and_score


def score_model(model_dir: str | os.PathLike, manifest: str | os.PathLike, max_new_tokens: int = 12) -> dict:
    """CER of ``model_dir`` (fed as its recipe record says) on every utterance of ``manifest``."""
    contents = read_manifest(manifest)
    if contents.bad:
        raise ValueError(f"{manifest}: {len(contents.bad)} bad line(s), first: {contents.bad[0].describe()}")
    model = load_pretrained(Path(model_dir)).eval()
    options = DecodeOptions(batch_size=32, max_new_tokens=max_new_tokens)
    scores, _ = decode_and_score(model, contents.utterances, options, str(manifest))
    scores["parameters"] = sum(p.numel() for p in model.network.parameters())
    return scores
