"""The alignment table: a config's parsed values against a reference config's, key by key, tagged by the rules.

Both configs are parsed by fit's own parser (``nano8k.training.config.parse_config``), so every value is the one a
fit trains with and every default is the classes' own. A key counts as set when the config file (or a base it names)
writes it; a value the parser leaves None and Lightning resolves at run time (``trainer.precision`` None is 32-true,
``trainer.max_epochs`` None is 1000 without max_steps) is shown as the parser holds it: the table compares configs,
not Lightning's run-time choices.
"""

from __future__ import annotations

import importlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentParser

from nano8k.paths import project_file
from nano8k.training.alignment_rules import NO_RULE, rule_for
from nano8k.training.config import fold_classes, layered_config, parse_config, short_class

DEFAULT_AGAINST = "configs/pretrained.yaml"
TAGS = ("CRITICAL", "MODIFIED", "NEW", "OMITTED", "ALIGNED")
SECTIONS = ("model", "data", "trainer")  # the table's order
ALWAYS_LISTED = ("model", "data")  # sections listed in full; others only where a config sets or changes a key


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass
class Row:
    """One parameter: its value in the reference config (``against``) and in ``config``, and its tag."""

    key: str
    against: Any
    value: Any
    default: Any
    against_set: bool
    value_set: bool
    change: str  # aligned | modified | new | omitted
    tag: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return None if v is MISSING else v

        return {
            "key": self.key,
            "against": plain(self.against),
            "value": plain(self.value),
            "default": plain(self.default),
            "against_set": self.against_set,
            "value_set": self.value_set,
            "change": self.change,
            "tag": self.tag,
            "reason": self.reason,
        }


@dataclass
class Alignment:
    """All rows of a comparison plus the names of the two configs."""

    config: str
    against: str
    rows: list[Row] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, int]:
        counts = Counter(row.tag for row in self.rows)
        return {tag: counts.get(tag, 0) for tag in TAGS}

    def row(self, key: str) -> Row:
        for row in self.rows:
            if row.key == key:
                return row
        raise KeyError(f"no row {key!r} in the alignment of {self.config} vs {self.against}")


# -- the parsed sides -----------------------------------------------------------------------------------------
def lookup(tree: Any, key: str) -> Any:
    """The value at dotted ``key`` of a folded tree, or ``MISSING``."""
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return MISSING
        tree = tree[part]
    return tree


def _class_nodes(node: Any, path: str = "") -> list[tuple[str, str]]:
    """(key, class_path) of every class_path node in a config as written."""
    if isinstance(node, Mapping):
        found = [(path, str(node["class_path"]))] if "class_path" in node else []
        return found + [item for k, v in node.items() for item in _class_nodes(v, f"{path}.{k}" if path else str(k))]
    if isinstance(node, list):
        return [item for i, v in enumerate(node) for item in _class_nodes(v, f"{path}[{i}]")]
    return []


def _require_importable(config: Mapping[str, Any]) -> None:
    """A class_path that cannot be imported is named with its key (the parser's message would be a usage error)."""
    for key, class_path in _class_nodes(config):
        module, _, name = class_path.rpartition(".")
        if not module:
            continue  # a short name: the parser resolves it
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"class_path {class_path!r} at {key}: cannot import ({err})") from err


