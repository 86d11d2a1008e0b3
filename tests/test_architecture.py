"""docs/architecture.md stays true: every name it lists imports, and the layers import as its rules say."""

from __future__ import annotations

import ast
import functools
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
    """Functions listed with arguments name parameters the function has (``f(a, b)`` listed as ``f(a, c)`` fails)."""
    for module, body in BLOCKS:
        for line in body.splitlines():
            call = re.match(r"^([a-z_]\w*)\((.*?)\)\s*(->|#|$)", line)
            if not call:
                continue
            function = getattr(importlib.import_module(module), call.group(1))
            listed = [re.split(r"[:=\s]", part.strip().lstrip("*"))[0] for part in call.group(2).split(",")]
            known = set(inspect.signature(function).parameters)
            missing = [p for p in listed if p and p not in known]
            assert not missing, (
                f"{module}.{call.group(1)}: the page lists {missing}, the function takes {sorted(known)}"
            )


SHARED = {"nano8k.errors", "nano8k.atomic", "nano8k.paths"}
ENTRY_MODULES = {"nano8k", "nano8k.__main__"}  # the front door and ``nano8k SUB``; python -m shims are found below


def _layer(module: str, root: Path = ROOT) -> str:
    parts = module.split(".")
    if module in SHARED:
        return "shared"
    if module in ENTRY_MODULES or _is_entry_shim(module, root):
        return "entry"
    if len(parts) > 1 and (root / "nano8k" / parts[1]).is_dir():
        return "model" if parts[1] == "assets" else parts[1]
    return "unplaced"


@functools.cache
def _is_entry_shim(module: str, root: Path) -> bool:
    """A ``python -m nano8k.X`` module: it imports ``main`` from ``nano8k.commands.X`` and nothing else of nano8k."""
    path = root / (module.replace(".", "/") + ".py")
    if not path.is_file() or module.startswith("nano8k.commands"):
        return False
    imports = [
        node
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nano8k")
    ]
    return len(imports) == 1 and imports[0].module.startswith("nano8k.commands.")


def _module_names(root: Path) -> set[str]:
    return {
        ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for path in (root / "nano8k").rglob("*.py")
    }


def _imports(root: Path = ROOT) -> list[tuple[str, str, tuple[str, ...]]]:
    """(importing module, imported nano8k module, names) for every import in the package, function-level ones
    included; imports under ``if TYPE_CHECKING`` are annotations, not imports, and are left out. ``from P import m``
    of a submodule ``m`` is an import of ``P.m``."""
    modules = _module_names(root)
    found = []
    for path in (root / "nano8k").rglob("*.py"):
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for guard in [n for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]:
            guard.body = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nano8k"):
                submodules = [a.name for a in node.names if f"{node.module}.{a.name}" in modules]
                found += [(module, f"{node.module}.{name}", ()) for name in submodules]
                names = tuple(a.name for a in node.names if a.name not in submodules)
                if names:
                    found.append((module, node.module, names))
            elif isinstance(node, ast.Import):
                found += [(module, alias.name, ()) for alias in node.names if alias.name.startswith("nano8k")]
    return found


def import_cycles(edges: list[tuple[str, str, tuple[str, ...]]]) -> list[list[str]]:
    """Every import cycle among the modules of ``edges`` (strongly connected components of more than one module, or
    a module importing itself), each as its sorted module names."""
    graph: dict[str, set[str]] = {}
    for importer, imported, _ in edges:
        graph.setdefault(importer, set()).add(imported)
        graph.setdefault(imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


ALLOWED = {  # layer -> layers it may import
    "shared": {"shared"},
    "scoring": {"scoring"},
    "model": {"model", "shared"},
    "data": {"data", "model", "shared"},
    "inference": {"inference", "data", "model", "scoring", "shared"},
    "training": {"training", "inference", "data", "model", "scoring", "shared"},
    "mini": {"mini", "training", "inference", "data", "model", "scoring", "shared"},  # the reproduction runs fit
    "checks": {"checks", "training", "data", "model", "scoring", "shared"},
    "commands": {"commands", "checks", "mini", "training", "inference", "data", "model", "scoring", "shared"},
    "entry": {"commands", "inference", "shared"},
}
DATA_MAY_IMPORT_FROM_MODEL = {
    "nano8k.model.features": None,
    "nano8k.model.prompt": None,
    "nano8k.model.batch": None,
    "nano8k.model.feeding": {"Feeding"},  # how a model is fed: data.* overrides it
    "nano8k.model.checkpoint": {"tokenizer_dir", "load_tokenizer_files", "CheckpointError"},
}  # the tokenizer rules


def layer_violations(edges: list[tuple[str, str, tuple[str, ...]]], root: Path = ROOT) -> list[str]:
    wrong = []
    for importer, imported, names in edges:
        source, target = _layer(importer, root), _layer(imported, root)
        if source == "unplaced":
            wrong.append(f"{importer}: a module in no layer (add it to docs/architecture.md and ALLOWED)")
        elif target not in ALLOWED[source]:
            wrong.append(f"{importer} ({source}) imports {imported} ({target})")
        if source == "data" and target == "model":
            allowed = DATA_MAY_IMPORT_FROM_MODEL.get(imported, set())
            if allowed is not None and not set(names) <= allowed:
                wrong.append(f"{importer} imports {names} from {imported}: data may use {DATA_MAY_IMPORT_FROM_MODEL}")
        if source == "commands" and target == "commands" and imported != "nano8k.commands":
            wrong.append(f"{importer} imports {imported}: a command never imports another (share through the library)")
    return sorted(set(wrong))


def test_layers_import_one_way():
    wrong = layer_violations(_imports())
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_anywhere_in_the_package():
    cycles = import_cycles(_imports())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize(
    ("module", "planted", "caught_by"),
    [
        ("nano8k/data/audio.py", "from nano8k.data.manifests.io import read_utterances", "cycle"),  # same layer
        ("nano8k/commands/average.py", "from nano8k.commands.validate import main", "layers"),  # command -> command
        ("nano8k/model/locate.py", "from nano8k.training.module import NanoASRModule", "layers"),  # upward
    ],
)
def test_the_checks_catch_a_planted_import(tmp_path, module, planted, caught_by):
    """The rules above are not vacuous: the package copied with one planted import fails them."""
    import shutil

    shutil.copytree(ROOT / "nano8k", tmp_path / "nano8k", ignore=shutil.ignore_patterns("assets", "__pycache__"))
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n\ndef _planted():\n    {planted}\n", encoding="utf-8")
    edges = _imports(tmp_path)
    if caught_by == "cycle":
        assert any(module.replace("/", ".").removesuffix(".py") in c for c in import_cycles(edges))
    else:
        assert any(planted.split()[1] in line for line in layer_violations(edges, tmp_path))


def test_inference_commands_do_not_import_the_lightning_layer():
    """Model folders are found by nano8k.model.locate; transcribe/evaluate/inference never need nano8k.training."""
    for importer, imported, _ in _imports():
        if importer.startswith(
            (
                "nano8k.transcribe",
                "nano8k.evaluate",
                "nano8k.commands.transcribe",
                "nano8k.commands.evaluate",
                "nano8k.inference",
                "nano8k.model.locate",
            )
        ):
            assert not imported.startswith("nano8k.training"), f"{importer} imports {imported}"
    from nano8k.model import locate
    from nano8k.training import module

    assert getattr(module, "resolve_model_dir", None) in (None, locate.resolve_model_dir)  # defined once, in model/
