"""Map-style dataset: utterance -> audio -> speed, channel (train) -> fbank -> SpecAugment (train) -> LFR -> prompt."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset

from nano8k.data.audio import MultichannelPolicy, resample
from nano8k.data.badsamples import BadSample, BadSampleLog
from nano8k.data.channel.telephone import TelephoneChannel, utterance_rng
from nano8k.data.manifests.io import Utterance
from nano8k.data.manifests.table import UtteranceTable
from nano8k.data.pipeline.batching import estimated_lfr_frames, estimated_lfr_frames_of
from nano8k.data.pipeline.specaugment import SpecAugment
from nano8k.data.pipeline.speed import SpeedPerturb
from nano8k.errors import AudioError
from nano8k.model.batch import SpeechBatch, SpeechItem, collate
from nano8k.model.features import FrontendConfig, apply_lfr, fbank
from nano8k.model.prompt import END_OF_TURN, EncodedPrompt, PromptEncoder, audio_token_count

logger = logging.getLogger("nano8k.data")


@dataclass(frozen=True)
class Skipped:
    """Placeholder a dataset returns for a bad sample under ``on_bad_sample='skip'``; the collate drops it."""

    bad: BadSample


class SpeechDataset(Dataset):
    """Turns utterances into ``SpeechItem``s; augmentation (speed, channel, SpecAugment, dither) only when ``train``.

    Indices may be ints or ``(index, epoch[, frontend_rate])`` tuples (``BucketBatchSampler(yield_epoch=True)``);
    augmentation draws come from (seed, key, epoch), so a sample is reproducible whatever worker loads it, and a
    rate carried by the index overrides the dataset's (a stage switch reaches worker copies at once).

    Each utterance's span and channel are read (``Utterance.load``); a multi-channel file with no channel named
    follows ``multichannel`` (error, first, mix). ``audio_tokens`` is the model's token rule
    (``Feeding.audio_tokens``): how many speech placeholders a prompt gets. ``max_frames`` is the most LFR frames the
    model's encoder takes (``NanoASR.max_frames``; None: no limit): a longer utterance is an ``AudioError``, so it goes
    through the bad-sample policy instead of failing its whole batch in the encoder. Features that are not finite are
    an ``AudioError`` too.
    When the features cannot change between epochs (evaluation, or training with no channel, SpecAugment or
    dither), they are computed once and kept, up to ``feature_cache_mb`` for this dataset in each process. A loader
    worker caches what it loads (``TelephoneDataModule`` keeps workers alive between epochs): evaluation splits,
    whose batches go to the same worker every epoch, gain fully; a shuffled training split with W workers may end up
    cached W times, within the budget.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        prompts: PromptEncoder,
        frontend: FrontendConfig,
        *,
        train: bool = False,
        telephone: TelephoneChannel | None = None,
        telephone_prob: float = 0.0,
        telephone_max_input_rate: int | None = None,
        specaugment: SpecAugment | None = None,
        min_duration: float = 0.0,
        max_duration: float = float("inf"),
        seed: int = 0,
        bad_log: BadSampleLog | None = None,
        audio_tokens: str = "low_frame_rate",
        feature_cache_mb: float = 256.0,
        multichannel: MultichannelPolicy = "error",
        max_frames: int | None = None,
        speed_perturb: SpeedPerturb | None = None,
    ) -> None:
        audio_token_count(1, audio_tokens)  # validates the rule name
        self.utterances = utterances if isinstance(utterances, UtteranceTable) else list(utterances)
        self.prompts = prompts
        self.frontend = frontend if train else replace(frontend, dither=0.0) if frontend.dither else frontend
        self.train = train
        self.telephone, self.telephone_prob = telephone, telephone_prob
        self.telephone_max_input_rate = telephone_max_input_rate
        self.specaugment = specaugment
        self.min_duration, self.max_duration = min_duration, max_duration
        self.seed = seed
        self.bad_log = bad_log or BadSampleLog("error")
        self.total_entries = len(self.utterances) + self.bad_log.count  # manifest lines, bad ones included
        self.audio_tokens = audio_tokens
        self.feature_cache_bytes = int(feature_cache_mb * 2**20)
        self._feature_cache: dict[tuple[int, int], torch.Tensor] = {}
        self._cached_bytes = 0
        self.multichannel: MultichannelPolicy = multichannel
        self.max_frames = max_frames
        self.speed_perturb = speed_perturb

    def __len__(self) -> int:
        return len(self.utterances)

    def set_frontend_rate(self, rate: int) -> None:
        """Switch the fbank rate (16000: resampled main stage; 8000: native telephone features)."""
        self.frontend = replace(self.frontend, sample_rate=int(rate))

    @property
    def deterministic(self) -> bool:
        """True when an utterance's features are the same in every epoch (nothing random is applied)."""
        if not self.train:
            return True
        channel = self.telephone is not None and self.telephone_prob > 0
        return not channel and self.speed_perturb is None and self.specaugment is None and not self.frontend.dither

    def cached_features(self, index: int, epoch: int = 0, frontend_rate: int | None = None) -> torch.Tensor:
        """``features`` of utterance ``index``, computed once per fbank rate when they are deterministic."""
        if not self.deterministic or self.feature_cache_bytes <= 0:
            return self.features(self.utterances[index], epoch, frontend_rate)
        key = (index, int(frontend_rate or self.frontend.sample_rate))
        feats = self._feature_cache.get(key)
        if feats is None:
            feats = self.features(self.utterances[index], epoch, frontend_rate)
            size = feats.numel() * feats.element_size()
            if self._cached_bytes + size <= self.feature_cache_bytes:
                self._feature_cache[key] = feats
                self._cached_bytes += size
        return feats

    def features(self, utt: Utterance, epoch: int = 0, frontend_rate: int | None = None) -> torch.Tensor:
        """Encoder input [L, 560] of one utterance (training augmentation included); raises ``AudioError``, also for
        features longer than ``max_frames`` or not finite."""
        frontend = self.frontend
        if frontend_rate is not None and frontend_rate != frontend.sample_rate:
            frontend = replace(frontend, sample_rate=int(frontend_rate))
        speed = self.train and self.speed_perturb is not None
        factor = self.speed_perturb.factor(self.seed, utt.key, epoch) if speed else 1.0
        self.refuse_before_decoding(utt, frontend, factor)
        waveform, rate = utt.load(self.multichannel)
        duration = waveform.numel() / rate
        if duration < self.min_duration:
            raise AudioError(f"too short after decoding: {duration:.3f} s < min_duration {self.min_duration} s")
        if duration > self.max_duration:
            raise AudioError(f"too long after decoding: {duration:.3f} s > max_duration {self.max_duration} s")
        if speed:  # min/max_duration apply to the recording, not to this
            waveform = self.speed_perturb.apply(waveform, rate, factor)
            duration = waveform.numel() / rate
        if self.train:
            rng = utterance_rng(self.seed, utt.key, epoch)
            wideband = self.telephone_max_input_rate is None or rate > self.telephone_max_input_rate
            if self.telephone is not None and wideband and rng.uniform() < self.telephone_prob:
                waveform, rate = self.telephone.transmit(waveform, rate, rng)
        waveform = resample(waveform, rate, frontend.sample_rate)
        if frontend.dither and self.train:  # reproducible dither without touching the global torch RNG
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(utterance_rng(self.seed, utt.key, epoch, "dither").integers(2**62)))
                feats = fbank(waveform, frontend)
        else:
            feats = fbank(waveform, frontend)
        if self.train and self.specaugment is not None:
            feats = self.specaugment(feats, utterance_rng(self.seed, utt.key, epoch, "specaug"), frontend.sample_rate)
        feats = apply_lfr(feats, frontend.lfr_m, frontend.lfr_n)
        if self.max_frames is not None and feats.shape[0] > self.max_frames:
            raise AudioError(self._too_long_for_the_encoder(feats.shape[0], duration, frontend))
        if not bool(torch.isfinite(feats).all()):
            raise AudioError(
                f"non-finite features (NaN/Inf) from {duration:.3f} s of audio: the samples are not "
                f"usable audio in [-1, 1]"
            )
        return feats

    def _too_long_for_the_encoder(
        self, frames: int, duration: float, frontend: FrontendConfig, source: str = ""
    ) -> str:
        return (
            f"too long for the encoder: {frames} LFR frames ({duration:.1f} s{source}) > its {self.max_frames} "
            f"frames ({self.max_frames * frontend.lfr_frame_seconds:.1f} s); split the recording (in training, "
            "keep data.max_duration below that, divided by the smallest data.speed_perturb factor)"
        )

    def refuse_before_decoding(self, utt: Utterance, frontend: FrontendConfig, factor: float = 1.0) -> None:
        """Raise ``AudioError`` when the audio header already shows that ``utt`` (its span, played ``factor`` times as
        fast) is longer than the encoder's ``max_frames``: a 30-minute call is refused without decoding and
        featurizing it (GBs of memory). A length within one LFR frame of the limit is left to the exact check on the
        features."""
        if self.max_frames is None:
            return
        seconds = utt.header_seconds() / factor  # the header only (a shard: its payload's)
        if seconds <= 0:
            return  # an empty span: the decoder names the problem
        frames = estimated_lfr_frames(seconds, lfr_n=frontend.lfr_n)
        if frames > self.max_frames + 1:
            raise AudioError(
                self._too_long_for_the_encoder(frames, seconds, frontend, ", from the audio header, not decoded")
            )

    def prompt_for(self, utt: Utterance, audio_tokens: int, with_target: bool = True) -> EncodedPrompt:
        return self.prompts.encode(audio_tokens, utt.target if with_target else None, prompt=utt.prompt, lang=utt.lang)

    def _column(self, name: str) -> list:
        utts = self.utterances
        return utts.strings(name) if isinstance(utts, UtteranceTable) else [getattr(u, name) for u in utts]

    def prompt_lengths(self, audio_tokens: Sequence[int]) -> np.ndarray:
        """Length in tokens of every utterance's prompt + target (``len(prompt_for(u, n).input_ids)``) given its
        ``audio_tokens``, with the targets tokenized in one batched call and each distinct prompt once."""
        targets = [target + END_OF_TURN for target in self._column("target")]
        target_ids = self.prompts.tokenizer(targets, add_special_tokens=False)["input_ids"] if targets else []
        overhead: dict[tuple, int] = {}
        lengths = np.empty(len(targets), dtype=np.int64)
        rows = zip(self._column("lang"), self._column("prompt"), target_ids, audio_tokens)
        for row, (lang, prompt, ids, audio) in enumerate(rows):
            if (lang, prompt) not in overhead:
                overhead[lang, prompt] = len(self.prompt_for(self.utterances[row], 1, with_target=False).input_ids) - 1
            lengths[row] = overhead[lang, prompt] + int(audio) + len(ids)
        return lengths

    def batch_lengths(self, with_tokens: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """What a batch plan costs per utterance: LFR frames (from the durations) and, ``with_tokens``, LLM tokens."""
        durations = (
            self.utterances.durations
            if isinstance(self.utterances, UtteranceTable)
            else np.array([np.nan if d is None else d for d in self._column("duration")], dtype=np.float64)
        )
        frames = estimated_lfr_frames_of(durations, lfr_n=self.frontend.lfr_n)
        if not with_tokens:
            return frames, None
        return frames, self.prompt_lengths([audio_token_count(int(n), self.audio_tokens) for n in frames])

    def __getitem__(self, index: int | tuple[int, int]) -> SpeechItem | Skipped:
        idx, epoch, rate = (tuple(index) + (None,))[:3] if isinstance(index, tuple) else (index, 0, None)
        return self.item(self.utterances[idx], epoch, rate, idx)

    def item(
        self, utt: Utterance, epoch: int = 0, rate: int | None = None, index: int | None = None
    ) -> SpeechItem | Skipped:
        """The training item of ``utt`` (features cached by ``index`` when it is given and they can be)."""
        try:
            feats = self.cached_features(index, epoch, rate) if index is not None else self.features(utt, epoch, rate)
        except AudioError as exc:
            bad = utt.bad(str(exc))
            self.bad_log.add(bad, self.total_entries)  # raises under 'error' or past max_bad_fraction
            return Skipped(bad)
        prompt = self.prompt_for(utt, audio_token_count(feats.shape[0], self.audio_tokens))
        return SpeechItem(key=utt.key, feats=feats, prompt=prompt, target=utt.target)


class SkippedBatch:
    """A batch in which every sample was bad: only their ``BadSample.record()``s, so the trainer can count them and
    every DDP rank can take the same decision about the step (a rank returning early would hang the others). A plain
    class holding plain dicts: precision plugins' ``apply_to_collection`` passes it through untouched."""

    def __init__(self, skipped: list[dict]) -> None:
        self.skipped = skipped
        self.keys: list[str] = []  # no utterance to train on

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SkippedBatch:
        return self

    def __len__(self) -> int:
        return 0


class SpeechCollator:
    """Collates ``SpeechItem``s with the model's ``collate`` (padded to the given multiples); drops ``Skipped`` items
    and lists them on the batch.

    The returned ``SpeechBatch`` lists the dropped ones in ``skipped`` (``BadSample.record()`` dicts); a batch in
    which every item was bad comes back as a ``SkippedBatch``.
    """

    def __init__(
        self, pad_id: int, frame_multiple: int = 1, token_multiple: int = 1, max_frames: int | None = None
    ) -> None:
        self.pad_id = pad_id
        self.padding = {"frame_multiple": frame_multiple, "token_multiple": token_multiple, "max_frames": max_frames}

    def __call__(self, items: Sequence[SpeechItem | Skipped]) -> SpeechBatch | SkippedBatch:
        good = [item for item in items if isinstance(item, SpeechItem)]
        skipped = [item.bad.record() for item in items if isinstance(item, Skipped)]
        if not good:
            logger.warning("dropping a batch in which all %d samples were bad", len(skipped))
            return SkippedBatch(skipped)
        batch = collate(good, self.pad_id, **self.padding)
        batch.skipped = skipped
        return batch
