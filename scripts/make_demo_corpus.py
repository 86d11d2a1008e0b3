"""Generate data_manifests/demo: a small 8 kHz telephone corpus (en + zh; train/val/test with held-out test voices).

Sources (all offline, Debian/PyPI packages):
  * espeak-ng (Debian ``espeak-ng``): synthetic English (voice variants) and Mandarin (``cmn-latn-pinyin``) from
    telephone-style templates; wideband output goes through nano8k's own telephone channel
    (``nano8k.data.channel.telephone``).
  * Asterisk core sound prompts (Debian ``asterisk-core-sounds-en-wav`` + ``asterisk-core-sounds-en``): real native
    8 kHz English speech with transcripts, CC-BY-SA-3.0 (Allison Smith / Digium). Test split only (held-out voice).
  * gcin-voice (Debian ``gcin-voice``) ``5.ogg`` recordings: real Mandarin tonal syllables, CC-BY-3.0 (ChionMeilin,
    vocal source Chu Lo), concatenated into sentences, then the telephone channel. Test split only (held-out voice).
  * pypinyin (PyPI, MIT) converts the Mandarin templates to pinyin (espeak) and zhuyin (gcin file names).

Usage (run once; the output is committed, CI never regenerates it):
    apt-get install -y espeak-ng asterisk-core-sounds-en-wav asterisk-core-sounds-en gcin-voice
    pip install --target /tmp/pylib pypinyin
    PYTHONPATH=/tmp/pylib python scripts/make_demo_corpus.py --out data_manifests/demo
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from nano8k.data.audio import load_audio
from nano8k.data.channel.telephone import TelephoneChannel, landline, utterance_rng

RATE = 8000
ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en")
ASTERISK_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
GCIN_DIR = Path("/usr/share/gcin-voice/ogg")

# Voice ids are the espeak-ng voice+variant; test voices never occur in train/val.
EN_TRAIN_VOICES = ["en-us+m1", "en-us+f2", "en-us+m3", "en+f3", "en+m2", "en-gb-scotland+m5"]
EN_TEST_VOICES = ["en-us+m7", "en-gb-x-rp+f4"]
ZH_TRAIN_VOICES = ["cmn-latn-pinyin+m1", "cmn-latn-pinyin+f2", "cmn-latn-pinyin+m3", "cmn-latn-pinyin+f1"]
ZH_TEST_VOICES = ["cmn-latn-pinyin+m6", "cmn-latn-pinyin+f5"]

EN_DIGITS = "zero one two three four five six seven eight nine".split()
EN_TEMPLATES = [
    "My account number is {d4}.",
    "Please call me back at {d4}.",
    "I want to check my balance.",
    "The amount is {n} dollars.",
    "Transfer me to billing please.",
    "My card ends in {d4}.",
    "I lost my phone yesterday.",
    "Can I speak to an agent?",
    "My order number is {d3}.",
    "I would like to pay {n} dollars.",
    "Please cancel my last order.",
    "Extension {d3} please.",
    "The code is {d4}.",
    "I need to reset my password.",
    "Is the office open on {day}?",
    "I will call again on {day}.",
    "My bill is too high this month.",
    "Press {d1} for sales.",
    "Yes, that is correct.",
    "No, I did not make that call.",
    "The meeting is on {day} at {n}.",
]
EN_NUMBERS = ["ten", "twenty", "thirty", "forty", "fifty", "sixty", "eighty", "ninety", "two hundred", "fifteen"]
EN_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

ZH_DIGITS = "零一二三四五六七八九"
ZH_TEMPLATES = [
    "我想查询一下话费余额。",
    "请帮我转人工服务。",
    "我的账号是{d4}。",
    "我的手机号尾号是{d4}。",
    "我要办理停机保号。",
    "请问营业厅几点开门？",
    "这个月的账单有问题。",
    "我想改一下套餐。",
    "验证码是{d4}。",
    "我刚才交了{n}块钱。",
    "请帮我查一下快递。",
    "我的订单号是{d3}。",
    "信号不好，听不清楚。",
    "我要投诉一下。",
    "请在{day}给我回电话。",
    "好的，谢谢你。",
    "密码忘记了怎么办？",
    "我想开通国际漫游。",
    "宽带一直连不上。",
    "明天上午{n}点可以吗？",
]
ZH_NUMBERS = ["十", "二十", "三十", "五十", "一百", "两百", "八", "九", "十一", "六十"]
ZH_DAYS = ["星期一", "星期二", "星期三", "星期四", "星期五", "明天", "后天"]


def fill(template: str, rng: np.random.Generator, lang: str) -> str:
    digits, numbers, days = (EN_DIGITS, EN_NUMBERS, EN_DAYS) if lang == "en" else (ZH_DIGITS, ZH_NUMBERS, ZH_DAYS)
    sep = " " if lang == "en" else ""

    def d(k: int) -> str:
        return sep.join(digits[int(i)] for i in rng.integers(0, 10, k))

    return template.format(
        d1=d(1), d3=d(3), d4=d(4), n=numbers[rng.integers(len(numbers))], day=days[rng.integers(len(days))]
    )


def sentences(lang: str, count: int, rng: np.random.Generator, exclude: set[str]) -> list[str]:
    templates = EN_TEMPLATES if lang == "en" else ZH_TEMPLATES
    out: list[str] = []
    while len(out) < count:
        text = fill(templates[rng.integers(len(templates))], rng, lang)
        if text not in exclude:
            exclude.add(text)
            out.append(text)
    return out


def trim_silence(wave: np.ndarray, rate: int, threshold_db: float = -40.0, pad_s: float = 0.12) -> np.ndarray:
    """Cut leading/trailing silence (frame energy below threshold relative to the peak), keep a short pad."""
    frame = int(0.01 * rate)
    energy = np.array([np.mean(wave[i : i + frame] ** 2) for i in range(0, max(len(wave) - frame, 1), frame)])
    loud = np.flatnonzero(10 * np.log10(energy + 1e-12) > 10 * np.log10(energy.max() + 1e-12) + threshold_db)
    if loud.size == 0:
        return wave
    pad = int(pad_s * rate)
    return wave[max(loud[0] * frame - pad, 0) : min((loud[-1] + 1) * frame + pad, len(wave))]


def espeak(text: str, voice: str, rng: np.random.Generator, work: Path) -> tuple[np.ndarray, int]:
    wav = work / "espeak.wav"
    speed, pitch = int(rng.integers(150, 185)), int(rng.integers(30, 70))
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text],
        check=True,
        capture_output=True,
    )
    data, rate = sf.read(str(wav), dtype="float32")
    return trim_silence(data, rate), rate


def pinyin_tone3(text: str) -> str:
    from pypinyin import Style, lazy_pinyin

    return " ".join(lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors="ignore"))


def zhuyin_syllables(text: str) -> list[str]:
    from pypinyin import Style, lazy_pinyin

    marks = {"ˊ": "2", "ˇ": "3", "ˋ": "4", "˙": "5"}
    out = []
    for syl in lazy_pinyin(text, style=Style.BOPOMOFO, errors="ignore"):
        tone = next((marks[c] for c in syl if c in marks), "")
        out.append("".join(c for c in syl if c not in marks) + tone)
    return out


def gcin_sentence(text: str, rng: np.random.Generator) -> tuple[np.ndarray, int] | None:
    """Concatenate gcin-voice 5.ogg (CC-BY-3.0) syllables; None when a syllable has no recording."""
    pieces = []
    rate = 0
    for syl in zhuyin_syllables(text):
        base = syl.rstrip("2345")
        candidates = [syl, base + "1" if syl == base else syl, base]
        path = next((GCIN_DIR / c / "5.ogg" for c in candidates if (GCIN_DIR / c / "5.ogg").is_file()), None)
        if path is None:
            return None
        wave, rate = sf.read(str(path), dtype="float32")
        wave = wave.mean(axis=1) if wave.ndim > 1 else wave
        pieces.append(trim_silence(wave, rate, pad_s=0.01))
        pieces.append(np.zeros(int(rate * rng.uniform(0.02, 0.06)), dtype=np.float32))
    return np.concatenate(pieces), rate


def asterisk_prompts(min_s: float, max_s: float) -> list[tuple[str, Path, str]]:
    lines = gzip.open(ASTERISK_TEXT, "rt", encoding="utf-8").read().splitlines()
    out = []
    for line in lines:
        if line.startswith(";") or ":" not in line:
            continue
        name, text = line.split(":", 1)
        path = ASTERISK_DIR / f"{name.strip()}.wav"
        text = " ".join(text.split())
        if path.is_file() and text and "[" not in text:
            info = sf.info(str(path))
            if info.samplerate == RATE and min_s <= info.duration <= max_s:
                out.append((name.strip().replace("/", "-"), path, text))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data_manifests/demo")
    parser.add_argument("--seed", type=int, default=8000)
    parser.add_argument("--train_per_lang", type=int, default=80)
    parser.add_argument("--val_per_lang", type=int, default=15)
    parser.add_argument("--test_real_en", type=int, default=8)
    parser.add_argument("--test_real_zh", type=int, default=8)
    parser.add_argument("--test_synth_per_lang", type=int, default=7)
    args = parser.parse_args()

    out = Path(args.out)
    shutil.rmtree(out / "wav", ignore_errors=True)
    (out / "wav").mkdir(parents=True)
    rng = np.random.default_rng(args.seed)
    channel = TelephoneChannel(
        custom_profiles={"landline": landline(snr_db=(15.0, 25.0), hum_prob=0.1)}, output_rate=RATE
    )
    rows: dict[str, list[dict]] = defaultdict(list)
    used: dict[str, set[str]] = {"en": set(), "zh": set()}

    def add(
        split: str, lang: str, voice: str, source: str, text: str, wave: np.ndarray, rate: int, simulate: bool
    ) -> None:
        key = f"{split}_{lang}_{len(rows[split]):03d}"
        tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        params = {}
        if simulate:
            tensor, rate, params = channel.simulate(tensor, rate, utterance_rng(args.seed, key))
        assert rate == RATE
        path = out / "wav" / f"{key}.flac"  # lossless PCM16 (FLAC keeps the corpus ~half the size of WAV)
        sf.write(str(path), tensor.numpy(), RATE, format="FLAC", subtype="PCM_16")
        rows[split].append(
            {
                "key": key,
                "source": f"wav/{key}.flac",
                "target": text,
                "lang": lang,
                "duration": round(tensor.numel() / RATE, 3),
                "voice": voice,
                "origin": source,
                **({"codec": params["codec"], "snr_db": round(params["snr_db"], 1)} if "snr_db" in params else {}),
            }
        )

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plan = [
            ("train", args.train_per_lang, EN_TRAIN_VOICES, ZH_TRAIN_VOICES),
            ("val", args.val_per_lang, EN_TRAIN_VOICES, ZH_TRAIN_VOICES),
            ("test", args.test_synth_per_lang, EN_TEST_VOICES, ZH_TEST_VOICES),
        ]
        for split, count, en_voices, zh_voices in plan:
            for lang, voices in (("en", en_voices), ("zh", zh_voices)):
                for i, text in enumerate(sentences(lang, count, rng, used[lang])):
                    voice = voices[i % len(voices)]
                    spoken = text if lang == "en" else pinyin_tone3(text)
                    wave, rate = espeak(spoken, voice, rng, work)
                    add(split, lang, f"espeak:{voice}", "espeak-ng", text, wave, rate, simulate=True)

    # Real held-out voices, test split only.
    prompts = asterisk_prompts(1.5, 4.0)
    for idx in rng.choice(len(prompts), size=args.test_real_en, replace=False):
        name, path, text = prompts[int(idx)]
        wave, rate = load_audio(path)
        add(
            "test",
            "en",
            "asterisk:allison",
            f"asterisk-core-sounds-en:{name}",
            text,
            wave.numpy(),
            rate,
            simulate=False,
        )
    made = 0
    for text in sentences("zh", 200, rng, set()):
        if made == args.test_real_zh:
            break
        if text in used["zh"]:
            continue
        result = gcin_sentence(text, rng)
        if result is not None:
            add("test", "zh", "gcin-voice:5", "gcin-voice 5.ogg syllables", text, *result, simulate=True)
            used["zh"].add(text)
            made += 1

    for split, items in rows.items():
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            for row in items:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        voices = Counter(r["voice"] for r in items)
        secs = [r["duration"] for r in items]
        print(
            f"{split}: {len(items)} utts, {sum(secs) / 60:.1f} min, {min(secs):.2f}-{max(secs):.2f} s, "
            f"langs {dict(Counter(r['lang'] for r in items))}, voices {dict(voices)}"
        )


if __name__ == "__main__":
    main()
