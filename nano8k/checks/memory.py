"""Parameter counts per part (``ModelShape``) and a per-GPU training memory estimate (an estimate, not a measurement).

Formula (bytes, per GPU):

* weights and optimizer: trainable parameters 16 B each (fp32 weight 4 + fp32 grad 4 + AdamW moments 2 x 4),
  frozen parameters at their dtype (encoder/adaptor fp32 = 4 B, LLM ``model.llm_dtype``: bf16/fp16 2 B, else 4 B);
  DDP adds a gradient bucket copy (4 B per trainable parameter).
* activations kept for backward, ``a`` bytes per element (2 for 16-bit mixed/true precision, else 4), per token and
  layer ``16*d + 2*ffn`` (encoder, adaptor) or ``16*d + 3*ffn`` (Qwen3 SwiGLU) elements, for every block that
  gradients pass through (the encoder only when it trains; adaptor and LLM whenever anything upstream trains).
  With gradient checkpointing a block keeps only its input (``d`` elements) plus one block's full set.
  Encoder/adaptor tokens = ``data.max_frames_per_batch`` (LFR frames, padding included); LLM tokens =
  speech tokens (frames/8, or all frames for an ``all_frames`` model) + utterances x (prompt 40 + mean target length
  in characters), capped by ``max_tokens_per_batch``.
* logits: labelled tokens (utterances x (mean target length + 1 for ``<|im_end|>``), capped by the LLM tokens) x
  vocab x (``a`` + 8) bytes (logits, fp32 copy for the loss and its gradient): the LM head runs at label positions
  only.
* 1 GiB for the CUDA context and allocator slack.

Attention scores are not counted (SDPA flash/memory-efficient kernels do not store them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nano8k.model.checkpoint import DTYPES
from nano8k.model.prompt import audio_token_count

GIB = 1024**3
PROMPT_TOKENS = 40  # system turn + task prompt + chat markup, per utterance
OVERHEAD_BYTES = 1 * GIB


@dataclass
class ModelShape:
    """What the estimate needs from the network: parameter counts and block dims."""

    encoder_layer_params: list[int]
    encoder_other_params: int
    adaptor_params: int
    llm_params: int
    lora_params: int
    enc_dim: int
    enc_ffn: int
    adaptor_dim: int
    adaptor_ffn: int
    adaptor_layers: int
    llm_dim: int
    llm_ffn: int
    llm_layers: int
    vocab: int

    @property
    def encoder_params(self) -> int:
        return sum(self.encoder_layer_params) + self.encoder_other_params

    def parameter_sizes(self) -> list[tuple[str, int | None, int]]:
        """(group, encoder layer index or None, parameter count) per part: ``freezing.trainable_counts``'s input."""
        layers = [("encoder", i, n) for i, n in enumerate(self.encoder_layer_params)]
        return [
            *layers,
            ("encoder", None, self.encoder_other_params),
            ("adaptor", None, self.adaptor_params),
            ("llm", None, self.llm_params),
            ("lora", None, self.lora_params),
        ]


def model_shape(network: Any, lora: Mapping[str, Any] | None = None) -> ModelShape:
    """Counts and dims from a (meta-device) ``FunAsrNanoForConditionalGeneration``."""
    from nano8k.model.convert import parameter_counts

    counts = parameter_counts(network)
    tower = network.model.audio_tower
    layer_params = [sum(p.numel() for p in layer.parameters()) for layer in tower.layers]
    cfg = network.config
    audio, adaptor, text = cfg.audio_config, cfg.adaptor_config, cfg.text_config
    lora_params = 0
    if lora:
        targets = tuple(lora.get("target_modules") or ("q_proj", "v_proj"))
        rank = int(lora.get("r", 16))
        for name, module in network.model.language_model.named_modules():
            if name.rsplit(".", 1)[-1] in targets and hasattr(module, "in_features"):
                lora_params += rank * (module.in_features + module.out_features)
    return ModelShape(
        encoder_layer_params=layer_params,
        encoder_other_params=counts["encoder"] - sum(layer_params),
        adaptor_params=counts["adaptor"],
        llm_params=counts["llm"],
        lora_params=lora_params,
        enc_dim=int(audio.hidden_size),
        enc_ffn=int(audio.intermediate_size),
        adaptor_dim=int(adaptor.hidden_size),
        adaptor_ffn=int(adaptor.intermediate_size) + int(adaptor.projector_hidden_size),
        adaptor_layers=int(adaptor.num_hidden_layers),
        llm_dim=int(text.hidden_size),
        llm_ffn=int(text.intermediate_size),
        llm_layers=int(text.num_hidden_layers),
        vocab=int(text.vocab_size),
    )


