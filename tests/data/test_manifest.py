"""Manifest formats, auto-detection, relative paths, ChatML writing and per-line errors."""

from __future__ import annotations

import json

import pytest

from nano8k.data.badsamples import BadSampleLog
from nano8k.data.manifests.io import detect_format, load_utterances, read_manifest, speech_length, write_chatml
from nano8k.errors import DataError

from .conftest import DATA_FIXTURES, SPEECH, tone, write_jsonl

TARGETS = [
    "Your call cannot be completed as dialed.",
    "请帮我转人工服务。",
    "my account number is four five seven two nine one",
]
AUDIO = [SPEECH / "en_real_01.8k.wav", SPEECH / "zh_syl_01.16k.wav", SPEECH / "en_tts_01.8k.wav"]


@pytest.mark.parametrize(
    "name,fmt", [("simple.jsonl", "jsonl"), ("chatml.jsonl", "chatml"), ("kaldi", "kaldi"), ("kaldi/wav.scp", "kaldi")]
)
def test_three_formats_read_the_same_utterances(name, fmt):
    path = DATA_FIXTURES / name
    assert detect_format(path) == fmt
    contents = read_manifest(path)
    assert contents.bad == []
    assert [u.target for u in contents.utterances] == TARGETS
    # relative paths resolve against the manifest's own folder
    assert [u.audio for u in contents.utterances] == [p.resolve() for p in AUDIO]
    assert all(u.audio.is_absolute() and u.audio.is_file() for u in contents.utterances)
    assert [u.line for u in contents.utterances] == [1, 2, 3]


def test_field_details():
    simple = read_manifest(DATA_FIXTURES / "simple.jsonl").utterances
    assert (simple[0].duration, simple[0].lang, simple[1].prompt) == (2.64, "en", "语音转写：")
    chat = read_manifest(DATA_FIXTURES / "chatml.jsonl").utterances
    assert chat[0].key == "en_real_01" and chat[1].key == "zh_syl_01.16k"  # no "key": audio stem
    assert chat[0].prompt == "语音转写："
    assert chat[0].duration == pytest.approx(2.64, abs=0.011)  # from speech_length 262


def test_chatml_writer_round_trip(tmp_path):
    utts = read_manifest(DATA_FIXTURES / "kaldi").utterances
    out = tmp_path / "sub" / "out.jsonl"
    assert write_chatml(utts, out, count_tokens=lambda text: len(text.split())) == 3
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert records[0]["messages"][1]["content"].startswith("语音转写：<|startofspeech|>!")
    assert records[0]["speech_length"] == speech_length(records[0]["duration"])
    assert records[2]["text_length"] == 10
    back = read_manifest(out).utterances
    assert [(u.key, u.audio, u.target) for u in back] == [(u.key, u.audio, u.target) for u in utts]


def test_speech_length_matches_funasr_formula():
    assert speech_length(1.45) == 143  # floor((1450 - 25) / 10) + 1
    assert speech_length(0.025) == 1


def test_bad_lines_are_named_with_line_numbers(tmp_path):
    good = tone(tmp_path / "good.wav", 1.0)
    path = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"key": "a", "source": "good.wav", "target": "hello"},
            "{not json",
            {"key": "b", "source": "good.wav"},
            {"key": "c", "source": "good.wav", "target": "  "},
            {"key": "d", "source": "missing.wav", "target": "hi"},
            '["a list"]',
        ],
    )
    contents = read_manifest(path)
    assert [b.line for b in contents.bad] == [2, 3, 6]
    assert "bad JSON" in contents.bad[0].reason and "target" in contents.bad[1].reason
    with pytest.raises(DataError, match=r"m\.jsonl:2: bad JSON"):
        load_utterances(path, BadSampleLog("error"))
    log = BadSampleLog("skip", max_bad_fraction=0.9)
    utts = load_utterances(path, log)
    assert [u.key for u in utts] == ["a"] and utts[0].audio == good.resolve()
    reasons = {b.line: b.reason for b in log.items}
    assert reasons[4] == "empty transcript" and "not found" in reasons[5]
    assert log.count == 5


def test_kaldi_missing_transcript_and_pipes(tmp_path):
    tone(tmp_path / "a.wav", 1.0)
    (tmp_path / "wav.scp").write_text("a a.wav\nb a.wav\nc sox x.wav -t wav - |\n")
    (tmp_path / "text").write_text("a hello\n")
    contents = read_manifest(tmp_path)
    assert [u.key for u in contents.utterances] == ["a"]
    assert [(b.line, b.key) for b in contents.bad] == [(2, "b"), (3, "c")]
    assert "piped" in contents.bad[1].reason
