"""NanoASRModule: freezing, per-module counts, LoRA train/merge, NaN skipping, optimizer groups, schedules."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from nano8k.errors import ConfigError
from nano8k.model.convert import parameter_counts
from nano8k.model.locate import MODEL_DIR_ENV, resolve_model_dir
from nano8k.training.freezing import FreezeConfig, LoraConfig, frozen_submodules
from nano8k.training.module import NanoASRModule
from nano8k.training.optim import cosine_factor, warmuplr_factor
from tests.training.scripts.synthetic import SyntheticDataModule, make_batch


def make_trainer(steps: int, **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        **kwargs,
    )


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


class ModeSpy(Callback):
    """Records, at every training batch, which frozen submodules were in train mode."""

    def __init__(self) -> None:
        self.offenders: list[str] = []
        self.batches = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches += 1
        self.offenders += [type(m).__name__ for m in frozen_submodules(pl_module.model) if m.training]


def test_frozen_parts_stay_bit_identical_and_in_eval_mode():
    module = NanoASRModule(
        "tiny",
        freeze=FreezeConfig(encoder=False, adaptor=True, llm=True, encoder_frozen_layers=2),
        lr=1e-2,
        weight_decay=0.1,
        scheduler="constant",
        warmup_steps=0,
    )
    model = module.model
    before = {
        "frozen_layers": snapshot(model.encoder.layers[:2]),
        "adaptor": snapshot(model.adaptor),
        "llm": snapshot(model.llm),
        "trained_layer": snapshot(model.encoder.layers[2]),
    }
    spy = ModeSpy()
    make_trainer(3, callbacks=[spy]).fit(module, datamodule=SyntheticDataModule(n_train=6, batch_size=2))
    assert spy.batches == 3 and spy.offenders == []
    for part in ("frozen_layers", "adaptor", "llm"):
        source = {"frozen_layers": model.encoder.layers[:2], "adaptor": model.adaptor, "llm": model.llm}[part]
        for name, param in source.named_parameters():
            assert torch.equal(param, before[part][name]), f"{part}.{name} changed"
    changed = [
        n for n, p in model.encoder.layers[2].named_parameters() if not torch.equal(p, before["trained_layer"][n])
    ]
    assert changed, "the first unfrozen encoder layer did not train"


def test_trainable_counts_per_module():
    module = NanoASRModule("tiny", freeze=FreezeConfig(encoder=False, adaptor=False, llm=False))
    totals = parameter_counts(module.model.network)
    assert module.trainable == {**totals, "lora": 0}
    counts = module.set_stage(FreezeConfig(encoder=True, adaptor=False, llm=True))
    assert counts == {"encoder": 0, "adaptor": totals["adaptor"], "llm": 0, "lora": 0}
    first = sum(p.numel() for p in module.model.encoder.layers[0].parameters())
    counts = module.set_stage(FreezeConfig(encoder=False, adaptor=True, llm=True, encoder_frozen_layers=1))
    assert counts["encoder"] == totals["encoder"] - first
    with pytest.raises(ValueError, match="encoder_frozen_layers=99"):
        module.set_stage(FreezeConfig(encoder=False, encoder_frozen_layers=99))
    with pytest.raises(ValueError, match="no trainable parameter"):
        module.set_stage(FreezeConfig(encoder=True, adaptor=True, llm=True))


def test_lora_trains_only_adapters_and_merges_to_released_keys():
    plain_keys = list(NanoASRModule("tiny").model.network.state_dict())
    module = NanoASRModule(
        "tiny",
        freeze=FreezeConfig(encoder=True, adaptor=True, llm=False),
        lora=LoraConfig(r=4, alpha=8, dropout=0.0),
        lr=1e-2,
        scheduler="constant",
        warmup_steps=0,
    )
    assert module.trainable["lora"] > 0 and module.trainable["llm"] == 0
    assert module.trainable["encoder"] == module.trainable["adaptor"] == 0
    base = {n: p.detach().clone() for n, p in module.model.network.named_parameters() if "lora_" not in n}
    lora_b = {n: p.detach().clone() for n, p in module.model.network.named_parameters() if "lora_B" in n}
    make_trainer(3).fit(module, datamodule=SyntheticDataModule(n_train=6, batch_size=2))
    params = dict(module.model.network.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in base.items()), "a base weight changed under LoRA"
    assert any(not torch.equal(params[n], v) for n, v in lora_b.items()), "LoRA adapters did not train"

    batch = make_batch(2, seed=3)
    module.eval()
    with torch.no_grad():
        adapted = module.model(batch, all_logits=True).logits
        module.merge_lora()
        merged = module.model(batch, all_logits=True).logits
    assert list(module.model.network.state_dict()) == plain_keys
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(
        merged, NanoASRModule("tiny").eval().model(batch, all_logits=True).logits.detach(), atol=1e-4
    )


class NaNAt(Callback):
    """Makes the loss non-finite on the given (0-based) training batch indices."""

    def __init__(self, batches: set[int]) -> None:
        self.batches = batches
        self.params_at_nan: list[tuple[dict, int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx in self.batches:
            batch.labels = batch.labels.clone()
            batch.feats = batch.feats * float("nan")
            self.params_at_nan.append((snapshot(pl_module.model.adaptor), batch_idx))


def test_nonfinite_loss_is_skipped_and_counted():
    module = NanoASRModule(
        "tiny",
        freeze=FreezeConfig(encoder=True, adaptor=False, llm=True),
        lr=1e-2,
        scheduler="constant",
        warmup_steps=0,
        max_consecutive_nonfinite=3,
    )
    spy = NaNAt({1, 2})
    make_trainer(5, callbacks=[spy]).fit(module, datamodule=SyntheticDataModule(n_train=16, batch_size=2))
    assert module.guard.nonfinite_steps == 2 and module.guard.consecutive_nonfinite == 0
    assert all(torch.isfinite(p).all() for p in module.model.parameters())
    # the weights after the skipped batch 1 equal those before it (no update from a NaN step)
    (before_1, _), (before_2, _) = spy.params_at_nan
    assert all(torch.equal(before_1[n], before_2[n]) for n in before_1)


@pytest.mark.parametrize("interval, bad, run, seen", [(1, {1, 2, 3}, 2, 2), (4, {1, 2, 3}, 3, 3), (4, {1, 2}, 2, 2)])
def test_consecutive_nonfinite_losses_stop_training(interval, bad, run, seen):
    """The host reads the device's counters once per logging interval: the run stops at the first read after the
    limit (batch 2 with an interval of 1; batch 3, the end of the first interval of 4), also when the run of
    non-finite losses ended before that read."""
    module = NanoASRModule("tiny", freeze=FreezeConfig(), lr=1e-3, max_consecutive_nonfinite=2)
    trainer = make_trainer(6, callbacks=[NaNAt(bad)], log_every_n_steps=interval)
    with pytest.raises(RuntimeError, match=f"{run} consecutive non-finite losses"):
        trainer.fit(module, datamodule=SyntheticDataModule(n_train=16, batch_size=2))
    assert module.guard.nonfinite_steps == seen and trainer.global_step == (3 if interval == 1 else 4)


def test_param_groups_lr_multipliers_and_no_decay():
    module = NanoASRModule(
        "tiny",
        freeze=FreezeConfig(encoder=False, adaptor=False, llm=False),
        lr=1e-3,
        weight_decay=0.05,
        lr_multipliers={"llm": 0.1},
        weight_decay_overrides={"encoder": 0.2},
    )
    groups = {g["name"]: g for g in module.param_groups()}
    assert set(groups) == {f"{n}{s}" for n in ("encoder", "adaptor", "llm") for s in ("", "_no_decay")}
    assert groups["llm"]["lr"] == pytest.approx(1e-4) and groups["adaptor"]["lr"] == pytest.approx(1e-3)
    assert groups["encoder"]["weight_decay"] == 0.2 and groups["adaptor"]["weight_decay"] == 0.05
    assert all(
        g["weight_decay"] == 0.0 and all(p.ndim < 2 for p in g["params"])
        for name, g in groups.items()
        if name.endswith("_no_decay")
    )
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    assert {id(p) for g in groups.values() for p in g["params"]} == trainable
    module.set_stage(FreezeConfig(), lr=5e-4)
    assert {g["name"]: g["lr"] for g in module.param_groups()} == {"adaptor": 5e-4, "adaptor_no_decay": 5e-4}
    with pytest.raises(ValueError, match="unknown group"):
        NanoASRModule("tiny", lr_multipliers={"decoder": 1.0})


def test_warmuplr_matches_reference_formula():
    w = 2500
    factor = warmuplr_factor(w)
    for step in (0, 99, w - 1, w, 4 * w - 1, 10 * w):
        t = step + 1
        assert factor(step) == pytest.approx(w**0.5 * min(t**-0.5, t * w**-1.5), rel=1e-12)
    assert factor(w - 1) == pytest.approx(1.0)  # peak at t = w
    assert factor(4 * w - 1) == pytest.approx(0.5)  # 1/sqrt(t/w) decay
    cos = cosine_factor(10, 110, min_ratio=0.1)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert cos(110) == pytest.approx(0.1) and cos(500) == pytest.approx(0.1)


def test_scheduler_steps_per_optimizer_step_with_bf16_and_checkpointing():
    module = NanoASRModule(
        "tiny",
        lr=1e-3,
        scheduler="warmuplr",
        warmup_steps=4,
        gradient_checkpointing=True,
        freeze=FreezeConfig(encoder=False, adaptor=False, llm=False),
    )
    assert module.model.network.is_gradient_checkpointing
    trainer = make_trainer(3, accumulate_grad_batches=2, precision="bf16-mixed")
    trainer.fit(module, datamodule=SyntheticDataModule(n_train=16, batch_size=2))
    assert trainer.global_step == 3
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-3 * warmuplr_factor(4)(3))
    assert all(p.dtype == torch.float32 for p in module.parameters() if p.requires_grad)


def test_model_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    with pytest.raises(ValueError, match=MODEL_DIR_ENV):
        resolve_model_dir(None)
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    assert resolve_model_dir(None) == tmp_path
    with pytest.raises(ConfigError, match="nowhere"):
        resolve_model_dir(str(tmp_path / "nowhere"))
