"""Error reports: pooled rates overall and per value of any manifest field, top substitutions, per-utterance rows.

Each utterance is aligned once per unit (``char`` for CER, ``word`` for WER, ``mixed`` for MER, on the normalized
text); a group's counts are the sums of its utterances' counts, so for every grouping field the groups add up to the
overall counts. Utterances whose normalized reference is empty are listed but not scored (``empty_refs``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nano8k.scoring.metrics import RATE_NAMES, UNITS, align, utterance_language
from nano8k.scoring.normalizers import get_normalizer

COUNT_NAMES = ("ref_units", "substitutions", "deletions", "insertions")


@dataclass
class Scored:
    """One decoded utterance: its reference, hypothesis and the field values it is grouped by."""

    key: str
    ref: str
    hyp: str
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Aligned:
    norm_ref: str
    norm_hyp: str
    counts: dict[str, dict[str, int]]  # unit -> COUNT_NAMES
    scored: bool
    substitutions: Counter = field(default_factory=Counter)  # (ref, hyp) pairs in MER units


def _top(aligned: Sequence[_Aligned], n: int) -> list[list[Any]]:
    pairs: Counter = Counter()
    for a in aligned:
        pairs.update(a.substitutions)
    return [[ref, hyp, count] for (ref, hyp), count in pairs.most_common(n)]


def _align(items: Sequence[Scored], normalizer: str) -> list[_Aligned]:
    """Per-utterance counts for every unit and substitution pairs (ref unit, hyp unit) in MER units."""
    normalize = get_normalizer(normalizer)
    refs = [normalize(item.ref) for item in items]
    hyps = [normalize(item.hyp) for item in items]
    aligned = [_Aligned(r, h, {}, False) for r, h in zip(refs, hyps)]
    for unit in UNITS:
        for a in aligned:
            a.counts[unit] = dict.fromkeys(COUNT_NAMES, 0)
        scored, out = align(refs, hyps, unit)  # the same pairs for every unit: those with a non-space character
        if out is None:
            continue
        for i, chunks, r, h in zip(scored, out.alignments, out.references, out.hypotheses):
            aligned[i].scored = True
            counts = aligned[i].counts[unit]
            counts["ref_units"] = len(r)
            for chunk in chunks:
                if chunk.type == "substitute":
                    counts["substitutions"] += chunk.ref_end_idx - chunk.ref_start_idx
                    if unit == "mixed":
                        aligned[i].substitutions.update(
                            zip(r[chunk.ref_start_idx : chunk.ref_end_idx], h[chunk.hyp_start_idx : chunk.hyp_end_idx])
                        )
                elif chunk.type == "delete":
                    counts["deletions"] += chunk.ref_end_idx - chunk.ref_start_idx
                elif chunk.type == "insert":
                    counts["insertions"] += chunk.hyp_end_idx - chunk.hyp_start_idx
    return aligned


def _edits(counts: Mapping[str, int]) -> int:
    return counts["substitutions"] + counts["deletions"] + counts["insertions"]


def _rate(counts: Mapping[str, int]) -> float | None:
    return _edits(counts) / counts["ref_units"] if counts["ref_units"] else None


def _block(aligned: Sequence[_Aligned]) -> dict[str, Any]:
    """Rates and summed counts of some aligned utterances (a rate is None when there is nothing to score)."""
    block: dict[str, Any] = {
        "utterances": sum(a.scored for a in aligned),
        "empty_refs": sum(not a.scored for a in aligned),
    }
    for unit in UNITS:
        sums = {name: sum(a.counts[unit][name] for a in aligned) for name in COUNT_NAMES}
        block[RATE_NAMES[unit]] = _rate(sums)
        block[f"{RATE_NAMES[unit]}_counts"] = {**sums, "edits": _edits(sums)}
    return block


def build_report(
    items: Sequence[Scored],
    group_by: Sequence[str] = (),
    normalizer: str = "basic",
    num_substitutions: int = 20,
    num_worst: int = 10,
) -> dict[str, Any]:
    """Overall scores, scores per value of each ``group_by`` field, top substitutions and per-utterance rows.

    ``report["groups"][field][value]`` has the same keys as ``report["overall"]``; ``report["substitutions"]`` lists
    the ``num_substitutions`` most frequent (ref, hyp, count) pairs in MER units (CJK characters, words) overall and
    per group; ``report["utterances"]`` has one row per utterance (its group values under ``fields``, counts in MER
    units); ``report["worst"]`` the ``num_worst`` scored ones by MER, then edits.
    """
    aligned = _align(items, normalizer)
    report: dict[str, Any] = {
        "normalizer": normalizer,
        "overall": _block(aligned),
        "groups": {},
        "substitutions": {"overall": _top(aligned, num_substitutions)},
    }
    for name in group_by:
        members: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            members.setdefault(item.fields[name], []).append(i)
        report["groups"][name] = {value: _block([aligned[i] for i in idx]) for value, idx in sorted(members.items())}
        report["substitutions"][name] = {
            value: _top([aligned[i] for i in idx], 5) for value, idx in sorted(members.items())
        }
    rows = []
    for item, a in zip(items, aligned):
        mixed = a.counts["mixed"]
        rows.append(
            {
                "key": item.key,
                "fields": dict(item.fields),
                "ref": item.ref,
                "hyp": item.hyp,
                "ref_normalized": a.norm_ref,
                "hyp_normalized": a.norm_hyp,
                "scored": a.scored,
                "cer": _rate(a.counts["char"]),
                "mer": _rate(mixed),
                **mixed,
            }
        )
    report["utterances"] = rows
    worst = [r for r in rows if r["scored"]]
    worst.sort(key=lambda r: (-r["mer"], -_edits(r), r["key"]))
    report["worst"] = worst[:num_worst]
    return report


def cer_by_language(
    refs: Sequence[str], hyps: Sequence[str], langs: Sequence[str | None], normalizer: str = "basic"
) -> dict[str, Any]:
    """Pooled CER overall and per language (``langs[i]``, or the reference's script when None), nan where nothing
    is scored: the short form the before/after callback and the mini scoring print."""
    items = [
        Scored(str(i), ref, hyp, {"lang": utterance_language(lang, ref)})
        for i, (ref, hyp, lang) in enumerate(zip(refs, hyps, langs, strict=True))
    ]
    report = build_report(items, ["lang"], normalizer)
    nan = float("nan")
    by_language = report["groups"]["lang"]
    return {
        "cer": report["overall"]["cer"] if report["overall"]["cer"] is not None else nan,
        "utterances": len(items),
        "normalizer": normalizer,
        "by_language": {lang: nan if b["cer"] is None else b["cer"] for lang, b in by_language.items()},
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _rows(named_blocks: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    lines = [
        "| set | utts | CER | WER | MER | sub | del | ins | chars |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, b in named_blocks:
        c = b["cer_counts"]
        lines.append(
            f"| {name} | {b['utterances']} | {_fmt(b['cer'])} | {_fmt(b['wer'])} | {_fmt(b['mer'])} | "
            f"{c['substitutions']} | {c['deletions']} | {c['insertions']} | {c['ref_units']} |"
        )
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: Mapping[str, Any], title: str = "Evaluation") -> str:
    """The report as Markdown: overall and per-group tables (CER's sub/del/ins in characters), substitutions, worst."""
    lines = [
        f"# {title}",
        "",
        f"Normalizer: `{report['normalizer']}`. Rates are pooled (edits / reference units); "
        "sub/del/ins count characters, as CER does.",
        "",
        "## Overall",
        "",
        *_rows([("overall", report["overall"])]),
    ]
    for name, groups in report["groups"].items():
        lines += ["", f"## By {name}", "", *_rows(list(groups.items()))]
    lines += [
        "",
        "## Most frequent substitutions (MER units: CJK characters, words)",
        "",
        "| reference | hypothesis | count |",
        "|---|---|---:|",
    ]
    lines += [f"| {_cell(r)} | {_cell(h)} | {n} |" for r, h, n in report["substitutions"]["overall"]]
    lines += ["", "## Worst utterances (by MER)", "", "| key | MER | reference | hypothesis |", "|---|---:|---|---|"]
    lines += [
        f"| {_cell(r['key'])} | {_fmt(r['mer'])} | {_cell(r['ref'])} | {_cell(r['hyp'])} |" for r in report["worst"]
    ]
    overall = report["overall"]
    if overall["empty_refs"]:
        lines += ["", f"{overall['empty_refs']} utterance(s) with an empty normalized reference were not scored."]
    return "\n".join(lines) + "\n"


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """A plain-text table for the terminal: one line overall and one per group value."""
    lines = [f"{'set':<22}{'utts':>7}{'CER':>9}{'WER':>9}{'MER':>9}"]
    blocks = [("overall", report["overall"])] + [
        (f"{name}={value}", b) for name, groups in report["groups"].items() for value, b in groups.items()
    ]
    for name, b in blocks:
        lines.append(f"{name[:21]:<22}{b['utterances']:>7}{_fmt(b['cer']):>9}{_fmt(b['wer']):>9}{_fmt(b['mer']):>9}")
    if report["overall"]["empty_refs"]:
        lines.append(f"{report['overall']['empty_refs']} utterance(s) with an empty reference were not scored")
    return lines
