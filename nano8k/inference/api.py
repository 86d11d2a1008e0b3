"""The Python front door: ``load_model("mini" | "tiny" | folder)`` and its ``transcribe`` / ``score``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nano8k.data.audio import MultichannelPolicy
from nano8k.data.manifests.io import Utterance, read_utterances
from nano8k.data.manifests.utterance import Channel
from nano8k.errors import CommandError, ConfigError, one_line
from nano8k.inference.decode import (
    DECODE_OVERRIDES,
    DecodeOptions,
    decode_and_score,
    decode_feeding,
    transcribe_requests,
)
from nano8k.inference.featurize import Request
from nano8k.model.attention_guard import guard_cudnn_sdpa
from nano8k.model.checkpoint import load_pretrained
from nano8k.model.feeding import Feeding
from nano8k.model.locate import resolve_model_dir
from nano8k.model.nano import NanoASR
from nano8k.paths import project_file

Samples = np.ndarray | torch.Tensor
EXAMPLES = "data_manifests/telephone-digits"  # the demo corpus, shipped in the wheel


@dataclass(frozen=True)
class Speech:
    """One input with its own settings: a file or samples (``sample_rate`` then), a span (``offset`` +
    ``duration``, seconds), a ``channel`` (0-based), and its own ``prompt``, ``language`` or ``hotwords``."""

    audio: str | os.PathLike | Samples
    sample_rate: int | None = None
    key: str | None = None
    offset: float | None = None
    duration: float | None = None
    channel: Channel = None
    prompt: str | None = None  # the task text itself (as a manifest line's ``prompt``)
    language: str | None = None  # the prompt's language (zh, en, ja), this input only
    hotwords: Sequence[str] | None = None  # this input's hotwords (None: the call's)


Input = str | os.PathLike | Samples | Speech | Utterance


@dataclass(frozen=True)
class Transcription:
    """One input's result: its key, the text, and ``error`` (text empty) when it could not be decoded."""

    key: str
    text: str
    error: str | None = None


def inference_device(value: str) -> str:
    """``auto`` is CUDA when available, else the CPU; a device torch cannot use here is a ``ConfigError``."""
    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(value)
    except RuntimeError as exc:
        raise ConfigError(f"--device {value!r}: not a torch device ({exc}); use auto, cpu, cuda or cuda:N") from exc
    if device.type not in ("cpu", "cuda"):  # mps, xpu, ...: usable only where this torch build has it
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError) as exc:
            raise ConfigError(
                f"--device {value}: this torch build cannot use it ({one_line(exc)}); use --device cpu (or auto)"
            ) from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {value}: no CUDA GPU is usable here (torch.cuda.is_available() is false); "
                "use --device cpu (or auto)"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {value}: only {torch.cuda.device_count()} CUDA device(s) are visible (cuda:0 ...)"
            )
    return value


def load_for_inference(
    model_dir: str | os.PathLike | None, device: str = "auto", llm_dtype: str | None = None
) -> NanoASR:
    """``model_dir`` (a folder, ``mini`` / ``tiny``, or None: ``$NANO8K_MODEL_DIR``) loaded in eval mode on
    ``device``; Hopper's cuDNN SDPA kernel is turned off unless ``$NANO8K_ALLOW_CUDNN_SDPA=1``."""
    device = inference_device(device)
    try:
        path = resolve_model_dir(model_dir)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from exc
    model = load_pretrained(path, llm_dtype=llm_dtype).to(device).eval()
    try:
        guard_cudnn_sdpa(torch.device(device))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return model


def load_model(name: str | os.PathLike | None = "mini", device: str = "auto", llm_dtype: str | None = None) -> Model:
    """A model to transcribe and score with: ``mini`` (the bundled 8 kHz digits model), ``tiny`` (random weights,
    for tests) or a model folder (a Fun-ASR-Nano release or a nano8k export)."""
    return Model(load_for_inference(name, device, llm_dtype))


def examples(count: int = 3) -> list[Path]:
    """The first ``count`` clips of the shipped demo test set (8 kHz G.711 telephone digit strings, en and zh), to
    try a model on audio every install has; ``examples_manifest()`` lists them with their transcripts."""
    lines = examples_manifest().read_text(encoding="utf-8").splitlines()[:count]
    return [examples_manifest().parent / json.loads(line)["source"] for line in lines]


