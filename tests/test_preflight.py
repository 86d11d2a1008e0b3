"""nano8k.preflight: the demo config passes; every check fails on a crafted bad config or manifest, saying the fix."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from nano8k.checks import CHECKS, PreflightError, enforce, run_preflight
from nano8k.commands.preflight import main
from nano8k.model.bundled import tiny_model_dir
from nano8k.training.config import layered_config

ROOT = Path(__file__).resolve().parent.parent
DEMO = layered_config(ROOT / "configs" / "demo.yaml")  # with its base: a config that stands alone


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(ROOT)  # the configs' manifest paths are relative to the repository root


def only(name: str, config: dict, **kwargs):
    results = run_preflight(config, skip=[c for c in CHECKS if c != name], **kwargs)
    assert [r.name for r in results] == [name]
    return results[0]


def edit(**changes) -> dict:
    """The demo config with dotted-key changes."""
    config = copy.deepcopy(DEMO)
    for key, value in changes.items():
        node = config
        *parents, last = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return config


def manifest(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def wav(path: Path, rate: int, seconds: float = 1.0) -> Path:
    sf.write(path, (0.1 * np.sin(np.arange(int(rate * seconds)) * 0.05)).astype(np.float32), rate)
    return path


def test_demo_config_passes_and_cli_exit_codes(tmp_path, capsys):
    results = run_preflight(ROOT / "configs" / "demo.yaml")
    assert [r.name for r in results] == list(CHECKS)
    assert not [r for r in results if r.status == "fail"], [r.line() for r in results]
    assert main(["configs/demo.yaml"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(edit(model__lr=0.5)))
    assert main([str(bad)]) == 1
    assert "[FAIL] schedule" in capsys.readouterr().out
    with pytest.raises(PreflightError):
        enforce(str(bad), print_fn=lambda _: None)
    enforce(str(bad), skip=["schedule"], print_fn=lambda _: None)


def test_model_dir_missing(tmp_path):
    r = only("model_dir", edit(model__model_dir=str(tmp_path / "nope")))
    assert r.status == "fail" and "model.model_dir" in r.message and "directory not found" in r.message


def test_model_dir_incomplete(tmp_path):
    shutil.copytree(tiny_model_dir(), tmp_path / "m")
    (tmp_path / "m" / "model.pt").unlink()
    r = only("model_dir", edit(model__model_dir=str(tmp_path / "m")))
    assert r.status == "fail" and "model.pt" in r.message


def test_frontend_rate(tmp_path):
    r = only("frontend", edit(data__frontend_sample_rate=12000))
    assert r.status == "fail" and "data.frontend_sample_rate" in r.message
    frozen = edit(data__frontend_sample_rate=8000, model__freeze={"encoder": True, "adaptor": False, "llm": True})
    r = only("frontend", frozen)
    assert r.status == "fail" and "encoder is frozen" in r.message and "model.freeze.encoder false" in r.message
    r = only("frontend", edit(data__frontend_sample_rate=8000))
    assert r.status == "warn" and "native 8000 Hz" in r.message


def test_dims_mismatch(tmp_path):
    shutil.copytree(tiny_model_dir(), tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["audio_adaptor_conf"]["llm_dim"] = 1536
    cfg_path.write_text(yaml.safe_dump(cfg))
    r = only("dims", edit(model__model_dir=str(tmp_path / "m")))
    assert r.status == "fail" and "audio_adaptor_conf.llm_dim=1536" in r.message and "config.yaml" in r.message


def test_manifest_bad_entry(tmp_path):
    good = json.loads((ROOT / "data_manifests/demo/train.jsonl").read_text().splitlines()[0])
    good["source"] = str(ROOT / "data_manifests/demo" / good["source"])
    rows = [good, {"key": "ghost", "source": str(tmp_path / "ghost.wav"), "target": "hello", "duration": 1.0}]
    cfg = edit(data__train_manifests=manifest(tmp_path / "train.jsonl", rows))
    r = only("manifests", cfg)
    assert r.status == "fail" and "ghost.wav" in r.message and "on_bad_sample" in r.message
    cfg["data"].update(on_bad_sample="skip", max_bad_fraction=0.6)
    assert only("manifests", cfg).status == "warn"


def test_train_val_overlap():
    r = only("overlap", edit(data__val_manifests=DEMO["data"]["train_manifests"]))
    assert r.status == "fail" and "also in train" in r.message and "data.val_manifests" in r.message


def test_before_after_manifest_is_checked_as_the_test_split():
    config = edit()
    callback = next(c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("BeforeAfterEvaluation"))
    callback["init_args"]["manifest"] = DEMO["data"]["train_manifests"]  # "held-out" voices that train
    r = only("overlap", config)
    assert (
        r.status == "fail" and "test: " in r.message and "trainer.callbacks.BeforeAfterEvaluation.manifest" in r.message
    )
    callback["init_args"]["manifest"] = "data_manifests/nope.jsonl"
    r = only("manifests", config)
    assert r.status == "fail" and "nope.jsonl" in r.message and "BeforeAfterEvaluation.manifest" in r.message


def test_sample_rate_below_telephone_band(tmp_path):
    rows = [{"key": "low", "source": str(wav(tmp_path / "low.wav", 4000)), "target": "hi", "duration": 1.0}]
    r = only("sample_rates", edit(data__train_manifests=manifest(tmp_path / "t.jsonl", rows)))
    assert r.status == "fail" and "4000" in r.message and "data.train_manifests" in r.message


def test_sample_rate_wideband_without_channel_warns(tmp_path):
    rows = [{"key": "wide", "source": str(wav(tmp_path / "w.wav", 16000)), "target": "hi", "duration": 1.0}]
    r = only("sample_rates", edit(data__train_manifests=manifest(tmp_path / "t.jsonl", rows)))
    assert r.status == "warn" and "data.telephone" in r.message


def test_trainable_nothing():
    r = only("trainable", edit(model__freeze={"encoder": True, "adaptor": True, "llm": True}))
    assert r.status == "fail" and "freezes everything" in r.message and "model.lora" in r.message
    r = only(
        "trainable", edit(model__freeze={"encoder": False, "adaptor": True, "llm": True, "encoder_frozen_layers": 99})
    )
    assert r.status == "fail" and "encoder_frozen_layers" in r.message


def test_trainable_counts_match_the_module_freezing():
    from nano8k.model.checkpoint import load_pretrained
    from nano8k.training.freezing import FreezeConfig, apply_freezing

    freeze = {"encoder": False, "adaptor": True, "llm": True, "encoder_frozen_layers": 2}
    r = only("trainable", edit(model__freeze=freeze))
    counts = apply_freezing(load_pretrained(tiny_model_dir()), FreezeConfig(**freeze))
    assert r.status == "pass" and f"encoder {counts['encoder']:,}," in r.message and "adaptor 0" in r.message


def test_schedule_warmup_longer_than_run():
    r = only("schedule", edit(model__warmup_steps=100000))  # a legal run (a smoke run, say): warned, not refused
    assert r.status == "warn" and "model.warmup_steps=100000" in r.message and "never reaches" in r.message
    assert only("schedule", edit(model__lr=0.5)).status == "fail"


def test_schedule_sizes_step_bounded_and_endless_runs():
    bounded = only("schedule", edit(trainer__max_epochs=-1, trainer__max_steps=40, model__warmup_steps=2))
    assert bounded.status == "pass" and "~40 optimizer steps (trainer.max_steps=40)" in bounded.message
    endless = only("schedule", edit(trainer__max_epochs=-1, trainer__max_steps=-1))
    assert endless.status == "fail" and "never ends" in endless.message


def _with_weights(tmp_path, weights: str | None) -> str:
    """A copy of the tiny model whose recipe record names ``weights`` (None: no record, i.e. the release)."""
    target = tmp_path / f"m-{weights}"
    shutil.copytree(tiny_model_dir(), target)
    config = yaml.safe_load((target / "config.yaml").read_text())
    config.pop("nano8k")
    if weights is not None:
        config["nano8k"] = {"weights": weights}
    (target / "config.yaml").write_text(yaml.safe_dump(config))
    return str(target)


def test_tuning_advice_full_llm_on_little_data(tmp_path):
    full = {"encoder": False, "adaptor": False, "llm": False}
    r = only("tuning_advice", edit(model__model_dir=_with_weights(tmp_path, None), model__freeze=full))  # no record
    assert r.status == "fail" and "10,000 h" in r.message and "model.freeze.llm true" in r.message
    release = edit(model__model_dir=_with_weights(tmp_path, "release"), model__freeze=full)
    assert only("tuning_advice", release).status == "fail"


def test_tuning_advice_reads_the_weight_lineage_not_the_name(tmp_path):
    for weights in ("random-init", "self-pretrained"):
        full = {"encoder": False, "adaptor": False, "llm": False}
        r = only("tuning_advice", edit(model__model_dir=_with_weights(tmp_path, weights), model__freeze=full))
        assert r.status == "pass" and f"{weights} weights" in r.message and "not applied" in r.message


def test_memory_over_gpu():
    cfg = edit(trainer__accelerator="gpu", data__max_frames_per_batch=4000)
    r = only("memory", cfg, gpu_memory_gb=0.5)
    assert r.status == "fail" and "max_frames_per_batch" in r.message and "GiB" in r.message
    assert only("memory", cfg, gpu_memory_gb=80).status == "pass"


def test_memory_estimate_full_size_dims():
    """Parameter totals of a full-size meta build match the reference (§11) and scale the estimate."""
    from benchmarks.release_dims import release_funasr_config, release_qwen_config
    from nano8k.checks.memory import GIB, estimate_memory, model_shape
    from nano8k.model.checkpoint import build_network
    from nano8k.model.convert import build_config
    from nano8k.training.freezing import FreezeConfig, trainable_counts

    cfg, qwen = release_funasr_config(), release_qwen_config()
    shape = model_shape(build_network(build_config(cfg, qwen), device="meta"))
    assert (shape.encoder_params, shape.adaptor_params, shape.llm_params) == (221136992, 12604928, 596049920)
    sizes = shape.parameter_sizes()
    adaptor_only = trainable_counts(sizes, FreezeConfig(encoder=True, adaptor=False, llm=True), False)
    full = trainable_counts(sizes, FreezeConfig(encoder=False, adaptor=False, llm=False), False)
    small = estimate_memory(shape, adaptor_only, precision="bf16-mixed", llm_dtype="bf16")
    big = estimate_memory(shape, full, precision="bf16-mixed", llm_dtype="bf16")
    # full fine-tune: 16 B x 829.8M = 12.4 GiB of weights+optimizer state (peers.md §4: ~12.8 GB)
    assert big.parts["weights+optimizer"] == pytest.approx(829791840 * 16)
    assert small.total < big.total and 12 * GIB < big.parts["weights+optimizer"] < 13 * GIB


def test_precision_strategy():
    cfg = edit(trainer__strategy="fsdp")
    cfg["trainer"]["callbacks"].append(
        {"class_path": "nano8k.training.callbacks.StageSwitch", "init_args": {"stage1_steps": 5}}
    )
    r = only("precision", cfg)
    assert r.status == "fail" and "StageSwitch" in r.message and "trainer.strategy" in r.message
    assert only("precision", edit(trainer__precision="16-mixed")).status == "warn"


def test_wandb(monkeypatch):
    wandb = {
        "class_path": "lightning.pytorch.loggers.WandbLogger",
        "init_args": {"project": "nano8k", "offline": True, "log_model": True},
    }
    r = only("wandb", edit(trainer__logger=wandb))
    assert r.status == "fail" and "log_model" in r.message
    wandb["init_args"]["log_model"] = False
    r = only("wandb", edit(trainer__logger=wandb))
    assert r.status == "pass" and "offline" in r.message and "wandb sync" in r.message
    monkeypatch.setenv("WANDB_MODE", "bogus")
    assert only("wandb", edit(trainer__logger=wandb)).status == "fail"
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    wandb["init_args"]["offline"] = False
    r = only("wandb", edit(trainer__logger=wandb))
    assert r.status == "warn" and "WANDB_API_KEY" in r.message


def test_stage_switch_stages_are_checked():
    cfg = edit()
    cfg["trainer"]["callbacks"].append(
        {
            "class_path": "nano8k.training.callbacks.StageSwitch",
            "init_args": {
                "stage1_steps": 5,
                "stage1_freeze": {"encoder": True, "adaptor": False, "llm": True},
                "stage1_frontend_rate": 8000,
            },
        }
    )
    r = only("frontend", cfg)
    assert r.status == "fail" and "stage1" in r.message and "StageSwitch.stage1_frontend_rate" in r.message


def test_lightning_cli_namespace_and_troubleshooting_table():
    """``enforce`` takes the Namespace that nano8k.fit's LightningCLI parses (the call fit makes before training)."""
    from nano8k.checks import FIXES, troubleshooting_table
    from nano8k.data.pipeline.datamodule import TelephoneDataModule
    from nano8k.training.config import NanoCLI
    from nano8k.training.module import NanoASRModule

    cli = NanoCLI(
        NanoASRModule,
        TelephoneDataModule,
        run=False,
        args=["--config", "configs/demo.yaml"],
        save_config_kwargs={"overwrite": True},
    )
    lines = []
    results = enforce(cli.config, print_fn=lines.append)
    assert [r.name for r in results] == list(CHECKS) and "0 fail" in lines[0]
    assert set(FIXES) == set(CHECKS)
    table = troubleshooting_table()
    assert all(f"| `{name}` |" in table for name in CHECKS)


