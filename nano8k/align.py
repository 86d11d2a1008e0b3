"""``python -m nano8k.align CONFIG [--against configs/pretrained.yaml] [--format md|table|json]``: config alignment table."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from nano8k.alignment_rules import NO_RULE, rule_for
from nano8k.paths import project_file
from nano8k.errors import command, fail, one_line

DEFAULT_AGAINST = "configs/pretrained.yaml"
TAGS = ("CRITICAL", "MODIFIED", "NEW", "OMITTED", "ALIGNED")
SECTION_CLASSES = {  # LightningCLI sections without a class_path: the classes nano8k.fit binds them to
    "model": "nano8k.training.module.NanoASRModule",
    "data": "nano8k.data.pipeline.datamodule.TelephoneDataModule",
    "trainer": "lightning.pytorch.Trainer",
}
# Arguments whose signature default is None but whose class then uses a concrete value (shown as the default).
EFFECTIVE_DEFAULTS: dict[str, Any] = {
    "model.freeze": "nano8k.training.freezing.FreezeConfig",  # NanoASRModule: freeze or FreezeConfig()
    "trainer.precision": "32-true",
    "trainer.max_epochs": 1000,  # Lightning: 1000 epochs when neither max_epochs nor max_steps is given
}
ALWAYS_LISTED = ("model", "data")  # sections listed in full; others only where a config sets or changes a key
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


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

        return {"key": self.key, "against": plain(self.against), "value": plain(self.value),
                "default": plain(self.default), "against_set": self.against_set, "value_set": self.value_set,
                "change": self.change, "tag": self.tag, "reason": self.reason}


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


# -- loading --------------------------------------------------------------------------------------------------
def load_config(path: str | Path) -> dict[str, Any]:
    """Read a LightningCLI YAML config; clear error naming the file when it is missing or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        with path.open(encoding="utf-8") as stream:  # a stream: PyYAML's message names the file and line
            data = yaml.safe_load(stream)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({one_line(err)})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of sections (trainer, model, data), got {type(data).__name__}")
    return data


def import_class(path: str) -> type:
    module, _, name = path.rpartition(".")
    if not module:
        raise ValueError(f"class_path {path!r} is not a dotted path (package.module.Class)")
    return getattr(importlib.import_module(module), name)


def plain(value: Any) -> Any:
    """YAML-like plain data: dataclasses -> dicts, tuples -> lists, numeric strings -> numbers."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        number = float(value)
        return int(number) if number.is_integer() and not re.search(r"[.eE]", value) else number
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def class_defaults(cls: type) -> dict[str, Any]:
    """Keyword defaults of ``cls.__init__`` as plain data (arguments without a default are left out)."""
    defaults = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is not inspect.Parameter.empty:
            defaults[name] = plain(param.default)
    return defaults


def _short(class_path: str) -> str:
    return class_path.rpartition(".")[2]


def normalize(node: Any, path: tuple[str, ...], class_nodes: dict[tuple[str, ...], str]) -> Any:
    """Fold ``class_path``/``init_args`` into one mapping and lists of them into {ClassName: args}."""
    if isinstance(node, Mapping):
        if "class_path" in node:
            class_nodes[path] = str(node["class_path"])
            out = {"class_path": _short(str(node["class_path"]))}
            args = {**(node.get("init_args") or {}), **(node.get("dict_kwargs") or {})}
            out.update({k: normalize(v, path + (k,), class_nodes) for k, v in args.items()})
            return out
        return {str(k): normalize(v, path + (str(k),), class_nodes) for k, v in node.items()}
    if isinstance(node, list) and node and all(isinstance(v, Mapping) and "class_path" in v for v in node):
        out: dict[str, Any] = {}
        for item in node:
            name = _short(str(item["class_path"]))
            while name in out:
                name += "+"
            out[name] = normalize(item, path + (name,), class_nodes)
        return out
    return plain(node)


def _set_in(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        child = tree.get(part)
        if not isinstance(child, dict):
            child = tree[part] = {}
        tree = child
    tree[path[-1]] = value


def merge(base: Any, over: Any) -> Any:
    """``over`` on top of ``base``; mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(base.get(key, MISSING), value) if key in base else value
        return out
    return over


def _default_for(key: str) -> Any:
    value = EFFECTIVE_DEFAULTS[key]
    if isinstance(value, str) and value.startswith("nano8k."):
        return plain(import_class(value)())
    return value


@dataclass
class Effective:
    """A config resolved against class defaults: ``tree`` (effective values), ``defaults``, ``explicit`` keys."""

    tree: dict[str, Any]
    defaults: dict[str, Any]
    explicit: set[str]


