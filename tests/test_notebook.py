"""The tutorial notebook is in sync with its generator and runs top to bottom on the mini default (nbclient)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "telephone_finetune.ipynb"


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebook", ROOT / "notebooks" / "make_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebook_matches_generator():
    committed = nbformat.read(NOTEBOOK, as_version=4)
    built = _generator().build()
    assert [c.source for c in committed.cells] == [c.source for c in built.cells], \
        "run: python notebooks/make_notebook.py"


def test_notebook_executes(monkeypatch):
    monkeypatch.setenv("NANO8K_NOTEBOOK_STEPS", "10")
    monkeypatch.delenv("NANO8K_MODEL_DIR", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
                   ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "CER before" in text and "-> after" in text and "10 steps" in text
    assert "preflight:" in text and "0 fail" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4  # incl. the mini reproduction plot
    assert any("text/markdown" in o.get("data", {}) and "CRITICAL" in o["data"]["text/markdown"] for o in outputs)
