"""``TelephoneDataModule``: manifests -> datasets -> bucketed loaders of ``SpeechBatch`` for train/val/test."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from nano8k.data.audio import MultichannelPolicy
from nano8k.data.badsamples import BadSample, BadSampleLog, BadSamplePolicy
from nano8k.data.channel.telephone import TelephoneChannel
from nano8k.data.manifests.io import load_utterances
from nano8k.data.pipeline.batching import BucketBatchSampler, estimated_lfr_frames, padded_lengths, plan_digest
from nano8k.data.pipeline.dataset import SpeechCollator, SpeechDataset
from nano8k.data.pipeline.shards import ShardIndex, ShardStream
from nano8k.data.pipeline.specaugment import SpecAugment
from nano8k.data.pipeline.speed import SpeedPerturb
from nano8k.errors import RESUME_ADVICE, ConfigError, DataError, ResumeConfigError, resume_changes, resume_refused
from nano8k.model.batch import SpeechBatch
from nano8k.model.features import FRONTEND_RATES, RELEASE_MAX_FRAMES, FrontendConfig
from nano8k.model.feeding import Feeding
from nano8k.model.prompt import (
    DEFAULT_SYSTEM_PROMPT,
    PromptEncoder,
    PromptSettings,
    audio_token_count,
    pad_token_id,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from nano8k.model.nano import NanoASR

logger = logging.getLogger("nano8k.data")
Split = Literal["train", "val", "test"]

_PLAN = "the run goes on with it; a mid-epoch position is kept only on the same epoch plan, else refused"
_AUGMENT = "augmentation, from the resumed batch on"
_LOADING = "loading only; the same batches"
# data settings a resume may change, and what then happens; a change of any other data.* setting (how the model is
# fed: fbank rate, dither, prompts, tokenizer; the seed of the batch plan) is refused (ResumeConfigError): the run
# would mix two feedings under one record, or the restored position would point into another plan
DATA_APPLIED_ON_RESUME = {
    **dict.fromkeys(
        (
            "train_manifests",
            "train_shards",
            "max_frames_per_batch",
            "max_tokens_per_batch",
            "max_batch_size",
            "pad_frames_to_multiple",
            "pad_tokens_to_multiple",
            "sort_window",
            "speed_perturb",
            "min_duration",
            "max_duration",
            "multichannel",
            "on_bad_sample",
        ),
        _PLAN,
    ),
    **dict.fromkeys(("telephone", "telephone_prob", "telephone_max_input_rate", "specaugment"), _AUGMENT),
    **dict.fromkeys(("num_workers", "feature_cache_mb", "probe_audio", "spot_check"), _LOADING),
    "val_manifests": "validation data",
    "test_manifests": "test data",
    "max_bad_fraction": "the bad-sample cap, checked from now on",
}


def _plain(value: Any) -> Any:
    """A setting as plain data (dataclasses as dicts), so a checkpoint holding it loads with ``weights_only``."""
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


class ResumableLoader(DataLoader):
    """The training loader, stateful in Lightning's sense: the fit loop saves ``state_dict()`` in each checkpoint
    and hands it back to ``load_state_dict`` on resume, so Lightning knows a mid-epoch resume is exact. The state is
    the data module's position (``TelephoneDataModule.train_position``): the batch sampler (or shard stream) skips
    the batches the checkpoint had used."""

    def __init__(
        self,
        *args: Any,
        position: Callable[[], dict[str, Any]],
        resume: Callable[[dict[str, Any]], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._position, self._resume = position, resume

    def state_dict(self) -> dict[str, Any]:
        return self._position()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume(state)


def _refuse(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"data.{key} must be {allowed}, got {value!r}")


def _at_least(key: str, value: Any, low: float, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or not value >= low:  # `not >=` also refuses NaN
        _refuse(key, value, f">= {low}" + (" (or null)" if optional else ""))


def _probability(key: str, value: Any) -> None:
    if value is None or not 0.0 <= value <= 1.0:
        _refuse(key, value, "a probability in [0, 1]")


@dataclass(frozen=True)
class BatchingSettings:
    """How the loaders cut batches: budgets in LFR frames (padding included) and LLM tokens, widths rounded up to
    multiples (fewer distinct shapes for an accelerator), and the window of utterances sorted by length."""

    max_frames_per_batch: int = 1000
    max_tokens_per_batch: int | None = None
    max_batch_size: int | None = None
    pad_frames_to_multiple: int = 1
    pad_tokens_to_multiple: int = 1
    sort_window: int | None = 1000

    def __post_init__(self) -> None:
        _at_least("max_frames_per_batch", self.max_frames_per_batch, 1)
        _at_least("max_tokens_per_batch", self.max_tokens_per_batch, 1, optional=True)
        _at_least("max_batch_size", self.max_batch_size, 1, optional=True)
        _at_least("pad_frames_to_multiple", self.pad_frames_to_multiple, 1)
        _at_least("pad_tokens_to_multiple", self.pad_tokens_to_multiple, 1)
        _at_least("sort_window", self.sort_window, 0, optional=True)

    @property
    def pad_multiples(self) -> tuple[int, int]:
        return int(self.pad_frames_to_multiple), int(self.pad_tokens_to_multiple)


@dataclass(frozen=True)
class AugmentSettings:
    """Training-split augmentation: speed perturbation, a telephone channel profile (with probability
    ``telephone_prob``, on audio above ``telephone_max_input_rate`` Hz) and SpecAugment (dither is the frontend's)."""

    telephone: TelephoneChannel | None = field(default_factory=TelephoneChannel)
    telephone_prob: float = 0.5
    telephone_max_input_rate: int | None = 8000
    speed_perturb: SpeedPerturb | None = None
    specaugment: SpecAugment | None = field(default_factory=SpecAugment)

    def __post_init__(self) -> None:
        _probability("telephone_prob", self.telephone_prob)
        _at_least("telephone_max_input_rate", self.telephone_max_input_rate, 1, optional=True)


@dataclass(frozen=True)
class LoadingSettings:
    """Reading and loading utterances: duration limits, how many audio headers start-up opens, multi-channel files,
    loader workers and their feature caches, and the bad-sample policy (``error`` or counted ``skip``s up to
    ``max_bad_fraction``)."""

    num_workers: int = 2
    on_bad_sample: BadSamplePolicy = "error"
    max_bad_fraction: float = 0.01
    min_duration: float = 0.1
    max_duration: float = 30.0
    probe_audio: bool = True
    spot_check: int | None = 1000
    feature_cache_mb: float = 256.0
    multichannel: MultichannelPolicy = "error"

    def __post_init__(self) -> None:
        _probability("max_bad_fraction", self.max_bad_fraction)
        _at_least("num_workers", self.num_workers, 0)
        _at_least("min_duration", self.min_duration, 0.0)
        _at_least("feature_cache_mb", self.feature_cache_mb, 0.0)
        _at_least("spot_check", self.spot_check, 0, optional=True)
        if self.max_duration is None or not self.max_duration > self.min_duration:
            _refuse("max_duration", self.max_duration, f"> data.min_duration ({self.min_duration})")


def check_feeding_settings(frontend_sample_rate: Any, dither: Any, prompt: Mapping[str, Any]) -> None:
    """Refuse a fbank rate, dither or prompt settings (system_prompt, context_header, language, itn) no run can use."""
    if frontend_sample_rate not in FRONTEND_RATES:
        _refuse(
            "frontend_sample_rate",
            frontend_sample_rate,
            "8000 or 16000 (16000: resampled main stage, 8000: native telephone stage)",
        )
    _at_least("dither", dither, 0.0)
    try:  # the prompt settings' own rules (language names, booleans)
        PromptSettings(**prompt)
    except ValueError as err:
        raise ConfigError(f"data.{err}") from None


def _pick(settings_class: type, settings: Mapping[str, Any]) -> Any:
    """``settings_class`` from the keys of ``settings`` it has (a missing one takes its default)."""
    return settings_class(**{f.name: settings[f.name] for f in fields(settings_class) if f.name in settings})


def check_data_settings(settings: Mapping[str, Any]) -> None:
    """Refuse ``data.*`` settings (a parsed config's ``data`` section) no run can use, naming ``data.<key>``, its value
    and what is allowed: the checks ``TelephoneDataModule`` makes when it is built."""
    check_feeding_settings(
        settings["frontend_sample_rate"],
        settings["dither"],
        {key: settings[key] for key in ("system_prompt", "context_header", "language", "itn")},
    )
    for settings_class in (AugmentSettings, LoadingSettings, BatchingSettings):
        _pick(settings_class, settings)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """``AutoTokenizer`` from a tokenizer folder or a model folder (the model's rule: ``checkpoint.tokenizer_dir``)."""
    from nano8k.errors import CheckpointError
    from nano8k.model.checkpoint import load_tokenizer_files, tokenizer_dir

    try:
        return load_tokenizer_files(tokenizer_dir(path))
    except CheckpointError as err:
        raise DataError(str(err)) from err


class TelephoneDataModule(L.LightningDataModule):
    """Train/val/test loaders of length-bucketed ``SpeechBatch``es for telephone fine-tuning, augmented (training
    split only) and resumable mid-epoch.

    The ``data.*`` keys stay flat for configs and sweeps; inside they are grouped into ``BatchingSettings``,
    ``AugmentSettings`` and ``LoadingSettings``, each refusing an unusable value by its key. How the model is fed is
    ``self.feeding``: ``connect(model)`` (``nano8k.fit`` calls it, and ``NanoASRModule.setup``) takes the model's
    ``Feeding`` with this config's fbank rate, dither and prompt settings as overrides, its encoder's length limit
    and its tokenizer. Batching, loading, bad samples and resume rules: docs/training.md.
    """

    def __init__(
        self,
        train_manifests: str | list[str] | None = None,
        val_manifests: str | list[str] | None = None,
        test_manifests: str | list[str] | None = None,
        tokenizer_dir: str | None = None,
        frontend_sample_rate: int = 16000,
        dither: float = 1.0,
        telephone: TelephoneChannel | None = TelephoneChannel(),
        telephone_prob: float = 0.5,
        telephone_max_input_rate: int | None = 8000,
        speed_perturb: SpeedPerturb | None = None,
        specaugment: SpecAugment | None = SpecAugment(),
        max_frames_per_batch: int = 1000,
        max_tokens_per_batch: int | None = None,
        max_batch_size: int | None = None,
        pad_frames_to_multiple: int = 1,
        pad_tokens_to_multiple: int = 1,
        sort_window: int | None = 1000,
        num_workers: int = 2,
        seed: int = 1234,
        on_bad_sample: Literal["error", "skip"] = "error",
        max_bad_fraction: float = 0.01,
        min_duration: float = 0.1,
        max_duration: float = 30.0,
        probe_audio: bool = True,
        spot_check: int | None = 1000,
        language: str | None = None,
        itn: bool = True,
        context_header: bool = False,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        feature_cache_mb: float = 256.0,
        multichannel: MultichannelPolicy = "error",
        train_shards: str | None = None,
    ) -> None:
        super().__init__()
        # the data.* keys stay flat (configs, sweeps); inside, each group checks its own values, naming the key
        check_feeding_settings(
            frontend_sample_rate,
            dither,
            {"system_prompt": system_prompt, "context_header": context_header, "language": language, "itn": itn},
        )
        self.augment = AugmentSettings(
            telephone=telephone,
            telephone_prob=telephone_prob,
            telephone_max_input_rate=telephone_max_input_rate,
            speed_perturb=speed_perturb,
            specaugment=specaugment,
        )
        self.loading = LoadingSettings(
            num_workers=num_workers,
            on_bad_sample=on_bad_sample,
            max_bad_fraction=max_bad_fraction,
            min_duration=min_duration,
            max_duration=max_duration,
            probe_audio=probe_audio,
            spot_check=spot_check,
            feature_cache_mb=feature_cache_mb,
            multichannel=multichannel,
        )
        self.batching = BatchingSettings(
            max_frames_per_batch=max_frames_per_batch,
            max_tokens_per_batch=max_tokens_per_batch,
            max_batch_size=max_batch_size,
            pad_frames_to_multiple=pad_frames_to_multiple,
            pad_tokens_to_multiple=pad_tokens_to_multiple,
            sort_window=sort_window,
        )
        self.save_hyperparameters()
        if train_manifests and train_shards:
            raise ConfigError("give data.train_manifests or data.train_shards, not both")
        self.manifests = {"train": train_manifests, "val": val_manifests, "test": test_manifests}
        self.train_shards = train_shards
        self.shard_index: ShardIndex | None = None
        self.tokenizer_dir = tokenizer_dir
        self.seed = seed  # the batch plan's, and every utterance's augmentation draws
        # the data.* feeding settings, overrides of the model's feeding (connect); checkpoints and exports record it
        self.feeding = Feeding(
            frontend_rate=frontend_sample_rate,
            dither=dither,
            system_prompt=system_prompt,
            context_header=context_header,
            language=language,
            itn=itn,
        )
        self.max_frames: int | None = RELEASE_MAX_FRAMES  # the model's encoder limit (LFR frames); set by connect()
        self.tokenizer: Any = None
        self.datasets: dict[str, SpeechDataset] = {}
        self.bad_samples: dict[str, BadSampleLog] = {}
        self._samplers: dict[str, BucketBatchSampler] = {}
        self._pending_state: dict[str, Any] | None = None  # a position from an older checkpoint's data module state
        self._keys_digest: tuple[int, str] | None = None  # (id of the train dataset, digest of its keys)
        self._consumed = 0
        self._consumed_epoch = 0

    # -- setup ------------------------------------------------------------------------------------------------
    def set_tokenizer(self, tokenizer: Any) -> None:
        """Use an already loaded tokenizer (e.g. ``NanoASR.tokenizer``) instead of ``tokenizer_dir``."""
        self.tokenizer = tokenizer

    def connect(self, model: NanoASR) -> None:
        """Feed ``model``: its feeding with this config's fbank rate, dither and prompt settings as overrides (its
        token rule and weight lineage stay), its encoder's length limit, and its tokenizer unless ``tokenizer_dir``
        is set. Every split built so far follows."""
        if self.tokenizer is None and self.tokenizer_dir is None:
            self.set_tokenizer(model.tokenizer)
        self.feeding = dataclasses.replace(
            self.feeding, audio_tokens=model.feeding.audio_tokens, weights=model.feeding.weights
        )
        self.max_frames = model.max_frames
        for dataset in self.datasets.values():
            dataset.audio_tokens, dataset.max_frames = self.feeding.audio_tokens, self.max_frames

    @property
    def frontend(self) -> FrontendConfig:
        """The fbank settings the feeding says (rate and dither; the rest the release's)."""
        return self.feeding.frontend()

    @property
    def prompt_settings(self) -> PromptSettings:
        """How prompts are written (the feeding's)."""
        return self.feeding.prompt

    @property
    def audio_tokens(self) -> str:
        """The model's token rule (the release's until ``connect``)."""
        return self.feeding.audio_tokens

    def set_frontend_rate(self, rate: int) -> None:
        """Switch the fbank rate for all splits (16000 main stage, 8000 native stage).

        Every split's batch sampler carries the rate to the (persistent) loader workers, so a mid-epoch switch applies
        from the next batch a worker builds (batches already prefetched, at most ``num_workers * prefetch_factor``,
        keep the old rate); cached features are kept per rate.
        """
        self.feeding = dataclasses.replace(self.feeding, frontend_rate=int(rate))
        for dataset in self.datasets.values():
            dataset.set_frontend_rate(rate)
        for sampler in self._samplers.values():  # persistent workers follow the rate the sampler carries
            sampler.frontend_rate = int(rate)

    @property
    def _train_sampler(self) -> BucketBatchSampler | None:
        return self._samplers.get("train")

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is None:
            if self.tokenizer_dir is None:
                raise DataError("TelephoneDataModule needs tokenizer_dir (or set_tokenizer()) to encode prompts")
            self.tokenizer = load_tokenizer(self.tokenizer_dir)
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, ("train", "val", "test")) if stage else ("train", "val", "test"):
            if (self.manifests[split] or (split == "train" and self.train_shards)) and split not in self.datasets:
                self.datasets[split] = self._build(split)

    def _build(self, split: str) -> SpeechDataset:
        loading, augment = self.loading, self.augment
        log = BadSampleLog(loading.on_bad_sample, loading.max_bad_fraction, name=split)
        if split == "train" and self.train_shards:  # durations were measured when the shards were written
            self.shard_index = ShardIndex.open(self.train_shards)
            utts = self.shard_index.utterances
        else:
            utts = load_utterances(
                self.manifests[split],
                log,
                min_duration=loading.min_duration,
                max_duration=loading.max_duration,
                probe=loading.probe_audio,
                multichannel=loading.multichannel,
                spot_check=loading.spot_check,
                seed=self.seed,
            )
        if not utts:
            raise DataError(f"[{split}] no usable utterances in {self.manifests[split]}")
        self.bad_samples[split] = log
        # from here on (loading, in loader workers too) the cap is the trainer's: it checks max_bad_fraction on the
        # bad samples of every rank (check_bad_fraction), so all ranks stop together
        log.defer_cap = True
        train = split == "train"
        dataset = SpeechDataset(
            utts,
            PromptEncoder(self.tokenizer, self.prompt_settings),
            self.frontend,
            train=train,
            telephone=augment.telephone if train else None,
            telephone_prob=augment.telephone_prob,
            telephone_max_input_rate=augment.telephone_max_input_rate,
            specaugment=augment.specaugment if train else None,
            min_duration=loading.min_duration,
            max_duration=loading.max_duration,
            seed=self.seed,
            bad_log=log,
            audio_tokens=self.audio_tokens,
            feature_cache_mb=loading.feature_cache_mb,
            multichannel=loading.multichannel,
            max_frames=self.max_frames,
            speed_perturb=augment.speed_perturb if train else None,
        )
        if train and augment.telephone is not None and augment.telephone_prob > 0:
            for line in augment.telephone.describe():
                logger.info("[train] telephone profile %s", line)
        logger.info(
            "[%s] %d utterances, %.1f min, %d bad skipped",
            split,
            len(utts),
            float(np.nansum(utts.durations)) / 60,
            log.count,
        )
        return dataset

    # -- loaders ----------------------------------------------------------------------------------------------
    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.global_rank), int(trainer.world_size)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _stream(self) -> ShardStream:
        rank, world = self._rank_world()
        batching = self.batching
        return ShardStream(
            self.shard_index,
            self.datasets["train"],
            max_frames=batching.max_frames_per_batch,
            max_tokens=batching.max_tokens_per_batch,
            max_batch_size=batching.max_batch_size,
            seed=self.seed,
            rank=rank,
            world_size=world,
            num_workers=self.loading.num_workers,
            pad_multiples=batching.pad_multiples,
        )

    def _sampler(self, split: str) -> BucketBatchSampler:
        dataset, batching = self.datasets[split], self.batching
        lengths, tokens = dataset.batch_lengths(with_tokens=batching.max_tokens_per_batch is not None)
        rank, world = self._rank_world()
        train = split == "train"
        epoch_lengths = None
        if train and self.augment.speed_perturb is not None:
            epoch_lengths = self._perturbed_lengths(dataset, lengths, tokens)
        padded, padded_tokens = padded_lengths(lengths, tokens, batching.pad_multiples)
        return BucketBatchSampler(
            padded,
            batching.max_frames_per_batch,
            token_lengths=padded_tokens,
            max_tokens=batching.max_tokens_per_batch if tokens is not None else None,
            max_batch_size=batching.max_batch_size,
            shuffle=train,
            seed=self.seed,
            sort_window=batching.sort_window,
            rank=rank,
            world_size=world,
            yield_epoch=True,
            drop_uneven=train,
            epoch_lengths=epoch_lengths,
        )

    def _perturbed_lengths(self, dataset: SpeechDataset, plain: list[int], tokens: list[int] | None):
        """Per-epoch (frames, tokens) of the speed-perturbed training split: durations / factor, and the prompt's
        audio tokens recounted for those frames (its text tokens stay); ``plain`` are the unperturbed frames."""
        keys = dataset.utterances.strings("key")
        durations = np.nan_to_num(dataset.utterances.durations, nan=0.0).tolist()
        lfr_n, rule, perturb, seed = self.frontend.lfr_n, self.audio_tokens, self.augment.speed_perturb, self.seed
        multiples = self.batching.pad_multiples

        def lengths(epoch: int) -> tuple[list[int], list[int] | None]:
            factors = perturb.factors_for(seed, keys, epoch)
            frames = [estimated_lfr_frames(d / f, lfr_n=lfr_n) for d, f in zip(durations, factors)]
            recounted = (
                None
                if tokens is None
                else [
                    t - audio_token_count(p, rule) + audio_token_count(n, rule)
                    for t, p, n in zip(tokens, plain, frames)
                ]
            )
            return padded_lengths(frames, recounted, multiples)

        return lengths

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        if split not in self.datasets:
            raise DataError(f"no {split} manifests were given to TelephoneDataModule")
        streaming = split == "train" and self.shard_index is not None
        sampler = self._stream() if streaming else self._sampler(split)
        sampler.frontend_rate = self.frontend.sample_rate
        self._samplers[split] = sampler
        if split == "train" and self._pending_state is not None:
            pending, self._pending_state = self._pending_state, None
            self.resume_train_position(pending)
        # the loader's own generator: starting an iterator (every epoch, every validation) then draws nothing from
        # the global torch RNG, whose stream (dropout) a resume restores (NanoASRModule) and must find unchanged
        workers = self.loading.num_workers
        common: dict[str, Any] = {
            "num_workers": workers,
            "collate_fn": self._collator(),
            "pin_memory": torch.cuda.is_available(),
            "generator": torch.Generator().manual_seed(self.seed),
        }
        resumable = {"position": self.train_position, "resume": self.resume_train_position}
        if streaming:
            # workers start afresh each epoch (they read the epoch and resume position from the stream then);
            # Lightning sets the epoch on the loader's sampler, which for an IterableDataset is a placeholder
            loader = ResumableLoader(sampler, batch_size=None, **common, **resumable)
            loader.sampler.set_epoch = sampler.set_epoch
            return loader
        # pinned batches: the copy to the GPU does not make the host wait for the step before it
        if split == "train":
            return ResumableLoader(
                self.datasets[split], batch_sampler=sampler, persistent_workers=workers > 0, **common, **resumable
            )
        return DataLoader(self.datasets[split], batch_sampler=sampler, persistent_workers=workers > 0, **common)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Pinned batches go to a GPU without the host waiting (Lightning passes ``non_blocking`` to plain tensors
        only)."""
        if isinstance(batch, SpeechBatch):
            return batch.to(device, non_blocking=device.type == "cuda")
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _collator(self) -> SpeechCollator:
        frames, tokens = self.batching.pad_multiples
        return SpeechCollator(pad_token_id(self.tokenizer), frames, tokens, self.max_frames)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    # -- bad samples and resume state -------------------------------------------------------------------------
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        split = (
            "train"
            if trainer is not None and trainer.training
            else ("test" if trainer is not None and trainer.testing else "val")
        )
        if split == "train" and self._train_sampler is not None:
            if self._train_sampler.epoch != self._consumed_epoch:
                self._consumed_epoch, self._consumed = self._train_sampler.epoch, 0
            self._consumed += 1
        return batch

    def check_bad_fraction(self, split: str, bad: Sequence[BadSample]) -> None:
        """Raise ``DataError`` when ``bad`` (every rank's, gathered by the trainer) plus the bad manifest lines of
        ``split`` exceed ``max_bad_fraction``; every rank holds the same list, so all of them stop together."""
        log, dataset = self.bad_samples.get(split), self.datasets.get(split)
        if log is None or dataset is None or log.policy != "skip":
            return
        log.check(dataset.total_entries, bad)

    def resume_settings(self) -> dict[str, Any]:
        """Every ``data.*`` setting as plain data: a checkpoint keeps them, and a resume compares them."""
        return {key: _plain(value) for key, value in self.hparams.items()}

    def state_dict(self) -> dict[str, Any]:
        """The frontend rate now (a stage switch changes it) and the settings, for checkpoints; the training
        position travels with the loader (``train_position``)."""
        return {"frontend_sample_rate": self.frontend.sample_rate, "settings": self.resume_settings()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "settings" in state:
            self._check_resume_settings(state["settings"])
        if "frontend_sample_rate" in state:
            self.set_frontend_rate(state["frontend_sample_rate"])
        if state.get("train_sampler") is not None:  # a checkpoint written before the loader held the position
            self._pending_state = state["train_sampler"]

    def _resume_source(self) -> str:
        return str(getattr(getattr(self, "trainer", None), "ckpt_path", None) or "the checkpoint")

    def _is_global_zero(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return trainer is None or trainer.is_global_zero

    def _check_resume_settings(self, saved: dict[str, Any]) -> None:
        """Refuse a resume whose feeding settings differ from the checkpoint's; note the changes it applies."""
        changes = resume_changes(saved, self.resume_settings())
        refused = {key: pair for key, pair in changes.items() if key not in DATA_APPLIED_ON_RESUME}
        if refused:
            raise resume_refused(
                self._resume_source(),
                refused,
                "data.",
                RESUME_ADVICE
                + " A resume may change only: "
                + ", ".join(f"data.{key}" for key in DATA_APPLIED_ON_RESUME),
            )
        if self._is_global_zero():
            for key, (old, new) in changes.items():
                print(f"[resume] data.{key} {old!r} -> {new!r} ({DATA_APPLIED_ON_RESUME[key]})", flush=True)

    def _epoch_plan(self, epoch: int) -> dict[str, Any]:
        """What a training position in ``epoch`` points into: the training set (its size, where it comes from) and
        a digest of its keys and of the epoch's batches (every rank's, as planned)."""
        sampler, dataset = self._train_sampler, self.datasets["train"]
        if self._keys_digest is None or self._keys_digest[0] != id(dataset):
            keys = "\x1f".join(str(key) for key in dataset.utterances.strings("key"))
            self._keys_digest = (id(dataset), hashlib.sha256(keys.encode("utf-8")).hexdigest())
        if isinstance(sampler, ShardStream):
            batches = [[shard, *batch] for reader in sampler.plan(epoch) for shard, rows in reader for batch in rows]
        else:
            batches = sampler.all_batches(epoch)
        digest = hashlib.sha256(f"{self._keys_digest[1]} {plan_digest(batches)}".encode()).hexdigest()
        return {
            "utterances": len(dataset),
            "source": str(self.train_shards or self.manifests["train"]),
            "batches": len(batches),
            "digest": digest,
        }

    def train_position(self) -> dict[str, Any]:
        """Where training stands in its epoch (``ResumableLoader.state_dict``): the sampler's epoch, the batches
        this rank used in it, and the plan they came from (``_epoch_plan``)."""
        sampler = self._train_sampler
        if sampler is None:
            return {}
        state = sampler.state_dict(self._consumed if self._consumed_epoch == sampler.epoch else 0)
        state["plan"] = self._epoch_plan(state["epoch"])
        return state

    def resume_train_position(self, state: dict[str, Any]) -> None:
        """Start the training loader after the batches ``state`` (``train_position``) had used. Refused when that
        position points into another epoch plan (another training set or batching): it would skip batches never
        trained and repeat others."""
        if not state:
            return
        sampler = self._train_sampler
        if sampler is None:
            self._pending_state = state
            return
        saved, consumed = state.get("plan"), int(state["batches_consumed"])
        if saved is not None and consumed > 0:
            now = self._epoch_plan(int(state["epoch"]))
            if now["digest"] != saved["digest"]:
                raise ResumeConfigError(
                    f"cannot resume from {self._resume_source()}: its position, {consumed} batches into epoch "
                    f"{state['epoch']} on each rank, belongs to another epoch plan. Checkpoint: {saved['utterances']} "
                    f"utterances from {saved['source']}, {saved['batches']} batches (plan {saved['digest'][:12]}); "
                    f"now: {now['utterances']} utterances from {now['source']}, {now['batches']} batches (plan "
                    f"{now['digest'][:12]}). Resume with the checkpoint's training set and batching settings "
                    "(data.train_manifests / train_shards, max_frames_per_batch, max_tokens_per_batch, max_batch_size,"
                    " sort_window, speed_perturb, min_duration, max_duration), or start a new run from its weights "
                    "(python -m nano8k.average CKPT --out DIR, then --model.model_dir DIR/funasr)."
                )
        try:
            sampler.load_state_dict(state)
        except ValueError as err:  # another seed, world size or number of stream workers
            raise ResumeConfigError(f"cannot resume from {self._resume_source()}: {err}") from err
        self._consumed_epoch, self._consumed = int(state["epoch"]), consumed
