"""``python -m nano8k.transcribe`` / ``nano8k.evaluate`` on the tiny model: batching, outputs, report numbers."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from nano8k.commands import evaluate, transcribe
from nano8k.scoring.metrics import cer, mer, wer

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_WAVS = sorted(str(p) for p in (FIXTURES / "tiny-nano").glob("*.wav"))
COMMON = ["--model_dir", str(FIXTURES / "tiny-nano"), "--max_new_tokens", "6", "--device", "cpu"]


def _lines(out: str) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in out.strip().splitlines())


def test_transcribe_files_batched_equals_one_by_one(tmp_path, capsys):
    out_path = tmp_path / "out.jsonl"
    assert transcribe.main([*TINY_WAVS, *COMMON, "--batch_size", "3", "--output", str(out_path)]) == 0
    batched = _lines(capsys.readouterr().out)
    assert list(batched) == [Path(p).stem for p in TINY_WAVS]  # input order, whatever the length sort did
    records = [json.loads(line) for line in out_path.read_text(encoding="utf-8").splitlines()]
    assert {r["key"]: r["text"] for r in records} == batched
    assert transcribe.main([*TINY_WAVS, *COMMON, "--batch_size", "1"]) == 0
    assert _lines(capsys.readouterr().out) == batched
    assert any(text for text in batched.values())


def test_transcribe_reports_a_missing_file_and_goes_on(tmp_path, capsys):
    missing = tmp_path / "nope.wav"
    assert transcribe.main([TINY_WAVS[0], str(missing), *COMMON, "--language", "en", "--hotwords", "a,b"]) == 1
    captured = capsys.readouterr()
    assert list(_lines(captured.out)) == [Path(TINY_WAVS[0]).stem]
    assert str(missing) in captured.err


def test_transcribe_needs_files_or_manifest():
    with pytest.raises(SystemExit):
        transcribe.main(COMMON)


def _manifest(tmp_path: Path) -> Path:
    entries = json.loads((FIXTURES / "speech" / "fixtures.json").read_text(encoding="utf-8"))
    lines = []
    for i, entry in enumerate(entries):
        audio = next((FIXTURES / "speech").glob(f"{entry['key']}.*.wav"))
        lines.append(
            {
                "key": entry["key"],
                "source": str(audio),
                "target": entry["target"],
                "lang": entry["lang"],
                "domain": ["billing", "support"][i % 2],
            }
        )
    lines.append({"key": "silent_ref", "source": TINY_WAVS[0], "target": "。"})  # empty after normalization
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return path


def test_evaluate_report_matches_metrics_on_the_decoded_text(tmp_path, capsys):
    manifest, out = _manifest(tmp_path), tmp_path / "report"
    rc = evaluate.main(
        [
            "--manifest",
            str(manifest),
            "--report_dir",
            str(out),
            "--group_by",
            "lang,domain",
            "--num_worst",
            "3",
            *COMMON,
        ]
    )
    assert rc == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (out / "utterances.jsonl").read_text(encoding="utf-8").splitlines()]
    refs, hyps = [r["ref"] for r in rows], [r["hyp"] for r in rows]
    overall = report["overall"]
    assert overall["cer"] == pytest.approx(cer(refs, hyps))
    assert overall["wer"] == pytest.approx(wer(refs, hyps))
    assert overall["mer"] == pytest.approx(mer(refs, hyps))
    assert (overall["utterances"], overall["empty_refs"]) == (len(rows) - 1, 1)
    zh = [r for r in rows if r["key"].startswith("zh")]
    assert report["groups"]["lang"]["zh"]["cer"] == pytest.approx(cer([r["ref"] for r in zh], [r["hyp"] for r in zh]))
    assert report["groups"]["lang"]["en"]["utterances"] == sum(r["key"].startswith("en") for r in rows)
    assert set(report["groups"]["domain"]) == {"billing", "support", "(none)"}  # the silent entry has no domain
    billing = [r for r in rows if r["fields"]["domain"] == "billing"]
    assert report["groups"]["domain"]["billing"]["mer"] == pytest.approx(
        mer([r["ref"] for r in billing], [r["hyp"] for r in billing])
    )
    worst = report["worst"]
    assert len(worst) == 3 and [w["mer"] for w in worst] == sorted((w["mer"] for w in worst), reverse=True)
    assert "## By domain" in (out / "report.md").read_text(encoding="utf-8")
    assert (out / "cer_by_group.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert text.splitlines()[1].startswith("overall") and f"{overall['cer']:.4f}" in text
    assert "domain=billing" in text
    # the same decode scored with Fun-ASR's normalization: numbers written either way count as equal
    assert (
        evaluate.main(["--manifest", str(manifest), "--report_dir", str(out), "--normalizer", "funasr", *COMMON]) == 0
    )
    funasr = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert funasr["normalizer"] == "funasr" and funasr["settings"]["group_by"] == ["lang"]
    assert funasr["overall"]["mer"] == pytest.approx(mer(refs, hyps, normalizer="funasr"))
    assert funasr["overall"]["mer"] != overall["mer"]


def test_evaluate_names_a_missing_group_field_before_decoding(tmp_path, capsys):
    assert evaluate.main(["--manifest", str(_manifest(tmp_path)), "--group_by", "lang,domian", *COMMON]) == 2
    assert re.search(
        "^error: --group_by: no entry has a field 'domian': the first entry of .*eval.jsonl has domain, key",
        capsys.readouterr().err,
    )


DIGITS = FIXTURES / "digits" / "clean.jsonl"


def _strip_record(src: Path, dst: Path) -> Path:
    """A copy of an export whose config has no feeding section: loaders then assume the release's ceil(L/8) rule."""
    import shutil

    import yaml

    shutil.copytree(src, dst)
    name = "config.yaml" if (dst / "config.yaml").exists() else "nano8k_funasr_config.yaml"
    config = yaml.safe_load((dst / name).read_text(encoding="utf-8"))
    config.pop("nano8k")
    config["audio_adaptor_conf"].pop("use_low_frame_rate")
    (dst / name).write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return dst


