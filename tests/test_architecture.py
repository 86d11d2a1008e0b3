"""docs/architecture.md stays true: every name it lists imports, and the layers import as its rules say."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n# (nano8k[\w.]*)\n(.*?)```", DOC, flags=re.DOTALL)
TOP_NAME = re.compile(r"^(?:class\s+)?([A-Za-z_]\w*)\s*[(:=]")
MEMBER = re.compile(r"^\s+([A-Za-z_]\w*)\s*[(:]")


def listed_names() -> list[tuple[str, str, str | None]]:
    """(module, name, member or None) for every line of the page's API blocks."""
    names = []
    for module, body in BLOCKS:
        owner = None
        for line in body.splitlines():
            if not line.strip() or line.lstrip().startswith(("@", "#")):
                continue
            if not line[0].isspace():
                found = TOP_NAME.match(line)
                assert found, f"{module}: cannot read the listed line {line!r}"
                owner = found.group(1) if line.startswith("class ") else None
                names.append((module, found.group(1), None))
            elif owner is not None and (member := MEMBER.match(line)):
                names.append((module, owner, member.group(1)))
    return names


def test_the_page_lists_the_api_blocks():
    assert len(BLOCKS) >= 10 and len(listed_names()) >= 80


@pytest.mark.parametrize(("module", "name", "member"), listed_names(), ids=lambda v: str(v))
def test_every_listed_name_exists(module, name, member):
    target = getattr(importlib.import_module(module), name)
    if member is not None:
        fields = getattr(target, "__dataclass_fields__", {})
        assert hasattr(target, member) or member in fields, f"{module}.{name} has no {member}"


def test_every_listed_signature_parameter_exists():
    """Functions listed with arguments name parameters the function has (``def f(a, b)`` listed as ``f(a, c)`` fails)."""
    for module, body in BLOCKS:
        for line in body.splitlines():
            call = re.match(r"^([a-z_]\w*)\((.*?)\)\s*(->|#|$)", line)
            if not call:
                continue
            function = getattr(importlib.import_module(module), call.group(1))
            listed = [re.split(r"[:=\s]", part.strip().lstrip("*"))[0] for part in call.group(2).split(",")]
            known = set(inspect.signature(function).parameters)
            missing = [p for p in listed if p and p not in known]
            assert not missing, f"{module}.{call.group(1)}: the page lists {missing}, the function takes {sorted(known)}"


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and (ROOT / "nano8k" / parts[1]).is_dir():
        return "model" if parts[1] == "assets" else parts[1]
    return {"nano8k.errors": "shared", "nano8k.atomic": "shared", "nano8k.inference": "inference"}.get(module, "cli")


def _imports() -> list[tuple[str, str, tuple[str, ...]]]:
    """(importing module, imported nano8k module, names) for every import in the package, function-level ones
    included; imports under ``if TYPE_CHECKING`` are annotations, not imports, and are left out."""
    found = []
    for path in (ROOT / "nano8k").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for guard in [n for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]:
            guard.body = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nano8k"):
                found.append((module, node.module, tuple(alias.name for alias in node.names)))
            elif isinstance(node, ast.Import):
                found += [(module, alias.name, ()) for alias in node.names if alias.name.startswith("nano8k")]
    return found


ALLOWED = {  # layer -> layers it may import
    "shared": {"shared"},
    "scoring": {"scoring"},
    "model": {"model", "shared"},
    "data": {"data", "model", "shared"},
    "inference": {"inference", "data", "model", "scoring", "shared"},
    "training": {"training", "inference", "data", "model", "scoring", "shared"},
    "mini": {"mini", "inference", "data", "model", "scoring", "shared"},
    "checks": {"checks", "training", "data", "model", "scoring", "shared"},
}
DATA_MAY_IMPORT_FROM_MODEL = {"nano8k.model.features": None, "nano8k.model.prompt": None, "nano8k.model.batch": None,
                              "nano8k.assets": None,  # None: any name
                              "nano8k.model.checkpoint": {"tokenizer_dir", "load_tokenizer_files",
                                                          "CheckpointError"}}  # the tokenizer rules


def test_layers_import_one_way():
    wrong = []
    for importer, imported, names in _imports():
        source, target = _layer(importer), _layer(imported)
        if source in ALLOWED and target not in ALLOWED[source]:
            wrong.append(f"{importer} ({source}) imports {imported} ({target})")
        if source == "data" and target == "model":
            allowed = DATA_MAY_IMPORT_FROM_MODEL.get(imported, set())
            if allowed is not None and not set(names) <= allowed:
                wrong.append(f"{importer} imports {names} from {imported}: data may use {DATA_MAY_IMPORT_FROM_MODEL}")
    assert not wrong, "\n".join(wrong)


def test_inference_commands_do_not_import_the_lightning_layer():
    """Model folders are found by nano8k.model.locate; transcribe/evaluate/inference never need nano8k.training."""
    for importer, imported, _ in _imports():
        if importer in ("nano8k.transcribe", "nano8k.evaluate", "nano8k.inference", "nano8k.model.locate"):
            assert not imported.startswith("nano8k.training"), f"{importer} imports {imported}"
    from nano8k.model import locate
    from nano8k.training import module

    assert getattr(module, "resolve_model_dir", None) in (None, locate.resolve_model_dir)  # defined once, in model/
