"""Segments and channels: Kaldi segments + reco2file_and_channel and jsonl/ChatML offsets give exactly that span."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from nano8k.data.audio import load_audio, probe_audio
from nano8k.data.badsamples import BadSampleLog
from nano8k.data.manifests.io import load_utterances, read_manifest, write_chatml
from nano8k.data.pipeline.dataset import SpeechDataset
from nano8k.errors import DataError
from nano8k.model.features import FrontendConfig, apply_lfr, fbank, resample

from .conftest import write_jsonl

RATE = 8000


@pytest.fixture()
def call(tmp_path):
    """A 6 s stereo call: agent on the left channel (a chirp), customer on the right (seeded noise)."""
    t = np.arange(6 * RATE) / RATE
    agent = 0.4 * np.sin(2 * np.pi * (200 + 150 * t) * t)
    customer = 0.2 * np.random.default_rng(0).standard_normal(t.size)
    path = tmp_path / "call.wav"
    sf.write(str(path), np.stack([agent, customer], axis=1).astype(np.float32), RATE, subtype="PCM_16")
    return path


def _expected(path, start_s, end_s, channel):
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    start, end = round(start_s * rate), round(end_s * rate)  # the sample at start_s up to the one before end_s
    return torch.from_numpy(np.ascontiguousarray(data[start:end, channel]))


def test_kaldi_segments_give_each_side_its_own_channel(tmp_path, call):
    folder = tmp_path / "kaldi"
    folder.mkdir()
    (folder / "wav.scp").write_text(f"call-A\t{call}\ncall-B {call}\n")  # TABs or spaces both separate
    (folder / "reco2file_and_channel").write_text("call-A call A\ncall-B call B\n")
    (folder / "segments").write_text("agent-1 call-A 0.50 2.25\ncust-1\tcall-B\t1.00\t3.10\nagent-2 call-A 4.0 -1\n")
    (folder / "text").write_text("agent-1 您好请问有什么可以帮您\ncust-1 我想查话费\nagent-2 好的\n")
    contents = read_manifest(folder)
    assert contents.bad == [] and contents.format == "kaldi"
    utts = {u.key: u for u in contents.utterances}
    assert (utts["agent-1"].offset, utts["agent-1"].duration, utts["agent-1"].channel) == (0.5, 1.75, 0)
    assert (utts["cust-1"].channel, utts["cust-1"].line, utts["cust-1"].manifest.name) == (1, 2, "segments")
    for key, (start, end, channel) in {
        "agent-1": (0.5, 2.25, 0),
        "cust-1": (1.0, 3.1, 1),
        "agent-2": (4.0, 6.0, 0),
    }.items():
        wave, rate = utts[key].load()
        assert rate == RATE and torch.equal(wave, _expected(call, start, end, channel)), key
    # the customer's span really is the customer's channel, not a mix
    assert not torch.allclose(utts["cust-1"].load()[0], _expected(call, 1.0, 3.1, 0), atol=0.05)
    # load_utterances measures the open-ended segment from the header
    measured = {u.key: u for u in load_utterances(folder, BadSampleLog("error"))}
    assert measured["agent-2"].duration == pytest.approx(2.0)


def test_wav_scp_keyed_by_file_id_and_numeric_sides(tmp_path, call):
    folder = tmp_path / "kaldi"
    folder.mkdir()
    (folder / "wav.scp").write_text(f"call {call}\n")
    (folder / "reco2file_and_channel").write_text("call-1 call 1\ncall-2 call 2\ncall-9 call Z9\n")
    (folder / "segments").write_text("a call-1 0 1\nb call-2 1 2\nc call-9 0 1\n")
    (folder / "text").write_text("a x\nb y\nc z\n")
    contents = read_manifest(folder)
    assert [(u.key, u.channel) for u in contents.utterances] == [("a", 0), ("b", 1)]
    assert len(contents.bad) == 1 and "reco2file_and_channel:3: channel 'Z9' is neither A, B" in contents.bad[0].reason


def test_jsonl_and_chatml_offsets_and_channels(tmp_path, call):
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"key": "agent", "source": "call.wav", "target": "您好", "offset": 0.25, "duration": 1.5, "channel": 0},
            {"key": "cust", "source": "call.wav", "target": "查话费", "offset": 2.0, "duration": 0.75, "channel": 1},
            {"key": "tail", "source": "call.wav", "target": "再见", "offset": 5.5, "duration": 0.5, "channel": [1]},
        ],
    )
    utts = {u.key: u for u in load_utterances(manifest, BadSampleLog("error"))}
    assert torch.equal(utts["agent"].load()[0], _expected(call, 0.25, 1.75, 0))
    assert torch.equal(utts["cust"].load()[0], _expected(call, 2.0, 2.75, 1))
    assert utts["tail"].duration == pytest.approx(0.5) and utts["tail"].channel == 1
    # ChatML keeps offset, duration and channel, so a converted manifest reads the same spans
    out = tmp_path / "conv" / "chat.jsonl"
    write_chatml(utts.values(), out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {k: records[1][k] for k in ("offset", "duration", "channel")} == {
        "offset": 2.0,
        "duration": 0.75,
        "channel": 1,
    }
    back = {u.key: u for u in read_manifest(out).utterances}
    for key, utt in utts.items():
        assert (back[key].offset, back[key].duration, back[key].channel) == (utt.offset, utt.duration, utt.channel)
        assert torch.equal(back[key].load()[0], utt.load()[0])


@pytest.mark.parametrize(
    "subtype,ext,exact",
    [
        ("PCM_16", "wav", True),
        ("ULAW", "wav", True),
        ("ALAW", "wav", True),
        ("GSM610", "wav", True),
        ("PCM_16", "flac", True),
        ("OPUS", "opus", False),
        ("VORBIS", "ogg", False),
        ("MPEG_LAYER_III", "mp3", False),
    ],
)
def test_a_span_is_the_slice_of_the_decoded_file_in_every_format(tmp_path, subtype, ext, exact):
    fmt = {"wav": "WAV", "flac": "FLAC", "opus": "OGG", "ogg": "OGG", "mp3": "MP3"}[ext]
    channels = 1 if subtype == "GSM610" else 2  # libsndfile writes GSM 6.10 mono only
    wave = 0.2 * np.random.default_rng(1).standard_normal((20 * RATE, channels)).astype(np.float32)
    path = tmp_path / f"long.{ext}"
    sf.write(str(path), wave, RATE, format=fmt, subtype=subtype)
    channel = channels - 1
    with sf.SoundFile(str(path)) as handle:  # what validate's "cannot seek" warning relies on
        assert probe_audio(path).seekable == handle.seekable()
    got, rate = load_audio(path, offset=12.3, duration=3.0, channel=channel)
    full, _ = sf.read(
        str(path), dtype="float32", always_2d=True, frames=sf.info(str(path)).frames
    )  # frames: GSM 6.10 cannot seek, so give the count
    expected = torch.from_numpy(np.ascontiguousarray(full[int(12.3 * RATE) : int(15.3 * RATE), channel]))
    assert rate == RATE and got.shape == expected.shape == (3 * RATE,)
    if exact:
        assert torch.equal(got, expected)
    else:  # lossy decoders: the same samples up to float rounding of the decoder state
        assert float((got - expected).abs().max()) < 1e-5


def test_spans_outside_the_file_are_bad_and_named(tmp_path, call):
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"key": "late", "source": "call.wav", "target": "x", "offset": 6.5, "duration": 1.0, "channel": 0},
            {"key": "long", "source": "call.wav", "target": "x", "offset": 5.0, "duration": 1.6, "channel": 0},
            {"key": "edge", "source": "call.wav", "target": "x", "offset": 5.0, "duration": 1.4, "channel": 0},
            {"key": "neg", "source": "call.wav", "target": "x", "offset": -1, "duration": 1.0, "channel": 0},
            {"key": "ch", "source": "call.wav", "target": "x", "offset": 1, "duration": 1.0, "channel": 2},
            {"key": "bool", "source": "call.wav", "target": "x", "channel": True},
        ],
    )
    log = BadSampleLog("skip", max_bad_fraction=1.0)
    good = load_utterances(manifest, log)
    # Kaldi's extract-segments rule: up to 0.5 s past the end is cut at the end, more is refused
    assert [u.key for u in good] == ["edge"] and good[0].duration == pytest.approx(1.0)
    assert torch.equal(good[0].load()[0], _expected(call, 5.0, 6.0, 0))
    reasons = {b.line: b.reason for b in log.items}
    assert reasons[1] == "segment offset 6.500 s is past the end of the file (6.000 s)"
    assert reasons[2] == "segment 5.000-6.600 s ends after the end of the file (6.000 s)"
    assert reasons[4] == "bad jsonl entry: field 'offset' must be a finite number >= 0 s, got -1"
    assert reasons[5].startswith("channel 2 does not exist in") and "(2 channel(s), numbered from 0)" in reasons[5]
    assert "field 'channel' must be a 0-based channel number" in reasons[6]


def test_multichannel_without_a_channel_follows_the_policy(tmp_path, call, tokenizer):
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"key": "whole", "source": "call.wav", "target": "整通电话"}])
    with pytest.raises(
        DataError,
        match=r"m\.jsonl:1: .*call\.wav has 2 channels and the utterance names none: give "
        r"its channel \(manifests: 'channel' in jsonl.*transcribe: --channel N\).*data\.multichannel",
    ):
        load_utterances(manifest, BadSampleLog("error"))
    for policy, channel in (("first", 0), ("mix", None)):
        utts = load_utterances(manifest, BadSampleLog("error"), multichannel=policy)
        data, _ = sf.read(str(call), dtype="float32")
        expected = data[:, 0] if channel == 0 else data.mean(axis=1)
        np.testing.assert_allclose(utts[0].load(policy)[0].numpy(), expected, atol=1e-7)


def test_the_dataset_computes_features_from_the_span(tmp_path, call, tokenizer):
    from nano8k.model.prompt import PromptEncoder

    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [{"key": "cust", "source": "call.wav", "target": "查话费", "offset": 2.0, "duration": 1.5, "channel": 1}],
    )
    utts = load_utterances(manifest, BadSampleLog("error"))
    frontend = FrontendConfig(sample_rate=16000, dither=0.0)
    dataset = SpeechDataset(utts, PromptEncoder(tokenizer), frontend)
    expected = apply_lfr(fbank(resample(_expected(call, 2.0, 3.5, 1), RATE, 16000), frontend), 7, 6)
    assert torch.equal(dataset.features(utts[0]), expected)


def test_validate_warns_when_segments_sit_in_a_file_that_cannot_seek(tmp_path):
    from nano8k.data.manifests.validate import validate

    wave = (0.3 * np.sin(np.arange(4 * RATE) * 0.3)).astype(np.float32)  # not silent: validate warns about silence
    sf.write(str(tmp_path / "gsm.wav"), wave, RATE, subtype="GSM610")
    sf.write(str(tmp_path / "pcm.wav"), wave, RATE, subtype="PCM_16")
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [{"key": k, "source": f"{k}.wav", "target": "x", "offset": 1.0, "duration": 1.0} for k in ("gsm", "pcm")],
    )
    report = validate([manifest])
    assert len(report.good) == 2
    assert [(w.key, w.reason.split(":")[0]) for w in report.warnings] == [("gsm", "GSM610 in WAV cannot seek")]
