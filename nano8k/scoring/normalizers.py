"""Text normalizers applied to references and hypotheses before scoring: ``basic``, ``funasr`` and ``none``.

Both ``basic`` and ``funasr`` first drop format and control characters (Unicode Cf and Cc: zero-width spaces and
joiners, byte-order marks, bidi marks, NUL, BEL ...; TAB and newline become a space), which no reader of a transcript
sees: one U+200B in a reference must not cost an error (``python -m nano8k.data.validate`` reports them).

- ``basic`` (nano8k's own, the default): NFKC (full-width -> half-width), lowercase, apostrophes dropped
  ("don't" -> "dont"), every other Unicode punctuation character (categories P*, which covers CJK punctuation such as
  。，、「」) replaced by a space, whitespace collapsed, and spaces between two CJK characters removed. Numbers,
  dates and scripts are left as written: ``三十二元`` and ``32元`` differ.
- ``funasr``: the normalization of Fun-ASR's evaluation recipe (``tools/whisper_mix_normalize.py`` in
  FunAudioLLM/Fun-ASR, shipped in funasr 1.4.16 as ``funasr/models/fun_asr_nano/tools/``), rebuilt from maintained
  packages, so that a score is comparable with the CERs Fun-ASR publishes. As the recipe does, the text is split on
  whitespace, each token is classed as English (ASCII letters and digits, not a bare number), Chinese + English
  (CJK ideographs, ASCII letters and digits) or other, and each run of tokens of one class is normalized on its own:

  - English runs: Whisper's ``EnglishTextNormalizer`` (``whisper-normalizer``): lowercase, spelled numbers to digits
    ("thirty two dollars" -> "$32", a lone "1" -> "one"), British -> American spelling, contractions expanded,
    fillers (uh, um, hmm) and text in [square brackets] removed (round brackets become spaces first, as in the
    recipe, so "(laughs)" stays as a word);
  - Chinese + English runs: the same English normalizer, then traditional -> simplified characters (OpenCC ``t2s``),
    then Chinese numerals -> Arabic digits (``cn2an``, sentence mode: 三十二元 -> 32元, 二零二四年三月五日 ->
    2024年3月5日; a run of digit names without units digit by digit, so 零三六零七 -> 03607 keeps its zero),
    written the way the recipe writes them: a percentage as 百分之50, a decimal point as 点, a
    fraction as 3分之1, and 两 kept as a word unless a numeral follows it (两个人, but 两千 -> 2000);
  - other runs (anything else, e.g. a token with ``$`` or ``/``): Whisper's ``BasicTextNormalizer`` (symbols and
    punctuation to spaces), then as the Chinese + English runs.

  The output is written as the recipe writes it: a space between any two characters except inside a run of Latin
  (or Cyrillic) letters, so digits and CJK characters stand alone ("分 机 8 8 0", "extension 8 8 0 please").
  Measured against the recipe's own script (``benchmarks/compare_normalizer_with_recipe.py``; figures in
  ``docs/scoring.md``), the output is the same except where the recipe slips: two numbers split by a space inside
  one non-English token are merged there (10:30 -> 130, $45.50 -> 455) and kept apart here. Traditional characters go
  through OpenCC ``t2s`` where the recipe uses ``zhconv`` (GPL, so not a dependency); the recipe converts after
  spacing the characters out, so both convert character by character.
- ``none``: the text as it is.

Error rates split the normalized text into units afterwards (``nano8k.scoring.metrics``); whitespace is never a unit.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import warnings
from collections.abc import Callable
from itertools import groupby
from typing import Literal, get_args

NormalizerName = Literal["basic", "funasr", "none"]
NORMALIZERS: tuple[str, ...] = get_args(NormalizerName)

# CJK ideographs (+ext. A, compatibility), kana and the CJK symbol block's letters
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_GAP = re.compile(f"(?<=[{CJK}])\\s+(?=[{CJK}])")
_APOSTROPHES = "'\u2018\u2019\u02bc`"
_WHITESPACE = re.compile(r"\s+")


def visible(text: str) -> str:
    """``text`` without format and control characters (Unicode Cf, Cc: zero-width spaces and joiners, byte-order
    marks, bidi marks, NUL, BEL ...), which no reader sees, so a stray one costs no error; whitespace controls (TAB,
    newline) become a space."""
    if text.isprintable():  # the common case: no Cf/Cc character (nor any other unprintable one)
        return text
    return "".join(_visible_char(ch) for ch in text)


def _visible_char(ch: str) -> str:
    category = unicodedata.category(ch)
    if category == "Cc":
        return " " if ch.isspace() else ""
    return "" if category == "Cf" else ch


def basic_normalize(text: str) -> str:
    """Format/control characters dropped (``visible``), NFKC, lowercase, punctuation (incl. CJK) removed, spaces
    collapsed and removed between CJK characters."""
    text = unicodedata.normalize("NFKC", visible(text)).lower()
    chars = []
    for ch in text:
        if ch in _APOSTROPHES:
            continue
        chars.append(" " if unicodedata.category(ch).startswith("P") else ch)
    text = _WHITESPACE.sub(" ", "".join(chars)).strip()
    return _CJK_GAP.sub("", text)


# the recipe's token classes: the punctuation its patterns allow beside letters and digits
_PUNCT = re.escape(",.!?:;，。！？：；、%'")
_BARE_NUMBER = re.compile(f"[0-9{_PUNCT}]+")
_ENGLISH = re.compile(f"[A-Za-z0-9{_PUNCT}\\-~]+")
_ZH_EN = re.compile(f"[\u4e00-\u9fa5A-Za-z0-9{_PUNCT}\\-~]+")
_BRACKETS = re.compile(r"[=()]")  # the recipe turns these into spaces before it splits

_LIANG_ALONE = re.compile("两(?![零一二三四五六七八九十百千万亿两幺])")
_DIGIT_NAMES = dict(zip("零〇一二三四五六七八九幺", "001234567891"))
# digits read one by one (phone, account, extension numbers): no unit before or after, so leading zeros stay
_DIGIT_RUN = re.compile("(?<![十百千万亿点])[零〇一二三四五六七八九幺]{2,}(?![十百千万亿点])")
_KEPT_LIANG = "\ue000"  # a private-use character: 两 that cn2an must not read as 2
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")
_FRACTION = re.compile(r"(\d+)/(\d+)")
_POINT = re.compile(r"\.(?!\s*$)")  # what is left of "." after the English normalizer: a point, unless last


def _token_class(token: str) -> str:
    if _ENGLISH.fullmatch(token) and not _BARE_NUMBER.fullmatch(token):
        return "en"
    return "zh_en" if _ZH_EN.fullmatch(token) else "other"


@functools.cache
def _whisper() -> tuple[Callable[[str], str], Callable[[str], str]]:
    from whisper_normalizer.basic import BasicTextNormalizer
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer(), BasicTextNormalizer()


@functools.cache
def _simplified() -> Callable[[str], str]:
    import opencc

    return opencc.OpenCC("t2s").convert


def _arabic_numbers(text: str) -> str:
    """Chinese numerals to digits with ``cn2an``, then percentages, decimals and fractions as the recipe writes them."""
    import cn2an

    text = _LIANG_ALONE.sub(_KEPT_LIANG, text)
    text = _DIGIT_RUN.sub(lambda m: "".join(_DIGIT_NAMES[ch] for ch in m.group()), text)
    with warnings.catch_warnings():  # cn2an warns on every numeral it leaves alone (万一)
        warnings.simplefilter("ignore")
        text = cn2an.transform(text, "cn2an")
    text = _PERCENT.sub(r"百分之\1", text.replace(_KEPT_LIANG, "两"))
    text = _FRACTION.sub(r"\2分之\1", text)
    return _POINT.sub("点", text)


def _latin(ch: str) -> bool:
    """The recipe's "English" characters: ASCII (but digits), Latin-1, Latin Extended-A, Cyrillic, the apostrophe."""
    code = ord(ch)
    return (code <= 0x17F or 0x400 <= code <= 0x4FF) and not ch.isdigit()


