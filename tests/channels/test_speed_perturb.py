"""Speed / tempo perturbation: duration changes by the factor, labels stay, batches are planned on the new lengths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nano8k.data.pipeline.datamodule import TelephoneDataModule
from nano8k.data.pipeline.speed import SpeedPerturb

from .conftest import speech_8k

ROOT = Path(__file__).resolve().parents[2]
DEMO_TRAIN = ROOT / "data_manifests" / "demo" / "train.jsonl"
TOKENIZER_DIR = ROOT / "tests" / "fixtures" / "tiny-nano"


@pytest.mark.parametrize("mode", ["speed", "tempo"])
@pytest.mark.parametrize("factor", [0.9, 1.1, 1.25])
def test_duration_changes_by_the_factor(mode, factor):
    x = torch.from_numpy(speech_8k(4.0).astype(np.float32))
    y = SpeedPerturb(mode=mode).apply(x, 8000, factor)
    assert abs(y.numel() - x.numel() / factor) <= 2
    if mode == "speed":  # resampling moves every frequency by the factor: a 1 kHz tone lands at factor kHz
        tone = torch.sin(2 * torch.pi * 1000 * torch.arange(8000) / 8000)
        spectrum = torch.fft.rfft(SpeedPerturb().apply(tone, 8000, factor)).abs()
        peak_hz = float(torch.argmax(spectrum)) * 8000 / (2 * (spectrum.numel() - 1))
        assert abs(peak_hz - 1000 * factor) < 10


def test_factors_are_drawn_per_key_and_epoch():
    perturb = SpeedPerturb(factors=(0.9, 1.0, 1.1))
    keys = [f"u{i}" for i in range(300)]
    epoch0 = perturb.factors_for(1234, keys, 0)
    assert np.array_equal(epoch0, perturb.factors_for(1234, keys, 0))
    assert not np.array_equal(epoch0, perturb.factors_for(1234, keys, 1))
    assert set(np.round(epoch0, 2)) == {0.9, 1.0, 1.1}
    ranged = SpeedPerturb(factors=None, factor_range=(0.85, 1.15)).factors_for(1, keys, 0)
    assert 0.85 <= ranged.min() and ranged.max() <= 1.15 and len(set(np.round(ranged, 2))) > 10
    with pytest.raises(ValueError, match="either factors"):
        SpeedPerturb(factors=(1.0,), factor_range=(0.9, 1.1))
    with pytest.raises(ValueError, match=r"factors must be a list of speed factors in \[0.5, 2.0\]"):
        SpeedPerturb(factors=(0.2,))


def test_batches_are_planned_on_the_perturbed_lengths_and_labels_stay():
    dm = TelephoneDataModule(
        train_manifests=str(DEMO_TRAIN),
        tokenizer_dir=str(TOKENIZER_DIR),
        telephone=None,
        specaugment=None,
        dither=0.0,
        num_workers=0,
        max_tokens_per_batch=4000,
        speed_perturb=SpeedPerturb(factors=(0.9, 1.1)),
    )
    dm.setup("fit")
    dataset, sampler = dm.datasets["train"], dm._sampler("train")
    plain = sampler.lengths
    for epoch in (0, 1):
        frames, tokens = sampler.lengths_of(epoch)
        factors = dm.augment.speed_perturb.factors_for(dm.seed, [u.key for u in dataset.utterances], epoch)
        assert np.all((frames < plain) == (factors > 1.0))  # faster -> shorter, slower -> longer
        for i in range(0, len(dataset), 16):
            item = dataset[(i, epoch, None)]
            assert abs(item.feats.shape[0] - frames[i]) <= 1  # the planner's length is the audio's
            assert item.target == dataset.utterances[i].target  # the transcript stays
            assert abs(len(item.prompt.input_ids) - tokens[i]) <= 1
        for batch in sampler.all_batches(epoch):
            assert len(batch) * max(frames[j] for j in batch) <= dm.batching.max_frames_per_batch or len(batch) == 1
    assert sampler.all_batches(0) != sampler.all_batches(1)


@pytest.mark.parametrize("rate", [11025, 22050, 44100])
def test_any_sample_rate_resamples_by_a_small_ratio(rate):
    import time

    x = torch.randn(3 * rate) * 0.1
    start = time.process_time()
    y = SpeedPerturb().apply(x, rate, 0.93)  # 22050 * 0.93 is not a whole rate: the ratio must not depend on it
    assert time.process_time() - start < 1.0
    assert abs(y.numel() - x.numel() / 0.93) <= 2


def test_tempo_keeps_the_pitch():
    tone = torch.sin(2 * torch.pi * 1000 * torch.arange(16000) / 8000)
    out = SpeedPerturb(mode="tempo").apply(tone, 8000, 1.25)
    spectrum = torch.fft.rfft(out).abs()
    peak_hz = float(torch.argmax(spectrum)) * 8000 / (2 * (spectrum.numel() - 1))
    assert abs(peak_hz - 1000) < 10 and abs(out.numel() - 16000 / 1.25) <= 2


def test_factor_range_alone_is_enough():
    assert SpeedPerturb(factor_range=(0.9, 1.1)).factors is None
    assert SpeedPerturb().factors == (0.9, 1.0, 1.1)


def test_every_epoch_has_the_same_number_of_batches_and_every_utterance():
    from nano8k.data.pipeline.batching import BucketBatchSampler, estimated_lfr_frames

    rng = np.random.default_rng(0)
    durations = rng.uniform(0.5, 12.0, 3000)
    perturb = SpeedPerturb(factors=(0.8, 1.0, 1.2))
    keys = [f"k{i}" for i in range(durations.size)]

    def lengths(epoch):
        factors = perturb.factors_for(1, keys, epoch)
        return [estimated_lfr_frames(d / f) for d, f in zip(durations, factors)], None

    for world in (1, 4):
        samplers = [
            BucketBatchSampler(lengths(0)[0], 2000, seed=1, rank=r, world_size=world, epoch_lengths=lengths)
            for r in range(world)
        ]
        plain = [len(samplers[0]._plan(e)) for e in range(6)]
        assert len(set(plain)) > 1  # the plans themselves differ in size from epoch to epoch
        counts = set()
        for epoch in range(6):
            for s in samplers:
                s.set_epoch(epoch)
            counts.add(tuple(len(s) for s in samplers))
            frames = lengths(epoch)[0]
            every = [i for s in samplers for batch in s for i in batch]
            assert sorted(every) == list(range(durations.size))  # nothing dropped, nothing twice
            for batch in samplers[0].all_batches(epoch):
                assert len(batch) * max(frames[i] for i in batch) <= 2000 or len(batch) == 1
        assert len(counts) == 1  # what Lightning read at epoch 0 holds in every epoch
