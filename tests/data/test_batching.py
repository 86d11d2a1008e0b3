"""Bucketed batches: budgets, determinism, DDP shards, mid-epoch resume and padding waste."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bench_data import fixed_size_batches
from nano8k.data.pipeline.batching import BucketBatchSampler, padding_waste

LENGTHS = np.random.default_rng(0).integers(20, 70, 500).tolist()


def make(**kw) -> BucketBatchSampler:
    return BucketBatchSampler(LENGTHS, kw.pop("max_frames", 600), seed=kw.pop("seed", 1), **kw)


def test_budget_and_coverage():
    sampler = make()
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
    assert all(len(b) * max(LENGTHS[i] for i in b) <= 600 for b in batches)
    assert len(batches) == len(sampler)


def test_token_budget():
    tokens = [length * 2 for length in LENGTHS]
    batches = list(make(max_frames=10_000, token_lengths=tokens, max_tokens=500))
    assert all(len(b) * max(tokens[i] for i in b) <= 500 for b in batches)


def test_oversized_item_gets_its_own_batch():
    batches = list(BucketBatchSampler([10, 10, 5000], 100, seed=0))
    assert [2] in batches


def test_deterministic_per_seed_and_epoch():
    a, b = make(), make()
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(make(seed=2)) != first


def test_ddp_shards_are_disjoint_and_even():
    shards = [list(make(rank=r, world_size=3)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    flat = [i for s in shards for b in s for i in b]
    assert len(flat) == len(set(flat))
    single = make().all_batches()
    assert len(flat) >= len(LENGTHS) - 2 * max(len(b) for b in single)  # at most world_size-1 batches dropped
    keep = make(rank=1, world_size=3, drop_uneven=False)
    assert len(list(keep)) >= len(shards[1])


def test_resume_mid_epoch():
    sampler = make()
    sampler.set_epoch(2)
    full = list(sampler)
    resumed = make()
    resumed.load_state_dict(sampler.state_dict(batches_consumed=5) | {"epoch": 2})
    assert resumed.epoch == 2 and len(resumed) == len(full)  # Lightning counts on from the restored position
    assert list(resumed) == full[5:]
    assert list(resumed) == full  # the offset applies to the interrupted epoch only
    with pytest.raises(ValueError, match="world_size"):
        make().load_state_dict({"epoch": 0, "batches_consumed": 1, "seed": 1, "world_size": 4})


def test_yield_epoch_pairs():
    sampler = make(yield_epoch=True)
    sampler.set_epoch(3)
    batch = next(iter(sampler))
    assert all(isinstance(i, tuple) and i[1] == 3 and i[2] is None for i in batch)
    sampler.frontend_rate = 8000
    assert all(i[2] == 8000 for i in next(iter(sampler)))


def test_lightning_sets_the_epoch_of_the_batch_sampler():
    from lightning.fabric.utilities.data import _set_sampler_epoch
    from torch.utils.data import DataLoader

    sampler = make()
    first = list(sampler)
    _set_sampler_epoch(DataLoader(list(range(len(LENGTHS))), batch_sampler=sampler), 3)
    assert sampler.epoch == 3
    assert list(sampler) != first  # a new shuffle for the new epoch


def test_bucketing_wastes_less_padding_than_fixed_batches():
    bucketed = make().padding_waste()
    fixed = padding_waste(fixed_size_batches(len(LENGTHS), 12, seed=0), LENGTHS)
    assert bucketed < 0.10 < fixed
