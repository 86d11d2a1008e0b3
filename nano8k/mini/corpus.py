"""Spoken digit strings (English and Mandarin) from espeak-ng and a real 8 kHz voice: the mini model's corpora.

Targets are numerals ("4072") in both languages. English reads each digit ("zero"/"oh", "one" … "nine"); Mandarin
reads pinyin syllables through espeak-ng's ``cmn-latn-pinyin`` voice (零/〇 ling2, 一 yi1 or 幺 yao1 … 九 jiu3).
Voices are (accent, variant) pairs; the variants are split into train / val / test, so val and test voices are never
heard in training. Speaking rate (``-s``), pitch (``-p``) and word gap (``-g``) are drawn per utterance from a seeded
generator, so a plan is reproducible. The real voice is Asterisk's digit recordings (Debian
``asterisk-core-sounds-en-wav``, CC-BY-SA-3.0, Allison Smith) joined into strings.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from nano8k.data.audio import resample
from nano8k.data.channel.telephone import TelephoneChannel, stable_seed, utterance_rng

EN_WORDS = {
    "0": ("zero", "oh"),
    "1": ("one",),
    "2": ("two",),
    "3": ("three",),
    "4": ("four",),
    "5": ("five",),
    "6": ("six",),
    "7": ("seven",),
    "8": ("eight",),
    "9": ("nine",),
}
ZH_SYLLABLES = {
    "0": ("ling2",),
    "1": ("yi1", "yao1"),
    "2": ("er4",),
    "3": ("san1",),
    "4": ("si4",),
    "5": ("wu3",),
    "6": ("liu4",),
    "7": ("qi1",),
    "8": ("ba1",),
    "9": ("jiu3",),
}
EN_ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
ZH_ACCENTS = ("cmn-latn-pinyin",)
# espeak-ng variants that sound like a person (robots, whispers and effects left out); split by voice, not by sentence
TRAIN_VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "f1",
    "f2",
    "f3",
    "adam",
    "Alex",
    "Alicia",
    "Andy",
    "Annie",
    "aunty",
    "belinda",
    "benjamin",
    "boris",
    "caleb",
    "david",
    "Denis",
    "ed",
    "edward",
    "Gene",
    "gustave",
    "Hugo",
    "iven",
    "iven3",
    "Jacky",
    "john",
    "Lee",
    "linda",
    "marcelo",
    "Marco",
    "max",
    "Michael",
    "miguel",
    "Mike",
    "norbert",
    "pablo",
    "paul",
    "quincy",
    "rob",
    "robert",
    "steph",
    "steph3",
    "travis",
    "victor",
    "zac",
    "anika",
    "grandpa",
)
VAL_VARIANTS = ("m7", "f4", "Andrea", "Mario", "shelby", "sandro")
TEST_VARIANTS = ("m8", "f5", "antonio", "Diogo", "Henrique", "kaukovalta", "michel", "pedro", "grandma", "edward2")
SPLIT_VARIANTS = {"train": TRAIN_VARIANTS, "val": VAL_VARIANTS, "test": TEST_VARIANTS}
ASTERISK_DIGITS = Path("/usr/share/asterisk/sounds/en/digits")


@dataclass(frozen=True)
class SpokenDigits:
    """One utterance to render: its key, language, target numerals, the text espeak reads and the voice settings."""

    key: str
    lang: str
    target: str
    spoken: str
    voice: str
    speed_wpm: int
    pitch: int
    word_gap: int  # espeak -g, in units of 10 ms


def digit_string(rng: np.random.Generator, min_len: int, max_len: int) -> str:
    return "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(min_len, max_len + 1))))


def spoken_form(digits: str, lang: str, rng: np.random.Generator) -> str:
    """What espeak reads for ``digits``: one word per digit, grouped with commas (pauses) like phone numbers."""
    table = EN_WORDS if lang == "en" else ZH_SYLLABLES
    words = [str(rng.choice(table[d])) for d in digits]
    groups, i = [], 0
    while i < len(words):
        size = int(rng.integers(2, 5))
        groups.append(" ".join(words[i : i + size]))
        i += size
    return ", ".join(groups) if rng.uniform() < 0.5 else " ".join(groups)


def plan_split(
    split: str,
    lang: str,
    count: int,
    seed: int,
    *,
    min_len: int = 3,
    max_len: int = 8,
    speed_wpm: tuple[int, int] = (80, 220),
    prefix: str = "",
) -> list[SpokenDigits]:
    """``count`` seeded utterances of ``split``'s voices in ``lang``; speaking rate uniform in ``speed_wpm``."""
    if split not in SPLIT_VARIANTS:
        raise ValueError(f"split must be one of {sorted(SPLIT_VARIANTS)}, got {split!r}")
    accents = EN_ACCENTS if lang == "en" else ZH_ACCENTS if lang == "zh" else None
    if accents is None:
        raise ValueError(f"lang must be en or zh, got {lang!r}")
    rng = np.random.default_rng(stable_seed(seed, split, lang, prefix))
    variants = SPLIT_VARIANTS[split]
    out = []
    for i in range(count):
        digits = digit_string(rng, min_len, max_len)
        voice = f"{accents[i % len(accents)]}+{variants[(i // len(accents)) % len(variants)]}"
        out.append(
            SpokenDigits(
                key=f"{prefix}{split}_{lang}_{i:05d}",
                lang=lang,
                target=digits,
                spoken=spoken_form(digits, lang, rng),
                voice=voice,
                speed_wpm=int(rng.integers(speed_wpm[0], speed_wpm[1] + 1)),
                pitch=int(rng.integers(20, 81)),
                word_gap=int(rng.integers(0, 6)),
            )
        )
    return out


