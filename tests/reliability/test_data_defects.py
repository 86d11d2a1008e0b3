"""Data-path defects of issue #25: invisible characters in transcripts (7), the encoder limit read from the header
(13), JSON-array manifests (21), paths that are not audio files (22), empty keys (23)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from nano8k.data.audio import load_audio, probe_audio
from nano8k.data.manifests.io import Utterance, check_utterance, read_entries, read_manifest, read_utterances
from nano8k.errors import AudioError, DataError

ROOT = Path(__file__).resolve().parents[2]
SHORT_WAV = ROOT / "tests" / "fixtures" / "tiny-nano" / "s3_8k_1p05s.wav"


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def _row(key: str, target: str = "hello", source: Path = SHORT_WAV) -> dict:
    return {"key": key, "source": str(source), "target": target}


# 7: zero-width, format and control characters


@pytest.mark.parametrize("normalizer", ["basic", "funasr"])
def test_normalizers_drop_format_and_control_characters(normalizer):
    from nano8k.scoring.metrics import cer
    from nano8k.scoring.normalizers import get_normalizer

    normalize = get_normalizer(normalizer)
    for stray in ("\u200b", "\ufeff", "\u200d", "\u202e", "\x00", "\x07"):
        assert cer(["您好请问"], [f"您好{stray}请问"], normalizer=normalizer) == 0.0, repr(stray)
        assert normalize(f"call{stray} me") == normalize("call me"), repr(stray)
    assert normalize("call\tme\nback") == normalize("call me back")  # whitespace controls are spaces, not glue


def test_validate_names_control_characters_as_errors_and_invisible_ones_as_warnings(tmp_path, capsys):
    from nano8k.commands import validate as validate_command
    from nano8k.data.manifests import validate

    manifest = _jsonl(
        tmp_path / "m.jsonl",
        [
            _row("clean", "您好请问"),
            _row("zwsp", "您好\u200b请问"),
            _row("bom", "\ufeff您好请问"),
            _row("nul", "您好\x00请\x07问"),
        ],
    )
    report = validate.validate([manifest], decode=False)
    assert [(b.line, b.key) for b in report.problems] == [(4, "nul")]
    assert "U+0000 at column 3" in report.problems[0].reason and "U+0007 at column 5" in report.problems[0].reason
    warned = {b.key: b for b in report.warnings}
    assert set(warned) == {"zwsp", "bom"}
    assert warned["zwsp"].line == 2 and "U+200B ZERO WIDTH SPACE at column 3" in warned["zwsp"].reason
    assert "U+FEFF ZERO WIDTH NO-BREAK SPACE at column 1" in warned["bom"].reason
    assert validate_command.main([str(manifest), "--header_only"]) == 1
    out = capsys.readouterr().out
    assert f"ERROR {manifest}:4: control character(s)" in out and "key=nul" in out
    assert f"WARN  {manifest}:2: invisible character(s)" in out and "2 warnings" in out


# 13: the encoder limit, read from the header before decoding


def test_an_overlong_file_or_segment_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch):
    from nano8k.data.pipeline.dataset import SpeechDataset
    from nano8k.model.features import FrontendConfig

    long_wav = tmp_path / "call.wav"
    sf.write(str(long_wav), np.zeros(130 * 8000, dtype=np.int16), 8000, subtype="PCM_16")
    decoded = []
    real_load = Utterance.load

    def load(self, *args, **kwargs):
        decoded.append(self.key)
        return real_load(self, *args, **kwargs)

    monkeypatch.setattr(Utterance, "load", load)
    dataset = SpeechDataset([], None, FrontendConfig(), max_frames=2048)
    whole = Utterance("whole", long_wav, "hello")
    span = Utterance("span", long_wav, "hello", duration=125.0, offset=2.0)
    for utt, frames in ((whole, 2167), (span, 2083)):
        with pytest.raises(AudioError, match=f"{frames} LFR frames .*from the audio header, not decoded.* 2048"):
            dataset.features(utt)
    assert decoded == []
    short_span = Utterance("short", long_wav, "hello", duration=5.0, offset=100.0)
    assert dataset.features(short_span).shape[0] == 83 and decoded == ["short"]  # a short span of it still works
    train = SpeechDataset([], None, FrontendConfig(), max_frames=2048, train=True)
    fits_faster = Utterance("fast", long_wav, "hello", duration=123.5, offset=0.0)  # 2058 LFR frames at 1.0
    from nano8k.data.pipeline.speed import SpeedPerturb

    train.speed_perturb = SpeedPerturb(factors=(1.1,))  # 112.3 s played: fits, so it is decoded
    assert train.features(fits_faster).shape[0] <= 2048 and decoded[-1] == "fast"


# 21: a JSON array is not JSON Lines


@pytest.mark.parametrize("layout", ["compact", "pretty"])
def test_a_json_array_manifest_is_named_as_one_with_the_conversion(tmp_path, capsys, layout):
    from nano8k.commands import validate as validate_command

    rows = [_row("a"), _row("b")]
    path = tmp_path / "m.json"
    path.write_text(
        json.dumps(rows) if layout == "compact" else "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n"
    )
    for read in (lambda: read_manifest(path), lambda: read_manifest(path, "jsonl"), lambda: read_utterances(path, "x")):
        with pytest.raises(DataError, match=r"is a JSON array \(it starts with '\['\), not JSON Lines") as caught:
            read()
        assert f"jq -c '.[]' {path}" in str(caught.value)
    assert validate_command.main([str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "JSON array" in err[0], err


# 22: what a path is, when it is not an audio file


def _not_a_file(tmp_path: Path, kind: str, monkeypatch) -> tuple[Path, str]:
    path = tmp_path / f"{kind}.wav"
    if kind == "fifo":
        os.mkfifo(path)
        return path, "a FIFO (named pipe), not an audio file"
    if kind == "directory":
        path.mkdir()
        return path, "a directory, not an audio file"
    if kind == "loop":
        os.symlink(tmp_path / "other.wav", path)
        os.symlink(path, tmp_path / "other.wav")
        return path, "a symlink loop, not an audio file"
    if kind == "dangling":
        os.symlink(tmp_path / "gone.wav", path)
        return path, f"a dangling symlink, not an audio file: {path} -> {tmp_path / 'gone.wav'}"
    path.write_bytes(SHORT_WAV.read_bytes())  # unreadable: root reads any file, so access() says no for this one
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == path else real_access(p, mode, **kw))
    return path, "audio file not readable (permission denied)"


@pytest.mark.parametrize("kind", ["fifo", "directory", "loop", "dangling", "unreadable"])
def test_a_path_that_is_not_an_audio_file_is_named_by_what_it_is(tmp_path, monkeypatch, kind):
    path, said = _not_a_file(tmp_path, kind, monkeypatch)
    for read in (probe_audio, load_audio):
        with pytest.raises(AudioError) as caught:
            read(path)
        assert said in str(caught.value) and "not found" not in str(caught.value)
    _, problem, _ = check_utterance(Utterance("k", path, "hello"), probe=False)
    assert said in problem
    manifest = _jsonl(tmp_path / "m.jsonl", [_row("k", source=path)])
    from nano8k.data.manifests import validate

    assert [said in b.reason for b in validate.validate([manifest], decode=False).problems] == [True]


def test_a_manifest_that_is_a_symlink_loop_or_fifo_is_named_by_what_it_is(tmp_path):
    loop = tmp_path / "m.jsonl"
    os.symlink(tmp_path / "n.jsonl", loop)
    os.symlink(loop, tmp_path / "n.jsonl")
    with pytest.raises(DataError, match="a symlink loop, not a manifest"):
        read_entries(loop)
    fifo = tmp_path / "kaldi"
    fifo.mkdir()
    os.mkfifo(fifo / "wav.scp")
    with pytest.raises(DataError, match=r"a FIFO \(named pipe\), not a Kaldi table file: .*wav\.scp"):
        read_manifest(fifo)


# 23: an empty or blank key


def test_an_empty_or_blank_key_is_a_bad_entry_in_every_reader(tmp_path):
    chatml = {
        "key": "",
        "messages": [
            {"role": "user", "content": f"<|startofspeech|>!{SHORT_WAV}<|endofspeech|>"},
            {"role": "assistant", "content": "hello"},
        ],
    }
    manifest = _jsonl(tmp_path / "m.jsonl", [_row("good"), _row(""), _row("  \t"), chatml, {**_row("x"), "key": None}])
    entries, bad, _ = read_entries(manifest)
    assert [u.key for u in entries] == ["good"]
    assert [(b.manifest, b.line) for b in bad] == [(str(manifest), n) for n in (2, 3, 4, 5)]
    assert "field 'key' is empty" in bad[0].reason and "field 'key' is blank ('  \\t')" in bad[1].reason
    assert "field 'key' is empty" in bad[2].reason and "field 'key' must be a string, got None" in bad[3].reason
    with pytest.raises(DataError, match=rf"4 bad line\(s\) in {manifest}.*\n  {manifest}:2: bad jsonl entry: field "):
        read_utterances(manifest, "evaluate")

    import lhotse

    recording = lhotse.Recording.from_file(str(SHORT_WAV))
    sups = [
        lhotse.SupervisionSegment(
            id=key, recording_id=recording.id, start=0.0, duration=recording.duration, text="hello"
        )
        for key in ("good", "", " ")
    ]
    lhotse.SupervisionSet.from_segments(sups).to_file(str(tmp_path / "supervisions.jsonl"))
    lhotse.RecordingSet.from_recordings([recording]).to_file(str(tmp_path / "recordings.jsonl"))
    entries, bad, _ = read_entries(tmp_path / "supervisions.jsonl")
    assert [u.key for u in entries] == ["good"]
    assert [(b.line, "supervision 'id' is" in b.reason) for b in bad] == [(2, True), (3, True)]
