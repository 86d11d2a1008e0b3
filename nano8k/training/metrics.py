"""ASR error rates: text normalization, CER / WER / MER (mixed CJK-character + English-word) on jiwer, DDP accumulator.

Definitions (all pooled over the corpus: total edits / total reference units, as jiwer and compute-wer do):

- ``normalize_text``: NFKC (full-width -> half-width), lowercase, apostrophes dropped ("don't" -> "dont"), every
  other Unicode punctuation character (categories P*, which covers CJK punctuation such as 。，、「」) replaced by
  a space, whitespace collapsed, and spaces *between two CJK characters* removed (Chinese has no word spaces).
- **CER**: character edit distance with **all whitespace removed** (jiwer's ``cer`` would count spaces as
  characters; for Chinese they are not part of the transcript, and removing them everywhere keeps CER comparable
  across languages).
- **WER**: edit distance over whitespace-separated words. A Chinese sentence without spaces is one "word"; use CER
  or MER for Chinese.
- **MER** (mixed error rate, the code-switching metric; not jiwer's *match* error rate ``jiwer.mer``): edit distance
  over ``tokenize_for_mer`` tokens: every CJK character is one token, every run of other non-space characters
  (an English word, a number) is one token.

Utterances whose normalized reference is empty are dropped from every rate and counted (``empty_refs``), so a rate
never divides by zero; a corpus with no reference units gives ``nan``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

import jiwer
import torch
from torchmetrics import Metric

UNITS = ("char", "word", "mixed")
RATE_NAMES = {"char": "cer", "word": "wer", "mixed": "mer"}

# CJK ideographs (+ext. A, compatibility), kana and the CJK symbol block's letters; each is one MER token.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{_CJK}]")
_MER_TOKEN = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")
_CJK_GAP = re.compile(f"(?<=[{_CJK}])\\s+(?=[{_CJK}])")
_APOSTROPHES = "'\u2018\u2019\u02bc`"
_WHITESPACE = re.compile(r"\s+")
_LATIN = re.compile(r"[a-z]")


def normalize_text(text: str) -> str:
    """NFKC, lowercase, punctuation (incl. CJK) removed, spaces collapsed and removed between CJK characters."""
    text = unicodedata.normalize("NFKC", text).lower()
    chars = []
    for ch in text:
        if ch in _APOSTROPHES:
            continue
        chars.append(" " if unicodedata.category(ch).startswith("P") else ch)
    text = _WHITESPACE.sub(" ", "".join(chars)).strip()
    return _CJK_GAP.sub("", text)


def text_language(text: str) -> str:
    """``zh`` (CJK characters only), ``en`` (Latin letters only), ``mixed`` (both) or ``other`` for a reference."""
    text = normalize_text(text)
    cjk, latin = bool(_CJK_CHAR.search(text)), bool(_LATIN.search(text))
    return "mixed" if cjk and latin else "zh" if cjk else "en" if latin else "other"


def tokenize_for_mer(text: str) -> list[str]:
    """Mixed tokens: each CJK character alone, each run of other non-space characters (word, number) as one."""
    return _MER_TOKEN.findall(text)


def tokens(text: str, unit: str) -> list[str]:
    """Units of an (already normalized) text: ``char`` (no whitespace), ``word`` (split on spaces) or ``mixed``."""
    if unit == "char":
        return list(_WHITESPACE.sub("", text))
    if unit == "word":
        return text.split()
    if unit == "mixed":
        return tokenize_for_mer(text)
    raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")


@dataclass(frozen=True)
class ErrorCounts:
    """Pooled counts of one unit over a corpus; ``rate`` is ``edits / ref_units`` (nan when nothing to score)."""

    edits: int
    ref_units: int
    substitutions: int
    deletions: int
    insertions: int
    utterances: int  # scored utterances (non-empty normalized reference)
    empty_refs: int  # dropped: normalized reference was empty

    @property
    def rate(self) -> float:
        return self.edits / self.ref_units if self.ref_units else float("nan")


def _check_pairs(refs: Sequence[str], hyps: Sequence[str]) -> None:
    if isinstance(refs, str) or isinstance(hyps, str):
        raise TypeError("refs and hyps must be sequences of strings, not a single string")
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses")


def error_counts(refs: Sequence[str], hyps: Sequence[str], unit: str, *, normalize: bool = True) -> ErrorCounts:
    """Edit counts of ``hyps`` against ``refs`` in ``unit`` (char/word/mixed), via ``jiwer.process_words``."""
    _check_pairs(refs, hyps)
    ref_tok, hyp_tok, empty = [], [], 0
    for ref, hyp in zip(refs, hyps):
        if normalize:
            ref, hyp = normalize_text(ref), normalize_text(hyp)
        r = tokens(ref, unit)
        if not r:
            empty += 1
            continue
        ref_tok.append(" ".join(r))
        hyp_tok.append(" ".join(tokens(hyp, unit)))
    if not ref_tok:
        return ErrorCounts(0, 0, 0, 0, 0, 0, empty)
    out = jiwer.process_words(ref_tok, hyp_tok)
    ref_units = out.hits + out.substitutions + out.deletions
    edits = out.substitutions + out.deletions + out.insertions
    return ErrorCounts(edits, ref_units, out.substitutions, out.deletions, out.insertions, len(ref_tok), empty)


def cer(refs: Sequence[str], hyps: Sequence[str], *, normalize: bool = True) -> float:
    """Character error rate, whitespace removed (see the module docstring)."""
    return error_counts(refs, hyps, "char", normalize=normalize).rate


def wer(refs: Sequence[str], hyps: Sequence[str], *, normalize: bool = True) -> float:
    """Word error rate over whitespace-separated words."""
    return error_counts(refs, hyps, "word", normalize=normalize).rate


def mer(refs: Sequence[str], hyps: Sequence[str], *, normalize: bool = True) -> float:
    """Mixed error rate: CJK characters and English words/numbers as tokens (code-switching metric)."""
    return error_counts(refs, hyps, "mixed", normalize=normalize).rate


class ErrorRateAccumulator(Metric):
    """Sums edits and reference units of CER/WER/MER across batches; ``compute`` syncs the sums across DDP ranks.

    ``compute()`` returns ``{"cer", "wer", "mer", "utterances", "empty_refs"}`` as tensors (rates nan when no
    reference unit was seen).
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, normalize: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.normalize = normalize
        for unit in UNITS:
            self.add_state(f"{unit}_edits", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
            self.add_state(f"{unit}_ref", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("utterances", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("empty_refs", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, refs: Sequence[str], hyps: Sequence[str]) -> None:  # type: ignore[override]
        _check_pairs(refs, hyps)
        if self.normalize:
            refs, hyps = [normalize_text(r) for r in refs], [normalize_text(h) for h in hyps]
        for unit in UNITS:
            counts = error_counts(refs, hyps, unit, normalize=False)
            setattr(self, f"{unit}_edits", getattr(self, f"{unit}_edits") + counts.edits)
            setattr(self, f"{unit}_ref", getattr(self, f"{unit}_ref") + counts.ref_units)
        # the same for every unit: a reference is empty exactly when it has no non-space character
        self.utterances += counts.utterances
        self.empty_refs += counts.empty_refs

    def compute(self) -> dict[str, torch.Tensor]:
        result: dict[str, torch.Tensor] = {}
        for unit in UNITS:
            ref = getattr(self, f"{unit}_ref")
            edits = getattr(self, f"{unit}_edits")
            result[RATE_NAMES[unit]] = (
                edits.double() / ref.double() if int(ref) > 0 else torch.tensor(float("nan"), dtype=torch.double)
            )
        result["utterances"] = self.utterances.clone()
        result["empty_refs"] = self.empty_refs.clone()
        return result


def language_groups(refs: Sequence[str], langs: Sequence[str | None]) -> dict[str, list[int]]:
    """Indices per language, sorted by language: ``langs[i]``, or ``text_language`` of the reference when None."""
    groups: dict[str, list[int]] = {}
    for i, (ref, lang) in enumerate(zip(refs, langs)):
        groups.setdefault(lang or text_language(ref), []).append(i)
    return dict(sorted(groups.items()))


def cer_by_language(refs: Sequence[str], hyps: Sequence[str], langs: Sequence[str | None]) -> dict:
    """Pooled CER overall and per language (``language_groups``)."""
    _check_pairs(refs, hyps)
    groups = language_groups(refs, langs)

    def rate(indices: Sequence[int]) -> float:
        return error_counts([refs[i] for i in indices], [hyps[i] for i in indices], "char").rate

    return {"cer": rate(range(len(refs))), "utterances": len(refs),
            "by_language": {lang: rate(idx) for lang, idx in groups.items()}}