def _spaced(text: str) -> str:
    """A space between two characters unless both are Latin letters (or other ``_latin`` characters)."""
    out: list[str] = []
    for i, ch in enumerate(text):
        if i and not (_latin(text[i - 1]) and _latin(ch)):
            out.append(" ")
        out.append(ch)
    return _WHITESPACE.sub(" ", "".join(out)).strip()


def _normalize_run(kind: str, text: str) -> str:
    english, basic = _whisper()
    if kind == "en":
        return _spaced(english(text))
    text = english(text) if kind == "zh_en" else basic(text)
    return _spaced(_arabic_numbers(_simplified()(text)))


def funasr_normalize(text: str) -> str:
    """The Fun-ASR evaluation recipe's normalization (see the module docstring for each step and the differences)."""
    tokens = _BRACKETS.sub(" ", visible(text)).split()
    runs = [_normalize_run(kind, " ".join(run)) for kind, run in groupby(tokens, key=_token_class)]
    return " ".join(run for run in runs if run)


def _identity(text: str) -> str:
    return text


_BY_NAME: dict[str, Callable[[str], str]] = {"basic": basic_normalize, "funasr": funasr_normalize, "none": _identity}


def get_normalizer(name: str) -> Callable[[str], str]:
    """The normalizer called ``name`` (one of ``NORMALIZERS``); a clear error for any other name."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown normalizer {name!r}; choose one of {', '.join(NORMALIZERS)}") from None
