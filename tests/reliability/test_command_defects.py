"""Issue #25, the commands' defects 1, 2, 8, 10, 16-19: each case a clear ``error:`` line (exit 2) or the work done."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nano8k.commands import average, evaluate, fit, sweep, transcribe
from nano8k.training.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
TINY_DIR = ROOT / "tests" / "fixtures" / "tiny-nano"
WAVS = sorted(str(p) for p in TINY_DIR.glob("*.wav"))
COMMON = ["--model_dir", str(TINY_DIR), "--max_new_tokens", "2", "--device", "cpu"]


def exit_status(main, argv: list[str]) -> int:
    """A command's exit status, whether it returns it or raises SystemExit (argument errors)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def assert_one_error_line(status: int, stderr: str, *needles: str) -> str:
    """Exit 2 and exactly one ``error:`` line, naming every needle; no traceback. Returns the line."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert status == 2 and len(errors) == 1, f"exit {status!r}, stderr: {stderr}"
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def copy_model(tmp_path: Path, name: str = "model") -> Path:
    return Path(shutil.copytree(TINY_DIR, tmp_path / name, ignore=shutil.ignore_patterns("*.wav", "golden*")))


def test_1_a_model_folder_without_tokenizer_is_refused_naming_the_files(tmp_path, capsys):
    from nano8k.checks import make_context
    from nano8k.checks.model import check_model_dir
    from nano8k.errors import CheckFailed

    model = copy_model(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (model / "Qwen3-0.6B" / name).unlink()
    status = transcribe.main([WAVS[0], *COMMON, "--model_dir", str(model)])
    captured = capsys.readouterr()
    assert_one_error_line(status, captured.err, str(model / "Qwen3-0.6B"), "tokenizer.json", "tokenizer_config.json")
    assert captured.out == ""  # no empty transcript printed as if it were one
    ctx = make_context(parse_config(["--config", str(ROOT / "configs" / "demo.yaml"), "--model.model_dir", str(model)]))
    with pytest.raises(CheckFailed, match="Qwen3-0.6B/tokenizer.json"):
        check_model_dir(ctx)


def test_2_output_is_checked_before_decoding_and_written_as_batches_decode(tmp_path, capsys, monkeypatch):
    from nano8k.model.nano import NanoASR

    decoded = []
    real = NanoASR.transcribe

    def transcribe_then_crash(self, batch, max_new_tokens=512):
        if decoded:
            raise RuntimeError("decoding crashed")
        decoded.append(batch)
        return real(self, batch, max_new_tokens)

    monkeypatch.setattr(NanoASR, "transcribe", transcribe_then_crash)
    for output, needle in ((tmp_path / "missing" / "out.jsonl", "does not exist"), (tmp_path, "is a directory")):
        status = transcribe.main([*WAVS, *COMMON, "--output", str(output)])
        assert_one_error_line(status, capsys.readouterr().err, str(output), needle)
    assert not decoded  # refused before anything was decoded
    out = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="decoding crashed"):
        transcribe.main([*WAVS, *COMMON, "--batch_size", "1", "--output", str(out)])
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 1 and lines[0]["key"] in {Path(w).stem for w in WAVS}  # the first batch survived the crash


def test_8_transcribe_takes_manifests_without_transcripts_and_evaluate_names_them(tmp_path, capsys):
    manifest = tmp_path / "calls.jsonl"
    manifest.write_text("".join(json.dumps({"key": Path(w).stem, "source": w}) + "\n" for w in WAVS), encoding="utf-8")
    assert transcribe.main(["--manifest", str(manifest), *COMMON]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == [Path(w).stem for w in WAVS]
    kaldi = tmp_path / "kaldi"
    kaldi.mkdir()
    (kaldi / "wav.scp").write_text(f"call1 {WAVS[0]}\n", encoding="utf-8")
    (kaldi / "segments").write_text("call1-a call1 0.0 0.5\ncall1-b call1 0.5 1.0\n", encoding="utf-8")
    assert transcribe.main(["--manifest", str(kaldi), *COMMON]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == ["call1-a", "call1-b"]
    status = evaluate.main(["--manifest", str(manifest), *COMMON])
    stderr = capsys.readouterr().err
    assert_one_error_line(status, stderr, str(manifest), "transcript")
    assert "missing field(s) target" in stderr  # the bad lines follow, indented


def test_8_transcribe_takes_a_lhotse_supervision_set_without_text(tmp_path, capsys):
    lhotse = pytest.importorskip("lhotse")
    recording = lhotse.Recording.from_file(WAVS[0], recording_id="call1")
    lhotse.RecordingSet.from_recordings([recording]).to_file(tmp_path / "calls_recordings_all.jsonl.gz")
    segments = [
        lhotse.SupervisionSegment(id=f"call1-{n}", recording_id="call1", start=0.5 * n, duration=0.5) for n in range(2)
    ]
    supervisions = tmp_path / "calls_supervisions_all.jsonl.gz"
    lhotse.SupervisionSet.from_segments(segments).to_file(supervisions)
    assert transcribe.main(["--manifest", str(supervisions), *COMMON]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == ["call1-0", "call1-1"]


def test_10_a_symlink_loop_fails_alone(tmp_path, capsys):
    loop_a, loop_b = tmp_path / "a.wav", tmp_path / "b.wav"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    assert transcribe.main([WAVS[0], str(loop_a), *COMMON]) == 1
    captured = capsys.readouterr()
    assert [line.split("\t")[0] for line in captured.out.splitlines()] == [Path(WAVS[0]).stem]
    assert "a.wav" in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--max_new_tokens", "0"], ["--max_new_tokens", ">= 1"]),
        (["--llm_dtype", "int3"], ["--llm_dtype", "int3", "bf16"]),
        (["--dither", "-5"], ["--dither", ">= 0"]),
        (["--device", "cuda"], ["--device cuda", "no CUDA GPU"]),
        (["--model_dir", "{damaged}"], ["{damaged}/model.pt", "not a torch checkpoint"]),
        (["--model_dir", "{hf}"], ["{hf}", "cannot be loaded"]),
        (["average", "{damaged}/model.pt"], ["{damaged}/model.pt", "cannot be read"]),
        (["average", "{hf}/model.safetensors"], ["{hf}/model.safetensors", "cannot be read"]),
        (["average", "{missing}"], ["{missing}", "not found"]),
    ],
    ids=[
        "max_new_tokens",
        "llm_dtype",
        "dither",
        "device",
        "model_pt",
        "hf_weights",
        "avg_pt",
        "avg_other",
        "avg_missing",
    ],
)
def test_16_refused_arguments_and_models_are_one_error_line(tmp_path, capsys, monkeypatch, argv, needles):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    damaged = copy_model(tmp_path, "damaged")
    (damaged / "model.pt").write_bytes(b"not a checkpoint")
    hf = Path(shutil.copytree(TINY_DIR / "Qwen3-0.6B", tmp_path / "hf"))  # an HF export keeps its tokenizer here
    (hf / "config.json").write_text(json.dumps({"model_type": "fun_asr_nano"}), encoding="utf-8")
    shutil.copy(TINY_DIR / "config.yaml", hf / "nano8k_funasr_config.yaml")
    (hf / "model.safetensors").write_bytes(b"\x00" * 4)
    paths = {"damaged": str(damaged), "hf": str(hf), "missing": str(tmp_path / "missing.ckpt")}
    argv, needles = [a.format(**paths) for a in argv], [n.format(**paths) for n in needles]
    if argv[0] == "average":
        status = exit_status(average.main, [*argv[1:], "--out", str(tmp_path / "out")])
    else:
        status = exit_status(transcribe.main, [WAVS[0], *COMMON, *argv])
    stderr = capsys.readouterr().err
    assert_one_error_line(status, stderr, *needles)
    assert "weights_only` set to `False`" not in stderr  # never torch's advice to unpickle code


@pytest.mark.parametrize("how", ["truncated", "pickled"])
def test_16_average_names_a_broken_checkpoint_as_fit_ckpt_path_and_the_export_do(tmp_path, capsys, how):
    import argparse

    import torch

    from nano8k.errors import CheckpointError
    from nano8k.model.checkpoint import describe_checkpoint_file
    from nano8k.training.checkpointing import check_resume_checkpoint, load_checkpoint_file

    bad = tmp_path / "ckpt" / "step000004.ckpt"
    bad.parent.mkdir()
    if how == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(64, 64)}, "global_step": 4}, bad)
        bad.write_bytes(bad.read_bytes()[:200])
    else:
        torch.save({"state_dict": {}, "hyper_parameters": argparse.Namespace(lr=1.0)}, bad)
    why = describe_checkpoint_file(bad, lightning=True)
    assert why is not None and why.startswith({"truncated": "truncated:", "pickled": "holds a pickled"}[how])
    status = exit_status(average.main, [str(bad), "--out", str(tmp_path / "out")])
    line = assert_one_error_line(status, capsys.readouterr().err, f"{bad}: {why}")
    assert "weights_only=False" not in line and "weights_only` set to `False`" not in line
    with pytest.raises(CheckpointError) as resumed:  # what fit --ckpt_path says, before the fit starts
        check_resume_checkpoint(bad, str(bad))
    assert f"{bad}: {why}; " in str(resumed.value)
    with pytest.raises(CheckpointError) as exported:  # what the export after fit (ExportOnFitEnd) says
        load_checkpoint_file(bad)
    assert str(exported.value) == f"{bad}: {why}"


def test_17_help_names_types_and_programs_and_preflight_describes_speed_perturbation(tmp_path, capsys):
    from nano8k.checks import make_context
    from nano8k.checks.data import check_channel

    for main in (transcribe.main, evaluate.main):
        assert exit_status(main, ["-h"]) == 0
        shown = capsys.readouterr().out
        assert "<function" not in shown and " at 0x" not in shown, shown
        assert "int >= 1" in shown and "float >= 0.0" in shown
    assert exit_status(fit.main, ["-h"]) == 0
    assert capsys.readouterr().out.startswith("usage: python -m nano8k.fit ")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  lr: [1\n", encoding="utf-8")
    assert_one_error_line(exit_status(fit.main, ["--config", str(bad)]), capsys.readouterr().err, str(bad), "line 2")
    ctx = make_context(
        parse_config(
            ["--config", str(ROOT / "configs" / "demo.yaml"), "--data.speed_perturb", '{"factors": [0.9, 1.1]}']
        )
    )
    message = check_channel(ctx).message
    assert "SpeedPerturb(" not in message and "factors 0.9, 1.1" in message


def test_18_evaluate_fails_when_nothing_was_scored(tmp_path, capsys):
    manifest = tmp_path / "empty_refs.jsonl"
    manifest.write_text(
        "".join(json.dumps({"key": Path(w).stem, "source": w, "target": "。"}) + "\n" for w in WAVS), encoding="utf-8"
    )
    status = evaluate.main(["--manifest", str(manifest), *COMMON])
    assert_one_error_line(status, capsys.readouterr().err, str(manifest), "nothing was scored", f"{len(WAVS)} have")


def test_19_sweep_with_a_config_still_checks_the_parameters(tmp_path, capsys):
    lr_sweep = (ROOT / "sweeps" / "lr.yaml").read_text(encoding="utf-8")
    misspelt = tmp_path / "lrr.yaml"
    misspelt.write_text(lr_sweep.replace("model.lr:", "model.lrr:"), encoding="utf-8")
    config = str(ROOT / "configs" / "demo.yaml")
    assert_one_error_line(
        sweep.main([str(misspelt), "--config", config]), capsys.readouterr().err, "parameters.model.lrr", config
    )
    assert sweep.main([str(ROOT / "sweeps" / "lr.yaml"), "--config", config]) == 0
    capsys.readouterr()
    assert_one_error_line(
        sweep.main([str(ROOT / "sweeps" / "lr.yaml"), "--grid", "model.lrr=1e-3"]),
        capsys.readouterr().err,
        "--grid model.lrr",
        "model.lr",
    )
