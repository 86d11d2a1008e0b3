"""nano8k.sweep: the sweep files are valid W&B sweeps over real config keys; the local runner fills a results table."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from nano8k.commands.sweep import main
from nano8k.training.sweeps import command_for, expand_grid, load_sweep, render_args, validate_sweep

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_files_are_valid(path):
    sweep = load_sweep(path)
    assert validate_sweep(sweep, str(path)) == []
    assert sweep["metric"] == {"name": "val/cer", "goal": "minimize"}
    assert "model.lr" in sweep["parameters"]
    assert "${args}" in sweep["command"] and "nano8k.fit" in sweep["command"]
    lrs = [p["model.lr"] for p in expand_grid(sweep)]
    assert len(lrs) >= 2 and all(1e-6 <= lr <= 1e-2 for lr in lrs)


def test_both_stages_have_a_sweep():
    configs = {load_sweep(p)["command"][load_sweep(p)["command"].index("--config") + 1] for p in SWEEPS}
    assert {"configs/telephone.yaml", "configs/stage1_encoder_adapt.yaml"} <= configs


def test_invalid_sweeps_are_reported():
    base = load_sweep(ROOT / "sweeps" / "lr.yaml")
    cases = {
        "method": {**base, "method": "hyperband"},
        "metric needs name and goal": {**base, "metric": {"name": "val/cer"}},
        "method grid needs values": {**base, "parameters": {"model.lr": {"min": 1e-5, "max": 1e-3}}},
        "not a key of configs/telephone.yaml": {**base, "parameters": {"model.learning_rate": {"values": [1e-4]}}},
        "${args}": {**base, "command": ["${env}", "${interpreter}", "-m", "nano8k.fit"]},
    }
    for expected, sweep in cases.items():
        errors = validate_sweep(sweep, "s.yaml")
        assert any(expected in e for e in errors), (expected, errors)


def test_log_range_is_log_spaced_and_args_render_like_the_agent():
    sweep = {
        "method": "bayes",
        "parameters": {"model.lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-3}},
    }
    lrs = [p["model.lr"] for p in expand_grid(sweep, points=3)]
    assert lrs == pytest.approx([1e-5, 1e-4, 1e-3])
    assert render_args({"model.lr": 1e-4}) == ["--model.lr=0.0001"]
    cmd = command_for(load_sweep(ROOT / "sweeps" / "lr.yaml"), {"model.lr": 1e-4}, "x.yaml", ["--trainer.max_steps=2"])
    assert cmd[1:] == ["-m", "nano8k.fit", "--config", "x.yaml", "--model.lr=0.0001", "--trainer.max_steps=2"]


def test_local_two_point_grid_on_demo(tmp_path, capsys):
    out = tmp_path / "sweep"
    rc = main(
        [
            "sweeps/lr.yaml",
            "--local",
            "--config",
            "configs/demo.yaml",
            "--grid",
            "model.lr=1e-3,3e-3",
            "--max_steps",
            "2",
            "--limit_val_batches",
            "1",
            "--out",
            str(out),
            "--timeout",
            "120",
            "--model.warmup_steps=1",
        ]
    )  # passed through to nano8k.fit (warm-up inside the run)
    assert rc == 0, capsys.readouterr()
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(float(r["model.lr"]) for r in rows) == [1e-3, 3e-3]
    for row in rows:
        assert row["exit"] == "0" and math.isfinite(float(row["best val/cer"]))
        run_dir = Path(row["run_dir"])
        assert run_dir.parent == out.resolve() and "--model.lr=" in (run_dir / "command.txt").read_text()
    best = [float(r["best val/cer"]) for r in rows]
    assert best == sorted(best)  # best first
    table = (out / "results.md").read_text()
    assert "| point | model.lr | best val/cer |" in table and "![val/cer vs model.lr](results.png)" in table
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (
        out / "results.png"
    ).stat().st_size > 5000
