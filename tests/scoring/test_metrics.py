"""Metrics: normalization, tokenization, and CER/WER/MER equal to jiwer on the same normalized strings."""

from __future__ import annotations

import math

import jiwer
import pytest

from nano8k.scoring.metrics import (
    ErrorRateAccumulator,
    cer,
    error_counts,
    mer,
    tokenize_for_mer,
    wer,
)
from nano8k.scoring.normalizers import basic_normalize as normalize_text

REFS = ["请帮我转人工服务。", "My account number is 4572.", "我想查一下 Credit Card 的账单", "Hello, World!"]
HYPS = ["请帮我转人工服物", "my account number is 4527", "我想查一下 credit cards 账单", ""]


def test_normalize_nfkc_case_punctuation_and_cjk_spaces():
    assert normalize_text("ＡＢＣ，１２３！") == "abc 123"
    assert normalize_text("请 帮 我。转人工？") == "请帮我转人工"
    assert normalize_text("Don't  STOP—now…") == "dont stop now"
    assert normalize_text("查一下 Credit Card 的账单") == "查一下 credit card 的账单"
    assert normalize_text("「」。、") == ""


def test_tokenize_for_mer_mixes_characters_and_words():
    assert tokenize_for_mer("查一下 credit card 的 4572 账单") == [
        "查",
        "一",
        "下",
        "credit",
        "card",
        "的",
        "4572",
        "账",
        "单",
    ]
    assert tokenize_for_mer("ok好的ok") == ["ok", "好", "的", "ok"]


def _normalized():
    return [normalize_text(r) for r in REFS], [normalize_text(h) for h in HYPS]


def test_rates_equal_jiwer_on_the_same_normalized_strings():
    refs, hyps = _normalized()
    no_space = [r.replace(" ", "") for r in refs], [h.replace(" ", "") for h in hyps]
    assert cer(REFS, HYPS) == pytest.approx(jiwer.cer(*no_space))
    assert wer(REFS, HYPS) == pytest.approx(jiwer.wer(refs, hyps))
    mixed = [" ".join(tokenize_for_mer(t)) for t in refs], [" ".join(tokenize_for_mer(t)) for t in hyps]
    assert mer(REFS, HYPS) == pytest.approx(jiwer.wer(*mixed))
    # sanity: the three views really differ on this code-switched set
    assert len({round(cer(REFS, HYPS), 6), round(wer(REFS, HYPS), 6), round(mer(REFS, HYPS), 6)}) == 3


def test_empty_references_are_dropped_and_counted():
    counts = error_counts(["", "。", "abc"], ["x", "y", "abd"], "char")
    assert (counts.empty_refs, counts.utterances, counts.ref_units, counts.edits) == (2, 1, 3, 1)
    assert math.isnan(cer([""], ["anything"]))


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"])


def test_accumulator_pools_batches_like_one_corpus_call():
    acc = ErrorRateAccumulator()
    acc.update(REFS[:2], HYPS[:2])
    acc.update(REFS[2:] + [""], HYPS[2:] + ["noise"])
    out = acc.compute()
    assert float(out["cer"]) == pytest.approx(cer(REFS, HYPS))
    assert float(out["wer"]) == pytest.approx(wer(REFS, HYPS))
    assert float(out["mer"]) == pytest.approx(mer(REFS, HYPS))
    assert (int(out["utterances"]), int(out["empty_refs"])) == (4, 1)
    acc.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(float(acc.compute()["cer"]))
