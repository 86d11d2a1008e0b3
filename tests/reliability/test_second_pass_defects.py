"""Issue #25, a second black-box pass: the same refusals through other commands and inputs, one error line each."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nano8k.commands import evaluate, sweep, transcribe
from nano8k.commands import validate as validate_command
from tests.reliability.runs import REPO, demo_config
from tests.reliability.test_command_defects import COMMON, WAVS, assert_one_error_line, copy_model, exit_status
from tests.reliability.test_output_defects import _error_lines, _fit


def test_damaged_tokenizer_files_are_one_error_naming_the_folder(tmp_path, capsys):
    model = copy_model(tmp_path)
    (model / "Qwen3-0.6B" / "tokenizer.json").write_text("", encoding="utf-8")
    status = transcribe.main([WAVS[0], *COMMON, "--model_dir", str(model)])
    assert_one_error_line(status, capsys.readouterr().err, str(model / "Qwen3-0.6B"), "tokenizer files")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_a_full_output_is_one_error_after_decoding(capsys):
    status = transcribe.main([WAVS[0], *COMMON, "--output", "/dev/full"])
    assert_one_error_line(status, capsys.readouterr().err, "--output /dev/full", "writing failed")


def test_an_output_path_through_a_file_is_one_error_in_every_command(tmp_path, capsys):
    """A path whose folder is a file (ENOTDIR) stands for every OSError naming a path: read-only, existing, full."""
    plain = tmp_path / "plain"
    plain.write_text("x", encoding="utf-8")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"key": "a", "source": WAVS[0], "target": "x"}) + "\n", encoding="utf-8")
    status = validate_command.main([str(manifest), "--convert", str(plain / "out.jsonl"), "--header_only"])
    assert_one_error_line(status, capsys.readouterr().err, "--convert", str(plain / "out.jsonl"))
    status = evaluate.main(["--manifest", str(manifest), *COMMON, "--report_dir", str(plain / "rep")])
    assert_one_error_line(status, capsys.readouterr().err, "--report_dir", "is a file, not a folder")
    status = validate_command.main([str(manifest), "--convert", str(tmp_path / "cuts"), "--convert_format", "lhotse"])
    assert_one_error_line(status, capsys.readouterr().err, "--convert", ".jsonl.gz")


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--dither", "inf"], ["--dither", "finite"]),
        (["--device", "mps"], ["--device mps", "cannot use it"]),
    ],
)
def test_transcribe_refuses_an_infinite_dither_and_a_device_torch_lacks(argv, needles, capsys):
    if argv[-1] == "mps" and _mps_usable():
        pytest.skip("this torch build runs on mps")
    status = exit_status(transcribe.main, [WAVS[0], *COMMON, *argv])
    assert_one_error_line(status, capsys.readouterr().err, *needles)


def _mps_usable() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def test_sweep_names_a_sweep_file_or_config_that_is_not_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: grid\nparameters: [\n", encoding="utf-8")
    assert_one_error_line(sweep.main([str(bad)]), capsys.readouterr().err, str(bad), "not valid YAML")
    status = sweep.main([str(REPO / "sweeps" / "lr.yaml"), "--config", str(bad)])
    assert_one_error_line(status, capsys.readouterr().err, str(bad), "not valid YAML")


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--ckpt_path", "{run}/ckpt/nope.ckpt"], ["nope.ckpt: not found"]),
        (["--ckpt_path", "{run}/ckpt"], ["is a folder, not a checkpoint"]),
        (["--model.max_new_tokens", "0"], ["model.max_new_tokens must be >= 1"]),
        (["--trainer.accelerator", "cuda"], ["CUDAAccelerator", "not available"]),
    ],
)
def test_fit_refuses_a_missing_resume_file_a_folder_and_impossible_settings(
    argv, needles, tmp_path, monkeypatch, capsys
):
    if "cuda" in argv:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA GPU")
    monkeypatch.chdir(REPO)
    run = tmp_path / "run"
    (run / "ckpt").mkdir(parents=True)
    argv = [arg.replace("{run}", str(run)) for arg in argv]
    assert _fit(["--config", str(demo_config(run, trainer={"max_steps": 2})), "--preflight", "false", *argv]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and all(needle in lines[0] for needle in needles), lines


def test_fit_says_so_when_last_finds_no_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    run = tmp_path / "run"
    run.mkdir()
    config = demo_config(run, trainer={"max_steps": 1, "val_check_interval": 1})
    assert _fit(["--config", str(config), "--preflight", "false", "--ckpt_path", "last"]) == 0
    assert "[resume] --ckpt_path last: no last.ckpt in the checkpoint folders yet" in capsys.readouterr().err
    assert os.path.isfile(run / "ckpt" / "last.ckpt")