@pytest.mark.parametrize("layout", ["funasr", "hf"])
def test_an_all_frames_export_transcribes_correctly_with_no_flag(tmp_path, capsys, layout):
    from nano8k.model.bundled import mini_model_dir
    from nano8k.model.checkpoint import export_funasr, export_hf, load_pretrained

    model = load_pretrained(mini_model_dir())
    assert model.feeding.audio_tokens == "all_frames"
    export = (export_funasr if layout == "funasr" else export_hf)(model, tmp_path / layout)
    args = ["--manifest", str(DIGITS), "--max_new_tokens", "12", "--device", "cpu"]
    report = tmp_path / "report" / "report.json"
    assert evaluate.main(["--model_dir", str(export), "--report_dir", str(report.parent), *args]) == 0
    fed_by_record = json.loads(report.read_text())["overall"]["cer"]
    assert fed_by_record <= 0.35
    stripped = _strip_record(export, tmp_path / "stripped")
    assert evaluate.main(["--model_dir", str(stripped), "--report_dir", str(report.parent), *args]) == 0
    assert json.loads(report.read_text())["overall"]["cer"] >= fed_by_record + 0.3  # wrong rule, wrong transcripts
    capsys.readouterr()
    files = [str(DIGITS.parent / json.loads(line)["source"]) for line in DIGITS.read_text().splitlines()]
    assert transcribe.main([*files[:3], "--model_dir", str(export), "--max_new_tokens", "12", "--device", "cpu"]) == 0
    targets = [json.loads(line)["target"] for line in DIGITS.read_text().splitlines()[:3]]
    hyps = list(_lines(capsys.readouterr().out).values())
    assert cer(targets, hyps) <= 0.5


