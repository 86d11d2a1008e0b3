"""Batched transcription of utterances with a loaded model, fed as the model's recipe record says."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import torch

from nano8k.data.audio import AudioError, MultichannelPolicy
from nano8k.data.badsamples import DataError
from nano8k.data.pipeline.dataset import SpeechDataset
from nano8k.data.manifests.io import Utterance
from nano8k.model.batch import SpeechItem, collate
from nano8k.model.features import FrontendConfig
from nano8k.model.nano import NanoASR
from nano8k.model.prompt import PromptEncoder, PromptSettings
from nano8k.scoring.report import cer_by_language


@dataclass(frozen=True)
class DecodeOptions:
    """Decoding settings. By default a model is fed as its recipe record says (fbank rate ``frontend_conf.fs``,
    prompt settings ``nano8k.prompt``); ``overrides`` replaces some of those (keys of ``RECORD_KEYS``).

    ``hotwords`` go into every prompt; ``language`` among the overrides, or hotwords, replace a manifest line's own
    prompt. ``dither`` is 0 (decoding is deterministic) unless given. ``multichannel`` is the policy for a
    multi-channel file whose utterance names no channel (error, first, mix).
    """

    overrides: Mapping[str, Any] = field(default_factory=dict)
    hotwords: tuple[str, ...] = ()
    batch_size: int = 16
    max_new_tokens: int = 256
    dither: float = 0.0
    multichannel: MultichannelPolicy = "error"


# what a decode option may override, and where the model's recipe record keeps it
RECORD_KEYS = {"frontend_rate": "frontend_conf.fs", "system_prompt": "nano8k.prompt.system_prompt",
               "context_header": "nano8k.prompt.context_header", "language": "nano8k.prompt.language",
               "itn": "nano8k.prompt.itn"}


def feeding(model: NanoASR, options: DecodeOptions) -> tuple[FrontendConfig, PromptSettings, list[str]]:
    """The frontend and prompt settings ``model`` is decoded with: its recipe record, with ``options.overrides``
    applied; plus one notice per override that changes what the record says."""
    unknown = sorted(set(options.overrides) - set(RECORD_KEYS))
    if unknown:
        raise ValueError(f"unknown decode override(s) {unknown}; known: {sorted(RECORD_KEYS)}")
    recorded = {"frontend_rate": model.frontend.sample_rate, **asdict(model.recipe.prompt)}
    notices = [f"--{key} {value!r} overrides the model's recipe record ({RECORD_KEYS[key]}: {recorded[key]!r})"
               for key, value in options.overrides.items() if value != recorded[key]]
    values = {**recorded, **options.overrides}
    frontend = replace(model.frontend, sample_rate=int(values.pop("frontend_rate")), dither=options.dither)
    return frontend, PromptSettings(**values), notices


class PromptError(ValueError):
    """An utterance whose prompt cannot be written; it gets its own error, the others are still decoded."""


@dataclass
class Transcript:
    """One decoded utterance (``error`` set, ``text`` empty, when its audio could not be used)."""

    utt: Utterance
    text: str = ""
    error: str | None = None


def _item(dataset: SpeechDataset, model: NanoASR, utt: Utterance, options: DecodeOptions) -> SpeechItem:
    feats = dataset.features(utt)
    tokens = model.recipe.token_count(feats.shape[0])  # the model's own token rule, from its model dir
    own_prompt = utt.prompt if "language" not in options.overrides and not options.hotwords else None
    try:
        prompt = dataset.prompts.encode(tokens, None, prompt=own_prompt, lang=utt.lang, hotwords=options.hotwords)
    except ValueError as exc:  # e.g. language "manifest" and a line whose lang the prompt has no name for
        raise PromptError(f"prompt: {exc}") from exc
    return SpeechItem(key=utt.key, feats=feats, prompt=prompt, target=utt.target)


def transcribe_utterances(model: NanoASR, utts: Sequence[Utterance], options: DecodeOptions,
                          on_batch: Callable[[Sequence[Transcript]], None] | None = None) -> list[Transcript]:
    """Decode ``utts`` in batches of ``options.batch_size`` (sorted by length); results in input order.
    ``on_batch`` receives each batch's results as soon as it is decoded (a caller writing them as they come loses
    nothing already decoded if a later batch fails).

    An utterance whose audio cannot be used (unreadable, out of range, longer than the encoder's ``max_frames``) or
    whose prompt cannot be written (a language the prompt has no name for) gets its ``error`` set; the others are
    still decoded.
    """
    frontend, prompts, _ = feeding(model, options)
    # no channel simulation or SpecAugment is passed, so train=True only turns on the (per-key seeded) dither
    dataset = SpeechDataset(list(utts), PromptEncoder(model.tokenizer, prompts), frontend, train=options.dither > 0,
                            multichannel=options.multichannel, max_frames=model.max_frames)  # longer: its own error
    results = [Transcript(utt) for utt in utts]
    items: list[tuple[int, SpeechItem]] = []
    for index, utt in enumerate(utts):
        try:
            items.append((index, _item(dataset, model, utt, options)))
        except (AudioError, PromptError) as exc:
            results[index].error = str(exc)
    items.sort(key=lambda pair: pair[1].feats.shape[0])
    device = next(model.parameters()).device
    for start in range(0, len(items), options.batch_size):
        chunk = items[start : start + options.batch_size]
        batch = collate([item for _, item in chunk], model.pad_id).to(device)
        for (index, _), text in zip(chunk, model.transcribe(batch, options.max_new_tokens)):
            results[index].text = text
        if on_batch is not None:
            on_batch([results[index] for index, _ in chunk])
    return results


def decode_and_score(model: NanoASR, utts: Sequence[Utterance], options: DecodeOptions,
                     source: str, normalizer: str = "basic") -> tuple[dict[str, Any], list[str]]:
    """Greedy-decode ``utts`` (the model as its recipe record says) and score pooled CER overall and per language."""
    with torch.no_grad():
        results = transcribe_utterances(model, utts, options)
    failed = [r for r in results if r.error is not None]
    if failed:
        raise DataError(f"{source}: {len(failed)} file(s) failed to decode, first {failed[0].utt.key}: "
                        f"{failed[0].error}")
    hyps = [r.text for r in results]
    return cer_by_language([u.target for u in utts], hyps, [u.lang for u in utts], normalizer), hyps
