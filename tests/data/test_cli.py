"""The validate/convert and simulate command lines."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from nano8k.commands.validate import main as validate_main
from nano8k.data.manifests.io import read_manifest
from nano8k.simulate import main as simulate_main

from .conftest import DATA_FIXTURES, SPEECH, tone, write_jsonl


def test_validate_reports_every_bad_line_and_exits_nonzero(tmp_path, capsys):
    tone(tmp_path / "ok.wav", 1.0)
    tone(tmp_path / "stereo44.wav", 1.0, rate=44100, channels=2)
    (tmp_path / "corrupt.wav").write_bytes(b"not audio at all")
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"key": "ok", "source": "ok.wav", "target": "fine"},
            "{broken",
            {"key": "c", "source": "corrupt.wav", "target": "x"},
            {"key": "s", "source": "stereo44.wav", "target": "two channels"},
            {"key": "d", "source": "ok.wav", "target": "declared wrong", "duration": 3.0},
            {"key": "ok", "source": "ok.wav", "target": "dup"},
        ],
    )
    assert validate_main([str(manifest)]) == 1
    out = capsys.readouterr().out
    for line, reason in [
        (1, "duplicate key 'ok' (2 entries: "),
        (2, "bad JSON: Expecting property name enclosed in double quotes (column 2)"),
        (3, "cannot read audio header"),
        (4, f"{tmp_path / 'stereo44.wav'} has 2 channels and the utterance names none"),
        (5, "declared duration"),
        (6, "duplicate key 'ok'"),
    ]:
        assert f"m.jsonl:{line}: {reason}" in out
    assert f"{manifest}:1, {manifest}:6)" in out  # each copy names both lines
    assert "summary: 6 entries, 0 ok, 6 with errors" in out
    assert validate_main([str(manifest), "--multichannel", "first"]) == 1
    out = capsys.readouterr().out
    assert "m.jsonl:4: 2 channels, no channel named (multichannel=first) | key=s" in out and "WARN" in out
    assert f"    {tmp_path / 'stereo44.wav'}: 2 channels @ 44100 Hz; utterances: no channel x1" in out
    assert "audio files: 2; by channel count: 1 ch x1, 2 ch x1" in out  # bad entries count too
    assert validate_main([str(manifest), "--rate", "8000", "--mono", "--multichannel", "mix"]) == 1
    assert "m.jsonl:4: sample rate 44100 Hz != required 8000 Hz" in capsys.readouterr().out


def test_validate_converts_to_chatml(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert validate_main([str(DATA_FIXTURES / "kaldi"), "--convert", str(out)]) == 0
    converted = read_manifest(out)
    assert converted.format == "chatml" and len(converted.utterances) == 3
    assert converted.utterances[1].audio == (SPEECH / "zh_syl_01.16k.wav").resolve()


def test_simulate_cli_writes_8k_audio_and_manifest(tmp_path, capsys):
    out_manifest, out_dir = tmp_path / "sim.jsonl", tmp_path / "sim"
    args = [str(DATA_FIXTURES / "simple.jsonl"), str(out_manifest), str(out_dir), "--seed", "5"]
    assert simulate_main(args) == 0
    utts = read_manifest(out_manifest).utterances
    assert len(utts) == 3 and all(sf.info(str(u.audio)).samplerate == 8000 for u in utts)
    params = [json.loads(line) for line in (out_dir / "channel_params.jsonl").read_text().splitlines()]
    assert all(
        p["profile"] == "landline" and p["codec"] in ("ulaw", "alaw") and 15 <= p["snr_db"] <= 25 for p in params
    )
    first = sf.read(str(utts[0].audio))[0]
    assert simulate_main(args) == 0  # seeded: a second run reproduces the audio
    np.testing.assert_array_equal(sf.read(str(utts[0].audio))[0], first)
    assert simulate_main(args + ["--output_rate", "16000", "--profile", "mobile"]) == 0
    assert sf.info(str(utts[0].audio)).samplerate == 16000
    params = [json.loads(line) for line in (out_dir / "channel_params.jsonl").read_text().splitlines()]
    assert all(p["profile"] == "mobile" and p["codecs"] == ["gsm", p["codec"]] for p in params)


def test_convert_records_the_channels_the_policy_picked(tmp_path, capsys):
    tone(tmp_path / "call.wav", 1.0, channels=2)
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"key": "c", "source": "call.wav", "target": "both"}])
    for policy, channel in (("first", 0), ("mix", (0, 1))):
        out = tmp_path / f"{policy}.jsonl"
        assert validate_main([str(manifest), "--multichannel", policy, "--convert", str(out)]) == 0
        converted = read_manifest(out).utterances
        assert converted[0].channel == channel  # so the converted manifest validates under the default policy
        assert validate_main([str(out)]) == 0
    capsys.readouterr()


def test_validate_lists_a_few_of_each_kind_and_counts_them_all(tmp_path, capsys):
    from nano8k.data.manifests.validate import reason_kind

    tone(tmp_path / "call.wav", 2.0, channels=2)
    rows = [{"key": f"u{i}", "source": "call.wav", "target": "x", "offset": 0.5, "duration": 0.5} for i in range(30)]
    rows += [{"key": "late", "source": "call.wav", "target": "x", "offset": 1.5, "duration": 0.8, "channel": 1}]
    manifest = write_jsonl(tmp_path / "m.jsonl", rows + rows[:2])  # and two repeated keys
    assert validate_main([str(manifest), "--max_listed", "3"]) == 1
    out = capsys.readouterr().out
    assert out.count("has 2 channels and the utterance names none") == 3
    assert "ERROR ... and 25 more like: <file> has N channels and the utterance names none" in out
    assert "    4 x duplicate key '…' (N entries: <file>:N, <file>:N)" in out  # grouped, paths blanked
    assert "WARN  " in out and "segment ends 0.300 s past the end of the file (2.000 s): cut there" in out
    assert reason_kind("/a/b/text:5: not UTF-8 (byte 0xc4 at column 12)") == "<file>:N: not UTF-8 (byte N at column N)"