def test_transcribe_a_stereo_call_by_channel_and_segment(tmp_path, capsys):
    """Each side of a stereo call decodes as that mono channel; a channel-less stereo file follows --multichannel."""
    import numpy as np
    import soundfile as sf

    left, rate = sf.read(TINY_WAVS[0], dtype="float32")
    right, _ = sf.read(TINY_WAVS[1], dtype="float32")
    n = min(len(left), len(right))
    call = tmp_path / "call.wav"
    sf.write(str(call), np.stack([left[:n], right[:n]], axis=1), rate, subtype="FLOAT")
    mono = tmp_path / "mono"
    mono.mkdir()
    for i, side in enumerate((left[:n], right[:n])):
        sf.write(str(mono / f"side{i}.wav"), side, rate, subtype="FLOAT")
    assert transcribe.main([str(mono / "side0.wav"), str(mono / "side1.wav"), *COMMON]) == 0
    sides = list(_lines(capsys.readouterr().out).values())
    assert transcribe.main([str(call), *COMMON]) == 1  # the default policy does not mix agent and customer
    assert "call.wav has 2 channels and the utterance names none" in capsys.readouterr().err
    for channel in (0, 1):
        assert transcribe.main([str(call), "--channel", str(channel), *COMMON]) == 0
        assert _lines(capsys.readouterr().out) == {"call": sides[channel]}
    manifest = tmp_path / "segments.jsonl"
    manifest.write_text(
        json.dumps(
            {
                "key": "cust",
                "source": str(call),
                "target": "",
                "offset": 0.0,
                "duration": round(n / rate, 6),
                "channel": 1,
            }
        )
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    assert transcribe.main(["--manifest", str(manifest), "--output", str(out), *COMMON]) == 0
    assert _lines(capsys.readouterr().out) == {"cust": sides[1]}
    assert json.loads(out.read_text())["channel"] == 1


def test_a_stage1_export_transcribes_identically_with_and_without_the_flag(tmp_path, capsys):
    """A native 8 kHz (stage-1) export records frontend_conf.fs 8000, and decoding follows it with no flag."""
    from nano8k.model.checkpoint import export_funasr, load_pretrained

    model = load_pretrained(FIXTURES / "tiny-nano")
    model.feeding = replace(model.feeding, frontend_rate=8000)
    export = export_funasr(model, tmp_path / "stage1")
    args = [*TINY_WAVS, "--model_dir", str(export), "--max_new_tokens", "6", "--device", "cpu"]
    assert transcribe.main(args) == 0
    default = capsys.readouterr()
    assert transcribe.main([*args, "--frontend_rate", "8000"]) == 0
    flagged = capsys.readouterr()
    assert _lines(default.out) == _lines(flagged.out)
    assert "notice" not in default.err + flagged.err  # the flag says what the record says
    assert transcribe.main([*args, "--frontend_rate", "16000"]) == 0
    overridden = capsys.readouterr()
    assert "notice: --frontend_rate 16000 overrides the model's feeding (frontend_rate: 8000)" in overridden.err
    assert _lines(overridden.out) != _lines(default.out)  # other features: the record did decide the default


def test_decoding_prompts_as_the_feeding_record_says(tmp_path, capsys):
    """An export's recorded prompt settings are the default; the same settings given as flags decode the same."""
    from nano8k.model.checkpoint import export_hf, load_pretrained

    model = load_pretrained(FIXTURES / "tiny-nano")
    model.feeding = replace(
        model.feeding, system_prompt="Transcribe the call.", context_header=True, language="en", itn=False
    )
    export = export_hf(model, tmp_path / "hf")
    common = [*TINY_WAVS, "--max_new_tokens", "6", "--device", "cpu"]
    assert transcribe.main([*common, "--model_dir", str(export)]) == 0
    recorded = capsys.readouterr()
    assert "notice" not in recorded.err
    flags = [
        "--system_prompt",
        "Transcribe the call.",
        "--context_header",
        "true",
        "--language",
        "en",
        "--itn",
        "false",
    ]
    assert transcribe.main([*common, "--model_dir", str(FIXTURES / "tiny-nano"), *flags]) == 0
    given = capsys.readouterr()
    assert _lines(given.out) == _lines(recorded.out)
    assert given.err.count("notice: ") == 4  # each flag overrides the release's defaults, and says so
    assert transcribe.main([*common, "--model_dir", str(FIXTURES / "tiny-nano")]) == 0
    assert _lines(capsys.readouterr().out) != _lines(recorded.out)  # the release's prompt decodes otherwise


def test_a_line_whose_language_the_prompt_cannot_name_fails_alone(tmp_path, capsys):
    """Under a recorded ``language: manifest``, a line's unknown lang is that line's error, not the run's."""
    from nano8k.model.checkpoint import export_funasr, load_pretrained

    model = load_pretrained(FIXTURES / "tiny-nano")
    model.feeding = replace(model.feeding, language="manifest")
    export = export_funasr(model, tmp_path / "export")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"key": key, "source": TINY_WAVS[0], "target": "1", "lang": lang}) + "\n"
            for key, lang in (("known", "en"), ("unknown", "yue"))
        ),
        encoding="utf-8",
    )
    args = ["--manifest", str(manifest), "--model_dir", str(export), "--max_new_tokens", "2", "--device", "cpu"]
    assert transcribe.main(args) == 1
    captured = capsys.readouterr()
    assert list(_lines(captured.out)) == ["known"]
    assert "unknown: prompt: language must be one of" in captured.err and "Traceback" not in captured.err
