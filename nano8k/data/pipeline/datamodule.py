"""``TelephoneDataModule``: manifests -> datasets -> bucketed loaders of ``SpeechBatch`` for train/val/test."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from nano8k.data.audio import MultichannelPolicy
from nano8k.data.badsamples import BadSample, BadSampleLog, DataError
from nano8k.data.pipeline.batching import BucketBatchSampler, estimated_lfr_frames, padded_lengths, plan_digest
from nano8k.data.pipeline.dataset import SpeechCollator, SpeechDataset
from nano8k.data.manifests.io import load_utterances
from nano8k.data.pipeline.shards import ShardIndex, ShardStream
from nano8k.data.pipeline.specaugment import SpecAugment
from nano8k.data.pipeline.speed import SpeedPerturb
from nano8k.data.channel.telephone import TelephoneChannel
from nano8k.errors import RESUME_ADVICE, ConfigError, ResumeConfigError, resume_changes, resume_refused
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
    **dict.fromkeys(("train_manifests", "train_shards", "max_frames_per_batch", "max_tokens_per_batch",
                     "max_batch_size", "pad_frames_to_multiple", "pad_tokens_to_multiple", "sort_window",
                     "speed_perturb", "min_duration", "max_duration", "multichannel", "on_bad_sample"), _PLAN),
    **dict.fromkeys(("telephone", "telephone_prob", "telephone_max_input_rate", "specaugment"), _AUGMENT),
    **dict.fromkeys(("num_workers", "feature_cache_mb", "probe_audio", "spot_check"), _LOADING),
    "val_manifests": "validation data", "test_manifests": "test data",
    "max_bad_fraction": "the bad-sample cap, checked from now on",
}


def _plain(value: Any) -> Any:
    """A setting as plain data (dataclasses as dicts), so a checkpoint holding it loads with ``weights_only``."""
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


class ResumableLoader(DataLoader):
    """The training loader, stateful in Lightning's sense: the fit loop saves ``state_dict()`` in each checkpoint
    and hands it back to ``load_state_dict`` on resume, so Lightning knows a mid-epoch resume is exact. The state is
    the data module's position (``TelephoneDataModule.train_position``): the batch sampler (or shard stream) skips
    the batches the checkpoint had used."""

    def __init__(self, *args: Any, position: Callable[[], dict[str, Any]],
                 resume: Callable[[dict[str, Any]], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._position, self._resume = position, resume

    def state_dict(self) -> dict[str, Any]:
        return self._position()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume(state)


def check_data_settings(settings: dict[str, Any]) -> None:
    """Refuse ``TelephoneDataModule`` settings no run can use, naming ``data.<key>``, its value and what is allowed."""

    def refuse(key: str, allowed: str) -> None:
        raise ConfigError(f"data.{key} must be {allowed}, got {settings[key]!r}")

    def at_least(key: str, low: float, optional: bool = False) -> None:
        value = settings[key]
        if value is None and optional:
            return
        if value is None or not value >= low:  # `not >=` also refuses NaN
            refuse(key, f">= {low}" + (" (or null)" if optional else ""))

    if settings["frontend_sample_rate"] not in FRONTEND_RATES:
        refuse("frontend_sample_rate", "8000 or 16000 (16000: resampled main stage, 8000: native telephone stage)")
    for key in ("telephone_prob", "max_bad_fraction"):
        if settings[key] is None or not 0.0 <= settings[key] <= 1.0:
            refuse(key, "a probability in [0, 1]")
    at_least("max_frames_per_batch", 1)
    at_least("max_tokens_per_batch", 1, optional=True)
    at_least("max_batch_size", 1, optional=True)
    at_least("pad_frames_to_multiple", 1)
    at_least("pad_tokens_to_multiple", 1)
    at_least("sort_window", 0, optional=True)
    at_least("num_workers", 0)
    at_least("telephone_max_input_rate", 1, optional=True)
    at_least("dither", 0.0)
    at_least("min_duration", 0.0)
    at_least("feature_cache_mb", 0.0)
    at_least("spot_check", 0, optional=True)
    if settings["max_duration"] is None or not settings["max_duration"] > settings["min_duration"]:
        refuse("max_duration", f"> data.min_duration ({settings['min_duration']})")
    try:  # the prompt settings' own rules (language names, booleans)
        PromptSettings(**{key: settings[key] for key in ("system_prompt", "context_header", "language", "itn")})
    except ValueError as err:
        raise ConfigError(f"data.{err}") from None


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """``AutoTokenizer`` from a tokenizer folder or a model folder (the model's rule: ``checkpoint.tokenizer_dir``)."""
    from nano8k.model.checkpoint import CheckpointError, load_tokenizer_files, tokenizer_dir

    try:
        return load_tokenizer_files(tokenizer_dir(path))
    except CheckpointError as err:
        raise DataError(str(err)) from err


class TelephoneDataModule(L.LightningDataModule):
    """Train/val/test loaders of ``nano8k.model.batch.SpeechBatch`` for telephone fine-tuning.

    Batches are length-bucketed with ``max_frames_per_batch`` LFR frames (60 ms each, padding included) and,
    optionally, ``max_tokens_per_batch`` LLM tokens; ``pad_frames_to_multiple`` / ``pad_tokens_to_multiple`` round
    each batch's widths up (fewer distinct shapes for an accelerator; the budgets count that padding). Augmentation (``speed_perturb``; a telephone channel profile
    with probability ``telephone_prob`` on audio above ``telephone_max_input_rate`` Hz; SpecAugment; ``dither``)
    runs on the training split only; under speed perturbation each epoch's batches are planned on the perturbed
    durations. An utterance is a file or a span and channel of one (see ``nano8k.data.manifests.io``); a
    multi-channel file with no channel named follows ``multichannel``: ``error`` (default; names the file and the
    fix), ``first``, or ``mix`` (averages the channels). Under DDP every rank loads a disjoint shard with the same number of batches; use
    ``Trainer(use_distributed_sampler=False)`` so Lightning leaves the batch sampler alone.

    How the model is fed is ``self.feeding`` (``nano8k.model.feeding.Feeding``): ``connect(model)`` (``nano8k.fit``
    calls it; ``NanoASRModule.setup`` too, so a plain ``trainer.fit(module, datamodule)`` is fed right) takes the
    model's feeding with this config's fbank rate, dither and prompt settings as overrides, its encoder's length limit
    (``model.max_frames``; the release's 2048 LFR frames, 122.9 s, until then: a longer utterance is a bad sample) and
    its tokenizer (unless ``tokenizer_dir`` is set). Until then the token rule is the release's.
    Start-up does not open every audio file: a duration the manifest gives is trusted and ``spot_check`` files
    (null: all) are opened to check it; an entry without one has its header read once, kept beside a large manifest
    (``nano8k.data.manifests.cache``). The utterances are held as an ``UtteranceTable`` (columns, memory-mapped from
    that cache), so ranks and loader workers share one read-only copy.
    Deterministic features (validation, test, and training without channel, SpecAugment or dither) are computed once
    and cached, up to ``feature_cache_mb`` per split in each process; loader workers persist between epochs so their
    caches do too.
    Resuming: checkpoints keep every ``data.*`` setting; a changed one is applied with a ``[resume]`` note when it is in
    ``DATA_APPLIED_ON_RESUME``, else refused (``ResumeConfigError``). The training loader (``ResumableLoader``) keeps
    the position in the epoch and a digest of the epoch's plan: a mid-epoch resume onto another plan (another
    training set or batching) is refused, naming both.
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
        check_data_settings(dict(locals()))  # a bad value is named here, not deep in a loader
        self.save_hyperparameters()
        if train_manifests and train_shards:
            raise ConfigError("give data.train_manifests or data.train_shards, not both")
        self.manifests = {"train": train_manifests, "val": val_manifests, "test": test_manifests}
        self.train_shards = train_shards
        self.shard_index: ShardIndex | None = None
        self.tokenizer_dir = tokenizer_dir
        self.telephone, self.telephone_prob = telephone, telephone_prob
        self.telephone_max_input_rate = telephone_max_input_rate
        self.speed_perturb = speed_perturb
        self.specaugment = specaugment
        self.max_frames_per_batch, self.max_tokens_per_batch = max_frames_per_batch, max_tokens_per_batch
        self.max_batch_size, self.sort_window = max_batch_size, sort_window
        self.pad_multiples = (int(pad_frames_to_multiple), int(pad_tokens_to_multiple))
        self.num_workers, self.seed = num_workers, seed
        self.on_bad_sample, self.max_bad_fraction = on_bad_sample, max_bad_fraction
        self.min_duration, self.max_duration, self.probe_audio = min_duration, max_duration, probe_audio
        self.spot_check = spot_check
        # the data.* feeding settings, overrides of the model's feeding (connect); checkpoints and exports record it
        self.feeding = Feeding(frontend_rate=frontend_sample_rate, dither=dither, system_prompt=system_prompt,
                               context_header=context_header, language=language, itn=itn)
        self.feature_cache_mb = feature_cache_mb
        self.multichannel = multichannel
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
        self.feeding = dataclasses.replace(self.feeding, audio_tokens=model.feeding.audio_tokens,
                                           weights=model.feeding.weights)
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
        log = BadSampleLog(self.on_bad_sample, self.max_bad_fraction, name=split)
        if split == "train" and self.train_shards:  # durations were measured when the shards were written
            self.shard_index = ShardIndex.open(self.train_shards)
            utts = self.shard_index.utterances
        else:
            utts = load_utterances(self.manifests[split], log, min_duration=self.min_duration,
                                   max_duration=self.max_duration, probe=self.probe_audio,
                                   multichannel=self.multichannel, spot_check=self.spot_check, seed=self.seed)
        if not utts:
            raise DataError(f"[{split}] no usable utterances in {self.manifests[split]}")
        self.bad_samples[split] = log
        # from here on (loading, in loader workers too) the cap is the trainer's: it checks max_bad_fraction on the
        # bad samples of every rank (check_bad_fraction), so all ranks stop together
        log.defer_cap = True
        train = split == "train"
        dataset = SpeechDataset(
            utts, PromptEncoder(self.tokenizer, self.prompt_settings),
            self.frontend, train=train, telephone=self.telephone if train else None,
            telephone_prob=self.telephone_prob, telephone_max_input_rate=self.telephone_max_input_rate,
            specaugment=self.specaugment if train else None,
            min_duration=self.min_duration, max_duration=self.max_duration, seed=self.seed, bad_log=log,
            audio_tokens=self.audio_tokens, feature_cache_mb=self.feature_cache_mb, multichannel=self.multichannel,
            max_frames=self.max_frames, speed_perturb=self.speed_perturb if train else None,
        )
        if train and self.telephone is not None and self.telephone_prob > 0:
            for line in self.telephone.describe():
                logger.info("[train] telephone profile %s", line)
        logger.info("[%s] %d utterances, %.1f min, %d bad skipped", split, len(utts),
                    float(np.nansum(utts.durations)) / 60, log.count)
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
        return ShardStream(self.shard_index, self.datasets["train"], max_frames=self.max_frames_per_batch,
                           max_tokens=self.max_tokens_per_batch, max_batch_size=self.max_batch_size, seed=self.seed,
                           rank=rank, world_size=world, num_workers=self.num_workers,
                           pad_multiples=self.pad_multiples)

    def _sampler(self, split: str) -> BucketBatchSampler:
        dataset = self.datasets[split]
        lengths, tokens = dataset.batch_lengths(with_tokens=self.max_tokens_per_batch is not None)
        rank, world = self._rank_world()
        train = split == "train"
        epoch_lengths = None
        if train and self.speed_perturb is not None:
            epoch_lengths = self._perturbed_lengths(dataset, lengths, tokens)
        padded, padded_tokens = padded_lengths(lengths, tokens, self.pad_multiples)
        return BucketBatchSampler(
            padded, self.max_frames_per_batch, token_lengths=padded_tokens,
            max_tokens=self.max_tokens_per_batch if tokens is not None else None,
            max_batch_size=self.max_batch_size, shuffle=train, seed=self.seed, sort_window=self.sort_window,
            rank=rank, world_size=world, yield_epoch=True, drop_uneven=train, epoch_lengths=epoch_lengths,
        )

    def _perturbed_lengths(self, dataset: SpeechDataset, plain: list[int], tokens: list[int] | None):
        """Per-epoch (frames, tokens) of the speed-perturbed training split: durations / factor, and the prompt's
        audio tokens recounted for those frames (its text tokens stay); ``plain`` are the unperturbed frames."""
        keys = dataset.utterances.strings("key")
        durations = np.nan_to_num(dataset.utterances.durations, nan=0.0).tolist()
        lfr_n, rule, perturb, seed = self.frontend.lfr_n, self.audio_tokens, self.speed_perturb, self.seed
        multiples = self.pad_multiples

        def lengths(epoch: int) -> tuple[list[int], list[int] | None]:
            factors = perturb.factors_for(seed, keys, epoch)
            frames = [estimated_lfr_frames(d / f, lfr_n=lfr_n) for d, f in zip(durations, factors)]
            recounted = None if tokens is None else [t - audio_token_count(p, rule) + audio_token_count(n, rule)
                                                     for t, p, n in zip(tokens, plain, frames)]
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
        common: dict[str, Any] = {"num_workers": self.num_workers, "collate_fn": self._collator(),
                                  "pin_memory": torch.cuda.is_available(),
                                  "generator": torch.Generator().manual_seed(self.seed)}
        resumable = {"position": self.train_position, "resume": self.resume_train_position}
        if streaming:
            # workers start afresh each epoch (they read the epoch and resume position from the stream then);
            # Lightning sets the epoch on the loader's sampler, which for an IterableDataset is a placeholder
            loader = ResumableLoader(sampler, batch_size=None, **common, **resumable)
            loader.sampler.set_epoch = sampler.set_epoch
            return loader
        # pinned batches: the copy to the GPU does not make the host wait for the step before it
        if split == "train":
            return ResumableLoader(self.datasets[split], batch_sampler=sampler, persistent_workers=self.num_workers > 0,
                                   **common, **resumable)
        return DataLoader(self.datasets[split], batch_sampler=sampler, persistent_workers=self.num_workers > 0,
                          **common)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Pinned batches go to a GPU without the host waiting (Lightning passes ``non_blocking`` to plain tensors
        only)."""
        if isinstance(batch, SpeechBatch):
            return batch.to(device, non_blocking=device.type == "cuda")
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _collator(self) -> SpeechCollator:
        frames, tokens = self.pad_multiples
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
        split = "train" if trainer is not None and trainer.training else (
            "test" if trainer is not None and trainer.testing else "val")
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
            raise resume_refused(self._resume_source(), refused, "data.", RESUME_ADVICE + " A resume may change only: "
                                 + ", ".join(f"data.{key}" for key in DATA_APPLIED_ON_RESUME))
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
        return {"utterances": len(dataset), "source": str(self.train_shards or self.manifests["train"]),
                "batches": len(batches), "digest": digest}

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
                    "(python -m nano8k.average CKPT --out DIR, then --model.model_dir DIR/funasr).")
        try:
            sampler.load_state_dict(state)
        except ValueError as err:  # another seed, world size or number of stream workers
            raise ResumeConfigError(f"cannot resume from {self._resume_source()}: {err}") from err
        self._consumed_epoch, self._consumed = int(state["epoch"]), consumed
