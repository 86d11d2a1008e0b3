"""ASR error rates: CER / WER / MER (mixed CJK-character + English-word) on jiwer, DDP accumulator.

Definitions (all pooled over the corpus: total edits / total reference units, as jiwer and compute-wer do):

- Normalization (``normalizer``: ``basic``, the default, ``funasr`` or ``none``) is applied to references and
  hypotheses first; ``nano8k.scoring.normalizers`` says what each does.
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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jiwer
import torch
from torchmetrics import Metric

from nano8k.scoring.normalizers import CJK, basic_normalize, get_normalizer

UNITS = ("char", "word", "mixed")
RATE_NAMES = {"char": "cer", "word": "wer", "mixed": "mer"}

_CJK_CHAR = re.compile(f"[{CJK}]")
_MER_TOKEN = re.compile(f"[{CJK}]|[^\\s{CJK}]+")
_WHITESPACE = re.compile(r"\s+")
_LATIN = re.compile(r"[a-z]")


def text_language(text: str) -> str:
    """``zh`` (CJK characters only), ``en`` (Latin letters only), ``mixed`` (both) or ``other`` for a reference."""
    text = basic_normalize(text)
    cjk, latin = bool(_CJK_CHAR.search(text)), bool(_LATIN.search(text))
    return "mixed" if cjk and latin else "zh" if cjk else "en" if latin else "other"


def utterance_language(lang: str | None, ref: str) -> str:
    """The language an utterance is grouped under: its manifest's ``lang``, else its reference's script."""
    return lang or text_language(ref)


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


def align(refs: Sequence[str], hyps: Sequence[str], unit: str) -> tuple[list[int], Any]:
    """Indices of the (already normalized) pairs whose reference has a unit, and ``jiwer.process_words`` of those
    pairs in ``unit`` (None when there is none): per-pair alignments in ``.alignments``, pooled counts on it."""
    scored, ref_tok, hyp_tok = [], [], []
    for i, (ref, hyp) in enumerate(zip(refs, hyps)):
        r = tokens(ref, unit)
        if r:
            scored.append(i)
            ref_tok.append(" ".join(r))
            hyp_tok.append(" ".join(tokens(hyp, unit)))
    return scored, (jiwer.process_words(ref_tok, hyp_tok) if ref_tok else None)


def error_counts(refs: Sequence[str], hyps: Sequence[str], unit: str, *, normalizer: str = "basic") -> ErrorCounts:
    """Edit counts of ``hyps`` against ``refs`` in ``unit`` (char/word/mixed), via ``jiwer.process_words``."""
    _check_pairs(refs, hyps)
    normalize = get_normalizer(normalizer)
    scored, out = align([normalize(r) for r in refs], [normalize(h) for h in hyps], unit)
    empty = len(refs) - len(scored)
    if out is None:
        return ErrorCounts(0, 0, 0, 0, 0, 0, empty)
    ref_units = out.hits + out.substitutions + out.deletions
    edits = out.substitutions + out.deletions + out.insertions
    return ErrorCounts(edits, ref_units, out.substitutions, out.deletions, out.insertions, len(scored), empty)


def cer(refs: Sequence[str], hyps: Sequence[str], *, normalizer: str = "basic") -> float:
    """Character error rate, whitespace removed (see the module docstring)."""
    return error_counts(refs, hyps, "char", normalizer=normalizer).rate


def wer(refs: Sequence[str], hyps: Sequence[str], *, normalizer: str = "basic") -> float:
    """Word error rate over whitespace-separated words."""
    return error_counts(refs, hyps, "word", normalizer=normalizer).rate


def mer(refs: Sequence[str], hyps: Sequence[str], *, normalizer: str = "basic") -> float:
    """Mixed error rate: CJK characters and English words/numbers as tokens (code-switching metric)."""
    return error_counts(refs, hyps, "mixed", normalizer=normalizer).rate


class ErrorRateAccumulator(Metric):
    """Sums edits and reference units of CER/WER/MER across batches; ``compute`` syncs the sums across DDP ranks.

    ``compute()`` returns ``{"cer", "wer", "mer", "utterances", "empty_refs"}`` as tensors (rates nan when no
    reference unit was seen).
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, normalizer: str = "basic", **kwargs) -> None:
        super().__init__(**kwargs)
        self.normalize = get_normalizer(normalizer)
        for unit in UNITS:
            self.add_state(f"{unit}_edits", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
            self.add_state(f"{unit}_ref", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("utterances", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("empty_refs", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, refs: Sequence[str], hyps: Sequence[str]) -> None:  # type: ignore[override]
        _check_pairs(refs, hyps)
        refs, hyps = [self.normalize(r) for r in refs], [self.normalize(h) for h in hyps]
        for unit in UNITS:
            counts = error_counts(refs, hyps, unit, normalizer="none")
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