def effective(config: Mapping[str, Any]) -> Effective:
    """Merge a config over the ``__init__`` defaults of the classes its sections and class_paths name."""
    class_nodes: dict[tuple[str, ...], str] = {}
    explicit_tree = normalize(dict(config), (), class_nodes)
    defaults: dict[str, Any] = {}
    for section, class_path in SECTION_CLASSES.items():
        node = config.get(section)
        if isinstance(node, Mapping) and "class_path" in node:
            continue  # subclass mode: the class_path below supplies the defaults
        defaults[section] = class_defaults(import_class(class_path))
    for path, class_path in sorted(class_nodes.items(), key=lambda item: len(item[0])):
        try:
            cls_defaults = class_defaults(import_class(class_path))
        except (ImportError, AttributeError, ValueError) as err:
            raise ValueError(f"class_path {class_path!r} at {'.'.join(path)}: cannot import ({err})") from err
        _set_in(defaults, path, {"class_path": _short(class_path), **cls_defaults})
    for key in EFFECTIVE_DEFAULTS:
        path = tuple(key.split("."))
        node: Any = defaults
        for part in path[:-1]:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and node.get(path[-1], MISSING) in (None, MISSING) and path[0] in defaults:
            _set_in(defaults, path, _default_for(key))
    explicit: set[str] = set()

    def collect(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                key = f"{prefix}.{k}" if prefix else k
                explicit.add(key)
                collect(v, key)

    collect(explicit_tree, "")
    return Effective(merge(defaults, explicit_tree), defaults, explicit)


# -- comparison -----------------------------------------------------------------------------------------------
def _lookup(tree: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return MISSING
        tree = tree[part]
    return tree


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


def compare(config: Mapping[str, Any], against: Mapping[str, Any], *, config_name: str = "config",
            against_name: str = "against", include_all: bool = False) -> Alignment:
    """Row per parameter of ``config`` vs ``against`` (both LightningCLI config mappings), tagged by the rule table."""
    eff_c, eff_a = effective(config), effective(against)
    result = Alignment(config_name, against_name)

    def emit(key: str, a: Any, c: Any) -> None:
        a_set, c_set = key in eff_a.explicit, key in eff_c.explicit
        change = _classify(a, c, c_set)
        listed = include_all or a_set or c_set or change != "aligned" or key.split(".")[0] in ALWAYS_LISTED
        if not listed:
            return
        rule = rule_for(key)
        tag = "CRITICAL" if rule is not None and rule.critical and change != "aligned" else change.upper()
        default = _lookup(eff_c.defaults, key)
        if default is MISSING:
            default = _lookup(eff_a.defaults, key)
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
    """``compare`` for two YAML files, named by their file names."""
    against = against if against is not None else project_file(DEFAULT_AGAINST)
    return compare(load_config(config), load_config(against), config_name=Path(config).name,
                   against_name=Path(against).name, include_all=include_all)


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
        lines.append(f"| `{r.key}` | {esc(_cell(r.against, r.against_set))} | {esc(_cell(r.value, r.value_set))} | "
                     f"{esc(fmt(r.default))} | {'**' + r.tag + '**' if r.tag == 'CRITICAL' else r.tag} | "
                     f"{esc(r.reason)} |")
    return "\n".join(lines) + "\n"


def to_table(alignment: Alignment, width: int = 28) -> str:
    """Plain fixed-width text."""
    def clip(s: str) -> str:
        return s if len(s) <= width else s[: width - 1] + "…"

    header = ("key", alignment.against, alignment.config, "default", "tag")
    rows = [(r.key, clip(_cell(r.against, r.against_set)), clip(_cell(r.value, r.value_set)), clip(fmt(r.default)),
             r.tag, r.reason) for r in alignment.rows]
    widths = [max(len(str(x[i])) for x in [header, *rows]) for i in range(5)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  reason"]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row[:5], widths)) + "  " + row[5] for row in rows]
    out.append(f"summary: {summary_line(alignment)}")
    return "\n".join(out) + "\n"


def to_json(alignment: Alignment) -> str:
    return json.dumps({"config": alignment.config, "against": alignment.against, "summary": alignment.summary,
                       "rows": [r.to_json() for r in alignment.rows]}, indent=2, default=str) + "\n"


FORMATTERS = {"md": to_markdown, "table": to_table, "json": to_json}


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nano8k.align", description=__doc__)
    parser.add_argument("config", help="LightningCLI YAML config (e.g. configs/telephone.yaml)")
    parser.add_argument("--against", default=None,
                        help=f"reference config (default {DEFAULT_AGAINST}, as nano8k ships it; any other config "
                             "compares directly)")
    parser.add_argument("--format", choices=sorted(FORMATTERS), default="md")
    parser.add_argument("--all", action="store_true", help="also list trainer/callback keys at default in both")
    parser.add_argument("--only", nargs="*", choices=TAGS, help="keep only rows with these tags")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")
    args = parser.parse_args(argv)
    try:
        alignment = align_files(args.config, args.against, include_all=args.all)
    except (OSError, ValueError) as err:
        fail(str(err))
    if args.only:
        alignment.rows = [r for r in alignment.rows if r.tag in args.only]
    text = FORMATTERS[args.format](alignment)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
