"""Manifest errors name file, line and column; duplicate keys are never resolved silently, in any format."""

from __future__ import annotations

import json

import pytest

from nano8k.data.badsamples import BadSampleLog, DataError
from nano8k.data.manifest import load_utterances, read_manifest
from nano8k.data.validate import validate

from .conftest import tone, write_jsonl


def _chatml(key: str, audio: str, text: str) -> dict:
    return {"key": key, "messages": [{"role": "user", "content": f"语音转写：<|startofspeech|>!{audio}<|endofspeech|>"},
                                     {"role": "assistant", "content": text}]}


def _kaldi(folder, scp: str, text: str):
    folder.mkdir()
    (folder / "wav.scp").write_text(scp, encoding="utf-8")
    (folder / "text").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture()
def audio(tmp_path):
    tone(tmp_path / "a.wav", 1.0)
    tone(tmp_path / "b.wav", 1.0, freq=300)
    return tmp_path


def _duplicate_manifests(tmp_path):
    """The same duplicate in each format: key 'x' on lines 1 and 3, key 'y' once."""
    yield "jsonl", write_jsonl(tmp_path / "simple.jsonl", [
        {"key": "x", "source": "a.wav", "target": "first"}, {"key": "y", "source": "a.wav", "target": "other"},
        {"key": "x", "source": "b.wav", "target": "second"}])
    yield "chatml", write_jsonl(tmp_path / "chat.jsonl", [
        _chatml("x", "a.wav", "first"), _chatml("y", "a.wav", "other"), _chatml("x", "b.wav", "second")])
    yield "kaldi", _kaldi(tmp_path / "kaldi", f"x {tmp_path}/a.wav\ny {tmp_path}/a.wav\nx {tmp_path}/b.wav\n",
                          "x first\ny other\n")


def test_duplicate_keys_are_errors_or_double_skips_in_every_format(audio):
    for fmt, path in _duplicate_manifests(audio):
        where = path / "wav.scp" if fmt == "kaldi" else path
        with pytest.raises(DataError, match=rf"{where}:1: duplicate key 'x'.*{where}:1, {where}:3"):
            load_utterances(path, BadSampleLog("error"))
        log = BadSampleLog("skip", max_bad_fraction=1.0)
        kept = load_utterances(path, log)
        assert [u.key for u in kept] == ["y"], fmt  # neither copy trains: which one is right is unknowable
        assert sorted(b.line for b in log.items) == [1, 3] and all("duplicate key 'x'" in b.reason for b in log.items)
        report = validate([path], decode=False)  # validate and preflight say what training does
        assert [u.key for u in report.good] == ["y"]
        assert sorted(b.line for b in report.problems) == [1, 3]


def test_duplicate_keys_across_manifests_name_both_files(audio):
    one = write_jsonl(audio / "one.jsonl", [{"key": "x", "source": "a.wav", "target": "first"}])
    two = write_jsonl(audio / "two.jsonl", [{"key": "z", "source": "a.wav", "target": "fine"},
                                            {"key": "x", "source": "b.wav", "target": "second"}])
    with pytest.raises(DataError, match=rf"duplicate key 'x' \(2 entries: {one}:1, {two}:2\)"):
        load_utterances([one, two], BadSampleLog("error"))


def test_duplicate_transcript_in_kaldi_text_names_both_lines(audio):
    folder = _kaldi(audio / "k", f"x {audio}/a.wav\n", "x first\nx second\n")
    bad = read_manifest(folder).bad
    assert len(bad) == 1 and bad[0].line == 1
    assert bad[0].reason == f"duplicate key 'x' in text (lines {folder}/text:1, {folder}/text:2)"


def test_tab_separated_kaldi_files(audio):
    folder = _kaldi(audio / "k", f"x\t{audio}/a.wav\ny \t {audio}/b.wav\n", "x\t你好 世界\ny\thello there\n")
    contents = read_manifest(folder)
    assert contents.bad == []
    assert [(u.key, u.audio.name, u.target) for u in contents.utterances] == [
        ("x", "a.wav", "你好 世界"), ("y", "b.wav", "hello there")]


def test_non_utf8_lines_name_file_line_and_byte_column(audio):
    path = audio / "m.jsonl"
    good = json.dumps({"key": "x", "source": "a.wav", "target": "好"}, ensure_ascii=False).encode()
    path.write_bytes(good + b"\n" + b'{"key": "y", "source": "a.wav", "target": "caf\xe9"}\n')
    contents = read_manifest(path)
    assert [u.key for u in contents.utterances] == ["x"]
    assert contents.bad[0].describe() == f"{path}:2: not UTF-8 (byte 0xe9 at column 47)"
    with pytest.raises(DataError, match=rf"{path}:2: not UTF-8 \(byte 0xe9 at column 47\)"):
        load_utterances(path, BadSampleLog("error"))
    folder = _kaldi(audio / "k", f"x {audio}/a.wav\n", "")
    (folder / "text").write_bytes(b"x \xff\xfe\n")
    bad = read_manifest(folder).bad
    assert [b.describe() for b in bad][0] == f"{folder}/text:1: not UTF-8 (byte 0xff at column 3)"


def test_json_errors_report_the_real_column(audio):
    path = write_jsonl(audio / "m.jsonl", [{"key": "ok", "source": "a.wav", "target": "t"},
                                           '{"key": "x", "source": "a.wav"', '{"key": "y",, "target": "t"}'])
    reasons = [b.reason for b in read_manifest(path).bad]
    assert reasons == ["bad JSON: Expecting ',' delimiter (column 31)",
                       "bad JSON: Expecting property name enclosed in double quotes (column 13)"]


def test_a_directory_is_not_an_audio_file(audio):
    (audio / "clips.wav").mkdir()
    path = write_jsonl(audio / "m.jsonl", [{"key": "x", "source": "clips.wav", "target": "t"}])
    for probe in (True, False):
        with pytest.raises(DataError, match=r"m\.jsonl:1: a directory, not an audio file: .*clips\.wav"):
            load_utterances(path, BadSampleLog("error"), probe=probe)
    with pytest.raises(DataError, match="Kaldi data folder has no wav.scp"):
        read_manifest(audio / "clips.wav")
