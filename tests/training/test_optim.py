"""AdamW kernels: fused, foreach and per-tensor give the same update; a fused step skips on the device; clipping."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from nano8k.training.freezing import FreezeConfig
from nano8k.training.module import NanoASRModule
from nano8k.training.optim import adamw_impl, build_adamw
from tests.training.scripts.synthetic import SyntheticDataModule


def _train(impl: str, steps: int = 6) -> tuple[list[torch.Tensor], torch.optim.AdamW]:
    torch.manual_seed(0)
    layers = [torch.nn.Linear(16, 32), torch.nn.Linear(32, 8)]
    groups = [
        {"params": [layer.weight for layer in layers], "weight_decay": 0.1, "lr": 3e-3},
        {"params": [layer.bias for layer in layers], "weight_decay": 0.0, "lr": 6e-3},
    ]
    optimizer = build_adamw(groups, 1e-3, (0.9, 0.98), impl)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        inputs = torch.randn(4, 16, generator=generator)
        loss = layers[1](torch.tanh(layers[0](inputs))).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return [p.detach().clone() for group in optimizer.param_groups for p in group["params"]], optimizer


def test_fused_foreach_and_for_loop_give_the_same_update():
    reference, optimizer = _train("for_loop")
    assert adamw_impl(optimizer) == "for_loop"
    for impl in ("fused", "foreach", "auto"):
        weights, optimizer = _train(impl)
        assert adamw_impl(optimizer) == ("fused" if impl == "auto" else impl)  # the CPU has the fused kernel
        for got, want in zip(weights, reference):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="auto, fused, foreach or for_loop"):
        build_adamw([{"params": [torch.nn.Parameter(torch.zeros(1))]}], 1e-3, (0.9, 0.999), "apex")


def test_a_fused_step_with_found_inf_leaves_weights_and_state_alone():
    weights, optimizer = _train("fused", steps=2)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = {id(p): {k: v.clone() for k, v in optimizer.state[p].items()} for p in params}
    for param in params:
        param.grad = torch.full_like(param, float("nan"))
    optimizer.found_inf = torch.ones(())
    optimizer.step()
    del optimizer.found_inf
    assert all(torch.equal(p, w) for p, w in zip(params, weights))
    assert all(torch.equal(optimizer.state[p][k], v) for p in params for k, v in state[id(p)].items())


def test_fused_adamw_is_clipped_under_bf16_mixed():
    """Lightning refuses to clip for a fused optimizer under mixed precision; the module clips it itself."""
    module = NanoASRModule(
        "tiny",
        freeze=FreezeConfig(encoder=False, adaptor=False, llm=True),
        lr=1e-3,
        scheduler="constant",
        warmup_steps=0,
    )
    clip, norms = module.configure_gradient_clipping, []

    def clipped(optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        clip(optimizer, gradient_clip_val, gradient_clip_algorithm)
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    module.configure_gradient_clipping = clipped
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        precision="bf16-mixed",
        gradient_clip_val=1e-3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=SyntheticDataModule(n_train=4, batch_size=2))
    assert adamw_impl(trainer.optimizers[0]) == "fused"
    assert len(norms) == 2 and all(norm <= 1e-3 * (1 + 1e-3) for norm in norms)


def test_a_resume_steps_with_the_configured_kernel(tmp_path):
    """A checkpoint's optimizer state carries its kernel flags; the resumed run uses model.optimizer_impl."""

    def fit(impl: str, steps: int, ckpt: str | None = None) -> L.Trainer:
        module = NanoASRModule(
            "tiny",
            freeze=FreezeConfig(encoder=True, adaptor=False, llm=True),
            lr=1e-3,
            scheduler="constant",
            warmup_steps=0,
            optimizer_impl=impl,
        )
        trainer = L.Trainer(
            accelerator="cpu",
            max_steps=steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
        )
        trainer.fit(module, datamodule=SyntheticDataModule(n_train=8, batch_size=2), ckpt_path=ckpt)
        return trainer

    first = fit("for_loop", 2)
    first.save_checkpoint(tmp_path / "for_loop.ckpt")
    resumed = fit("auto", 4, str(tmp_path / "for_loop.ckpt"))
    optimizer = resumed.optimizers[0]
    assert adamw_impl(optimizer) == "fused" and resumed.global_step == 4
    steps = [state["step"] for state in optimizer.state.values()]
    assert steps and all(float(step) == 4 and step.dtype == torch.float32 for step in steps)
