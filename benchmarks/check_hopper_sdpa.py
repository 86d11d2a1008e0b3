"""GPU check: are masked SDPA gradients finite with cuDNN attention forced, and with nano8k's Hopper guard?

Run: ``.venv/bin/python benchmarks/check_hopper_sdpa.py`` on a CUDA machine (pytorch#196678: on compute capability
9.x, cuDNN's backward gives NaN ``grad_q`` with a mask at lengths 64 more than a multiple of 128 when a row's
logsumexp is below about -88.7). Prints one line per length and mode and exits 1 if a guarded gradient is not
finite; without a GPU it says so and exits 0.
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from nano8k.model.attention_guard import guard_cudnn_sdpa

LENGTHS = (192, 320, 448, 256)  # 64 more than a multiple of 128, then a multiple of 128 as the control
HEADS, HEAD_DIM, PADDED = 4, 64, 40  # the last PADDED keys are padding, as in a right-padded batch


def masked_sdpa_grads_finite(length: int, additive: bool) -> bool:
    """SDPA forward + backward in bf16 with a padded key mask; True when every gradient is finite."""
    generator = torch.Generator(device="cuda").manual_seed(length)
    shape = (2, HEADS, length, HEAD_DIM)
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, generator=generator) * 0.1 for _ in range(3))
    q[..., 0], k[..., 0] = 1.0, -120 * math.sqrt(HEAD_DIM)  # logits ~ -120: logsumexp below -ln(FLT_MAX), the trigger
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    keep = torch.ones(2, 1, length, length, dtype=torch.bool, device="cuda")
    keep[1, ..., length - PADDED :] = False
    mask = keep
    if additive:
        mask = torch.zeros(keep.shape, device="cuda", dtype=torch.bfloat16).masked_fill(~keep, -math.inf)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out.backward(torch.randn_like(out))
    return all(bool(torch.isfinite(t.grad).all()) for t in (q, k, v))


def run(mode: str, backends: list[SDPBackend] | None) -> int:
    """One line per length and mask kind under ``backends`` (None: torch's choice); returns the non-finite count."""
    non_finite = 0
    for length in LENGTHS:
        for additive in (False, True):
            kind = "additive" if additive else "boolean "
            label = f"{mode:13s} L={length:4d} ({length % 128:3d} mod 128) {kind} mask"
            try:
                if backends is None:
                    finite = masked_sdpa_grads_finite(length, additive)
                else:
                    with sdpa_kernel(backends):
                        finite = masked_sdpa_grads_finite(length, additive)
            except RuntimeError as exc:  # e.g. "No available kernel" where cuDNN attention cannot serve this case
                print(f"{label}: not available ({str(exc).splitlines()[0][:100]})")
                continue
            print(f"{label}: gradients {'finite' if finite else 'NON-FINITE'}")
            non_finite += not finite
    return non_finite


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA GPU present: nothing to check")
        return 0
    major, minor = torch.cuda.get_device_capability()
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    print(
        f"{torch.cuda.get_device_name()} (compute capability {major}.{minor}), torch {torch.__version__}, cuDNN {cudnn}"
    )
    run("cuDNN forced", [SDPBackend.CUDNN_ATTENTION])
    print(guard_cudnn_sdpa(torch.device("cuda")))
    return 1 if run("guarded", None) else 0


if __name__ == "__main__":
    sys.exit(main())