def examples_manifest() -> Path:
    """The shipped demo test manifest (``Model.score`` takes it)."""
    return project_file(f"{EXAMPLES}/test.jsonl")


class Model:
    """A loaded model with whisper-like methods; ``.network`` is the ``NanoASR`` itself."""

    def __init__(self, network: NanoASR):
        self.network = network

    @property
    def feeding(self) -> Feeding:
        """How the model is fed by default (a decode's keyword arguments override its fields)."""
        return self.network.feeding

    def options(
        self,
        hotwords: Sequence[str] = (),
        batch_size: int = 16,
        max_new_tokens: int = 256,
        dither: float = 0.0,
        multichannel: MultichannelPolicy = "error",
        **feeding: Any,
    ) -> DecodeOptions:
        """Decode options; ``feeding`` are Feeding fields to override (``DECODE_OVERRIDES``)."""
        unknown = sorted(set(feeding) - set(DECODE_OVERRIDES))
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {unknown}; a decode takes the Feeding fields "
                f"{list(DECODE_OVERRIDES)} and hotwords, batch_size, max_new_tokens, dither, multichannel"
            )
        options = DecodeOptions(
            overrides=feeding,
            hotwords=tuple(hotwords),
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            dither=dither,
            multichannel=multichannel,
        )
        try:
            decode_feeding(self.network, options)  # a bad value is named before any audio is read
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        return options

    def transcribe(
        self, inputs: Input | Sequence[Input], *, sample_rate: int | None = None, **settings: Any
    ) -> list[Transcription]:
        """Transcribe audio files, arrays (at ``sample_rate``), ``Speech`` or manifest ``Utterance``s, one result
        each in input order. ``settings``: ``options``' arguments (e.g. ``language="en"``, ``hotwords=[...]``)."""
        options = self.options(**settings)
        single = isinstance(inputs, (str, os.PathLike, np.ndarray, torch.Tensor, Speech, Utterance))
        requests = [_request(item, index, sample_rate) for index, item in enumerate([inputs] if single else inputs)]
        results = transcribe_requests(self.network, requests, options)
        return [Transcription(r.utt.key, r.text, r.error) for r in results]

    def score(self, manifest: str | os.PathLike, *, normalizer: str = "basic", **settings: Any) -> dict[str, Any]:
        """Decode every entry of ``manifest`` and score it: ``{"cer", "by_language", "utterances", "hypotheses"}``;
        a ``DataError`` naming the manifest when an entry cannot be decoded."""
        utts = read_utterances(manifest, "nano8k score (every entry needs its transcript)")
        scores, hyps = decode_and_score(self.network, utts, self.options(**settings), str(manifest), normalizer)
        return {**scores, "hypotheses": dict(zip((u.key for u in utts), hyps))}


def _request(item: Input, index: int, sample_rate: int | None) -> Request:
    """The decode request of one input (``index`` names an array without a key)."""
    if isinstance(item, Utterance):
        return Request(item)
    speech = item if isinstance(item, Speech) else Speech(item, sample_rate=sample_rate)
    audio, rate = speech.audio, speech.sample_rate
    samples = None
    if isinstance(audio, (np.ndarray, torch.Tensor)):
        samples = torch.as_tensor(audio)
        if rate is None:
            raise ConfigError(f"input {index}: an array needs its sample_rate (e.g. transcribe(x, sample_rate=8000))")
        if samples.dim() not in (1, 2) or not samples.is_floating_point():
            raise ConfigError(
                f"input {index}: samples must be float [N] or [channels, N] in [-1, 1], got "
                f"{samples.dtype} of shape {tuple(samples.shape)}"
            )
        key, path = speech.key or f"input-{index}", Path(f"<samples of input {index}>")
    else:
        path = Path(audio).expanduser().absolute()
        key = speech.key or path.stem
    utt = Utterance(
        key=key,
        audio=path,
        target="",
        duration=speech.duration,
        prompt=speech.prompt,
        offset=speech.offset,
        channel=speech.channel,
    )
    hotwords = None if speech.hotwords is None else tuple(speech.hotwords)
    return Request(utt, samples, rate, hotwords, speech.language)
