"""Config values (YAML mappings) to frozen settings dataclasses, refusing unknown keys by name."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_mapping(cls: type[T], value: Any, hint: str = "") -> T:
    """``cls`` from a config value: an instance, or a mapping of its fields (a ``class_path`` / ``init_args`` form
    too; lists become tuples). A non-mapping or an unknown key is a ``ValueError`` naming it and the known fields,
    followed by ``hint`` when the keys are unknown."""
    if isinstance(value, cls):
        return value
    known = [f.name for f in fields(cls)]
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of {known}, got {value!r}")
    values = dict(value.get("init_args", value))
    values.pop("class_path", None)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; known: {known}{hint}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
