"""Manifest errors name file, line and column; duplicate keys are never resolved silently, in any format."""

from __future__ import annotations

import json

import pytest

from nano8k.data.badsamples import BadSampleLog
from nano8k.data.manifests.io import load_utterances, read_manifest
from nano8k.data.manifests.validate import validate
from nano8k.errors import DataError

from .conftest import tone, write_jsonl


def _chatml(key: str, audio: str, text: str) -> dict:
    return {
        "key": key,
        "messages": [
            {"role": "user", "content": f"语音转写：<|startofspeech|>!{audio}<|endofspeech|>"},
            {"role": "assistant", "content": text},
        ],
    }


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
    yield (
        "jsonl",
        write_jsonl(
            tmp_path / "simple.jsonl",
            [
                {"key": "x", "source": "a.wav", "target": "first"},
                {"key": "y", "source": "a.wav", "target": "other"},
                {"key": "x", "source": "b.wav", "target": "second"},
            ],
        ),
    )
    yield (
        "chatml",
        write_jsonl(
            tmp_path / "chat.jsonl",
            [_chatml("x", "a.wav", "first"), _chatml("y", "a.wav", "other"), _chatml("x", "b.wav", "second")],
        ),
    )
    yield (
        "kaldi",
        _kaldi(
            tmp_path / "kaldi", f"x {tmp_path}/a.wav\ny {tmp_path}/a.wav\nx {tmp_path}/b.wav\n", "x first\ny other\n"
        ),
    )


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
    two = write_jsonl(
        audio / "two.jsonl",
        [{"key": "z", "source": "a.wav", "target": "fine"}, {"key": "x", "source": "b.wav", "target": "second"}],
    )
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
        ("x", "a.wav", "你好 世界"),
        ("y", "b.wav", "hello there"),
    ]


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
    bad = read_manifest(folder).bad  # reported once, on the utterance whose transcript it is
    assert [(b.line, b.key, b.reason) for b in bad] == [(1, "x", f"{folder}/text:1: not UTF-8 (byte 0xff at column 3)")]
    (folder / "wav.scp").write_bytes(b"x " + str(audio).encode() + b"/a\xe9.wav\n")
    bad = read_manifest(folder).bad
    assert [(b.manifest, b.line, b.reason) for b in bad] == [
        (str(folder / "wav.scp"), 1, f"not UTF-8 (byte 0xe9 at column {len(str(audio)) + 5})")
    ]


def test_json_errors_report_the_real_column(audio):
    path = write_jsonl(
        audio / "m.jsonl",
        [
            {"key": "ok", "source": "a.wav", "target": "t"},
            '{"key": "x", "source": "a.wav"',
            '{"key": "y",, "target": "t"}',
        ],
    )
    reasons = [b.reason for b in read_manifest(path).bad]
    assert reasons == [
        "bad JSON: Expecting ',' delimiter (column 31)",
        "bad JSON: Expecting property name enclosed in double quotes (column 13)",
    ]


def test_a_directory_is_not_an_audio_file(audio):
    (audio / "clips.wav").mkdir()
    path = write_jsonl(audio / "m.jsonl", [{"key": "x", "source": "clips.wav", "target": "t"}])
    for probe in (True, False):
        with pytest.raises(DataError, match=r"m\.jsonl:1: a directory, not an audio file: .*clips\.wav"):
            load_utterances(path, BadSampleLog("error"), probe=probe)
    with pytest.raises(DataError, match="Kaldi data folder has no wav.scp"):
        read_manifest(audio / "clips.wav")


def test_corrupt_gzip_manifests_name_the_file(audio):
    import gzip

    good = json.dumps({"key": "x", "source": "a.wav", "target": "t"}).encode() + b"\n"
    (audio / "cut.jsonl.gz").write_bytes(gzip.compress(good * 50)[:-20])  # truncated
    with pytest.raises(DataError, match=r"cut\.jsonl\.gz:\d+: corrupt or truncated gzip file"):
        read_manifest(audio / "cut.jsonl.gz")
    (audio / "fake.jsonl").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match=r"fake\.jsonl:1: corrupt or truncated gzip file"):
        read_manifest(audio / "fake.jsonl")
    (audio / "plain.jsonl.gz").write_bytes(good)  # the name says gzip, the bytes do not: read as they are
    assert [u.key for u in read_manifest(audio / "plain.jsonl.gz").utterances] == ["x"]


