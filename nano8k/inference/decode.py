"""Batched greedy decoding of requests with a loaded model, fed as its ``Feeding`` says (with decode overrides)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from nano8k.data.audio import MultichannelPolicy
from nano8k.data.manifests.io import Utterance
from nano8k.errors import AudioError, DataError, PromptError
from nano8k.inference.featurize import Featurizer, Request
from nano8k.model.batch import SpeechItem, collate_sources
from nano8k.model.feeding import PROMPT_FIELDS, Feeding
from nano8k.model.nano import NanoASR
from nano8k.model.prompt import PromptEncoder
from nano8k.scoring.report import cer_by_language

DECODE_OVERRIDES = ("frontend_rate", *PROMPT_FIELDS)  # the Feeding fields a decode may override


@dataclass(frozen=True)
class DecodeOptions:
    """Decoding settings. By default a model is fed as its ``Feeding`` says; ``overrides`` replaces some of its
    fields (``DECODE_OVERRIDES``). ``hotwords`` go into every prompt that has none of its own; ``language`` among
    the overrides, or hotwords, replace a manifest line's own prompt. ``dither`` is 0 (decoding is deterministic)
    unless given. ``multichannel``: a multi-channel input with no channel named (error, first, mix)."""

    overrides: Mapping[str, Any] = field(default_factory=dict)
    hotwords: tuple[str, ...] = ()
    batch_size: int = 16
    max_new_tokens: int = 256
    dither: float = 0.0
    multichannel: MultichannelPolicy = "error"


def decode_feeding(model: NanoASR, options: DecodeOptions) -> tuple[Feeding, list[str]]:
    """The feeding ``model`` is decoded with (its own, ``options.overrides`` applied, dither ``options.dither``) and
    one notice per override that changes it, naming the field."""
    unknown = sorted(set(options.overrides) - set(DECODE_OVERRIDES))
    if unknown:
        raise ValueError(f"unknown decode override(s) {unknown}; known: {sorted(DECODE_OVERRIDES)}")
    own = model.feeding
    notices = [
        f"{key} {value!r} overrides the model's feeding ({key}: {getattr(own, key)!r})"
        for key, value in options.overrides.items()
        if value != getattr(own, key)
    ]
    return replace(own, **options.overrides, dither=options.dither), notices


@dataclass
class Transcript:
    """One decoded utterance (``error`` set, ``text`` empty, when its audio or prompt could not be used)."""

    utt: Utterance
    text: str = ""
    error: str | None = None


class _Prompts:
    """Source prompts of requests: the feeding's settings, a request's own language and hotwords."""

    def __init__(self, model: NanoASR, feeding: Feeding, options: DecodeOptions):
        self.tokenizer, self.feeding, self.options = model.tokenizer, feeding, options
        self.encoders: dict[str | None, PromptEncoder] = {}

    def encode(self, request: Request, audio_tokens: int) -> Any:
        settings = self.feeding.prompt
        if request.language is not None:
            settings = replace(settings, language=request.language)
        encoder = self.encoders.get(settings.language) or PromptEncoder(self.tokenizer, settings)
        self.encoders[settings.language] = encoder
        hotwords = self.options.hotwords if request.hotwords is None else request.hotwords
        given_language = "language" in self.options.overrides or request.language is not None
        own_prompt = request.utt.prompt if not given_language and not hotwords else None
        try:
            return encoder.encode(audio_tokens, None, prompt=own_prompt, lang=request.utt.lang, hotwords=hotwords)
        except ValueError as exc:  # e.g. language "manifest" and a line whose lang the prompt has no name for
            raise PromptError(f"prompt: {exc}") from exc


def transcribe_requests(
    model: NanoASR,
    requests: Sequence[Request],
    options: DecodeOptions,
    on_batch: Callable[[Sequence[Transcript]], None] | None = None,
) -> list[Transcript]:
    """Decode ``requests`` in batches of ``options.batch_size`` (sorted by length); results in input order.
    ``on_batch`` receives each batch's results as soon as it is decoded (a caller writing them loses nothing already
    decoded if a later batch fails). A request whose audio cannot be used (unreadable, out of range, longer than the
    encoder's ``max_frames``) or whose prompt cannot be written gets its ``error`` set; the others are decoded."""
    feeding, _ = decode_feeding(model, options)
    featurize = Featurizer(feeding.frontend(model.frontend), model.max_frames, options.multichannel)
    prompts = _Prompts(model, feeding, options)
    results = [Transcript(request.utt) for request in requests]
    items: list[tuple[int, SpeechItem]] = []
    for index, request in enumerate(requests):
        try:
            feats = featurize(request)
            prompt = prompts.encode(request, feeding.token_count(feats.shape[0]))
            items.append((index, SpeechItem(key=request.utt.key, feats=feats, prompt=prompt)))
        except (AudioError, PromptError) as exc:
            results[index].error = str(exc)
    items.sort(key=lambda pair: pair[1].feats.shape[0])
    device = next(model.parameters()).device
    for start in range(0, len(items), options.batch_size):
        chunk = items[start : start + options.batch_size]
        batch = collate_sources([item for _, item in chunk], model.pad_id).to(device)
        with torch.no_grad():
            texts = model.transcribe(batch, options.max_new_tokens)
        for (index, _), text in zip(chunk, texts):
            results[index].text = text
        if on_batch is not None:
            on_batch([results[index] for index, _ in chunk])
    return results


def transcribe_utterances(
    model: NanoASR,
    utts: Sequence[Utterance],
    options: DecodeOptions,
    on_batch: Callable[[Sequence[Transcript]], None] | None = None,
) -> list[Transcript]:
    """``transcribe_requests`` of utterances (files, spans and channels of them) with the options' prompts."""
    return transcribe_requests(model, [Request(utt) for utt in utts], options, on_batch)


def decode_and_score(
    model: NanoASR, utts: Sequence[Utterance], options: DecodeOptions, source: str, normalizer: str = "basic"
) -> tuple[dict[str, Any], list[str]]:
    """Greedy-decode ``utts`` (the model as its feeding says) and score pooled CER overall and per language; a
    ``DataError`` naming ``source`` when any utterance fails to decode."""
    results = transcribe_utterances(model, utts, options)
    failed = [r for r in results if r.error is not None]
    if failed:
        raise DataError(
            f"{source}: {len(failed)} file(s) failed to decode, first {failed[0].utt.key}: {failed[0].error}"
        )
    hyps = [r.text for r in results]
    return cer_by_language([u.target for u in utts], hyps, [u.lang for u in utts], normalizer), hyps
