"""Score a model directory on a manifest: pooled CER overall and per language, as the mini results report it."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from nano8k.data.manifest import read_manifest
from nano8k.inference import DecodeOptions, transcribe_utterances
from nano8k.model.checkpoint import load_pretrained
from nano8k.training.metrics import cer_by_language


def score_model(model_dir: str | os.PathLike, manifest: str | os.PathLike, max_new_tokens: int = 12) -> dict:
    """CER of ``model_dir`` (fed as its recipe record says) on every utterance of ``manifest``."""
    contents = read_manifest(manifest)
    if contents.bad:
        raise ValueError(f"{manifest}: {len(contents.bad)} bad line(s), first: {contents.bad[0].describe()}")
    model = load_pretrained(Path(model_dir)).eval()
    with torch.no_grad():
        results = transcribe_utterances(model, contents.utterances, DecodeOptions(batch_size=32,
                                                                                  max_new_tokens=max_new_tokens))
    failed = [r for r in results if r.error]
    if failed:
        raise ValueError(f"{manifest}: {len(failed)} file(s) failed, first {failed[0].utt.key}: {failed[0].error}")
    utts = contents.utterances
    scores = cer_by_language([u.target for u in utts], [r.text for r in results], [u.lang for u in utts])
    scores["parameters"] = sum(p.numel() for p in model.network.parameters())
    return scores
