"""Scoring decoded utterances: group fields per utterance, the evaluation report and its files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nano8k.data.manifests.fields import entry_fields
from nano8k.data.manifests.utterance import Utterance
from nano8k.inference.decode import Transcript
from nano8k.scoring.metrics import utterance_language
from nano8k.scoring.plots import plot_groups
from nano8k.scoring.report import Scored, build_report, markdown


def group_fields(utts: Sequence[Utterance], group_by: Sequence[str]) -> list[dict[str, str]]:
    """Each utterance's value of every ``group_by`` field; ``lang`` is the entry's language, else its reference's."""
    others = [name for name in group_by if name != "lang"]
    rows = entry_fields(utts, others) if others else [{} for _ in utts]
    if "lang" in group_by:
        for row, utt in zip(rows, utts):
            row["lang"] = utterance_language(utt.lang, utt.target)
    return [{name: row[name] for name in group_by} for row in rows]


def evaluation_report(
    results: Sequence[Transcript],
    fields: Sequence[dict[str, str]],
    group_by: Sequence[str],
    normalizer: str,
    num_worst: int = 10,
    num_substitutions: int = 20,
) -> dict[str, Any]:
    """``build_report`` of the decoded results; utterances whose audio failed are listed under ``failed``."""
    items = [Scored(r.utt.key, r.utt.target, r.text, f) for r, f in zip(results, fields) if r.error is None]
    report = build_report(items, group_by, normalizer, num_substitutions, num_worst)
    report["failed"] = [
        {"key": r.utt.key, "audio": str(r.utt.audio), "error": r.error} for r in results if r.error is not None
    ]
    return report


def write_report(report: dict[str, Any], out_dir: str | Path, title: str) -> list[Path]:
    """``report.json`` (without the per-utterance rows), ``utterances.jsonl``, ``report.md``, ``cer_by_group.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in report.items() if k != "utterances"}
    (out / "report.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    with open(out / "utterances.jsonl", "w", encoding="utf-8") as handle:
        for row in report["utterances"]:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "report.md").write_text(markdown(report, title), encoding="utf-8")
    return [
        out / "report.json",
        out / "utterances.jsonl",
        out / "report.md",
        plot_groups(report, out / "cer_by_group.png"),
    ]
