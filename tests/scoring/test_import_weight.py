"""Scoring stays below the training layer: importing the metrics loads no Lightning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_metrics_import_without_lightning():
    probe = "import nano8k.scoring.metrics, sys; assert 'lightning' not in sys.modules, 'lightning was imported'"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
