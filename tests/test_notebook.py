"""The tutorial notebook is in sync with its generator, is committed with outputs of its current cells, and runs top
to bottom on the mini default (nbclient)."""

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
    assert [c.source for c in committed.cells] == [c.source for c in built.cells], (
        "run: python notebooks/make_notebook.py"
    )


def _images(nb) -> int:
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    return sum(bool({"image/png", "image/jpeg"} & set(o.get("data", {}))) for o in outputs)


def test_committed_notebook_has_outputs_of_its_current_cells():
    committed = nbformat.read(NOTEBOOK, as_version=4)
    stamp = committed.metadata.get("nano8k", {}).get("outputs_from_sources_sha256")
    assert stamp == _generator().sources_digest(committed), (
        "the outputs were made from other cells: run python notebooks/make_notebook.py"
    )
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert all(c.outputs for c in code), [c.source.splitlines()[0] for c in code if not c.outputs]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # one run, top to bottom
    text = "".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream")
    assert "CER before" in text and "-> after" in text and "150 steps" in text
    assert _images(committed) >= 5  # spectrograms, features, loss, CER before/after, the reproduction plot


def test_notebook_executes(monkeypatch):
    monkeypatch.setenv("NANO8K_NOTEBOOK_STEPS", "10")
    monkeypatch.delenv("NANO8K_MODEL_DIR", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "CER before" in text and "-> after" in text and "10 steps" in text
    assert "preflight:" in text and "0 fail" in text
    assert _images(nb) >= 5  # incl. CER before/after and the mini reproduction plot
    assert any("text/markdown" in o.get("data", {}) and "CRITICAL" in o["data"]["text/markdown"] for o in outputs)
