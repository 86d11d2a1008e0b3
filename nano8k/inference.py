"""Batched transcription of utterances with a loaded model, fed as the model's recipe record says."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from nano8k.data.audio import AudioError, MultichannelPolicy
from nano8k.data.dataset import SpeechDataset
from nano8k.data.manifest import Utterance
from nano8k.model.batch import SpeechItem, collate
from nano8k.model.nano import NanoASR


@dataclass(frozen=True)
class DecodeOptions:
    """Prompt and decoding settings; ``language``/``hotwords`` given here override a manifest line's own prompt.

    ``frontend_rate`` None means the model's own fbank rate (``frontend_conf.fs`` of its model dir).
    ``multichannel`` is the policy for a multi-channel file whose utterance names no channel (error, first, mix).
    """

    language: str | None = None
    itn: bool = True
    hotwords: tuple[str, ...] = ()
    batch_size: int = 16
    max_new_tokens: int = 256
    frontend_rate: int | None = None
    dither: float = 0.0
    multichannel: MultichannelPolicy = "error"


@dataclass
class Transcript:
    """One decoded utterance (``error`` set, ``text`` empty, when its audio could not be used)."""

    utt: Utterance
    text: str = ""
    error: str | None = None


def _item(dataset: SpeechDataset, model: NanoASR, utt: Utterance, options: DecodeOptions) -> SpeechItem:
    feats = dataset.features(utt)
    tokens = model.recipe.token_count(feats.shape[0])  # the model's own token rule, from its model dir
    if utt.prompt is not None and options.language is None and not options.hotwords:
        prompt = model.prompts.encode(tokens, prompt=utt.prompt)  # the manifest's own prompt, as in training
    else:
        prompt = model.prompts.encode(tokens, language=options.language, itn=options.itn, hotwords=options.hotwords)
    return SpeechItem(key=utt.key, feats=feats, prompt=prompt, target=utt.target)


def transcribe_utterances(model: NanoASR, utts: Sequence[Utterance], options: DecodeOptions) -> list[Transcript]:
    """Decode ``utts`` in batches of ``options.batch_size`` (sorted by length); results in input order.

    An utterance whose audio cannot be used (unreadable, out of range, longer than the encoder's ``max_frames``) gets
    its ``error`` set; the others are still decoded.
    """
    rate = options.frontend_rate or model.frontend.sample_rate
    frontend = replace(model.frontend, sample_rate=rate, dither=options.dither)
    # no channel simulation or SpecAugment is passed, so train=True only turns on the (per-key seeded) dither
    dataset = SpeechDataset(list(utts), model.prompts, frontend, train=options.dither > 0,
                            multichannel=options.multichannel, max_frames=model.max_frames)  # longer: its own error
    results = [Transcript(utt) for utt in utts]
    items: list[tuple[int, SpeechItem]] = []
    for index, utt in enumerate(utts):
        try:
            items.append((index, _item(dataset, model, utt, options)))
        except AudioError as exc:
            results[index].error = str(exc)
    items.sort(key=lambda pair: pair[1].feats.shape[0])
    device = next(model.parameters()).device
    for start in range(0, len(items), options.batch_size):
        chunk = items[start : start + options.batch_size]
        batch = collate([item for _, item in chunk], model.pad_id).to(device)
        for (index, _), text in zip(chunk, model.transcribe(batch, options.max_new_tokens)):
            results[index].text = text
    return results
