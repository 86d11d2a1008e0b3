"""Item 6: under DDP, a rank whose every batch is bad skips the step together with the others (no hang), and the
bad samples it met reach every rank's record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.reliability.runs import REPO, script_env

SCRIPT = Path(__file__).resolve().parent / "scripts" / "ddp_bad_rank.py"


def test_two_processes_one_rank_with_only_bad_audio(tmp_path):
    try:
        done = subprocess.run(
            [sys.executable, str(SCRIPT), str(tmp_path)],
            cwd=REPO,
            env=script_env(),
            capture_output=True,
            text=True,
            timeout=240,
        )
    except subprocess.TimeoutExpired as stop:
        raise AssertionError(f"DDP run hung (no result in 240 s): {str(stop.stderr)[-2000:]}") from None
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["world_size"] == 2 and report["global_step"] == 4
    (sum0, steps0, train0, val0), (sum1, steps1, train1, val1) = report["per_rank"]
    assert steps0 == steps1 == 4
    assert sum0 == sum1, "ranks diverged"
    assert train0 == train1 >= 4 and val0 == val1 >= 1  # rank 1's bad samples, gathered on both ranks
    assert all(key.startswith("train_") for key in report["train_bad_keys"])
    assert "[data] bad samples skipped: train" in done.stdout
    assert "skipped on every rank" in done.stderr
