"""The validate/convert and simulate command lines."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from nano8k.data.manifest import read_manifest
from nano8k.data.validate import main as validate_main
from nano8k.simulate import main as simulate_main

from .conftest import DATA_FIXTURES, SPEECH, tone, write_jsonl


def test_validate_reports_every_bad_line_and_exits_nonzero(tmp_path, capsys):
    tone(tmp_path / "ok.wav", 1.0)
    tone(tmp_path / "stereo44.wav", 1.0, rate=44100, channels=2)
    (tmp_path / "corrupt.wav").write_bytes(b"not audio at all")
    manifest = write_jsonl(tmp_path / "m.jsonl", [
        {"key": "ok", "source": "ok.wav", "target": "fine"},
        "{broken",
        {"key": "c", "source": "corrupt.wav", "target": "x"},
        {"key": "s", "source": "stereo44.wav", "target": "two channels"},
        {"key": "d", "source": "ok.wav", "target": "declared wrong", "duration": 3.0},
        {"key": "ok", "source": "ok.wav", "target": "dup"},
    ])
    assert validate_main([str(manifest)]) == 1
    out = capsys.readouterr().out
    for line, reason in [(2, "bad JSON"), (3, "cannot read audio header"), (5, "declared duration"),
                         (6, "duplicate key")]:
        assert f"m.jsonl:{line}: {reason}" in out
    assert "WARN" in out and "2 channels" in out
    assert "summary: 6 entries, 2 ok, 4 with errors" in out
    assert validate_main([str(manifest), "--rate", "8000", "--mono"]) == 1
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
    params = [json.loads(l) for l in (out_dir / "channel_params.jsonl").read_text().splitlines()]
    assert all(p["codec"] in ("ulaw", "alaw") and 15 <= p["snr_db"] <= 25 for p in params)
    first = sf.read(str(utts[0].audio))[0]
    assert simulate_main(args) == 0  # seeded: a second run reproduces the audio
    np.testing.assert_array_equal(sf.read(str(utts[0].audio))[0], first)
    assert simulate_main(args + ["--output-rate", "16000", "--codec", "alaw"]) == 0
    assert sf.info(str(utts[0].audio)).samplerate == 16000
