"""Normalizers: a table of cases for each, the Fun-ASR recipe's own output reproduced, and what scoring does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nano8k.scoring.metrics import cer, mer
from nano8k.scoring.normalizers import NORMALIZERS, basic_normalize, funasr_normalize, get_normalizer

ROOT = Path(__file__).resolve().parents[2]

# (input, basic, funasr): numbers zh/en, currency, dates, traditional -> simplified, mixed zh/en, empty
CASES = [
    ("三十二元", "三十二元", "3 2 元"),
    ("32元", "32元", "3 2 元"),
    ("thirty two dollars", "thirty two dollars", "$ 3 2"),
    ("二零二四年三月五日", "二零二四年三月五日", "2 0 2 4 年 3 月 5 日"),
    ("2024年3月5日", "2024年3月5日", "2 0 2 4 年 3 月 5 日"),
    ("臺灣的電話", "臺灣的電話", "台 湾 的 电 话"),
    ("我的 Credit Card 账单", "我的 credit card 账单", "我 的 credit card 账 单"),
    ("ＡＢＣ，１２３！", "abc 123", "abc 1 2 3"),
    ("Don't  STOP—now…", "dont stop now", "do not stop now"),
    ("", "", ""),
    ("。，、", "", ""),
]


@pytest.mark.parametrize("text, basic, funasr", CASES)
def test_each_normalizer_on_the_case_table(text, basic, funasr):
    assert basic_normalize(text) == basic
    assert funasr_normalize(text) == funasr
    assert get_normalizer("none")(text) == text


# Input -> output of Fun-ASR's own evaluation normalization: funasr 1.4.16's
# funasr/models/fun_asr_nano/tools/whisper_mix_normalize.py (with its cn_tn.py and format5res.py; the same script as
# tools/whisper_mix_normalize.py in FunAudioLLM/Fun-ASR), run in a throwaway venv with whisper-normalizer 0.1.15 and
# zhconv 1.4.3, one line per case; whitespace runs collapsed. Each output was checked by hand against the script's
# steps (token classes, English/basic normalizer, cn_tn number words, format5res digits, zhconv, spacing).
RECIPE = [
    ("三十二元", "3 2 元"),
    ("32元", "3 2 元"),
    ("查一下", "查 1 下"),
    ("两个人", "两 个 人"),
    ("50%", "百 分 之 5 0"),
    ("百分之五十", "百 分 之 5 0"),
    ("3.5", "3 点 5"),
    ("三点五", "3 点 5"),
    ("2024年3月5日", "2 0 2 4 年 3 月 5 日"),
    ("二零二四年三月五日", "2 0 2 4 年 3 月 5 日"),
    ("13812345678", "1 3 8 1 2 3 4 5 6 7 8"),
    ("thirty two dollars", "$ 3 2"),
    ("$32", "3 2"),
    ("Extension eight eight zero please.", "extension 8 8 0 please"),
    ("The code is one one three three.", "the code is 1 1 3 3"),
    ("我的 Credit Card 账单", "我 的 credit card 账 单"),
    ("臺灣的電話", "台 湾 的 电 话"),
    ("", ""),
    ("Hello, World!", "hello world"),
    ("分机八八零", "分 机 8 8 0"),
    ("一百二十三", "1 2 3"),
    ("一千零五", "1 0 0 5"),
    ("请拨打 400-123-4567", "请 拨 打 4 0 0 1 2 3 4 5 6 7"),
    ("两千", "2 0 0 0"),
    ("两百块", "2 0 0 块"),
    ("一万二千", "1 2 0 0 0"),
    ("三万", "3 0 0 0 0"),
    ("零点五", "0 点 5"),
    ("一百零一", "1 0 1"),
    ("二百五", "2 5 0"),
    ("八十多", "8 0 多"),
    ("十几个", "1 0 几 个"),
    ("第二十三号", "第 2 3 号"),
    ("一九九八年", "1 9 9 8 年"),
    ("百分之三点五", "百 分 之 3 点 5"),
    ("3.5%", "百 分 之 3 点 5"),
    ("三分之一", "3 分 之 1"),
    ("一下子", "1 下 子"),
    ("第一", "第 1"),
    ("一定", "1 定"),
    ("十一月", "1 1 月"),
    ("二十", "2 0"),
    ("幺三八", "1 3 8"),
    ("一点点", "1 点 点"),
    ("您好，请问有什么可以帮您？", "您 好 请 问 有 什 么 可 以 帮 您"),
    ("我想查询一下我的话费余额。", "我 想 查 询 1 下 我 的 话 费 余 额"),
    ("您的账户余额是三十二点五元。", "您 的 账 户 余 额 是 3 2 点 5 元"),
    ("Uh, I won't pay thirty-two dollars, um, on March 5th!", "i will not pay $ 3 2 on march 5 th"),
    ("请稍等，我帮您转接人工客服。", "请 稍 等 我 帮 您 转 接 人 工 客 服"),
    ("我的手机号是一三九一二三四五六七八", "我 的 手 机 号 是 1 3 9 1 2 3 4 5 6 7 8"),
    ("OK，没问题", "ok 没 问 题"),
    ("好的 thank you 再见", "好 的 thank you 再 见"),
    ("您的订单号是 A1234", "您 的 订 单 号 是 a 1 2 3 4"),
    ("扣了我二百块钱", "扣 了 我 2 0 0 块 钱"),
    ("下个月五号之前", "下 个 月 5 号 之 前"),
    ("我们的服务热线是九五五八八", "我 们 的 服 务 热 线 是 9 5 5 8 8"),
    ("请按一号键", "请 按 1 号 键"),
    ("I'd like to cancel my subscription, please.", "i would like to cancel my subscription please"),
    ("My account number is four five six seven.", "my account number is 4 5 6 7"),
    ("Mr. Smith called at 9 p.m.", "mister smith called at 9 p m"),
    ("這個月的帳單是多少錢", "这 个 月 的 帐 单 是 多 少 钱"),
    ("三點五", "3 点 5"),
    ("軟體", "软 体"),  # zhconv runs on the spaced characters, so no vocabulary rewrite (軟體 -> 软件)
    ("1.5", "one 点 5"),  # Whisper writes a lone 1 as a word; the point is 点 in a non-English run
    ("1.5元", "one 点 5 元"),
    ("1.5%", "one 点 百 分 之 5"),
    ("hello (laughs) there", "hello laughs there"),  # round brackets are spaces first
    ("[noise] 好的", "好 的"),  # square-bracketed text is dropped
]


@pytest.mark.parametrize("text, expected", RECIPE)
def test_funasr_normalizer_reproduces_the_recipe(text, expected):
    assert funasr_normalize(text) == expected


# Where the recipe's own script writes something else: (input, the recipe's output, ours). Each is a slip of its
# number-to-words-and-back round trip; ours keeps what was said (docs/scoring.md).
DIFFERENCES = [
    ("The total is $45.50.", "the total is 4 5 5", "the total is 4 5 5 0"),  # "45 50" merged into 455
    ("It's 10:30 am now.", "it is 1 3 0 am now", "it is 1 0 3 0 am now"),  # "10 30" merged into 130
    ("订单007", "订 单 0 7", "订 单 0 0 7"),  # a number of up to 3 digits keeps one leading zero there
    ("分机030", "分 机 0 3", "分 机 0 3 0"),  # and loses a trailing zero after one (while 分机零三零 -> 0 3 0)
]


@pytest.mark.parametrize("text, recipe, ours", DIFFERENCES)
def test_known_differences_from_the_recipe_are_pinned(text, recipe, ours):
    assert funasr_normalize(text) == ours


def test_enough_recipe_cases_and_unknown_names_are_refused():
    assert len(RECIPE) >= 20
    assert set(NORMALIZERS) == {"basic", "funasr", "none"}
    with pytest.raises(ValueError, match="unknown normalizer 'funasr2'; choose one of basic, funasr, none"):
        get_normalizer("funasr2")


def test_funasr_mer_counts_the_units_compute_wer_counts():
    # compute-wer 0.2.5 on the recipe's normalized lines of these pairs printed "Overall -> 20.00 % N=10 Cor=8 Sub=1
    # Del=1": Fun-ASR's published error rate is MER over funasr-normalized text (CJK characters, words, digits)
    refs = ["分机八八零", "Extension eight eight zero please."]
    hyps = ["分机八零", "extension 8 9 0 please"]
    assert mer(refs, hyps, normalizer="funasr") == pytest.approx(0.2)
    assert cer(refs, hyps, normalizer="basic") > 0.4  # basic leaves "eight" against "8": many more edits


def test_the_documented_examples_are_what_the_normalizers_write():
    doc = (ROOT / "docs" / "scoring.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(.*?)` \| `(.*?)` \| `(.*?)` \|$", doc, flags=re.M)
    assert len(rows) >= 10
    for text, basic, funasr in rows:
        assert (basic_normalize(text), funasr_normalize(text)) == (basic, funasr), text
