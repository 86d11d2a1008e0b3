"""Freezing of encoder / first-N encoder layers / adaptor / LLM, LoRA on the LLM, trainable-parameter counts."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import nn

from nano8k.model.nano import NanoASR

if TYPE_CHECKING:
    from peft.tuners.lora import LoraModel

log = logging.getLogger(__name__)

GROUPS = ("encoder", "adaptor", "llm", "lora")


@dataclass
class FreezeConfig:
    """Which parts get no gradients; ``encoder_frozen_layers`` freezes only the first N encoder layers."""

    encoder: bool = True
    adaptor: bool = False
    llm: bool = True
    encoder_frozen_layers: int = 0

    def __post_init__(self) -> None:
        if self.encoder_frozen_layers < 0:
            raise ValueError(f"freeze.encoder_frozen_layers must be >= 0, got {self.encoder_frozen_layers}")


def default_stage1_freeze() -> FreezeConfig:
    """Stage 1's default freezing (encoder adaptation): the encoder trains, adaptor and LLM stay frozen."""
    return FreezeConfig(encoder=False, adaptor=True, llm=True)


@dataclass
class LoraConfig:
    """LoRA adapters on the LLM (peft); the LLM base weights are then frozen whatever ``FreezeConfig.llm`` says."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


def llm_modules(model: NanoASR) -> nn.ModuleList:
    """The LLM body and its head (tied to the embeddings in the release)."""
    return nn.ModuleList([model.llm, model.network.lm_head])


def is_lora_name(name: str) -> bool:
    return "lora_" in name


def named_group_parameters(model: NanoASR) -> Iterator[tuple[str, str, nn.Parameter]]:
    """(group, name, parameter) for every unique parameter; LoRA adapter weights form the group ``lora``."""
    seen: set[int] = set()
    groups = {"encoder": model.encoder, "adaptor": model.adaptor, "llm": llm_modules(model)}
    for group, module in groups.items():
        for name, param in module.named_parameters():
            if id(param) in seen:
                continue
            seen.add(id(param))
            yield ("lora" if is_lora_name(name) else group), name, param


def is_trainable(group: str, layer: int | None, cfg: FreezeConfig, lora: bool) -> bool:
    """The freezing rule for a parameter of ``group`` (``layer``: its encoder layer index, None outside the layers).

    LoRA adapters always train; the LLM base only when unfrozen and without adapters (``lora``); the first
    ``cfg.encoder_frozen_layers`` encoder layers never.
    """
    if group == "lora":
        return True
    if group == "encoder":
        return not cfg.encoder and (layer is None or layer >= cfg.encoder_frozen_layers)
    if group == "adaptor":
        return not cfg.adaptor
    return not cfg.llm and not lora


def trainable_counts(sizes: Sequence[tuple[str, int | None, int]], cfg: FreezeConfig, lora: bool) -> dict[str, int]:
    """Trainable parameters per group (encoder, adaptor, llm, lora) under ``cfg``, by ``is_trainable``.

    ``sizes``: (group, encoder layer index or None, parameter count) of every parameter (or part: a meta-device
    shape serves as well as a live model). Raises ValueError when ``cfg`` freezes more encoder layers than there are.
    """
    layers = len({layer for _, layer, _ in sizes if layer is not None})
    if cfg.encoder_frozen_layers > layers:
        raise ValueError(
            f"freeze.encoder_frozen_layers={cfg.encoder_frozen_layers} but the encoder has {layers} layers"
        )
    counts = dict.fromkeys(GROUPS, 0)
    for group, layer, numel in sizes:
        if is_trainable(group, layer, cfg, lora):
            counts[group] += numel
    return counts


def apply_freezing(model: NanoASR, cfg: FreezeConfig) -> dict[str, int]:
    """Set ``requires_grad`` per ``cfg`` (LoRA adapters always trainable, LLM base frozen when adapters exist).

    Returns the trainable parameters per group and puts fully frozen parts in eval mode.
    """
    layer_of = {id(p): i for i, layer in enumerate(model.encoder.layers) for p in layer.parameters()}
    params = [(group, layer_of.get(id(param)), param) for group, _, param in named_group_parameters(model)]
    has_lora = any(group == "lora" for group, _, _ in params)
    counts = trainable_counts([(group, layer, p.numel()) for group, layer, p in params], cfg, has_lora)
    for group, layer, param in params:
        param.requires_grad_(is_trainable(group, layer, cfg, has_lora))
    if has_lora and not cfg.llm:
        log.info("LoRA is on: the LLM base weights stay frozen, only the adapters train")
    set_frozen_eval(model)
    if not any(counts.values()):
        raise ValueError(f"freezing {cfg} leaves no trainable parameter; unfreeze a part or enable LoRA")
    return counts


def frozen_submodules(model: NanoASR) -> list[nn.Module]:
    """Encoder, each encoder layer, adaptor and LLM when none of their parameters train."""
    candidates = [model.encoder, *model.encoder.layers, model.adaptor, model.llm]
    return [m for m in candidates if not any(p.requires_grad for p in m.parameters())]


def set_frozen_eval(model: NanoASR) -> None:
    """Put fully frozen parts in eval mode (no dropout); call after every ``train()``."""
    for module in frozen_submodules(model):
        module.eval()


def add_lora(model: NanoASR, cfg: LoraConfig) -> LoraModel:
    """Inject peft LoRA adapters into the LLM in place; returns the peft ``LoraModel`` tuner (for merging)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import LoraModel

    peft_cfg = PeftLoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.target_modules), bias="none"
    )
    try:
        return LoraModel(model.llm, peft_cfg, "default")
    except ValueError as err:
        raise ValueError(f"lora.target_modules={cfg.target_modules}: {err}") from err


def merge_lora(model: NanoASR, tuner: LoraModel) -> None:
    """Merge the adapters into the LLM weights and remove them, restoring the released key set."""
    merged = tuner.merge_and_unload()
    if merged is not model.llm:  # merge_and_unload edits in place and returns the same module
        model.network.model.language_model = merged
