"""Freezing of encoder / first-N encoder layers / adaptor / LLM, LoRA on the LLM, trainable-parameter counts."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

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


def trainable_counts(model: NanoASR) -> dict[str, int]:
    """Trainable parameters per group (encoder, adaptor, llm, lora)."""
    counts = dict.fromkeys(GROUPS, 0)
    for group, _, param in named_group_parameters(model):
        if param.requires_grad:
            counts[group] += param.numel()
    return counts


def apply_freezing(model: NanoASR, cfg: FreezeConfig) -> dict[str, int]:
    """Set ``requires_grad`` per ``cfg`` (LoRA adapters always trainable, LLM base frozen when adapters exist).

    Returns the trainable parameters per group and puts fully frozen parts in eval mode.
    """
    layers = model.encoder.layers
    if cfg.encoder_frozen_layers > len(layers):
        raise ValueError(
            f"freeze.encoder_frozen_layers={cfg.encoder_frozen_layers} but the encoder has {len(layers)} layers"
        )
    has_lora = any(is_lora_name(name) for name, _ in model.llm.named_parameters())
    frozen_layer_params = {id(p) for layer in layers[: cfg.encoder_frozen_layers] for p in layer.parameters()}
    for group, _, param in named_group_parameters(model):
        if group == "lora":
            trainable = True
        elif group == "encoder":
            trainable = not cfg.encoder and id(param) not in frozen_layer_params
        elif group == "adaptor":
            trainable = not cfg.adaptor
        else:
            trainable = not cfg.llm and not has_lora
        param.requires_grad_(trainable)
    if has_lora and not cfg.llm:
        log.info("LoRA is on: the LLM base weights stay frozen, only the adapters train")
    set_frozen_eval(model)
    counts = trainable_counts(model)
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
