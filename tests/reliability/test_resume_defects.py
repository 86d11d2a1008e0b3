"""Resume semantics (issue #25, defects 4, 5, 6, 14, 15, 24): a resume refuses, or applies, each changed setting and
never ignores one; Lightning's optimizer options are refused; the position and random states resume exactly."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from nano8k.commands import fit as fit_cli
from tests.reliability.runs import DEMO, demo_config

FIRST_STEPS = 4  # the first run stops here, mid-epoch (the demo corpus has more batches per epoch)
RUN = ["--preflight", "false"]


def _fit(config: Path, *args: str) -> None:
    fit_cli.main(["--config", str(config), *RUN, *args])


def _refusal(config: Path, capsys, *args: str) -> str:
    """stderr of a resume that must stop with one error line and exit status 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        _fit(config, "--trainer.max_steps", str(FIRST_STEPS + 2), "--ckpt_path", "last", *args)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny-model demo run stopped after FIRST_STEPS steps; its last.ckpt sits mid-epoch. Only refused resumes
    use it, so it is never written again."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trained")
    config = demo_config(root, trainer={"max_steps": FIRST_STEPS})
    _fit(config)
    assert (root / "ckpt" / "last.ckpt").exists()
    return Path(shutil.copy(config, root / "base.yaml"))  # each fit saves its own config as root/config.yaml


@pytest.mark.parametrize(
    ("key", "value", "listed"),
    [
        ("frontend_sample_rate", "8000", "data.frontend_sample_rate: checkpoint 16000 -> now 8000"),
        ("system_prompt", "null", "data.system_prompt: checkpoint 'You are a helpful assistant.' -> now None"),
    ],
)
def test_4_a_changed_feeding_setting_is_refused_naming_old_and_new(trained, capsys, key, value, listed):
    err = _refusal(trained, capsys, f"--data.{key}", value)
    assert "cannot resume from" in err and "last.ckpt" in err
    assert listed in err, err


def test_5_another_model_folder_is_refused_naming_its_feeding(trained, capsys):
    err = _refusal(trained, capsys, "--model.model_dir", "mini")  # mini: all_frames, self-pretrained; tiny is not
    assert "model.model_dir's feeding audio_tokens: checkpoint 'low_frame_rate' -> now 'all_frames'" in err, err
    assert "model.model_dir's feeding weights: checkpoint 'random-init' -> now 'self-pretrained'" in err, err
    assert "model.model_dir 'mini' is another model than the checkpoint's ('tiny')" in err, err


def test_6_lightning_optimizer_options_are_refused_and_not_offered(trained, capsys):
    for args in (["--optimizer", "torch.optim.SGD", "--optimizer.lr", "0.5"], ["--lr_scheduler=ConstantLR"]):
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            _fit(trained, "--trainer.max_steps", "1", *args)
        err = capsys.readouterr().err
        assert stop.value.code == 2, err
        assert "not an option of nano8k fit" in err and "model.lr, model.weight_decay" in err, err
        assert "model.warmup_steps" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as stop:
        fit_cli.main(["--config", str(trained), "--help"])
    assert stop.value.code == 0
    assert "--optimizer" not in capsys.readouterr().out


def test_14_another_training_set_mid_epoch_is_refused_naming_both(trained, capsys, tmp_path):
    fewer = tmp_path / "fewer.jsonl"
    rows = [json.loads(line) for line in (DEMO / "train.jsonl").read_text().splitlines()[:100]]
    fewer.write_text("".join(json.dumps({**row, "source": str(DEMO / row["source"])}) + "\n" for row in rows))
    err = _refusal(trained, capsys, "--data.train_manifests", str(fewer))
    assert f"{FIRST_STEPS} batches into epoch 0" in err and "belongs to another epoch plan" in err, err
    assert "Checkpoint: 160 utterances from" in err and "train.jsonl" in err, err
    assert f"now: 100 utterances from {fewer}" in err, err
    assert "data.train_manifests" in err and "nano8k.average" in err


@pytest.fixture(scope="module")
def resumed_and_straight(tmp_path_factory):
    """The demo on the tiny model (encoder dropout 0.1, training) run 2 * FIRST_STEPS steps straight, and run
    FIRST_STEPS steps, then resumed from last.ckpt to the same step in a fit of its own; the resume's warnings."""
    torch.set_num_threads(1)
    straight_root, resumed_root = tmp_path_factory.mktemp("straight"), tmp_path_factory.mktemp("resumed")
    _fit(demo_config(straight_root, trainer={"max_steps": 2 * FIRST_STEPS}))
    config = demo_config(resumed_root, trainer={"max_steps": FIRST_STEPS})
    _fit(config)
    shutil.copy(resumed_root / "ckpt" / "last.ckpt", resumed_root / "interrupted.ckpt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(config, "--trainer.max_steps", str(2 * FIRST_STEPS), "--ckpt_path", "last")
    return straight_root / "ckpt" / "last.ckpt", resumed_root, [str(w.message) for w in caught]


def test_15_a_mid_epoch_resume_is_resumable_in_lightnings_sense(resumed_and_straight):
    _, resumed_root, messages = resumed_and_straight
    assert not [m for m in messages if "not resumable" in m], messages
    loops = torch.load(resumed_root / "interrupted.ckpt", map_location="cpu", weights_only=True)["loops"]
    position = loops["fit_loop"]["state_dict"]["combined_loader"][0]  # the training loader's own state
    assert (position["epoch"], position["batches_consumed"]) == (0, FIRST_STEPS)


def test_24_a_resume_with_dropout_reaches_the_uninterrupted_weights_exactly(resumed_and_straight):
    straight_ckpt, resumed_root, _ = resumed_and_straight
    straight = torch.load(straight_ckpt, map_location="cpu", weights_only=True)
    resumed = torch.load(resumed_root / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert straight["global_step"] == resumed["global_step"] == 2 * FIRST_STEPS
    interrupted = torch.load(resumed_root / "interrupted.ckpt", map_location="cpu", weights_only=True)
    assert any(not torch.equal(interrupted["state_dict"][k], v) for k, v in straight["state_dict"].items())
    differing = [
        key for key, value in straight["state_dict"].items() if not torch.equal(value, resumed["state_dict"][key])
    ]
    assert not differing, differing[:5]