def test_model_checks_read_an_hf_export_and_a_remapped_llm_folder(tmp_path):
    """Preflight reads model dirs exactly as the loader does (stage 1 -> main starts from an HF export)."""
    from nano8k.model.checkpoint import export_hf, load_pretrained

    hf = export_hf(load_pretrained(tiny_model_dir()), tmp_path / "hf")
    remapped = tmp_path / "remapped"
    shutil.copytree(tiny_model_dir(), remapped)
    (remapped / "Qwen3-0.6B").rename(remapped / "llm")
    (remapped / "configuration.json").write_text(
        json.dumps({"file_path_metas": {"llm_conf": {"init_param_path": "llm"}}})
    )
    load_pretrained(remapped)  # the loader follows configuration.json
    for model_dir in (hf, remapped):
        config = edit(model__model_dir=str(model_dir))
        for check in ("model_dir", "dims", "trainable", "memory"):
            result = only(check, config)
            assert result.status != "fail", (model_dir.name, check, result.message)


def test_stereo_calls_segments_and_duplicates(tmp_path):
    t = np.arange(8000 * 6) / 8000
    call = tmp_path / "call.wav"
    sf.write(call, np.stack([0.1 * np.sin(900 * t), 0.1 * np.cos(700 * t)], 1).astype(np.float32), 8000)

    def seg(key, off, ch):
        return {
            "key": key,
            "source": str(call),
            "target": "hi",
            "offset": off,
            "duration": 1.0,
            "channel": ch,
        }

    train = manifest(
        tmp_path / "train.jsonl",
        [seg("a", 0.0, 0), seg("b", 2.0, 1), {"key": "whole", "source": str(call), "target": "both sides"}],
    )
    r = only("manifests", edit(data__train_manifests=train))
    assert r.status == "fail" and "call.wav has 2 channels and the utterance names none" in r.message
    assert "data.multichannel" in r.message
    cfg = edit(data__train_manifests=train, data__multichannel="first")
    assert only("manifests", cfg).status == "pass"
    cfg["data"]["train_manifests"] = manifest(tmp_path / "train.jsonl", [seg("a", 0.0, 0), seg("b", 2.0, 1)])
    cfg["data"]["val_manifests"] = manifest(tmp_path / "val.jsonl", [seg("v1", 4.0, 0)])
    r = only("overlap", cfg)  # another span of a training call: a leak of calls, not of audio
    assert r.status == "warn" and "other spans or channels of recordings also in train" in r.message
    cfg["data"]["val_manifests"] = manifest(tmp_path / "val.jsonl", [seg("v1", 0.5, 0), seg("v2", 0.5, 1)])
    r = only("overlap", cfg)
    assert r.status == "fail" and "1 utterances of the same audio also in train" in r.message
    cfg["data"]["train_manifests"] = manifest(tmp_path / "dup.jsonl", [seg("a", 0.0, 0), seg("a", 2.0, 1)])
    cfg["data"].update(on_bad_sample="skip", max_bad_fraction=1.0)
    r = only("manifests", cfg)
    assert "dup.jsonl:1: duplicate key 'a'" in r.message and "dup.jsonl:2: duplicate key 'a'" in r.message