def trim_silence(wave: np.ndarray, rate: int, threshold_db: float = -40.0, pad_s: float = 0.1) -> np.ndarray:
    """Cut leading/trailing frames quieter than ``threshold_db`` below the loudest 10 ms frame; keep ``pad_s``."""
    frame = max(1, int(0.01 * rate))
    usable = len(wave) // frame * frame
    if usable == 0:
        return wave
    energy = (wave[:usable].reshape(-1, frame) ** 2).mean(axis=1)
    loud = np.flatnonzero(10 * np.log10(energy + 1e-12) > 10 * np.log10(energy.max() + 1e-12) + threshold_db)
    if loud.size == 0:
        return wave
    pad = int(pad_s * rate)
    return wave[max(loud[0] * frame - pad, 0) : min((loud[-1] + 1) * frame + pad, len(wave))]


def require_espeak() -> str:
    """Path of espeak-ng, or a clear error saying how to install it."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise RuntimeError("espeak-ng is not installed: `apt-get install espeak-ng` (Debian/Ubuntu), then run again")
    return path


def check_voices(utts: Iterable[SpokenDigits]) -> None:
    """Every variant named by ``utts`` is installed (espeak-ng silently falls back to the base voice otherwise)."""
    listing = subprocess.run([require_espeak(), "--voices=variant"], check=True, capture_output=True, text=True).stdout
    installed = {line.split()[-1].split("/")[-1] for line in listing.splitlines()[1:] if line.strip()}
    missing = sorted({u.voice.split("+", 1)[1] for u in utts if "+" in u.voice} - installed)
    if missing:
        raise RuntimeError(f"espeak-ng variants not installed: {missing} (installed: {sorted(installed)})")


def render(utt: SpokenDigits) -> tuple[np.ndarray, int]:
    """espeak-ng's 22.05 kHz rendering of ``utt`` (silence trimmed), as float32 in [-1, 1]."""
    cmd = [
        require_espeak(),
        "-v",
        utt.voice,
        "-s",
        str(utt.speed_wpm),
        "-p",
        str(utt.pitch),
        "-g",
        str(utt.word_gap),
        "--stdout",
        utt.spoken,
    ]
    done = subprocess.run(cmd, check=True, capture_output=True)
    wave, rate = sf.read(io.BytesIO(done.stdout), dtype="float32")
    return trim_silence(wave, rate), rate


@dataclass(frozen=True)
class Rendering:
    """How a corpus is written: wideband FLAC at ``rate``, or through ``channel`` into G.711 WAV at 8 kHz."""

    rate: int = 16000
    channel: TelephoneChannel | None = None
    seed: int = 0


def _write_one(args: tuple[SpokenDigits, Rendering, Path]) -> dict:
    utt, how, out_dir = args
    wave, rate = render(utt)
    tensor = torch.from_numpy(np.ascontiguousarray(wave))
    extra: dict = {}
    if how.channel is not None:
        tensor, rate, params = how.channel.simulate(tensor, rate, utterance_rng(how.seed, utt.key))
        subtype = {"ulaw": "ULAW", "alaw": "ALAW"}.get(params["codec"], "PCM_16")
        name = f"wav/{utt.key}.wav"  # stored as the channel coded it: G.711 WAV keeps every sample exactly
        sf.write(str(out_dir / name), tensor.numpy(), rate, format="WAV", subtype=subtype)
        extra = {"codec": params["codec"], "snr_db": round(params.get("snr_db", float("nan")), 1)}
    else:
        tensor = resample(tensor, rate, how.rate)
        rate = how.rate
        peak = float(tensor.abs().max()) or 1.0
        tensor = tensor * (0.9 / peak)
        name = f"wav/{utt.key}.flac"
        sf.write(str(out_dir / name), tensor.numpy(), rate, format="FLAC", subtype="PCM_16")
    row = {
        "key": utt.key,
        "source": name,
        "target": utt.target,
        "lang": utt.lang,
        "duration": round(tensor.numel() / rate, 3),
        "voice": f"espeak:{utt.voice}",
        "speed_wpm": utt.speed_wpm,
        "origin": "espeak-ng",
        **extra,
    }
    return row