@dataclass
class MemoryEstimate:
    """Bytes per GPU by component; ``total`` sums them."""

    parts: dict[str, float] = field(default_factory=dict)
    llm_tokens: int = 0
    utterances: int = 0

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v / GIB:.2f}" for k, v in self.parts.items())
        return (
            f"~{self.total / GIB:.1f} GiB per GPU ({parts} GiB; {self.utterances} utts / {self.llm_tokens} LLM "
            f"tokens per batch)"
        )


def _act_bytes(precision: str) -> int:
    return 2 if str(precision).startswith(("16", "bf16")) else 4


def _frozen_llm_bytes(llm_dtype: str | None) -> int:
    """Bytes per frozen LLM weight at ``model.llm_dtype`` (fp32 when unset or unknown)."""
    dtype = DTYPES.get(str(llm_dtype).lower()) if llm_dtype else None
    return 4 if dtype is None else dtype.itemsize


def estimate_memory(
    shape: ModelShape,
    trainable: Mapping[str, int],
    *,
    precision: str = "32-true",
    llm_dtype: str | None = None,
    max_frames: int = 2000,
    max_tokens: int | None = None,
    max_batch_size: int | None = None,
    mean_frames: float = 80.0,
    mean_target_chars: float = 30.0,
    gradient_checkpointing: bool = False,
    ddp: bool = False,
    audio_tokens: str = "low_frame_rate",
) -> MemoryEstimate:
    """Per-GPU training memory for one stage (see the module docstring for the formula)."""
    est = MemoryEstimate()
    a = _act_bytes(precision)
    llm_frozen_bytes = _frozen_llm_bytes(llm_dtype)
    n_train = sum(trainable.values())
    frozen = {
        "encoder": (shape.encoder_params - trainable["encoder"]) * 4,
        "adaptor": (shape.adaptor_params - trainable["adaptor"]) * 4,
        "llm": (shape.llm_params - trainable["llm"]) * llm_frozen_bytes,
    }
    est.parts["weights+optimizer"] = n_train * 16 + sum(frozen.values()) + (n_train * 4 if ddp else 0)
    utts = max(1, int(max_frames // max(mean_frames, 1.0)))
    if max_batch_size:
        utts = min(utts, int(max_batch_size))
    speech = audio_token_count(max_frames, audio_tokens)
    tokens = speech + utts * int(PROMPT_TOKENS + mean_target_chars)
    if max_tokens:
        tokens = min(tokens, int(max_tokens))
    est.utterances, est.llm_tokens = utts, tokens

    def blocks(n_tokens: int, layers: int, dim: int, per_token: int) -> float:
        if gradient_checkpointing:
            return n_tokens * (layers * dim + per_token) * a
        return n_tokens * layers * per_token * a

    activations = 0.0
    if trainable["encoder"]:
        activations += blocks(
            max_frames, len(shape.encoder_layer_params), shape.enc_dim, 16 * shape.enc_dim + 2 * shape.enc_ffn
        )
    if trainable["encoder"] or trainable["adaptor"]:
        activations += blocks(
            max_frames, shape.adaptor_layers, shape.adaptor_dim, 16 * shape.adaptor_dim + 2 * shape.adaptor_ffn
        )
    activations += blocks(tokens, shape.llm_layers, shape.llm_dim, 16 * shape.llm_dim + 3 * shape.llm_ffn)
    est.parts["activations"] = activations
    labelled = min(tokens, utts * int(mean_target_chars + 1))
    est.parts["logits"] = labelled * shape.vocab * (a + 8)
    est.parts["overhead"] = OVERHEAD_BYTES
    return est
