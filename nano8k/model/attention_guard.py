"""Hopper guard: turn off cuDNN scaled-dot-product attention, whose masked backward can return NaN (pytorch#196678)."""

from __future__ import annotations

import logging
import os

import torch

from nano8k.errors import ConfigError

log = logging.getLogger(__name__)

ALLOW_CUDNN_SDPA_ENV = "NANO8K_ALLOW_CUDNN_SDPA"
HOPPER_MAJOR = 9  # compute capability 9.x: H100, H200, GH200
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
_already_logged: set[str] = set()


def cudnn_sdpa_opt_in() -> bool:
    """Whether ``$NANO8K_ALLOW_CUDNN_SDPA`` keeps cuDNN SDPA on (``1``/``true``); an unknown value is refused."""
    value = os.environ.get(ALLOW_CUDNN_SDPA_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(
        f"{ALLOW_CUDNN_SDPA_ENV}={os.environ[ALLOW_CUDNN_SDPA_ENV]!r}: use 1 (keep cuDNN attention on "
        "Hopper) or 0 / unset (turn it off)"
    )


def guard_cudnn_sdpa(device: torch.device | str, allow: bool | None = None) -> str:
    """On a Hopper GPU, disable the cuDNN SDPA backend for this process unless allowed; say what was done.

    cuDNN's SDPA backward returns NaN in the query gradient when an attention mask is passed and the sequence length
    is 64 more than a multiple of 128 (Qwen3's padded-batch path; reported for torch >= 2.11 with cuDNN up to 9.25
    on compute capability 9.x). With it off, ``scaled_dot_product_attention`` falls back to the memory-efficient (or
    flash) kernel. ``allow`` (default: ``$NANO8K_ALLOW_CUDNN_SDPA``) keeps it on. No-op on CPU and other GPUs. The
    switch is global to the process; the description is logged once.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return f"cuDNN SDPA guard: {device.type} device, nothing to do"
    major, minor = torch.cuda.get_device_capability(device)
    if major != HOPPER_MAJOR:
        return f"cuDNN SDPA guard: compute capability {major}.{minor} is not Hopper, cuDNN attention left as it is"
    allow = cudnn_sdpa_opt_in() if allow is None else allow
    if allow:
        message = (
            f"cuDNN SDPA guard: Hopper GPU (compute capability {major}.{minor}), cuDNN attention kept on "
            f"({ALLOW_CUDNN_SDPA_ENV}=1); masked backward may return NaN gradients (pytorch#196678)"
        )
    else:
        torch.backends.cuda.enable_cudnn_sdp(False)
        message = (
            f"cuDNN SDPA guard: Hopper GPU (compute capability {major}.{minor}), cuDNN attention disabled "
            f"against NaN gradients with padded masks (pytorch#196678); {ALLOW_CUDNN_SDPA_ENV}=1 keeps it on"
        )
    if message not in _already_logged:
        _already_logged.add(message)
        log.log(logging.WARNING if allow else logging.INFO, message)
    return message