def test_non_finite_and_malformed_spans_are_bad_entries(audio):
    path = audio / "m.jsonl"
    path.write_text(
        "\n".join(
            [
                '{"key": "nan", "source": "a.wav", "target": "t", "offset": NaN, "duration": 0.5}',
                '{"key": "inf", "source": "a.wav", "target": "t", "offset": 0, "duration": Infinity}',
                '{"key": "str", "source": "a.wav", "target": "t", "offset": "0.25", "duration": "0.5"}',
                '{"key": "chan", "source": "a.wav", "target": "t", "channel": "left"}',
            ]
        )
        + "\n"
    )
    contents = read_manifest(path)
    assert [u.key for u in contents.utterances] == ["str"] and contents.utterances[0].offset == 0.25
    reasons = [b.reason for b in contents.bad]
    assert reasons[0] == "bad jsonl entry: field 'offset' must be a finite number >= 0 s, got nan"
    assert reasons[1] == "bad jsonl entry: field 'duration' must be a finite number > 0 s, got inf"
    assert "field 'channel' must be a 0-based channel number" in reasons[2]
    folder = _kaldi(audio / "k", f"r {audio}/a.wav\n", "s1 x\ns2 y\ns3 z\n")
    (folder / "segments").write_text("s1 r nan 0.5\ns2 r 0.1 0.2 0 extra\ns3 r 0.1 0.6 0\n")
    contents = read_manifest(folder)
    assert [(u.key, u.channel) for u in contents.utterances] == [("s3", 0)]  # the 5th field: a 0-based channel
    assert [b.line for b in contents.bad] == [1, 2] and "bad segment start nan" in contents.bad[0].reason


def test_chatml_segments_need_a_key_and_take_their_length_from_speech_length(audio):
    row = _chatml("seg", "a.wav", "t")
    row.update(offset=0.25, speech_length=48)
    keyless = _chatml("", "a.wav", "t")
    keyless.update(offset=0.25, duration=0.5)
    contents = read_manifest(write_jsonl(audio / "c.jsonl", [row, keyless]))
    assert [(u.key, u.offset, round(u.duration, 3)) for u in contents.utterances] == [("seg", 0.25, 0.495)]
    assert "a segment ('offset') needs a 'key'" in contents.bad[0].reason


def test_span_fields_under_other_names_are_refused_not_ignored(audio):
    path = write_jsonl(
        audio / "m.jsonl",
        [
            {"key": "x", "source": "a.wav", "target": "t", "start": 0.2, "end": 0.6, "channel": 0},
            {"key": "y", "source": "a.wav", "target": "t", "offset": 0.2, "duration": 0.4, "channels": [1]},
            {"key": "z", "source": "a.wav", "target": "t", "speaker": "agent", "domain": "billing"},
        ],
    )  # other fields: fine
    contents = read_manifest(path)
    assert [u.key for u in contents.utterances] == ["z"]
    assert contents.bad[0].reason == (
        "bad jsonl entry: field(s) 'start', 'end' are not read: a span is 'offset' + "
        "'duration' (seconds) and a channel is 'channel' (0-based)"
    )
    assert "'channels'" in contents.bad[1].reason


def test_a_manifest_given_twice_is_named(audio):
    path = write_jsonl(audio / "m.jsonl", [{"key": "x", "source": "a.wav", "target": "t"}])
    with pytest.raises(DataError, match=rf"manifest\(s\) given more than once: {path}"):
        load_utterances([path, audio / "." / "m.jsonl"], BadSampleLog("error"))


def test_kaldi_transcripts_without_an_entry_are_reported(audio):
    folder = _kaldi(audio / "k", f"x {audio}/a.wav\n", "x first\norphan second\n")
    contents = read_manifest(folder)
    assert [u.key for u in contents.utterances] == ["x"] and contents.bad == []
    assert [(b.key, b.line, b.reason) for b in contents.ignored] == [
        ("orphan", 2, "transcript with no entry in wav.scp")
    ]
