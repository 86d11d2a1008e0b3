"""Item 8 (fit and preflight): a wrong model_dir is named by preflight before any model is built; config and data
errors with --preflight false print one line naming the key or file (exit 2); preflight takes fit's overrides."""

from __future__ import annotations

import pytest

import nano8k.training.module as module_layer
from nano8k.commands import fit as fit_cli
from nano8k.commands import preflight
from tests.reliability.runs import REPO

DEMO = str(REPO / "configs" / "demo.yaml")


@pytest.fixture()
def no_model_built(monkeypatch):
    built = []
    real = module_layer.load_pretrained
    monkeypatch.setattr(module_layer, "load_pretrained", lambda *a, **k: built.append(a) or real(*a, **k))
    monkeypatch.chdir(REPO)
    return built


def _stop(args: list[str]) -> int:
    with pytest.raises(SystemExit) as stop:
        fit_cli.main(args)
    return stop.value.code


def test_wrong_model_dir_is_named_by_preflight_before_the_model_is_built(no_model_built, capsys):
    assert _stop(["--config", DEMO, "--model.model_dir", "/no/such/model"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] model_dir: " in out and "model.model_dir='/no/such/model': directory not found" in out
    assert no_model_built == []


def test_wrong_model_dir_without_preflight_is_one_line(no_model_built, capsys):
    assert _stop(["--config", DEMO, "--model.model_dir", "/no/such/model", "--preflight", "false"]) == 2
    assert "error: model.model_dir='/no/such/model'" in capsys.readouterr().err


def test_data_error_without_preflight_is_one_line(no_model_built, capsys):
    assert (
        _stop(
            [
                "--config",
                DEMO,
                "--data.train_manifests",
                "/no/such/train.jsonl",
                "--preflight",
                "false",
                "--trainer.max_steps",
                "1",
            ]
        )
        == 2
    )
    assert "error: manifest not found: /no/such/train.jsonl" in capsys.readouterr().err


def test_bad_data_setting_is_named_with_and_without_preflight(no_model_built, capsys):
    assert _stop(["--config", DEMO, "--data.frontend_sample_rate", "12000"]) == 1
    assert "[FAIL] data_settings: " in capsys.readouterr().out and no_model_built == []
    assert _stop(["--config", DEMO, "--data.max_frames_per_batch", "0", "--preflight", "false"]) == 2
    assert "error: data.max_frames_per_batch must be >= 1, got 0" in capsys.readouterr().err


def test_preflight_cli_takes_the_overrides_fit_takes(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert preflight.main([DEMO, "--model.model_dir", "/no/such/model", "--data.max_frames_per_batch", "300"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] model_dir: " in out and "/no/such/model" in out
    assert preflight.main([DEMO, "--model.warmup_steps", "1", "--skip", "wandb"]) == 0
    with pytest.raises(SystemExit) as stop:
        preflight.main([DEMO, "--no_such_flag"])
    assert stop.value.code == 2
