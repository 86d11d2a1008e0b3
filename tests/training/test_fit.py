"""End-to-end fit: kill -9 then exact resume, 2-process CPU DDP, and the ``python -m nano8k.fit`` CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from nano8k.commands import fit as fit_cli
from nano8k.model.checkpoint import load_pretrained
from nano8k.training.config import layered_config  # a shipped config with its base: one file

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"


def script_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.pop("NANO8K_MODEL_DIR", None)
    return env


def read_steps(path: Path) -> dict[int, list[str]]:
    if not path.exists():
        return {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return {row["step"]: row["keys"] for row in lines}


def test_kill9_then_resume_from_last(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "killable_fit.py"), str(run), "40"],
        cwd=REPO,
        env=script_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 90
    try:  # kill right after the batch following the step-6 checkpoint (first main-stage checkpoint)
        while 7 not in read_steps(run / "steps.jsonl"):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no progress in 90 s"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    step = saved["global_step"]
    assert step >= 6 and step % 3 == 0
    before = read_steps(run / "steps.jsonl")

    epoch0_before = [
        key
        for line in (run / "steps.jsonl").read_text().splitlines()
        for entry in [json.loads(line)]
        if entry["step"] <= step and entry["epoch"] == 0
        for key in entry["keys"]
    ]
    (run / "steps.jsonl").unlink()
    resumed = subprocess.run(
        [sys.executable, str(SCRIPTS / "killable_fit.py"), str(run), str(step + 90), "last"],
        cwd=REPO,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    start = json.loads((run / "start.json").read_text())
    assert start["global_step"] == step
    assert start["lr"] == pytest.approx(saved["optimizer_states"][0]["param_groups"][0]["lr"], rel=1e-12)
    assert start["stage"] == "main" and start["frontend_rate"] == 16000
    assert start["freeze"] == {"encoder": False, "adaptor": False, "llm": False, "encoder_frozen_layers": 0}
    after = read_steps(run / "steps.jsonl")
    assert min(after) == step + 1
    # data position: the first batch after resuming is the one the killed run drew after the checkpoint
    assert step + 1 in before and after[step + 1] == before[step + 1]
    # the resumed epoch is neither cut short nor repeated: epoch 0 covers every utterance exactly once
    entries = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    epoch0_after = [key for entry in entries if entry["epoch"] == 0 for key in entry["keys"]]
    train_keys = [
        json.loads(line)["key"] for line in (REPO / "data_manifests/demo/train.jsonl").read_text().splitlines()
    ]
    assert sorted(epoch0_before + epoch0_after) == sorted(train_keys)
    assert any(entry["epoch"] == 1 for entry in entries), "training did not continue into the next epoch"


def test_ddp_two_cpu_processes(tmp_path):
    report = tmp_path / "ddp.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "ddp_fit.py"), str(report)],
        cwd=tmp_path,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(report.read_text())
    assert result["world_size"] == 2 and result["strategy"] == "DDPStrategy" and result["backend"] == "gloo"
    assert result["global_step"] == 3
    first, second = result["checksums"]
    assert first == second, "ranks diverged: gradients were not all-reduced"
    assert first != result["initial"]


def test_ddp_stage_switch_reduces_the_newly_trainable_adaptor(tmp_path):
    report = tmp_path / "ddp.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "ddp_fit.py"), str(report), "--stage_switch"],
        cwd=tmp_path,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(report.read_text())
    assert result["global_step"] == 4 and result["trainable"]["encoder"] == 0 and result["trainable"]["adaptor"] > 0
    rank0, rank1 = result["parts_per_rank"]
    _, _, adaptor_before = result["initial_parts"]
    assert rank0[2] != adaptor_before, "the adaptor did not train after the switch"
    assert rank0 == rank1, "ranks diverged after the stage switch: DDP does not reduce the adaptor's gradients"


def test_cli_reshuffles_each_epoch_and_resumes_after_an_epoch_end(tmp_path, monkeypatch):
    config = layered_config(REPO / "configs/demo.yaml")
    config["trainer"]["callbacks"] = [
        c
        for c in config["trainer"]["callbacks"]
        if not any(name in c["class_path"] for name in ("LearningRate", "Export", "BeforeAfter"))
    ]
    for callback in config["trainer"]["callbacks"]:
        if "dirpath" in callback.get("init_args", {}):
            callback["init_args"]["dirpath"] = str(tmp_path / "ckpt")
    config["trainer"].update(
        default_root_dir=str(tmp_path),
        logger=False,
        max_epochs=2,
        max_steps=-1,
        val_check_interval=None,
        check_val_every_n_epoch=2,
        limit_val_batches=1,
    )
    config["model"].update(warmup_steps=1, model_dir="tiny")  # the 160-utterance sentence corpus keeps epochs short
    config["data"].update(
        train_manifests="data_manifests/demo/train.jsonl", val_manifests="data_manifests/demo/val.jsonl"
    )
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(REPO)
    args = ["--config", str(tmp_path / "demo.yaml"), "--model.max_new_tokens", "2"]
    first = fit_cli.run(args)
    sampler = first.datamodule._train_sampler
    per_epoch = len(sampler.rank_batches(0))
    assert sampler.epoch == 1 and sampler.rank_batches(0) != sampler.rank_batches(1)
    assert first.trainer.global_step == 2 * per_epoch
    position = first.datamodule.train_position()  # what the training loader's state_dict gives Lightning
    assert {key: position[key] for key in ("epoch", "batches_consumed", "seed", "world_size")} == {
        "epoch": 1,
        "batches_consumed": per_epoch,
        "seed": 1234,
        "world_size": 1,
    }
    resumed = fit_cli.run([*args, "--trainer.max_epochs", "3", "--ckpt_path", "last"])
    assert resumed.trainer.global_step == 3 * per_epoch
    assert resumed.datamodule._train_sampler.epoch == 2


@pytest.mark.parametrize("name", ["telephone.yaml", "stage1_encoder_adapt.yaml"])
def test_real_configs_run_end_to_end_on_the_tiny_model(name, tmp_path, monkeypatch):
    """The shipped configs as a user runs them (model dir and data swapped for the tiny model and demo corpus)."""
    monkeypatch.chdir(tmp_path)  # the configs write runs/<name>/ relative to the working directory
    demo = REPO / "data_manifests" / "demo"
    cli = fit_cli.run(
        [
            "--config",
            str(REPO / "configs" / name),
            "--model.model_dir",
            "tiny",
            "--data.train_manifests",
            str(demo / "train.jsonl"),
            "--data.val_manifests",
            str(demo / "val.jsonl"),
            "--data.num_workers",
            "0",
            "--model.warmup_steps",
            "1",
            "--model.max_new_tokens",
            "2",
            "--trainer.max_steps",
            "2",
            "--trainer.val_check_interval",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.devices",
            "1",
            "--trainer.strategy",
            "auto",  # 2-process DDP: test_ddp_two_cpu_processes
            "--trainer.logger",
            "lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.save_dir",
            str(tmp_path),
            "--data.language",
            "en",
            "--data.itn",
            "false",  # prompt settings the exports must record
        ]
    )
    assert cli.trainer.global_step == 2
    assert cli.trainer.logger.log_dir and (Path(cli.trainer.logger.log_dir) / "hparams.yaml").exists()
    rate = 8000 if name.startswith("stage1") else 16000
    assert cli.datamodule.frontend.sample_rate == rate
    exports = list((tmp_path / "runs").glob("*/export"))
    assert len(exports) == 1 and (exports[0] / "funasr" / "model.pt").is_file()
    for layout in ("funasr", "hf"):  # the feeding record: how this training fed the model
        exported = load_pretrained(exports[0] / layout)
        assert exported.frontend.sample_rate == rate and exported.feeding.prompt == cli.datamodule.prompt_settings
        assert exported.feeding == cli.datamodule.feeding
    assert cli.datamodule.prompt_settings.language == "en" and not cli.datamodule.prompt_settings.itn
    assert cli.model.model.feeding.prompt != cli.datamodule.prompt_settings  # the live model kept its own record


def test_cli_overrides_and_print_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        fit_cli.main(["--config", str(REPO / "configs/demo.yaml"), "--model.lr", "1e-4", "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "lr: 0.0001" in printed and "model_dir: mini" in printed


@pytest.mark.parametrize("name", ["telephone.yaml", "stage1_encoder_adapt.yaml", "pretrained.yaml"])
def test_real_configs_need_a_model_dir(name, monkeypatch, capsys):
    monkeypatch.delenv("NANO8K_MODEL_DIR", raising=False)
    with pytest.raises(SystemExit) as stop:  # preflight speaks first, before any model is built
        fit_cli.main(["--config", str(REPO / "configs" / name)])
    assert stop.value.code == 1 and "[FAIL] model_dir: model.model_dir is not set" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        fit_cli.main(["--config", str(REPO / "configs" / name), "--preflight", "false"])
    assert stop.value.code == 2 and "NANO8K_MODEL_DIR" in capsys.readouterr().err


def test_cli_runs_demo_config_briefly(tmp_path, capsys, monkeypatch):
    config = layered_config(REPO / "configs/demo.yaml")
    config["trainer"]["callbacks"] = [
        c for c in config["trainer"]["callbacks"] if "LearningRate" not in c["class_path"]
    ]
    for callback in config["trainer"]["callbacks"]:
        args = callback.get("init_args", {})
        if "dirpath" in args:
            args["dirpath"] = str(tmp_path / "ckpt")
        if "out_dir" in args:
            args["out_dir"] = str(tmp_path / "export")
    config["trainer"].update(
        default_root_dir=str(tmp_path),
        logger=False,
        max_epochs=1,
        max_steps=4,
        val_check_interval=2,
        limit_val_batches=1,
        check_val_every_n_epoch=1,
    )
    config["model"]["warmup_steps"] = 1  # preflight (run by fit) refuses a warm-up longer than the 4-step run
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(REPO)  # the demo's manifest paths are relative to the repository root
    fit_cli.main(["--config", str(tmp_path / "demo.yaml"), "--model.max_new_tokens", "4"])
    out = capsys.readouterr().out
    assert "[val] step 2" in out and "[val] step 4" in out and "cer" in out
    assert out.count("[val example]") == 2 * 4 and "  ref: " in out and "  hyp: " in out  # printed, not INFO-logged
    report = json.loads((tmp_path / "before_after.json").read_text())
    before, after = report["before"]["cer"], report["after"]["cer"]
    assert f"CER before {before:.3f} → after {after:.3f}" in out and "held-out telephone voices (200 utts)" in out
    assert report["after_model"] == str(tmp_path / "export" / "hf") and len(report["hypotheses"]) == 200
    assert (tmp_path / "ckpt" / "last.ckpt").exists()
    assert (tmp_path / "export" / "funasr" / "model.pt").exists() and (tmp_path / "export" / "hf").is_dir()
