"""Streaming from tar shards: disjoint readers, every utterance once per epoch, resume, 2 nodes by environment."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from nano8k.data.manifests.io import read_manifest
from nano8k.data.pipeline import shards as shards_module
from nano8k.data.pipeline.datamodule import TelephoneDataModule, load_tokenizer
from nano8k.data.pipeline.shards import ShardIndex, read_shard, round_robin_taken, write_shards

REPO = Path(__file__).resolve().parents[2]
DEMO_TRAIN = REPO / "data_manifests" / "demo" / "train.jsonl"
SCRIPT = Path(__file__).with_name("stream_fit.py")
TRAIN_KEYS = [json.loads(line)["key"] for line in DEMO_TRAIN.read_text().splitlines()]


@pytest.fixture(scope="module")
def demo_shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    write_shards(read_manifest(DEMO_TRAIN).utterances, out, shard_size=16, seed=0)
    return out


def stream(shards: Path, rank: int, world: int, workers: int):
    data = TelephoneDataModule(
        train_shards=str(shards),
        telephone=None,
        specaugment=None,
        dither=0.0,
        max_frames_per_batch=300,
        num_workers=workers,
        seed=3,
    )
    data.set_tokenizer(load_tokenizer(REPO / "tests/fixtures/tiny-nano"))
    data._rank_world = lambda: (rank, world)
    data.setup("fit")
    return data, data._stream()


def test_shards_are_webdataset_tars_holding_every_utterance(demo_shards):
    summary = json.loads((demo_shards / "shards.json").read_text())
    assert summary["utterances"] == 160 and [s["count"] for s in summary["shards"]] == [16] * 10
    index = ShardIndex.open(demo_shards)
    names = subprocess.run(
        ["tar", "tf", str(demo_shards / "shard-000003.tar")], capture_output=True, text=True, check=True
    ).stdout.split()
    assert names[:4] == ["000000.json", "000000.flac", "000001.json", "000001.flac"] and len(names) == 32
    read = [meta["key"] for s in range(10) for meta, _ in read_shard(index.url(s))]
    assert read == index.utterances.strings("key") and sorted(read) == sorted(TRAIN_KEYS)


def test_plan_gives_disjoint_shards_and_every_utterance_once_per_epoch(demo_shards):
    streams = [stream(demo_shards, rank, 2, 2)[1] for rank in (0, 1)]
    orders = []
    for epoch in range(3):
        plan = streams[0].plan(epoch)
        assert plan == streams[1].plan(epoch)  # every rank computes the same plan
        shards = [shard for reader in plan for shard, _ in reader]
        assert sorted(shards) == list(range(10))  # each shard read by one reader
        rows = Counter(row for reader in plan for _, batches in reader for batch in batches for row in batch)
        assert sorted(rows) == list(range(160)) and set(rows.values()) == {1}
        counts = [sum(s.worker_counts(epoch)) for s in streams]
        assert counts[0] == counts[1]  # DDP: the same number of steps on every rank
        orders.append(shards)
    assert orders[0] != orders[1]


def test_round_robin_position():
    assert round_robin_taken([3, 1, 2], 0) == [0, 0, 0]
    assert round_robin_taken([3, 1, 2], 4) == [2, 1, 1]
    assert round_robin_taken([3, 1, 2], 6) == [3, 1, 2]


def test_resume_skips_finished_shards_and_rereads_at_most_one(demo_shards, monkeypatch):
    _, full = stream(demo_shards, 0, 1, 0)
    full.set_epoch(1)
    everything = [[item.key for item in batch] for batch in full]
    opened = []
    real = shards_module.read_shard
    monkeypatch.setattr(shards_module, "read_shard", lambda url: opened.append(url) or real(url))
    for consumed in (0, 5, 13, len(everything) - 1):
        _, resumed = stream(demo_shards, 0, 1, 0)
        resumed.load_state_dict(
            {"epoch": 1, "batches_consumed": consumed, "seed": 3, "world_size": 1, "num_workers": 1}
        )
        opened.clear()
        rest = [[item.key for item in batch] for batch in resumed]
        assert rest == everything[consumed:]
        plan = resumed.plan(1)[0]
        finished = next(i for i in range(len(plan) + 1) if sum(len(b) for _, b in plan[: i + 1]) > consumed)
        assert len(opened) == len(plan) - finished  # finished shards are not opened; only the current is re-read


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env(**extra: str) -> dict[str, str]:
    out = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", **extra)
    out.pop("NANO8K_MODEL_DIR", None)
    return out


def steps(root: Path, rank: int) -> list[dict]:
    path = root / f"steps-rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")] if path.exists() else []


def run_two_nodes(shards: Path, root: Path, max_steps: int, workers: int, *extra: str) -> list[subprocess.Popen]:
    port = str(free_port())
    return [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), str(shards), str(root), str(max_steps), str(workers), *extra],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env(
                NANO8K_TEST_NODES="2", NODE_RANK=str(node), MASTER_ADDR="127.0.0.1", MASTER_PORT=port, LOCAL_RANK="0"
            ),
        )
        for node in (0, 1)
    ]


def finish(procs: list[subprocess.Popen], timeout: float = 240) -> None:
    for proc in procs:
        _, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err.decode()[-3000:]


def test_two_nodes_by_environment_match_one_node_of_two_processes(demo_shards, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    single = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(demo_shards), str(one), "5", "0"],
        cwd=REPO,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    finish([single, *run_two_nodes(demo_shards, two, 5, 0)])  # both layouts at once: each is mostly start-up
    for rank in (0, 1):
        a, b = steps(one, rank), steps(two, rank)
        assert [s["keys"] for s in a] == [s["keys"] for s in b] and len(a) == 5
        assert [s["loss"] for s in a] == pytest.approx([s["loss"] for s in b], abs=1e-6)
    assert not {k for s in steps(two, 0) for k in s["keys"]} & {k for s in steps(two, 1) for k in s["keys"]}


def test_two_nodes_two_workers_resume_after_kill9_sees_every_utterance_once(demo_shards, tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    procs = run_two_nodes(demo_shards, root, 30, 2)
    deadline = time.monotonic() + 180
    try:  # kill both "nodes" just after the step-6 checkpoint
        while not any(s["step"] >= 7 for s in steps(root, 0)):
            assert all(p.poll() is None for p in procs), procs[0].stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no progress in 180 s"
            time.sleep(0.05)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    import torch

    saved = int(torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)["global_step"])
    assert saved >= 6 and saved % 2 == 0
    before = {rank: [s for s in steps(root, rank) if s["step"] <= saved] for rank in (0, 1)}
    for rank in (0, 1):
        (root / f"steps-rank{rank}.jsonl").unlink()
    finish(run_two_nodes(demo_shards, root, 30, 2, "last"))
    after = {rank: steps(root, rank) for rank in (0, 1)}
    assert min(s["step"] for s in after[0]) == saved + 1
    per_rank_epoch = len([s for s in before[0] + after[0] if s["epoch"] == 0])
    epoch0 = Counter(k for rank in (0, 1) for s in before[rank] + after[rank] if s["epoch"] == 0 for k in s["keys"])
    assert sorted(epoch0) == sorted(TRAIN_KEYS) and set(epoch0.values()) == {1}, epoch0.most_common(3)
    assert per_rank_epoch == len([s for s in before[1] + after[1] if s["epoch"] == 0])
    assert any(s["epoch"] == 1 for s in after[0])  # training went on into the next epoch


def test_sharded_strategies_are_refused_on_cpu_or_by_stage_switch_with_the_alternative():
    """Lightning 2.6's FSDPStrategy refuses CPU accelerators; StageSwitch names DDP and the two-fit recipe."""
    import lightning as L
    from lightning.pytorch.strategies import FSDPStrategy

    from nano8k.training.callbacks import StageSwitch
    from nano8k.training.freezing import FreezeConfig

    with pytest.raises(ValueError, match="requires a GPU accelerator"):
        L.Trainer(accelerator="cpu", devices=2, strategy="fsdp", logger=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    trainer.strategy.__class__ = type("FSDPOnTest", (FSDPStrategy,), {})  # what fit would see under FSDP
    switch = StageSwitch(stage1_steps=1, stage1_freeze=FreezeConfig(), main_freeze=FreezeConfig())
    with pytest.raises(NotImplementedError, match="not FSDPOnTest.*trainer.strategy ddp.*two fits"):
        switch.setup(trainer, object(), "fit")


def test_preflight_judges_a_shard_set(demo_shards, capsys, monkeypatch):
    from nano8k.commands.preflight import main

    monkeypatch.chdir(REPO)
    code = main(["configs/demo.yaml", "--data.train_manifests", "null", "--data.train_shards", str(demo_shards)])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    assert "[PASS] manifests: train 160 ok / 160" in out and "0 fail" in out
    code = main(
        ["configs/demo.yaml", "--data.train_manifests", "null", "--data.train_shards", str(demo_shards / "missing")]
    )
    assert code != 0 and "not a nano8k shard set" in capsys.readouterr().out
