"""Convert a Fun-ASR-Nano model directory between the FunASR release layout and the transformers layout."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from jsonargparse import CLI

from nano8k.model.checkpoint import copy_release_extras, export_funasr, export_hf, load_pretrained


def convert(model_dir: Path, out_dir: Path, to: Literal["hf", "funasr"] = "hf") -> Path:
    """Load MODEL_DIR (either layout) and write it to OUT_DIR in the ``to`` layout (funasr: bf16 model.pt)."""
    model = load_pretrained(model_dir)
    if to == "hf":
        return export_hf(model, out_dir)
    out = export_funasr(model, out_dir)
    copy_release_extras(model_dir, out)
    return out


if __name__ == "__main__":
    print(CLI(convert))
