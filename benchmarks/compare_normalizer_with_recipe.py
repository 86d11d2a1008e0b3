"""How often nano8k's ``funasr`` normalizer writes exactly what Fun-ASR's own evaluation script writes.

The recipe's script is run as it ships, in a throwaway venv that nano8k never depends on::

    python3 -m venv /tmp/recipe && /tmp/recipe/bin/pip install whisper-normalizer==0.1.15 zhconv==1.4.3
    /tmp/recipe/bin/pip download funasr==1.4.16 --no-deps -d /tmp/recipe/dl
    unzip -q /tmp/recipe/dl/funasr-1.4.16-py3-none-any.whl 'funasr/models/fun_asr_nano/tools/*' -d /tmp/recipe/src
    python benchmarks/compare_normalizer_with_recipe.py --recipe_python /tmp/recipe/bin/python \\
        --recipe_tools /tmp/recipe/src/funasr/models/fun_asr_nano/tools

The lines compared: every transcript of the bundled manifests and test fixtures, the cases of
``tests/scoring/test_normalizers.py``, and ``--generated`` seeded call-centre sentences (amounts, dates, phone and
order numbers, percentages; Chinese numerals and Arabic digits; Chinese, English and mixed). Whitespace runs are
collapsed before comparing. Prints the count that agree and every line that does not.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# the script imports pyopenjtalk (Japanese only, unused without its kana flag); a stand-in keeps the venv small
RUNNER = """
import sys, types
sys.modules["pyopenjtalk"] = types.ModuleType("pyopenjtalk")
sys.path.insert(0, sys.argv[1])
import whisper_mix_normalize
whisper_mix_normalize.normalize_text(sys.argv[2], sys.argv[3])
"""

DIGIT_NAMES = "零一二三四五六七八九"
DIGIT_WORDS = "zero one two three four five six seven eight nine".split()


def chinese_number(n: int) -> str:
    """``n`` (1 … 99,999) in Chinese numerals, written the usual way (三万零五十, 十二)."""
    units = ["", "十", "百", "千"]

    def below_10000(m: int) -> str:
        out, zero = "", False
        for power in range(3, -1, -1):
            digit = m // 10**power % 10
            if digit:
                out += ("零" if zero and out else "") + DIGIT_NAMES[digit] + units[power]
                zero = False
            elif out:
                zero = True
        return out

    high, low = divmod(n, 10000)
    text = (below_10000(high) + "万" + ("零" if 0 < low < 1000 else "") if high else "") + below_10000(low)
    return text[1:] if text.startswith("一十") else text


def generated(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)

    def digits(n: int, zh: bool = True) -> str:
        s = [rng.randrange(10) for _ in range(n)]
        return "".join(DIGIT_NAMES[d] for d in s) if zh else " ".join(DIGIT_WORDS[d] for d in s)

    templates = [
        lambda n: f"您的话费余额为{chinese_number(n)}元",
        lambda n: f"您的话费余额为{n}元",
        lambda n: f"我的手机号是{digits(11)}",
        lambda n: f"订单号是{digits(6)}",
        lambda n: f"{chinese_number(rng.randint(1, 12))}月{chinese_number(rng.randint(1, 28))}号之前到账",
        lambda n: f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日之前到账",
        lambda n: f"优惠百分之{chinese_number(rng.randint(1, 99))}",
        lambda n: f"一共{chinese_number(n)}块{DIGIT_NAMES[rng.randint(1, 9)]}毛",
        lambda n: f"您好，工号{digits(4)}为您服务",
        lambda n: f"My number is {digits(7, False)}.",
        lambda n: f"Your balance is {n % 1000} dollars.",
        lambda n: f"我的 account 是 {n}",
        lambda n: f"查一下 {chinese_number(n)} 号订单",
        lambda n: f"第{chinese_number(n)}期账单",
        lambda n: f"利率{n % 10}.{n % 7}%",
        lambda n: f"{n % 100}.{n % 10}元",
        lambda n: f"{n % 20}.{n % 9}",
        lambda n: f"订单{n % 1000:05d}",
        lambda n: f"分机{n % 100:03d}",
        lambda n: f"The rate is {n % 10}.{n % 9} percent.",
        lambda n: f"好的 (笑) 您稍等 {n % 60} 秒",
    ]
    return [templates[i % len(templates)](rng.randint(1, 99999)) for i in range(count)]


def bundled_transcripts() -> list[str]:
    lines = []
    for path in sorted([*ROOT.glob("data_manifests/*/*.jsonl"), *ROOT.glob("tests/fixtures/**/*.jsonl")]):
        for text in path.read_text(encoding="utf-8").splitlines():
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                continue
            target = obj.get("target") if isinstance(obj, dict) else None
            if target is None and isinstance(obj, dict):
                target = next((m.get("content") for m in obj.get("messages", []) if m.get("role") == "assistant"), None)
            if isinstance(target, str):
                lines.append(target)
    return lines


def test_cases() -> list[str]:
    tree = ast.parse((ROOT / "tests" / "scoring" / "test_normalizers.py").read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") in ("CASES", "RECIPE", "DIFFERENCES"):
            found += [row[0] for row in ast.literal_eval(node.value)]
    return found


def recipe_outputs(lines: list[str], python: str, tools: str) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.txt", Path(tmp) / "out.txt"
        src.write_text("".join(f"u{i}\t{line}\n" for i, line in enumerate(lines)), encoding="utf-8")
        subprocess.run([python, "-c", RUNNER, tools, str(src), str(dst)], check=True)
        rows = dict(line.split("\t", 1) for line in dst.read_text(encoding="utf-8").splitlines())
    return [" ".join(rows.get(f"u{i}", "").split()) for i in range(len(lines))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe_python", required=True, help="python of the venv with whisper-normalizer and zhconv")
    parser.add_argument("--recipe_tools", required=True, help="funasr/models/fun_asr_nano/tools from the funasr wheel")
    parser.add_argument("--generated", type=int, default=900, help="seeded call-centre sentences to add")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from nano8k.scoring.normalizers import funasr_normalize

    lines = sorted(
        {
            line
            for line in [*bundled_transcripts(), *test_cases(), *generated(args.generated)]
            if line.strip() and "\t" not in line and "\n" not in line
        }
    )
    theirs = recipe_outputs(lines, args.recipe_python, args.recipe_tools)
    differ = [(line, ours, recipe) for line, recipe in zip(lines, theirs) if (ours := funasr_normalize(line)) != recipe]
    for line, ours, recipe in differ:
        print(f"differs: {line!r}\n  nano8k: {ours!r}\n  recipe: {recipe!r}")
    print(f"{len(lines) - len(differ)} of {len(lines)} distinct lines normalized identically ({len(differ)} differ)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