def test_preflight_judges_the_config_fit_parses_before_anything_is_built(tmp_path, monkeypatch, capsys):
    """The checks see fit's parsed config (every default the classes' own), and speak before any class is built."""
    import inspect

    from nano8k.checks import make_context
    from nano8k.commands import fit
    from nano8k.training.callbacks import WEREvaluation
    from nano8k.training.config import NanoCLI, parse_config

    args = ["--config", "configs/telephone.yaml", "--model.lr", "1e-4", "--model.model_dir", "tiny"]
    ctx = make_context(parse_config(args))
    assert ctx.model.lr == 1e-4 and ctx.model.model_dir == "tiny"  # the overrides, as fit trains them
    default = inspect.signature(WEREvaluation).parameters["normalizer"].default
    assert "normalizer" not in (ROOT / "configs" / "demo.yaml").read_text()
    [(_, evaluation)] = make_context(ROOT / "configs" / "demo.yaml").callbacks("WEREvaluation")
    assert evaluation.normalizer == default

    def built(*_, **__):
        raise AssertionError("a class was instantiated before preflight spoke")

    monkeypatch.setattr(NanoCLI, "instantiate_classes", built)
    with pytest.raises(SystemExit) as stopped:
        fit.main(["--config", "configs/demo.yaml", "--model.model_dir", str(tmp_path / "nowhere")])
    assert stopped.value.code == 1
    out = capsys.readouterr()
    assert "[FAIL] model_dir" in out.out and "Traceback" not in out.out  # the checklist, not a stack, speaks first