def _one_thread() -> None:
    torch.set_num_threads(1)  # one process per core already


def write_manifest(rows: Iterable[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_corpus(
    out_dir: str | Path, splits: dict[str, Sequence[SpokenDigits]], how: Rendering, workers: int = 2
) -> dict[str, Path]:
    """Render every split into ``out_dir/wav`` and write ``out_dir/<split>.jsonl``; returns the manifest paths."""
    check_voices(u for utts in splits.values() for u in utts)
    out = Path(out_dir)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    paths = {}
    with ProcessPoolExecutor(max_workers=max(1, workers), initializer=_one_thread) as pool:
        for split, utts in splits.items():
            rows = list(pool.map(_write_one, [(u, how, out) for u in utts], chunksize=16))
            paths[split] = out / f"{split}.jsonl"
            write_manifest(rows, paths[split])
    return paths


def asterisk_digit_strings(
    out_dir: str | Path,
    count: int,
    seed: int,
    *,
    min_len: int = 3,
    max_len: int = 8,
    gap_s: tuple[float, float] = (0.03, 0.12),
) -> Path:
    """``count`` digit strings joined from Asterisk's real 8 kHz digit recordings (one professional voice).

    Each digit is its own recording with the silence trimmed, followed by a short pause. Written as 8 kHz PCM WAV
    with ``test.jsonl`` in ``out_dir``. Needs Debian ``asterisk-core-sounds-en-wav`` (CC-BY-SA-3.0).
    """
    if not (ASTERISK_DIGITS / "0.wav").is_file():
        raise RuntimeError(f"{ASTERISK_DIGITS}/0.wav not found: `apt-get install asterisk-core-sounds-en-wav`")
    recordings = {}
    for d in "0123456789":
        wave, rate = sf.read(str(ASTERISK_DIGITS / f"{d}.wav"), dtype="float32")
        recordings[d] = trim_silence(wave, rate, pad_s=0.02)
    out = Path(out_dir)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(stable_seed(seed, "asterisk"))
    rows = []
    for i in range(count):
        digits = digit_string(rng, min_len, max_len)
        pieces = [np.zeros(int(0.1 * rate), dtype=np.float32)]
        for d in digits:
            pieces += [recordings[d], np.zeros(int(rng.uniform(*gap_s) * rate), dtype=np.float32)]
        wave = np.concatenate(pieces + [np.zeros(int(0.1 * rate), dtype=np.float32)])
        key = f"real_en_{i:05d}"
        sf.write(str(out / "wav" / f"{key}.wav"), wave, rate, format="WAV", subtype="PCM_16")
        rows.append(
            {
                "key": key,
                "source": f"wav/{key}.wav",
                "target": digits,
                "lang": "en",
                "duration": round(len(wave) / rate, 3),
                "voice": "asterisk:allison",
                "origin": "asterisk-core-sounds-en digits",
            }
        )
    write_manifest(rows, out / "test.jsonl")
    return out / "test.jsonl"


def describe(utts: Sequence[SpokenDigits]) -> dict:
    """Counts for a README: utterances, voices, speaking-rate range."""
    return {
        "utterances": len(utts),
        "voices": len({u.voice for u in utts}),
        "speed_wpm": [min(u.speed_wpm for u in utts), max(u.speed_wpm for u in utts)] if utts else None,
        "langs": sorted({u.lang for u in utts}),
    }


PRETRAIN_SEED = 20261201
PRETRAIN_COUNTS = {"train": 3000, "val": 100, "test": 150}  # per language
EASY_COUNTS = {"easy": 3000, "easy_val": 100}  # English only
EASY_SPEED_WPM = (150, 200)


def pretraining_plan(seed: int = PRETRAIN_SEED) -> dict[str, list[SpokenDigits]]:
    """The mini model's clean 16 kHz pretraining corpus, English + Mandarin: train / val / test, ``easy``, ``easy_val``.

    ``easy`` (training voices) and ``easy_val`` (val voices) are the curriculum's first phase: English only at
    everyday speaking rates (150-200 wpm). A random-init model of the mini size learns to align speech and digits there
    within ~3,000 steps; on the full mix of two languages and 80-220 wpm it sits at chance for many thousands of steps
    (measured: CER 0.74 after 4,000 steps on both languages at 150-200 wpm, 0.31 after 3,000 on English alone).
    """
    plan = {
        split: plan_split(split, "en", n, seed) + plan_split(split, "zh", n, seed)
        for split, n in PRETRAIN_COUNTS.items()
    }
    for name, count in EASY_COUNTS.items():
        split = "train" if name == "easy" else "val"
        plan[name] = plan_split(split, "en", count, seed, speed_wpm=EASY_SPEED_WPM, prefix="easy_")
    return plan
