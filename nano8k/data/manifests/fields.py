"""Extra fields of manifest entries (speaker, domain, channel type …), read back on demand for per-group reports.

Where a field comes from, per format (the format the manifest reader detects):

- ChatML / ``{key, source, target}`` jsonl: the entry's top-level key of that name (``"domain": "billing"``);
- Kaldi data folder: the file ``utt2<name>`` beside ``wav.scp`` (``utt2spk`` for ``speaker``, Kaldi's own name);
- Lhotse: the supervision's attribute of that name (``speaker``, ``gender``, ``language``), else its ``custom``
  entry, else the cut's ``custom`` entry.

A value that is not a string is written as JSON (``0``, ``true``). An entry without the field, or with ``null``,
gets ``MISSING``. A field that no entry of any manifest has is an error naming, per manifest, where it was looked
for and what is there (a typo must not become one group). A Kaldi ``utt2<name>`` line that repeats a key or is not
UTF-8 is an error naming its file and line, as it is for the manifest itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nano8k.data.manifests.io import detect_format
from nano8k.data.manifests.kaldi import read_table
from nano8k.data.manifests.textfile import json_line, read_lines
from nano8k.data.manifests.utterance import Utterance
from nano8k.errors import DataError

MISSING = "(none)"


def _kaldi_file(name: str) -> str:
    return f"utt2{'spk' if name == 'speaker' else name}"


def _lhotse_fields(obj: dict[str, Any], key: str) -> dict[str, Any]:
    """A supervision's fields (its ``custom`` ones under its own), with the cut's ``custom`` beneath, for ``key``."""
    if isinstance(obj.get("supervisions"), list):  # a cut: the supervision with this id
        sup = next((s for s in obj["supervisions"] if isinstance(s, dict) and s.get("id") == key), {})
        beneath = obj.get("custom") or {}
    else:
        sup, beneath = obj, {}
    return {**beneath, **(sup.get("custom") or {}), **{k: v for k, v in sup.items() if k != "custom"}}


def _kaldi_fields(manifest: Path, utts: Sequence[Utterance], names: Sequence[str]) -> tuple[list[dict], str]:
    folder = manifest.parent  # a Kaldi utterance's manifest is its folder's wav.scp or segments
    fields: list[dict[str, Any]] = [{} for _ in utts]
    for name in names:
        table = read_table(folder / _kaldi_file(name))
        if table.bad:
            raise DataError(f"{table.bad[0].manifest}:{table.bad[0].line}: {table.bad[0].reason}")
        for row, utt in zip(fields, utts):
            problem = table.problem(utt.key)
            if problem:
                raise DataError(problem)
            if utt.key in table.rows:
                row[name] = table.rows[utt.key][1]
    present = sorted(p.name for p in folder.glob("utt2*"))
    return fields, (
        f"{folder} has {', '.join(present) if present else 'no utt2* file'} (a field is read from "
        "utt2<field>, speaker from utt2spk)"
    )


def _json_fields(manifest: Path, fmt: str, utts: Sequence[Utterance]) -> tuple[list[dict], str]:
    wanted = {u.line for u in utts if u.line is not None}
    lines: dict[int, dict[str, Any]] = {}
    for lineno, text, error in read_lines(manifest):
        if lineno in wanted and error is None:
            obj, _ = json_line(text)
            if isinstance(obj, dict):
                lines[lineno] = obj
    objs = [lines.get(u.line or -1, {}) for u in utts]
    fields = [_lhotse_fields(obj, u.key) for obj, u in zip(objs, utts)] if fmt == "lhotse" else objs
    first = sorted(fields[0]) if fields and fields[0] else []
    return fields, f"the first entry of {manifest} has {', '.join(first) if first else 'no field'}"


def entry_fields(utts: Sequence[Utterance], names: Sequence[str]) -> list[dict[str, str]]:
    """``{name: value}`` for each utterance and each of ``names`` (``MISSING`` where its entry lacks it)."""
    by_manifest: dict[Path | None, list[int]] = {}
    for i, utt in enumerate(utts):
        by_manifest.setdefault(utt.manifest, []).append(i)
    raw: list[dict[str, Any]] = [{} for _ in utts]
    seen: list[str] = []
    for manifest, indices in by_manifest.items():
        if manifest is None or not names:
            continue
        manifest, members = Path(manifest), [utts[i] for i in indices]
        fmt = detect_format(manifest)
        if fmt == "kaldi":
            fields, what = _kaldi_fields(manifest, members, names)
        else:
            fields, what = _json_fields(manifest, fmt, members)
        seen.append(what)
        for i, row in zip(indices, fields):
            raw[i] = row
    for name in names:
        if utts and not any(row.get(name) is not None for row in raw):
            raise DataError(f"no entry has a field {name!r}: " + "; ".join(seen))
    return [
        {
            name: MISSING
            if row.get(name) is None
            else row[name]
            if isinstance(row[name], str)
            else json.dumps(row[name], ensure_ascii=False)
            for name in names
        }
        for row in raw
    ]
