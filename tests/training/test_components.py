"""The training step's components alone: StepGuard, BadSampleTally, ResumePolicy and the settings objects."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from nano8k.data.badsamples import BadSample
from nano8k.errors import ResumeConfigError
from nano8k.training.bad_samples import BadSampleTally
from nano8k.training.guard import GuardSettings, StepGuard
from nano8k.training.optim import OptimizerSettings, ScheduleSettings
from nano8k.training.resume import APPLIED_ON_RESUME, ResumePolicy

CPU = torch.device("cpu")
NAN, ONE = torch.tensor(float("nan")), torch.tensor(1.0)


def test_guard_settings_name_the_model_key():
    with pytest.raises(ValueError, match="model.max_consecutive_nonfinite must be >= 1, got 0"):
        GuardSettings(max_consecutive_nonfinite=0)


def test_guard_skips_non_finite_and_empty_micro_batches_and_counts_only_non_finite_ones():
    guard = StepGuard(GuardSettings(max_consecutive_nonfinite=5))
    decisions = [bool(guard.check(loss, CPU)) for loss in (ONE, NAN, None, NAN, ONE)]
    assert decisions == [False, True, True, True, False]
    # an empty micro-batch neither counts nor breaks the run of non-finite ones: the run was 2 before the last one
    assert guard.counters.tolist() == [2.0, 0.0, 1.0, 2.0]
    assert guard.nonfinite_count.item() == 2.0


def test_guard_reads_warn_and_stop_at_the_limit(caplog):
    guard = StepGuard(GuardSettings(max_consecutive_nonfinite=2))
    guard.check(NAN, CPU)
    with caplog.at_level(logging.WARNING):
        guard.read(step=7)
    assert guard.nonfinite_steps == 1 and guard.consecutive_nonfinite == 1
    assert "1 non-finite loss(es) before step 7" in caplog.text
    guard.check(NAN, CPU)
    guard.check(ONE, CPU)  # the run ended, but it reached the limit since the last read
    with pytest.raises(RuntimeError, match="2 consecutive non-finite losses .*model.max_consecutive_nonfinite=2"):
        guard.read(step=9)


def test_an_optimizer_step_is_skipped_when_its_window_had_a_non_finite_or_no_trained_micro_batch():
    guard = StepGuard(GuardSettings())
    guard.check(ONE, CPU)
    assert not bool(guard.end_window())
    guard.check(ONE, CPU)
    guard.check(NAN, CPU)
    assert bool(guard.end_window())
    guard.check(None, CPU)
    assert bool(guard.end_window())  # nothing trained in the window
    assert guard.window.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("impl", ["fused", "for_loop"])
def test_a_skipped_step_leaves_the_weights_alone(impl):
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([weight], lr=0.1, **({"fused": True} if impl == "fused" else {"foreach": False}))
    guard = StepGuard(GuardSettings())
    for loss in (NAN, ONE):  # a skipped window, then a trained one
        guard.check(loss, CPU)
        weight.grad = torch.ones(3)
        guard.skip_optimizer_step(optimizer)
        if weight.grad is not None:
            optimizer.step()
        StepGuard.clear_found_inf([optimizer])
        assert "found_inf" not in optimizer.__dict__
        if loss is NAN:
            assert weight.detach().tolist() == [1.0, 1.0, 1.0]
    assert weight.detach().lt(1.0).all()


def test_guard_restores_a_checkpoint_count():
    guard = StepGuard(GuardSettings())
    guard.restore(4)
    guard.check(NAN, CPU)
    guard.read(step=1)
    assert guard.nonfinite_steps == 5


def test_tally_gathers_keeps_and_restores_bad_samples_once_each():
    tally = BadSampleTally()
    bad = BadSample("unreadable", manifest="train.jsonl", line=3, key="a")
    assert tally.gather("train", world_size=1) is False  # nothing noted: no collective in one process
    tally.note("train", SimpleNamespace(skipped=[bad.record(), bad.record()]))
    tally.note("train", None)
    assert tally.gather("train", world_size=1) is True
    assert tally.items("train") == [bad]
    tally.note("val", SimpleNamespace(skipped=[bad.record()]))
    tally.drop_pending("val")
    tally.gather("val")
    assert tally.items("val") == []
    restored = BadSampleTally()
    restored.restore(tally.state())
    assert restored.by_split == tally.by_split


def test_tally_report_adds_the_manifest_lines_and_checks_the_cap():
    tally, checked = BadSampleTally(), []
    tally.record("train", [BadSample("too long", key="b")])
    manifest_line = BadSample("no text", manifest="train.jsonl", line=9)
    datamodule = SimpleNamespace(
        bad_samples={"train": SimpleNamespace(items=[manifest_line])},
        check_bad_fraction=lambda split, items: checked.append((split, items)),
    )
    metrics, report = tally.report(tally.final(datamodule))
    assert metrics == {"data/bad_samples_train": 2.0, "data/bad_samples_val": 0.0}
    assert report.startswith("[data] bad samples skipped: train 2, val 0") and "train.jsonl:9: no text" in report
    tally.check_fraction(datamodule, "train")
    assert checked == [("train", tally.items("train"))]


def test_resume_policy_refuses_a_changed_setting_and_keeps_a_new_lr(capsys):
    policy = ResumePolicy()
    with pytest.raises(ResumeConfigError, match="model.weight_decay"):
        policy.check_config({"weight_decay": 0.01}, {"weight_decay": 0.1}, "last.ckpt", announce=True)
    policy.check_config({"lr": 1e-4, "max_new_tokens": 8}, {"lr": 2e-4, "max_new_tokens": 16}, "last.ckpt", True)
    assert policy.lr_change == (1e-4, 2e-4)
    assert f"[resume] model.max_new_tokens 8 -> 16 ({APPLIED_ON_RESUME['max_new_tokens']})" in capsys.readouterr().out


def test_resume_policy_rescales_the_restored_optimizer_and_schedule():
    weight = torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.AdamW([weight], lr=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    trainer = SimpleNamespace(
        optimizers=[optimizer],
        lr_scheduler_configs=[SimpleNamespace(scheduler=scheduler)],
        is_global_zero=False,
        global_step=10,
    )
    policy = ResumePolicy()
    policy.lr_change = (1e-4, 3e-4)
    assert policy.apply_lr_change(trainer, 1e-4) == pytest.approx(3e-4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.5e-4)
    assert scheduler.base_lrs == [pytest.approx(3e-4)]
    assert policy.apply_lr_change(trainer, 3e-4) == 3e-4  # applied once
    policy.lr_change = (1e-4, 3e-4)
    assert policy.apply_lr_change(trainer, 5e-4) == 5e-4  # a stage at its own lr keeps it


def test_resume_policy_takes_this_ranks_random_states_only_for_the_same_world():
    policy = ResumePolicy()
    policy.take_rng_states([{"rank": 0}, {"rank": 1}], rank=1, world=2, announce=False)
    assert policy.rng == {"rank": 1}
    other = ResumePolicy()
    other.take_rng_states([{"rank": 0}], rank=0, world=2, announce=False)
    assert other.rng is None


def test_optimizer_settings_group_parameters_and_refuse_unknown_groups():
    with pytest.raises(ValueError, match=r"model.lr_multipliers: unknown group\(s\) \['decoder'\]"):
        OptimizerSettings(lr_multipliers={"decoder": 2.0})
    settings = OptimizerSettings(weight_decay=0.1, lr_multipliers={"adaptor": 10.0})
    matrix, bias = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))
    frozen = torch.nn.Parameter(torch.ones(2, 2), requires_grad=False)
    groups = settings.param_groups([("adaptor", "w", matrix), ("adaptor", "b", bias), ("llm", "w", frozen)], 1e-4)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in groups] == [
        ("adaptor", pytest.approx(1e-3), 0.1),
        ("adaptor_no_decay", pytest.approx(1e-3), 0.0),
    ]


def test_schedule_settings_refuse_an_unknown_scheduler():
    with pytest.raises(ValueError, match="model.scheduler must be"):
        ScheduleSettings(name="linear")
