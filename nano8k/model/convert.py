"""Key and config mapping between the FunASR ``model.pt``/``config.yaml`` layout and transformers' FunAsrNano."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from transformers import FunAsrNanoConfig

ADAPTOR_LAYER_NORM_EPS = 1e-12  # reference adaptor blocks; transformers' default (1e-5) drifts by ~3e-5
ENCODER_LAYER_NORM_EPS = 1e-5
EXTRA_PREFIXES = ("ctc_decoder.", "ctc.")  # CTC branch: not used by the LLM loss; reported and preserved, not loaded

_ENCODER_LAYER = [
    ("self_attn.linear_out.weight", "self_attn.o_proj.weight"),
    ("self_attn.linear_out.bias", "self_attn.o_proj.bias"),
    ("self_attn.linear_q_k_v.weight", tuple(f"self_attn.{p}_proj.weight" for p in "qkv")),
    ("self_attn.linear_q_k_v.bias", tuple(f"self_attn.{p}_proj.bias" for p in "qkv")),
    ("self_attn.fsmn_block.weight", "self_attn.fsmn.conv.weight"),
    ("feed_forward.w_1.weight", "mlp.fc1.weight"),
    ("feed_forward.w_1.bias", "mlp.fc1.bias"),
    ("feed_forward.w_2.weight", "mlp.fc2.weight"),
    ("feed_forward.w_2.bias", "mlp.fc2.bias"),
    ("norm1.weight", "input_layernorm.weight"),
    ("norm1.bias", "input_layernorm.bias"),
    ("norm2.weight", "post_attention_layernorm.weight"),
    ("norm2.bias", "post_attention_layernorm.bias"),
]
_ADAPTOR_BLOCK = (
    [
        (f"self_attn.linear_{src}.{kind}", f"self_attn.{dst}_proj.{kind}")
        for src, dst in (("q", "q"), ("k", "k"), ("v", "v"), ("out", "o"))
        for kind in ("weight", "bias")
    ]
    + [
        (f"feed_forward.{src}.{kind}", f"mlp.{dst}.{kind}")
        for src, dst in (("w_1", "fc1"), ("w_2", "fc2"))
        for kind in ("weight", "bias")
    ]
    + [
        (f"{src}.{kind}", f"{dst}.{kind}")
        for src, dst in (("norm1", "input_layernorm"), ("norm2", "post_attention_layernorm"))
        for kind in ("weight", "bias")
    ]
)
_LLM_LAYER = (
    [f"self_attn.{name}.weight" for name in ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm")]
    + [f"mlp.{name}.weight" for name in ("gate_proj", "up_proj", "down_proj")]
    + [
        "input_layernorm.weight",
        "post_attention_layernorm.weight",
    ]
)


@dataclass(frozen=True)
class Layout:
    """Block counts that fix the key set of a checkpoint."""

    num_blocks: int
    tp_blocks: int
    adaptor_layers: int
    llm_layers: int

    @classmethod
    def from_config(cls, config: FunAsrNanoConfig) -> Layout:
        audio = config.audio_config
        return cls(
            num_blocks=audio.num_hidden_layers - audio.num_timestamp_prediction_layers,
            tp_blocks=audio.num_timestamp_prediction_layers,
            adaptor_layers=config.adaptor_config.num_hidden_layers,
            llm_layers=config.text_config.num_hidden_layers,
        )


KeyPlan = list[tuple[str, "str | tuple[str, ...]"]]


def key_plan(layout: Layout) -> KeyPlan:
    """Every FunASR key in the reference ``state_dict()`` order, with the HF key(s) it maps to."""
    plan: KeyPlan = []
    tower = "model.audio_tower.layers"
    encoder_blocks = [("encoders0.0", 0)]
    encoder_blocks += [(f"encoders.{j}", j + 1) for j in range(layout.num_blocks - 1)]
    encoder_blocks += [(f"tp_encoders.{j}", layout.num_blocks + j) for j in range(layout.tp_blocks)]
    for block, index in encoder_blocks:
        for src, dst in _ENCODER_LAYER:
            hf = tuple(f"{tower}.{index}.{d}" for d in dst) if isinstance(dst, tuple) else f"{tower}.{index}.{dst}"
            plan.append((f"audio_encoder.{block}.{src}", hf))
    for norm, index in (("after_norm", layout.num_blocks - 1), ("tp_norm", layout.num_blocks + layout.tp_blocks - 1)):
        for kind in ("weight", "bias"):
            plan.append((f"audio_encoder.{norm}.{kind}", f"{tower}.{index}.final_layernorm.{kind}"))
    plan.append(("llm.model.embed_tokens.weight", "model.language_model.embed_tokens.weight"))
    for i in range(layout.llm_layers):
        plan += [(f"llm.model.layers.{i}.{s}", f"model.language_model.layers.{i}.{s}") for s in _LLM_LAYER]
    plan.append(("llm.model.norm.weight", "model.language_model.norm.weight"))
    plan.append(("llm.lm_head.weight", "lm_head.weight"))
    projector = "model.multi_modal_projector"
    for src, dst in (("linear1", "linear_1"), ("linear2", "linear_2")):
        plan += [(f"audio_adaptor.{src}.{k}", f"{projector}.{dst}.{k}") for k in ("weight", "bias")]
    for b in range(layout.adaptor_layers):
        plan += [(f"audio_adaptor.blocks.{b}.{s}", f"{projector}.layers.{b}.{d}") for s, d in _ADAPTOR_BLOCK]
    return plan


def iter_hf_tensors(plan: KeyPlan, funasr: Mapping[str, torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (HF key, tensor) for every plan entry; q|k|v are split along dim 0."""
    for src, dst in plan:
        tensor = funasr[src]
        if isinstance(dst, tuple):
            yield from zip(dst, torch.chunk(tensor, len(dst), dim=0))
        else:
            yield dst, tensor


