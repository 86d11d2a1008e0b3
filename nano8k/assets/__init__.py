"""Bundled assets: a tiny random-init Fun-ASR-Nano in the release layout (the demo default model)."""

from pathlib import Path

TINY_MODEL_DIR = Path(__file__).resolve().parent / "tiny-nano"
