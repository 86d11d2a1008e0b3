"""``--language`` of transcribe / evaluate is checked at argument parsing: an unknown code exits 2 naming the codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonargparse import ArgumentParser

from nano8k.commands import evaluate, transcribe
from nano8k.inference import arguments

TINY_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "tiny-nano"
WAV = TINY_DIR / "s2_16k_0p83s.wav"
COMMON = ["--model_dir", str(TINY_DIR), "--max_new_tokens", "2", "--device", "cpu"]


def assert_language_refused(refused: pytest.ExceptionInfo, stderr: str) -> None:
    assert refused.value.code == 2, f"exit status {refused.value.code!r}, stderr: {stderr}"
    assert "--language" in stderr and "'xx'" in stderr
    for code in ("zh", "en", "ja"):
        assert code in stderr
    assert "Traceback" not in stderr


def test_transcribe_refuses_unknown_language_at_parsing(capsys):
    with pytest.raises(SystemExit) as refused:
        transcribe.main([str(WAV), *COMMON, "--language", "xx"])
    assert_language_refused(refused, capsys.readouterr().err)


def test_evaluate_refuses_unknown_language_at_parsing(tmp_path, capsys):
    manifest = tmp_path / "test.jsonl"
    manifest.write_text(json.dumps({"key": "s2", "source": str(WAV), "target": "1"}) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit) as refused:
        evaluate.main(["--manifest", str(manifest), *COMMON, "--language", "xx"])
    assert_language_refused(refused, capsys.readouterr().err)


@pytest.mark.parametrize(
    ("given", "parsed"), [("zh", "zh"), ("en", "en"), ("日文", "日文"), ("null", None), ("manifest", "manifest")]
)
def test_known_languages_and_null_are_accepted(given, parsed):
    parser = ArgumentParser(prog="decode")
    arguments.add_decode_arguments(parser)
    assert arguments.decode_options(parser.parse_args(["--language", given])).overrides == {"language": parsed}
    assert arguments.decode_options(parser.parse_args([])).overrides == {}  # the model's feeding decides


@pytest.mark.parametrize(
    ("given", "parsed"), [("null", None), ("none", None), ("Transcribe calls.", "Transcribe calls.")]
)
def test_system_prompt_null_means_no_system_turn(given, parsed):
    parser = ArgumentParser(prog="decode")
    arguments.add_decode_arguments(parser)
    assert arguments.decode_options(parser.parse_args(["--system_prompt", given])).overrides == {
        "system_prompt": parsed
    }
