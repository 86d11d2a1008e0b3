"""Extra fields of manifest entries (speaker, domain, channel type …), read back on demand for per-group reports.

Where a field comes from, per format:

- ChatML / ``{key, source, target}`` jsonl: the entry's top-level key of that name (``"domain": "billing"``);
- Kaldi data folder: the file ``utt2<name>`` beside ``text`` (``utt2spk`` for ``speaker``, Kaldi's own name);
- Lhotse: the supervision's attribute of that name (``speaker``, ``gender``, ``language``), else its ``custom``
  entry, else the cut's ``custom`` entry.

A value that is not a string is written as JSON (``0``, ``true``). An entry without the field gets ``MISSING``; a
field that no entry has is an error naming the fields the first entry does have (a typo must not become one group).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from nano8k.data.badsamples import DataError
from nano8k.data.kaldi import read_table
from nano8k.data.textfile import json_line, read_lines
from nano8k.data.utterance import Utterance

MISSING = "(none)"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _lhotse_fields(obj: dict[str, Any], key: str) -> dict[str, Any]:
    """A supervision's fields (its ``custom`` ones under its own), with the cut's ``custom`` beneath, for ``key``."""
    if isinstance(obj.get("supervisions"), list):  # a cut: the supervision with this id
        sup = next((s for s in obj["supervisions"] if isinstance(s, dict) and s.get("id") == key), {})
        beneath = obj.get("custom") or {}
    else:
        sup, beneath = obj, {}
    return {**beneath, **(sup.get("custom") or {}), **{k: v for k, v in sup.items() if k != "custom"}}


def _json_lines(manifest: Path, wanted: set[int]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for lineno, text, error in read_lines(manifest):
        if lineno in wanted and error is None:
            obj, _ = json_line(text)
            if isinstance(obj, dict):
                found[lineno] = obj
    return found


def _kaldi_folder(manifest: Path) -> Path:
    return manifest if manifest.is_dir() else manifest.parent


def _fields_of_manifest(manifest: Path, utts: Sequence[Utterance], names: Sequence[str]) -> list[dict[str, Any]]:
    if manifest.is_dir() or manifest.name in ("wav.scp", "segments", "text"):
        folder = _kaldi_folder(manifest)
        tables = {name: read_table(folder / f"utt2{'spk' if name == 'speaker' else name}") for name in names}
        return [{name: table.rows[u.key][1] for name, table in tables.items() if u.key in table.rows} for u in utts]
    lines = _json_lines(manifest, {u.line for u in utts if u.line is not None})
    out = []
    for u in utts:
        obj = lines.get(u.line or -1, {})
        out.append(_lhotse_fields(obj, u.key) if ("supervisions" in obj or "recording_id" in obj) else obj)
    return out


def entry_fields(utts: Sequence[Utterance], names: Sequence[str]) -> list[dict[str, str]]:
    """``{name: value}`` for each utterance and each of ``names`` (``MISSING`` where its entry lacks it)."""
    by_manifest: dict[Path | None, list[int]] = {}
    for i, utt in enumerate(utts):
        by_manifest.setdefault(utt.manifest, []).append(i)
    raw: list[dict[str, Any]] = [{} for _ in utts]
    for manifest, indices in by_manifest.items():
        if manifest is None:
            continue
        for i, fields in zip(indices, _fields_of_manifest(Path(manifest), [utts[i] for i in indices], names)):
            raw[i] = fields
    for name in names:
        if utts and not any(name in fields for fields in raw):
            first = sorted(raw[0]) if raw and raw[0] else []
            raise DataError(f"no entry of {utts[0].manifest} has a field {name!r}"
                            + (f" (its first entry has: {', '.join(first)})" if first else ""))
    return [{name: _text(fields[name]) if name in fields else MISSING for name in names} for fields in raw]
