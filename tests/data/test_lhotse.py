"""Lhotse interop: CutSets and SupervisionSet + RecordingSet made by lhotse itself read as utterances; round trip."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from nano8k.commands.validate import main as validate_main
from nano8k.data.manifests.io import detect_format, read_manifest
from nano8k.errors import DataError

from .conftest import write_jsonl

lhotse = pytest.importorskip("lhotse", reason="the lhotse extra is part of .[dev]; CI installs it")

RATE = 8000


@pytest.fixture()
def call(tmp_path):
    t = np.arange(8 * RATE) / RATE
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.random.default_rng(3).standard_normal(t.size)], 1)
    path = tmp_path / "call.wav"
    sf.write(str(path), stereo.astype(np.float32), RATE, subtype="PCM_16")
    return path


def _lhotse_manifests(call, folder):
    recording = lhotse.Recording.from_file(call, recording_id="call")
    sups = [
        lhotse.SupervisionSegment("agent-1", "call", 0.5, 1.5, channel=0, text="您好", language="zh"),
        lhotse.SupervisionSegment(
            "cust-1", "call", 2.25, 2.0, channel=1, text="I want my bill", language="English"
        ),  # recipes' names become codes
        lhotse.SupervisionSegment("agent-2", "call", 5.0, 1.25, channel=0, text="好的", language="Mandarin"),
    ]
    recordings, supervisions = (
        lhotse.RecordingSet.from_recordings([recording]),
        lhotse.SupervisionSet.from_segments(sups),
    )
    recordings.to_file(folder / "calls_recordings_train.jsonl.gz")
    supervisions.to_file(folder / "calls_supervisions_train.jsonl.gz")
    cuts = lhotse.CutSet.from_manifests(recordings=recordings, supervisions=supervisions).trim_to_supervisions(
        keep_overlapping=False
    )
    cuts.to_file(folder / "calls_cuts_train.jsonl.gz")
    return cuts


def test_a_cutset_made_by_lhotse_reads_the_same_audio_as_lhotse(tmp_path, call):
    cuts = _lhotse_manifests(call, tmp_path)
    path = tmp_path / "calls_cuts_train.jsonl.gz"
    assert detect_format(path) == "lhotse"
    contents = read_manifest(path)
    assert contents.bad == [] and contents.format == "lhotse"
    utts = {u.key: u for u in contents.utterances}
    assert sorted(utts) == ["agent-1", "agent-2", "cust-1"]
    assert (utts["cust-1"].offset, utts["cust-1"].duration, utts["cust-1"].channel) == (2.25, 2.0, 1)
    assert (utts["cust-1"].target, utts["cust-1"].lang, utts["agent-1"].channel) == ("I want my bill", "en", 0)
    assert [u.lang for u in contents.utterances if u.key.startswith("agent")] == ["zh", "zh"]
    for cut in cuts:
        ours = utts[cut.supervisions[0].id].load()[0]
        theirs = torch.from_numpy(cut.load_audio()[0])  # lhotse's own decoding of the cut
        assert torch.allclose(ours, theirs, atol=1e-6), cut.id


def test_supervisions_with_their_recordings_beside_them(tmp_path, call):
    _lhotse_manifests(call, tmp_path)
    sups = read_manifest(tmp_path / "calls_supervisions_train.jsonl.gz")
    cuts = read_manifest(tmp_path / "calls_cuts_train.jsonl.gz")
    fields = lambda u: (u.key, u.audio, u.offset, u.duration, u.channel, u.target)  # noqa: E731
    assert sorted(fields(u) for u in sups.utterances) == sorted(fields(u) for u in cuts.utterances)
    assert [u.line for u in sups.utterances] == [1, 2, 3]
    with pytest.raises(DataError, match="RecordingSet, which has no transcripts"):
        read_manifest(tmp_path / "calls_recordings_train.jsonl.gz")
    (tmp_path / "calls_recordings_train.jsonl.gz").unlink()
    with pytest.raises(DataError, match=r"its RecordingSet .*calls_recordings_train\.jsonl\.gz does not exist"):
        read_manifest(tmp_path / "calls_supervisions_train.jsonl.gz")


def test_round_trip_ours_to_cutset_and_back(tmp_path, call, capsys):
    mono = tmp_path / "mono.wav"
    sf.write(str(mono), np.zeros(RATE * 2, dtype=np.float32) + 0.1, RATE)
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {
                "key": "agent",
                "source": "call.wav",
                "target": "您好",
                "offset": 0.25,
                "duration": 1.5,
                "channel": 0,
                "lang": "zh",
            },
            {"key": "cust", "source": "call.wav", "target": "查话费", "offset": 2.0, "duration": 0.75, "channel": 1},
            {"key": "whole", "source": "mono.wav", "target": "one file", "lang": "en"},
        ],
    )
    out = tmp_path / "out" / "cuts.jsonl.gz"
    assert validate_main([str(manifest), "--convert", str(out), "--convert_format", "lhotse"]) == 0
    assert "wrote 3 Lhotse cuts" in capsys.readouterr().out
    cuts = lhotse.CutSet.from_file(out)  # lhotse reads what we wrote
    assert [c.id for c in cuts] == ["agent", "cust", "whole"] and cuts[1].supervisions[0].channel == 1
    original = {u.key: u for u in read_manifest(manifest).utterances}
    back = {u.key: u for u in read_manifest(out).utterances}
    keep = lambda u: (u.audio, u.offset, u.channel, u.target, u.lang)  # noqa: E731
    assert {k: keep(u) for k, u in back.items()} == {k: keep(u) for k, u in original.items()}
    assert back["agent"].duration == 1.5 and back["whole"].duration == pytest.approx(2.0)
    assert torch.equal(back["cust"].load()[0], original["cust"].load()[0])
    # back out again as ChatML keeps the same spans
    chat = tmp_path / "chat.jsonl"
    assert validate_main([str(out), "--convert", str(chat)]) == 0
    assert {u.key: keep(u) for u in read_manifest(chat).utterances} == {k: keep(u) for k, u in original.items()}


def test_unsupported_cut_content_is_named(tmp_path, call):
    recording = lhotse.Recording.from_file(call, recording_id="call").perturb_speed(1.1)
    sup = lhotse.SupervisionSegment("s", recording.id, 0.0, 1.0, channel=0, text="x")
    cuts = lhotse.CutSet.from_manifests(
        recordings=lhotse.RecordingSet.from_recordings([recording]),
        supervisions=lhotse.SupervisionSet.from_segments([sup]),
    )
    cuts.to_file(tmp_path / "sp_cuts.jsonl")
    bad = read_manifest(tmp_path / "sp_cuts.jsonl").bad
    assert len(bad) == 1 and "has transforms (speed, resampling, …) that nano8k does not apply" in bad[0].reason


def test_a_cutset_trains_through_the_datamodule(tmp_path, call, tokenizer):
    from nano8k.data.pipeline.datamodule import TelephoneDataModule
    from nano8k.data.pipeline.dataset import SpeechDataset

    _lhotse_manifests(call, tmp_path)
    cuts = tmp_path / "calls_cuts_train.jsonl.gz"
    dm = TelephoneDataModule(str(cuts), str(cuts), num_workers=0, telephone=None, specaugment=None, dither=0.0)
    dm.set_tokenizer(tokenizer)
    dm.setup("fit")
    keys = sorted(key for batch in dm.train_dataloader() for key in batch.keys)
    assert keys == ["agent-1", "agent-2", "cust-1"]
    from nano8k.model.features import apply_lfr, fbank, resample

    dataset: SpeechDataset = dm.datasets["val"]
    utt = next(u for u in dataset.utterances if u.key == "cust-1")
    assert (utt.offset, utt.duration, utt.channel) == (2.25, 2.0, 1)
    cut = next(c for c in lhotse.CutSet.from_file(cuts) if c.supervisions[0].id == "cust-1")
    theirs = resample(torch.from_numpy(cut.load_audio()[0]), RATE, 16000)
    expected = apply_lfr(fbank(theirs, dataset.frontend), 7, 6)
    assert torch.allclose(dataset.features(utt), expected, atol=1e-3)


def test_a_recording_stored_as_one_file_per_channel(tmp_path, call):
    from lhotse.audio import AudioSource

    data, _ = sf.read(str(call), dtype="float32")
    for i in (0, 1):
        sf.write(str(tmp_path / f"side{i}.wav"), data[:, i], RATE, subtype="FLOAT")
    recording = lhotse.Recording(
        id="call",
        sampling_rate=RATE,
        num_samples=len(data),
        duration=len(data) / RATE,
        sources=[AudioSource("file", [i], str(tmp_path / f"side{i}.wav")) for i in (0, 1)],
    )
    sups = [
        lhotse.SupervisionSegment("cust", "call", 1.0, 2.0, channel=1, text="customer"),
        lhotse.SupervisionSegment("both", "call", 1.0, 2.0, channel=[0, 1], text="crosstalk"),
    ]
    lhotse.CutSet.from_manifests(
        recordings=lhotse.RecordingSet.from_recordings([recording]),
        supervisions=lhotse.SupervisionSet.from_segments(sups),
    ).to_file(tmp_path / "c.jsonl")
    contents = read_manifest(tmp_path / "c.jsonl")
    cust = next(u for u in contents.utterances if u.key == "cust")
    assert (cust.audio.name, cust.channel, cust.offset) == ("side1.wav", None, 1.0)
    assert torch.equal(cust.load()[0], torch.from_numpy(data[RATE : 3 * RATE, 1].copy()))
    assert [b.reason for b in contents.bad] == ["channel [0, 1] of recording call is spread over several source files"]


def test_lhotse_default_trims_and_windows_give_each_supervision_once(tmp_path, call):
    recording = lhotse.Recording.from_file(call, recording_id="call")
    sups = [
        lhotse.SupervisionSegment("a", "call", 0.5, 2.0, channel=0, text="one"),
        lhotse.SupervisionSegment("b", "call", 2.0, 1.5, channel=1, text="two"),  # overlaps a
        lhotse.SupervisionSegment("c", "call", 6.0, 1.0, channel=0, text="three"),
    ]
    cuts = lhotse.CutSet.from_manifests(
        recordings=lhotse.RecordingSet.from_recordings([recording]),
        supervisions=lhotse.SupervisionSet.from_segments(sups),
    )
    for name, made in (
        ("trim", cuts.trim_to_supervisions(keep_all_channels=True)),
        ("windows", cuts.cut_into_windows(2.0)),
    ):
        made.to_file(tmp_path / f"{name}.jsonl.gz")
        contents = read_manifest(tmp_path / f"{name}.jsonl.gz")
        spans = sorted((u.key, u.offset, u.duration, u.channel) for u in contents.utterances)
        # whole supervisions (lhotse keeps a supervision whole in every cut it reaches), each once
        assert spans == [("a", 0.5, 2.0, 0), ("b", 2.0, 1.5, 1), ("c", 6.0, 1.0, 0)], name
        assert contents.bad == [] and contents.ignored, name
        assert {b.reason for b in contents.ignored} <= {
            "the same supervision again (overlapping cuts)",
            "cut has no supervision (nothing to transcribe)",
        }


def test_a_bad_lhotse_line_is_one_bad_entry(tmp_path, call):
    _lhotse_manifests(call, tmp_path)
    import gzip

    lines = gzip.decompress((tmp_path / "calls_cuts_train.jsonl.gz").read_bytes()).decode().splitlines()
    broken = [lines[0], "", lines[1][: len(lines[1]) // 2], '{"type": "MonoCut", "id": "x"}', lines[2]]
    (tmp_path / "broken_cuts.jsonl").write_text("\n".join(broken) + "\n")
    contents = read_manifest(tmp_path / "broken_cuts.jsonl")
    assert len(contents.utterances) == 2
    assert [b.line for b in contents.bad] == [3, 4]
    assert contents.bad[0].reason.startswith("bad JSON: ") and "(column " in contents.bad[0].reason
    assert contents.bad[1].reason.startswith("lhotse cannot read this entry: ")
    recordings = tmp_path / "calls_recordings_train.jsonl.gz"
    recordings.write_bytes(gzip.compress(b"{not json\n"))
    bad = read_manifest(tmp_path / "calls_supervisions_train.jsonl.gz").bad
    assert bad[0].manifest == str(recordings) and bad[0].line == 1  # the recordings file is blamed, not the other
    assert all("is not in calls_recordings_train.jsonl.gz" in b.reason for b in bad[1:]) and len(bad) == 4
