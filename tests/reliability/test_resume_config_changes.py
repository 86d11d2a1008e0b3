"""Item 1: a resume honours a changed lr (the schedule continues from the step with the new value) and refuses
other changed training settings, listing each key — never ignores them."""

from __future__ import annotations

import math

import pytest

from nano8k.commands import fit as fit_cli
from nano8k.training.optim import warmuplr_factor
from tests.reliability.runs import demo_config, read_steps

LR, WARMUP = 2e-3, 20


@pytest.fixture()
def first_run(tmp_path):
    steps = tmp_path / "steps.jsonl"
    config = demo_config(
        tmp_path,
        recorder={"path": str(steps)},
        model={"scheduler": "warmuplr", "lr": LR},
        trainer={"max_steps": 6, "val_check_interval": 100, "limit_val_batches": 0},
    )
    fit_cli.main(["--config", str(config), "--preflight", "false", "--model.warmup_steps", str(WARMUP)])
    return config, steps


def _lr_at(step: int, peak: float) -> float:
    return peak * warmuplr_factor(WARMUP)(step)  # LambdaLR factor after `step` optimizer steps


def test_a_new_lr_is_applied_from_the_resumed_step(first_run, capsys):
    config, steps = first_run
    before = read_steps(steps)
    assert [row["step"] for row in before] == list(range(1, 7))
    assert all(math.isclose(row["lr"], _lr_at(row["step"], LR), rel_tol=1e-6) for row in before)
    fit_cli.main(
        [
            "--config",
            str(config),
            "--preflight",
            "false",
            "--model.warmup_steps",
            str(WARMUP),
            "--model.lr",
            str(LR / 4),
            "--trainer.max_steps",
            "9",
            "--ckpt_path",
            "last",
        ]
    )
    after = read_steps(steps)[len(before) :]
    assert [row["step"] for row in after] == [7, 8, 9]
    for row in after:  # the warm-up goes on from step 6, at the new peak
        assert math.isclose(row["lr"], _lr_at(row["step"], LR / 4), rel_tol=1e-6), row
    assert "[resume] model.lr 0.002 -> 0.0005" in capsys.readouterr().out


def test_changed_freezing_and_decay_are_refused_naming_each_key(first_run, capsys):
    config, _ = first_run
    with pytest.raises(SystemExit) as stop:
        fit_cli.main(
            [
                "--config",
                str(config),
                "--preflight",
                "false",
                "--model.warmup_steps",
                str(WARMUP),
                "--model.freeze.encoder",
                "true",
                "--model.weight_decay",
                "0.1",
                "--trainer.max_steps",
                "9",
                "--ckpt_path",
                "last",
            ]
        )
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "cannot resume from" in err and "last.ckpt" in err
    assert "model.freeze: checkpoint" in err and "'encoder': True" in err
    assert "model.weight_decay: checkpoint 0.01 -> now 0.1" in err
    assert "Traceback" not in err
