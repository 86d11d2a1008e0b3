"""Decoding's featurizer: the audio of one request -> encoder input, as the model is fed (no augmentation)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nano8k.data.audio import MultichannelPolicy
from nano8k.data.channel.telephone import utterance_rng
from nano8k.data.manifests.io import Utterance
from nano8k.data.pipeline.batching import estimated_lfr_frames
from nano8k.errors import AudioError
from nano8k.model.features import FrontendConfig, extract_features

DITHER_SEED = 0  # dither, when asked for, is seeded per utterance key with this seed (as training's epoch 0)


@dataclass(frozen=True)
class Request:
    """One thing to decode: an utterance (a file, a span and channel of one) or in-memory samples, and its own
    prompt options (``None``: the call's)."""

    utt: Utterance  # key, file, span, channel; a manifest line's own prompt and lang
    samples: torch.Tensor | None = None  # in memory: [N] mono or [C, N] at ``sample_rate``; None: read ``utt.audio``
    sample_rate: int | None = None
    hotwords: tuple[str, ...] | None = None
    language: str | None = None

    def load(self, multichannel: MultichannelPolicy) -> tuple[torch.Tensor, int]:
        """The mono waveform and its rate: the file's span and channel, or the samples' (span and channel too)."""
        if self.samples is None:
            return self.utt.load(multichannel)
        samples, rate, utt = self.samples.to(torch.float32), int(self.sample_rate or 0), self.utt
        if samples.dim() == 2:
            if utt.channel is not None:
                samples = samples[list(utt.channel) if isinstance(utt.channel, tuple) else [utt.channel]].mean(0)
            elif samples.shape[0] == 1 or multichannel == "first":
                samples = samples[0]
            elif multichannel == "mix":
                samples = samples.mean(0)
            else:
                raise AudioError(
                    f"{samples.shape[0]} channels and no channel named: give the input a channel "
                    "(0-based) or multichannel='first' / 'mix'"
                )
        if utt.offset is not None:
            start = round(utt.offset * rate)
            samples = samples[start:] if utt.duration is None else samples[start : start + round(utt.duration * rate)]
        return samples, rate

    def seconds(self) -> float:
        """Seconds of audio ``load`` would give, without decoding a file (its header only)."""
        if self.samples is None:
            return self.utt.header_seconds()
        return self.load("first")[0].numel() / int(self.sample_rate or 1)


class Featurizer:
    """Encoder input ``[L, 560]`` of a request under ``frontend``; ``dither`` (only when the frontend has one) is
    seeded per key, so a result is the same whatever batch the utterance is in. Longer than ``max_frames`` (the
    encoder's limit), or features that are not finite: an ``AudioError`` of that utterance alone."""

    def __init__(self, frontend: FrontendConfig, max_frames: int | None, multichannel: MultichannelPolicy = "error"):
        self.frontend, self.max_frames, self.multichannel = frontend, max_frames, multichannel

    def __call__(self, request: Request) -> torch.Tensor:
        frontend = self.frontend
        self._refuse_before_decoding(request)
        waveform, rate = request.load(self.multichannel)
        duration = waveform.numel() / rate
        seed = (
            int(utterance_rng(DITHER_SEED, request.utt.key, 0, "dither").integers(2**62)) if frontend.dither else None
        )
        feats = extract_features(waveform, rate, frontend, dither_seed=seed)
        if self.max_frames is not None and feats.shape[0] > self.max_frames:
            raise AudioError(self._too_long(feats.shape[0], duration))
        if not bool(torch.isfinite(feats).all()):
            raise AudioError(
                f"non-finite features (NaN/Inf) from {duration:.3f} s of audio: the samples are not "
                f"usable audio in [-1, 1]"
            )
        return feats

    def _refuse_before_decoding(self, request: Request) -> None:
        """A file whose header already shows it longer than the encoder takes is refused without decoding it (a
        30-minute call would take GBs); within one LFR frame of the limit the features decide."""
        if self.max_frames is None:
            return
        seconds = request.seconds()
        if seconds <= 0:
            return  # an empty span: the decoder names the problem
        frames = estimated_lfr_frames(seconds, lfr_n=self.frontend.lfr_n)
        if frames > self.max_frames + 1:
            raise AudioError(self._too_long(frames, seconds, ", from the audio header, not decoded"))

    def _too_long(self, frames: int, duration: float, source: str = "") -> str:
        return (
            f"too long for the encoder: {frames} LFR frames ({duration:.1f} s{source}) > its {self.max_frames} "
            f"frames ({self.max_frames * self.frontend.lfr_frame_seconds:.1f} s); split the recording (in "
            "training, keep data.max_duration below that, divided by the smallest data.speed_perturb factor)"
        )
