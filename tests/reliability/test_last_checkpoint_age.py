"""Item 2: last.ckpt stays at most N steps old (and M minutes) while val/cer has stopped improving."""

from __future__ import annotations

import torch

from nano8k.commands import fit as fit_cli
from tests.reliability.runs import demo_config, read_steps


def _fit(tmp_path, monkeypatch, **kwargs):
    steps = tmp_path / "steps.jsonl"
    config = demo_config(
        tmp_path, recorder={"path": str(steps), "last_ckpt": str(tmp_path / "ckpt" / "last.ckpt")}, **kwargs
    )
    cli = fit_cli.run(["--config", str(config), "--preflight", "false"])
    return cli, read_steps(steps)


def test_last_ckpt_is_never_more_than_n_steps_old_after_val_cer_stops_improving(tmp_path, monkeypatch):
    every = 3
    cli, steps = _fit(
        tmp_path, monkeypatch, last_every_n_steps=every, trainer={"max_steps": 16, "val_check_interval": 5}
    )
    best = next(cb for cb in cli.trainer.checkpoint_callbacks if cb.monitor == "val/cer")
    best_step = int(torch.load(best.best_model_path, weights_only=True, mmap=True)["global_step"])
    assert best_step < 12, f"val/cer kept improving (best at step {best_step}): the scenario needs a plateau"
    # Lightning runs checkpoint callbacks last: the recorder sees last.ckpt as it was before this step's save
    ages = {row["step"]: row["step"] - row.get("last_step", 0) for row in steps}
    assert len(ages) == 16
    assert max(ages.values()) <= every, f"last.ckpt fell behind: age per step {ages}"
    final = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True, mmap=True)
    assert final["global_step"] == 16
    print(
        f"\n[measured] best val/cer at step {best_step} of 16 (validation every 5 steps); last.ckpt age before each "
        f"step's save: max {max(ages.values())} steps (bound {every}); per step {list(ages.values())}"
    )


def test_last_ckpt_by_time_alone(tmp_path, monkeypatch):
    # every_n_minutes alone, far below a step's time: every step rewrites last.ckpt (seen one step later)
    _, steps = _fit(
        tmp_path,
        monkeypatch,
        last_every_n_steps=None,
        last_every_n_minutes=1e-6,
        trainer={"max_steps": 6, "val_check_interval": 100, "limit_val_batches": 0},
    )
    assert [row["step"] - row.get("last_step", 0) for row in steps] == [1] * 6