def to_funasr_state_dict(plan: KeyPlan, hf: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Inverse of ``iter_hf_tensors``: FunASR keys in reference order, q|k|v concatenated."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for src, dst in plan:
        out[src] = torch.cat([hf[d] for d in dst], dim=0) if isinstance(dst, tuple) else hf[dst]
    return out


def expected_funasr_shapes(plan: KeyPlan, hf_shapes: Mapping[str, torch.Size]) -> dict[str, tuple[int, ...]]:
    """FunASR tensor shapes implied by a model's HF parameter shapes."""
    shapes = {}
    for src, dst in plan:
        if isinstance(dst, tuple):
            parts = [hf_shapes[d] for d in dst]
            shapes[src] = (sum(p[0] for p in parts), *parts[0][1:])
        else:
            shapes[src] = tuple(hf_shapes[dst])
    return shapes


def _qwen_text_config(qwen: Mapping[str, Any]) -> dict[str, Any]:
    dropped = {"architectures", "transformers_version", "torch_dtype", "dtype", "auto_map"}
    values = {k: v for k, v in qwen.items() if k not in dropped}
    values["model_type"] = values.get("model_type", "qwen3")
    return values


def build_config(
    funasr: Mapping[str, Any], qwen: Mapping[str, Any], *, source: str = "config.yaml"
) -> FunAsrNanoConfig:
    """``config.yaml`` + ``Qwen3-0.6B/config.json`` as a ``FunAsrNanoConfig``; refuses what it cannot represent."""

    def section(name: str) -> Mapping[str, Any]:
        value = funasr.get(name)
        if not isinstance(value, Mapping):
            raise ValueError(f"{source}: missing section '{name}' (is this a Fun-ASR-Nano config.yaml?)")
        return value

    enc, ada, front = section("audio_encoder_conf"), section("audio_adaptor_conf"), section("frontend_conf")
    if int(ada.get("downsample_rate", 1)) != 1:
        raise ValueError(
            f"{source}: audio_adaptor_conf.downsample_rate={ada['downsample_rate']} is not supported: the network "
            "(transformers FunAsrNano) implements only downsample_rate 1, the released value. Set it to 1."
        )
    if int(enc.get("sanm_shfit", 0)) != 0:
        raise ValueError(
            f"{source}: audio_encoder_conf.sanm_shfit={enc['sanm_shfit']} is not supported: the network implements "
            "only the symmetric FSMN padding of the release (sanm_shfit 0). Set it to 0."
        )
    for key in ("output_size", "attention_heads", "linear_units", "num_blocks", "tp_blocks"):
        if key not in enc:
            raise ValueError(f"{source}: audio_encoder_conf.{key} is missing")
    for key in ("ffn_dim", "n_layer"):
        if key not in ada:
            raise ValueError(f"{source}: audio_adaptor_conf.{key} is missing")
    text = _qwen_text_config(qwen)
    llm_hidden = int(text["hidden_size"])
    audio_config = dict(
        model_type="fun_asr_nano_encoder",
        hidden_size=int(enc["output_size"]),
        num_attention_heads=int(enc["attention_heads"]),
        intermediate_size=int(enc["linear_units"]),
        num_hidden_layers=int(enc["num_blocks"]) + int(enc["tp_blocks"]),
        num_timestamp_prediction_layers=int(enc["tp_blocks"]),
        fsmn_kernel_size=int(enc.get("kernel_size", 11)),
        hidden_dropout=float(enc.get("dropout_rate", 0.1)),
        attention_dropout=float(enc.get("attention_dropout_rate", 0.1)),
        layer_norm_eps=ENCODER_LAYER_NORM_EPS,
        num_mel_bins=int(front.get("n_mels", 80)),
        num_stacked_frames=int(front.get("lfr_m", 7)),
    )
    adaptor_config = dict(
        hidden_size=llm_hidden,  # the reference overwrites llm_dim with the LLM width
        num_attention_heads=int(ada.get("attention_heads", 8)),
        intermediate_size=llm_hidden // 4,
        num_hidden_layers=int(ada["n_layer"]),
        projector_hidden_size=int(ada["ffn_dim"]),
        hidden_dropout=float(ada.get("dropout_rate", 0.0)),
        attention_dropout=float(ada.get("attention_dropout_rate", 0.0)),
        layer_norm_eps=ADAPTOR_LAYER_NORM_EPS,
    )
    return FunAsrNanoConfig(
        audio_config=audio_config,
        adaptor_config=adaptor_config,
        text_config=text,
        audio_token_id=0,  # nano8k splices embeddings itself; id 0 is the reference placeholder
        tie_word_embeddings=bool(text.get("tie_word_embeddings", True)),
    )


def parameter_counts(network: torch.nn.Module) -> dict[str, int]:
    """Unique parameters per module group: encoder, adaptor, llm (tied lm_head counted once)."""
    groups = {
        "encoder": network.model.audio_tower,
        "adaptor": network.model.multi_modal_projector,
        "llm": torch.nn.ModuleList([network.model.language_model, network.lm_head]),
    }
    return {name: sum(p.numel() for p in module.parameters()) for name, module in groups.items()}
