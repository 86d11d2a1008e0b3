"""Item 3: SIGTERM (preemption) writes last.ckpt at the step that was running and exits 143; the resume goes on
from the next step with the lr and the batches an uninterrupted run has there."""

from __future__ import annotations

import math
import signal
import subprocess
import time

import torch

from nano8k.commands import fit as fit_cli
from tests.reliability.runs import FIT, REPO, demo_config, read_steps, script_env

MAX_STEPS = 14
RUN = {
    "trainer": {"max_steps": MAX_STEPS, "val_check_interval": 1000, "limit_val_batches": 0},
    "model": {"scheduler": "warmuplr", "warmup_steps": 25},  # lr changes every step: a wrong step would show
    "last_every_n_steps": 1000,
}  # so the only checkpoint is SIGTERM's


def test_sigterm_saves_the_step_exits_143_and_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    reference = tmp_path / "reference"
    reference.mkdir()
    fit_cli.main(
        [
            "--config",
            str(demo_config(reference, recorder={"path": str(reference / "steps.jsonl")}, **RUN)),
            "--preflight",
            "false",
        ]
    )
    expected = {row["step"]: row for row in read_steps(reference / "steps.jsonl")}
    assert sorted(expected) == list(range(1, MAX_STEPS + 1))

    run = tmp_path / "run"
    run.mkdir()
    steps = run / "steps.jsonl"
    config = demo_config(run, recorder={"path": str(steps), "delay": 0.4}, **RUN)
    proc = subprocess.Popen(
        [*FIT, "--config", str(config), "--preflight", "false"],
        cwd=REPO,
        env=script_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None and len(read_steps(steps)) < 4:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:]
    done = read_steps(steps)
    k = done[-1]["step"]
    assert 4 <= k < MAX_STEPS
    last = torch.load(run / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True, mmap=True)
    assert last["global_step"] == k, f"last.ckpt holds step {last['global_step']}, the run stopped after step {k}"
    assert f"[preempt] SIGTERM: wrote {run / 'ckpt' / 'last.ckpt'} at step {k}" in out

    resumed = fit_cli.run(["--config", str(config), "--preflight", "false", "--ckpt_path", "last"])
    assert resumed.trainer.global_step == MAX_STEPS
    after = read_steps(steps)[len(done) :]
    assert [row["step"] for row in after] == list(range(k + 1, MAX_STEPS + 1))
    for row in after:  # same data position and same lr as the run that was never stopped
        assert row["keys"] == expected[row["step"]]["keys"], row["step"]
        assert math.isclose(row["lr"], expected[row["step"]]["lr"], rel_tol=1e-7), row["step"]
    worst = max(abs(row["lr"] - expected[row["step"]]["lr"]) for row in after)
    print(
        f"\n[measured] SIGTERM during step {k}: exit {proc.returncode}, last.ckpt at step {last['global_step']}; "
        f"resumed steps {after[0]['step']}..{after[-1]['step']}: batch keys equal to the uninterrupted run's, "
        f"max |lr difference| {worst:.1e} (lr at step {k + 1}: {after[0]['lr']:.6g})"
    )
