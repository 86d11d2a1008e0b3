"""Dimensions of the released Fun-ASR-Nano-2512 (config.yaml model sections and Qwen3-0.6B config.json)."""

from __future__ import annotations

import copy
from typing import Any

# Values of the release's config.yaml that fix the network (reference/fun-asr-nano.md section 2).
RELEASE_MODEL_SECTIONS: dict[str, Any] = {
    "audio_encoder_conf": {
        "output_size": 512,
        "attention_heads": 4,
        "linear_units": 2048,
        "num_blocks": 50,
        "tp_blocks": 20,
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "attention_dropout_rate": 0.1,
        "kernel_size": 11,
        "sanm_shfit": 0,
    },
    "audio_adaptor_conf": {
        "downsample_rate": 1,
        "use_low_frame_rate": True,
        "ffn_dim": 2048,
        "llm_dim": 1024,
        "encoder_dim": 512,
        "n_layer": 2,
    },
    "frontend_conf": {
        "fs": 16000,
        "window": "hamming",
        "n_mels": 80,
        "frame_length": 25,
        "frame_shift": 10,
        "lfr_m": 7,
        "lfr_n": 6,
        "cmvn_file": None,
    },
    "llm_conf": {"init_param_path": "Qwen3-0.6B", "llm_dtype": "bf16"},
}

# Qwen3-0.6B config.json (reference/fun-asr-nano.md section 6).
RELEASE_QWEN3_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "hidden_size": 1024,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 3072,
    "hidden_act": "silu",
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "rope_theta": 1000000,
    "rope_scaling": None,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "max_window_layers": 28,
    "use_sliding_window": False,
    "sliding_window": None,
    "torch_dtype": "bfloat16",
}


def release_funasr_config() -> dict[str, Any]:
    """A fresh copy of the release's model-defining config.yaml sections."""
    return copy.deepcopy(RELEASE_MODEL_SECTIONS)


def release_qwen_config() -> dict[str, Any]:
    return copy.deepcopy(RELEASE_QWEN3_CONFIG)
