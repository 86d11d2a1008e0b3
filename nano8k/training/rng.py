"""The process's global random states (torch CPU and CUDA, numpy, python), kept per rank in checkpoints."""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


def rng_states() -> dict[str, Any]:
    """This process's global random states, as tensors and plain values (``torch.load(weights_only=True)`` reads
    them back): what dropout draws from, so a resumed run draws what the uninterrupted one would have."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [str(kind), torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore states from :func:`rng_states`; CUDA ones only onto as many devices as were saved (warns if not)."""
    torch.set_rng_state(states["torch"])
    cuda = list(states.get("cuda") or [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    elif cuda or torch.cuda.is_available():
        log.warning(
            "the checkpoint's CUDA random states (%d devices) do not fit this process (%d): CUDA draws "
            "(dropout on the GPU) differ from the interrupted run's",
            len(cuda),
            torch.cuda.device_count() if torch.cuda.is_available() else 0,
        )
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(position), int(has_gauss), float(gauss)))
    version, state, python_gauss = states["python"]
    random.setstate((version, tuple(state), python_gauss))
