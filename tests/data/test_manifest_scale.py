"""Start-up that does not open every audio file: trusted durations with a spot check, cached headers, compact tables."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from nano8k.data.badsamples import BadSampleLog
from nano8k.data.manifests import cache as manifest_cache
from nano8k.data.manifests.io import load_utterances, read_manifest
from nano8k.data.manifests.table import UtteranceTable
from nano8k.data.manifests.utterance import Utterance
from nano8k.data.manifests.validate import validate
from nano8k.data.pipeline.batching import estimated_lfr_frames, estimated_lfr_frames_of
from nano8k.errors import DataError
from tests.data.conftest import DEMO, tone, write_jsonl


@pytest.fixture
def counted_probes(monkeypatch):
    """Counts header reads made while loading manifests."""
    opened: list[Path] = []
    real = manifest_cache.probe_audio

    def probe(path):
        opened.append(Path(path))
        return real(path)

    monkeypatch.setattr(manifest_cache, "probe_audio", probe)
    return opened


@pytest.fixture
def always_cached(monkeypatch):
    monkeypatch.setattr(manifest_cache, "CACHE_MIN_BYTES", 0)


def clips(tmp_path: Path, count: int, seconds: float = 0.5) -> list[Path]:
    return [tone(tmp_path / f"c{i}.wav", seconds + 0.01 * i) for i in range(count)]


def test_table_round_trip_through_memory_mapped_files(tmp_path):
    utts = [
        Utterance("a", tmp_path / "a.wav", "hello", 1.5, "en", None, 3, tmp_path / "m.jsonl"),
        Utterance("b", tmp_path / "b.wav", "你好", None, None, "语音转写：", 4, None, 2.0, 1),
        Utterance("c", tmp_path / "c.wav", "", 0.25, "zh", "", 5, tmp_path / "m.jsonl", 0.0, (0, 1)),
    ]
    table = UtteranceTable.from_utterances(utts)
    assert list(table) == utts
    table.save(tmp_path / "t")
    loaded = UtteranceTable.load(tmp_path / "t")
    assert isinstance(loaded.numbers["duration"].base, np.memmap) and list(loaded) == utts
    assert list(loaded.take([2, 0])) == [utts[2], utts[0]] and list(loaded[1:]) == utts[1:]
    assert list(UtteranceTable.concat([loaded.take([2]), table])) == [utts[2], *utts]


def test_vectorised_lfr_frames_match_the_scalar_rule():
    durations = np.array([0.0, 0.024, 0.025, 0.1, 1.234, 7.77, 30.0, np.nan])
    assert estimated_lfr_frames_of(durations).tolist() == [
        estimated_lfr_frames(d if d == d else 0.0) for d in durations
    ]


def test_manifest_durations_are_trusted_and_spot_checked(tmp_path, counted_probes, caplog):
    files = clips(tmp_path, 30)
    rows = [{"key": f"u{i}", "source": str(f), "target": "x", "duration": 0.5 + 0.01 * i} for i, f in enumerate(files)]
    rows[7]["duration"] = 3.0  # disagrees with its audio
    rows[8]["source"] = str(tmp_path / "gone.wav")  # missing
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    log = BadSampleLog("skip", max_bad_fraction=1.0)
    with caplog.at_level(logging.INFO, "nano8k.data"):
        table = load_utterances(manifest, log, spot_check=5)
    assert len(counted_probes) == 5  # the other 25 files were not opened
    assert len(table) + log.count == 30
    with caplog.at_level(logging.INFO, "nano8k.data"):
        counted_probes.clear()
        everything = load_utterances(manifest, log := BadSampleLog("skip", max_bad_fraction=1.0), spot_check=None)
    assert len(counted_probes) == 30  # every file
    assert [b.key for b in log.items] == ["u8"] and "audio file not found" in log.items[0].reason
    assert "u7" in [u.key for u in everything]  # a stale duration is measured and warned about, not dropped
    assert everything[[u.key for u in everything].index("u7")].duration == pytest.approx(0.57)
    assert "with another duration than the audio's" in caplog.text and "u7" in caplog.text


def test_missing_durations_are_measured_once_and_cached_beside_the_manifest(tmp_path, counted_probes, always_cached):
    files = clips(tmp_path, 12)
    manifest = write_jsonl(
        tmp_path / "m.jsonl", [{"key": f"u{i}", "source": str(f), "target": "x"} for i, f in enumerate(files)]
    )
    first = load_utterances(manifest, BadSampleLog("error"), spot_check=0)
    assert len(counted_probes) == 12 and (tmp_path / ".m.jsonl.nano8k" / "current" / "headers.npz").is_file()
    counted_probes.clear()
    second = load_utterances(manifest, BadSampleLog("error"), spot_check=0)
    assert counted_probes == [] and list(second) == list(first)
    assert [round(u.duration, 3) for u in second] == [round(0.5 + 0.01 * i, 3) for i in range(12)]
    assert isinstance(second.numbers["line"].base, np.memmap)  # read from the cache, not parsed again
    stat = manifest.stat()
    with open(manifest, "a", encoding="utf-8") as handle:  # a changed manifest is read and measured again
        handle.write(json.dumps({"key": "new", "source": str(tone(tmp_path / "new.wav", 1.0)), "target": "y"}) + "\n")
    os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    counted_probes.clear()
    third = load_utterances(manifest, BadSampleLog("error"), spot_check=0)
    assert len(third) == 13 and len(counted_probes) == 13
    report = validate([manifest], decode=False, sample=0)  # preflight reads the same cache
    assert report.total == 13 and len(report.good) == 13 and report.trusted == 0


def test_cached_bad_lines_are_still_reported(tmp_path, always_cached):
    files = clips(tmp_path, 3)
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"key": "a", "source": str(files[0]), "target": "x"},
            "{oops",
            {"key": "a", "source": str(files[1]), "target": "y"},
        ],
    )
    for _ in range(2):  # parsed, then from the cache
        contents = read_manifest(manifest)
        assert [b.line for b in contents.bad] == [2]
        with pytest.raises(DataError, match="m.jsonl:2: bad JSON"):
            load_utterances(manifest, BadSampleLog("error"))
        log = BadSampleLog("skip", max_bad_fraction=1.0)
        assert len(load_utterances(manifest, log)) == 0
        assert sorted(b.line for b in log.items) == [1, 2, 3] and "duplicate key 'a'" in log.items[-1].reason


def test_preflight_report_trusts_declared_durations(tmp_path, counted_probes):
    report = validate([DEMO / "train.jsonl"], decode=False, sample=10)
    full = validate([DEMO / "train.jsonl"], decode=False)
    assert len(counted_probes) == 10 + full.total  # sampled run opened 10 headers; the full run all of them
    assert report.total == full.total and report.trusted == full.total - 10
    assert report.seconds == pytest.approx(full.seconds, rel=0.01)


def test_prompt_lengths_match_each_encoded_prompt(tokenizer):
    from nano8k.data.pipeline.dataset import SpeechDataset
    from nano8k.model.features import FrontendConfig
    from nano8k.model.prompt import PromptEncoder, PromptSettings

    utts = read_manifest(DEMO / "train.jsonl").utterances
    for settings in (PromptSettings(), PromptSettings(language="manifest", context_header=True)):
        dataset = SpeechDataset(utts, PromptEncoder(tokenizer, settings), FrontendConfig())
        audio = [3 + i % 17 for i in range(len(utts))]
        assert dataset.prompt_lengths(audio).tolist() == [
            len(dataset.prompt_for(u, n).input_ids) for u, n in zip(utts, audio)
        ]