def _set_in(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        child = tree.get(part)
        if not isinstance(child, dict):
            child = tree[part] = {}
        tree = child
    tree[path[-1]] = value


def _class_defaults(class_path: str) -> dict[str, Any]:
    """The defaults jsonargparse reads from a class's signature (arguments without one left out), folded."""
    module, _, name = class_path.rpartition(".")
    parser = ArgumentParser()
    parser.add_class_arguments(getattr(importlib.import_module(module), name))
    return fold_classes(parser.get_defaults().as_dict())


def _parsed(config: Mapping[str, Any], class_nodes: dict[tuple[str, ...], str] | None = None) -> dict[str, Any]:
    """The folded parse of ``config``, sections in the table's order (model, data, trainer, then the rest)."""
    data = parse_config(["--config", yaml.safe_dump(dict(config))]).as_dict()
    data.pop("config", None)
    ordered = {key: data.pop(key) for key in SECTIONS if key in data}
    return fold_classes({**ordered, **data}, (), class_nodes)


@dataclass
class Parsed:
    """One side of the table: ``tree`` (what fit trains with), ``defaults`` (the parser's with nothing set, and each
    chosen class's) and ``explicit`` (the keys the file writes), all with class_path/init_args folded."""

    tree: dict[str, Any]
    defaults: dict[str, Any]
    explicit: set[str]

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Parsed:
        """``config`` as written (a file's bases already layered in: ``layered_config``)."""
        _require_importable(config)
        explicit: set[str] = set()

        def collect(node: Any, prefix: str) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    key = f"{prefix}.{k}" if prefix else k
                    explicit.add(key)
                    collect(v, key)

        collect(fold_classes(dict(config)), "")
        class_nodes: dict[tuple[str, ...], str] = {}
        tree = _parsed(config, class_nodes)
        defaults = _parsed({})
        for path, class_path in sorted(class_nodes.items(), key=lambda item: len(item[0])):
            _set_in(defaults, path, {"class_path": short_class(class_path), **_class_defaults(class_path)})
        return cls(tree, defaults, explicit)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (type(a) is type(b) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def _classify(against: Any, value: Any, value_set: bool) -> str:
    if _same(against, value):
        return "aligned"
    if against is MISSING or against is None:
        return "new"
    if not value_set and value is not MISSING:
        return "omitted"
    return "modified"


def compare(
    config: Mapping[str, Any],
    against: Mapping[str, Any],
    *,
    config_name: str = "config",
    against_name: str = "against",
    include_all: bool = False,
) -> Alignment:
    """Row per parameter of ``config`` vs ``against`` (both configs as written, bases layered in), parsed as fit
    parses them, tagged by the rule table."""
    eff_c, eff_a = Parsed.of(config), Parsed.of(against)
    result = Alignment(config_name, against_name)

    def emit(key: str, a: Any, c: Any) -> None:
        a_set, c_set = key in eff_a.explicit, key in eff_c.explicit
        change = _classify(a, c, c_set)
        listed = include_all or a_set or c_set or change != "aligned" or key.split(".")[0] in ALWAYS_LISTED
        if not listed:
            return
        rule = rule_for(key)
        tag = "CRITICAL" if rule is not None and rule.critical and change != "aligned" else change.upper()
        default = lookup(eff_c.defaults, key)
        if default is MISSING:
            default = lookup(eff_a.defaults, key)
        result.rows.append(Row(key, a, c, default, a_set, c_set, change, tag, rule.reason if rule else NO_RULE))

    def walk(key: str, a: Any, c: Any) -> None:
        a_dict, c_dict = isinstance(a, dict), isinstance(c, dict)
        if (a_dict and c is None and key in eff_c.explicit) or (c_dict and a is None and key in eff_a.explicit):
            emit(key, a, c)  # a whole section switched on/off (e.g. specaugment: null -> {...}): one row
            return
        if (a_dict and c_dict) or (a_dict and c in (None, MISSING)) or (c_dict and a in (None, MISSING)):
            a_map = a if a_dict else {}
            c_map = c if c_dict else {}
            if not a_map and not c_map:
                emit(key, a, c)
            for sub in list(a_map) + [k for k in c_map if k not in a_map]:
                walk(f"{key}.{sub}" if key else sub, a_map.get(sub, MISSING), c_map.get(sub, MISSING))
            return
        emit(key, a, c)

    walk("", eff_a.tree, eff_c.tree)
    return result


def align_files(config: str | Path, against: str | Path | None = None, include_all: bool = False) -> Alignment:
    """``compare`` for two config files (each with its bases), named by their file names."""
    against = against if against is not None else project_file(DEFAULT_AGAINST)
    return compare(
        layered_config(config),
        layered_config(against),
        config_name=Path(config).name,
        against_name=Path(against).name,
        include_all=include_all,
    )


# -- output ---------------------------------------------------------------------------------------------------
def fmt(value: Any) -> str:
    """A value as a short YAML-like string ("—" for absent)."""
    if value is MISSING:
        return "—"
    if value is None:
        return "null"
    if value == "":
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
    return str(value)


def _cell(value: Any, is_set: bool) -> str:
    return fmt(value) if is_set or value is MISSING else f"({fmt(value)})"


def summary_line(alignment: Alignment) -> str:
    return ", ".join(f"{tag} {count}" for tag, count in alignment.summary.items())


def to_markdown(alignment: Alignment) -> str:
    """A markdown table; values in parentheses are class defaults (the key is omitted from that config)."""
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = [
        f"# {alignment.config} vs {alignment.against}",
        "",
        f"Generated by `python -m nano8k.align`. **Summary:** {summary_line(alignment)} "
        f"({len(alignment.rows)} parameters).",
        "",
        "Values in parentheses are not set in that file: the class default is used.",
        "",
        f"| key | {alignment.against} | {alignment.config} | default | tag | reason |",
        "|---|---|---|---|---|---|",
    ]
    for r in alignment.rows:
        lines.append(
            f"| `{r.key}` | {esc(_cell(r.against, r.against_set))} | {esc(_cell(r.value, r.value_set))} | "
            f"{esc(fmt(r.default))} | {'**' + r.tag + '**' if r.tag == 'CRITICAL' else r.tag} | "
            f"{esc(r.reason)} |"
        )
    return "\n".join(lines) + "\n"


def to_table(alignment: Alignment, width: int = 28) -> str:
    """Plain fixed-width text."""

    def clip(s: str) -> str:
        return s if len(s) <= width else s[: width - 1] + "…"

    header = ("key", alignment.against, alignment.config, "default", "tag")
    rows = [
        (
            r.key,
            clip(_cell(r.against, r.against_set)),
            clip(_cell(r.value, r.value_set)),
            clip(fmt(r.default)),
            r.tag,
            r.reason,
        )
        for r in alignment.rows
    ]
    widths = [max(len(str(x[i])) for x in [header, *rows]) for i in range(5)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  reason"]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row[:5], widths)) + "  " + row[5] for row in rows]
    out.append(f"summary: {summary_line(alignment)}")
    return "\n".join(out) + "\n"


def to_json(alignment: Alignment) -> str:
    return (
        json.dumps(
            {
                "config": alignment.config,
                "against": alignment.against,
                "summary": alignment.summary,
                "rows": [r.to_json() for r in alignment.rows],
            },
            indent=2,
            default=str,
        )
        + "\n"
    )


FORMATTERS = {"md": to_markdown, "table": to_table, "json": to_json}
