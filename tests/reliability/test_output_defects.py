"""Issue #25, output folders and checkpoint files: one run per output folder (3), a broken last.ckpt named with the
intact checkpoints beside it (9, and 16's pickled checkpoint), an unwritable output folder refused before the model
is built (11), a full disk while checkpointing (12), one file mode across an export (20), a smoke run shorter than
its warm-up (a warning, not a refusal)."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

import nano8k.atomic as atomic
import nano8k.training.module as module_layer
from nano8k.checks import CHECKS, run_preflight
from nano8k.commands import fit as fit_cli
from nano8k.training.config import parse_file
from tests.reliability.runs import FIT, REPO, demo_config, read_steps, script_env


def _fit(args: list[str]) -> int:
    """``nano8k.fit``'s exit status (0 when it returns)."""
    try:
        return fit_cli.main(args)
    except SystemExit as stop:
        return stop.code


def _error_lines(err: str) -> list[str]:
    assert "Traceback" not in err, err[-3000:]
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.fixture()
def models_built(monkeypatch) -> list:
    built: list = []
    real = module_layer.load_pretrained
    monkeypatch.setattr(module_layer, "load_pretrained", lambda *a, **k: built.append(a) or real(*a, **k))
    return built


# -- 3: one run per output folder --------------------------------------------------------------------------------
def test_a_second_fit_into_a_folder_in_use_is_refused_and_the_folder_is_free_once_the_first_ends(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(REPO)
    steps = tmp_path / "steps.jsonl"
    first = demo_config(
        tmp_path,
        recorder={"path": str(steps), "delay": 0.5},
        trainer={"max_steps": 500, "val_check_interval": 1000, "limit_val_batches": 0},
    )
    running = subprocess.Popen(
        [*FIT, "--config", str(first), "--preflight", "false"],
        cwd=REPO,
        env=script_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and running.poll() is None and not read_steps(steps):
            time.sleep(0.1)
        assert running.poll() is None, running.stderr.read()[-3000:]
        second = demo_config(tmp_path, trainer={"max_steps": 2, "val_check_interval": 1000, "limit_val_batches": 0})
        assert _fit(["--config", str(second), "--preflight", "false"]) == 2
        lines = _error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and f"trainer.default_root_dir={tmp_path.resolve()} is in use" in lines[0]
        assert f"pid {running.pid} on host " in lines[0] and "started " in lines[0]
    finally:
        running.send_signal(signal.SIGKILL)  # killed, not ended cleanly: its lock must not outlive it
        running.wait()
    assert _fit(["--config", str(second), "--preflight", "false"]) == 0
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True, mmap=True)["global_step"] == 2
    assert not list(tmp_path.rglob(".nano8k-run.lock"))  # a finished run leaves no lock file


# -- 9 and 16: a broken checkpoint given to --ckpt_path -------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A 4-step tiny-model run with step000004.ckpt (top-k) and last.ckpt beside it."""
    run = tmp_path_factory.mktemp("trained")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        assert _fit(["--config", str(demo_config(run, trainer={"max_steps": 4})), "--preflight", "false"]) == 0
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    assert {p.name for p in (run / "ckpt").iterdir()} >= {"last.ckpt", "step000004.ckpt"}
    return run


def _break(path: Path, how: str) -> None:
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # a pickled object where a checkpoint holds plain data: weights_only refuses it
        import argparse

        torch.save({"state_dict": {}, "hyper_parameters": argparse.Namespace(lr=1.0)}, path)


@pytest.mark.parametrize(("how", "why"), [("empty", "the file is empty"), ("truncated", "truncated")])
def test_a_broken_last_ckpt_is_named_with_the_intact_checkpoints_beside_it(
    trained_run, tmp_path, monkeypatch, capsys, how, why
):
    monkeypatch.chdir(REPO)
    run = tmp_path / "run"
    (run / "ckpt").mkdir(parents=True)
    for name in ("last.ckpt", "step000004.ckpt"):
        (run / "ckpt" / name).write_bytes((trained_run / "ckpt" / name).read_bytes())
    _break(run / "ckpt" / "last.ckpt", how)
    assert (
        _fit(
            ["--config", str(demo_config(run, trainer={"max_steps": 6})), "--preflight", "false", "--ckpt_path", "last"]
        )
        == 2
    )
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and f"{run / 'ckpt' / 'last.ckpt'}: {why}" in lines[0]
    assert f"--ckpt_path {run / 'ckpt' / 'step000004.ckpt'}" in lines[0]


def test_a_checkpoint_holding_a_pickled_object_is_refused_without_torchs_advice(
    trained_run, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(REPO)
    bad = tmp_path / "given.ckpt"
    _break(bad, "pickled")
    assert (
        _fit(
            [
                "--config",
                str(demo_config(tmp_path, trainer={"max_steps": 6})),
                "--preflight",
                "false",
                "--ckpt_path",
                str(bad),
            ]
        )
        == 2
    )
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and f"{bad}: holds a pickled argparse.Namespace" in lines[0]
    assert "weights_only=False" not in lines[0]


# -- 11: an output folder that cannot be written --------------------------------------------------------------
def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: read-only permissions, or (root ignores those) under /sys."""
    if os.geteuid() != 0:
        locked = tmp_path / "read-only"
        locked.mkdir()
        locked.chmod(0o555)
        return locked / "run"
    return Path("/sys/nano8k-no-such-folder/run")


def test_an_unwritable_output_folder_is_refused_before_the_model_is_built(tmp_path, monkeypatch, capsys, models_built):
    monkeypatch.chdir(REPO)
    folder = _unwritable_folder(tmp_path)
    args = ["--config", str(demo_config(tmp_path)), "--trainer.default_root_dir", str(folder)]
    assert _fit(args) == 1  # preflight's report
    out = capsys.readouterr().out
    assert "[FAIL] outputs: " in out and f"trainer.default_root_dir={folder}" in out
    assert _fit([*args, "--preflight", "false"]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and f"trainer.default_root_dir={folder}: cannot write there" in lines[0]
    assert models_built == []


# -- 12: the disk fills up while last.ckpt is written ---------------------------------------------------------
class _FullDisk(io.FileIO):
    """A file on a disk with 1,000 bytes left."""

    def write(self, data) -> int:
        if self.tell() + len(data) > 1000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_a_full_disk_while_checkpointing_is_one_error_and_the_previous_last_ckpt_survives(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(REPO)
    last = tmp_path / "ckpt" / "last.ckpt"
    writes = []

    def disk_fills_after_the_first_last_ckpt(path, mode="r", *args, **kwargs):
        if Path(path).name == "last.ckpt.tmp":
            writes.append(path)
            if len(writes) > 1:
                return _FullDisk(path, mode)
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(atomic, "open", disk_fills_after_the_first_last_ckpt, raising=False)
    config = demo_config(
        tmp_path, last_every_n_steps=3, trainer={"max_steps": 8, "val_check_interval": 1000, "limit_val_batches": 0}
    )
    assert _fit(["--config", str(config), "--preflight", "false"]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and f"{last}: the disk is full (" in lines[0] and " MiB free in " in lines[0]
    assert f"{last} still holds the previous file" in lines[0]
    assert torch.load(last, weights_only=True)["global_step"] == 3 and not last.with_name("last.ckpt.tmp").exists()


# -- 20: one mode for every exported file ---------------------------------------------------------------------
def test_every_exported_file_follows_the_umask(tiny_model, tmp_path):
    from nano8k.model.checkpoint import export_funasr, export_hf

    export_hf(tiny_model, tmp_path / "hf")
    export_funasr(tiny_model, tmp_path / "funasr")
    umask = os.umask(0)
    os.umask(umask)
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in tmp_path.rglob("*") if p.is_file()}
    assert "hf/model.safetensors" in modes and set(modes.values()) == {oct(0o666 & ~umask)}, modes


# -- smoke run: a run shorter than its warm-up ----------------------------------------------------------------
def test_a_run_shorter_than_its_warm_up_is_a_warning(monkeypatch):
    monkeypatch.chdir(REPO)
    config = parse_file(REPO / "configs" / "demo.yaml", ["--trainer.max_steps", "3"])
    (result,) = run_preflight(config, skip=[name for name in CHECKS if name != "schedule"])
    assert result.status == "warn", result.line()
    assert "model.warmup_steps=50 >= the whole run (3 optimizer steps" in result.message
    assert "never reaches model.lr" in result.message and "smoke run" in result.message
