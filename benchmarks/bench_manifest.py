"""Fit-side start-up on large manifests: load time and peak RSS of one rank, first and second start.

    python benchmarks/bench_manifest.py [--lines 1000000] [--unmeasured 100000] [--workdir DIR]

Writes synthetic ChatML manifests (``--lines`` with durations, over 1,000 real 8 kHz clips; ``--unmeasured``
without durations, one distinct clip per line) and, for each, starts a fresh process that does what every rank of
``nano8k.fit`` does before its first step: ``TelephoneDataModule.setup("fit")`` (read, validate, spot check) and
planning the first epoch's batches. Each start is run twice: the first parses the manifest (and measures the headers
the manifest lacks) and writes its cache beside it; the second reads the cache. Prints a table of seconds and peak
RSS (``ru_maxrss``) per start.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RATE = 8000


def wav_bytes(seconds: float) -> bytes:
    """A 16-bit mono 8 kHz WAV of low noise (soundfile would be slower for 100,000 files)."""
    samples = (np.random.default_rng(int(seconds * 1000)).normal(0, 300, int(seconds * RATE))).astype("<i2")
    data = samples.tobytes()
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16)
        + b"data"
        + struct.pack("<I", len(data))
    )
    return header + data


def chatml(key: str, audio: str, text: str, duration: float | None) -> str:
    record = {
        "key": key,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"语音转写：<|startofspeech|>!{audio}<|endofspeech|>"},
            {"role": "assistant", "content": text},
        ],
    }
    if duration is not None:
        record["duration"] = duration
    return json.dumps(record, ensure_ascii=False)


def write_corpus(root: Path, lines: int, unmeasured: int) -> tuple[Path, Path]:
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    words = ["please", "call", "me", "back", "account", "balance", "一", "二", "三", "您好", "请问", "号码"]
    durations = np.round(rng.uniform(1.0, 3.0, 1000), 3)
    for i, seconds in enumerate(durations):
        (audio / f"clip{i:04d}.wav").write_bytes(wav_bytes(float(seconds)))
    with_durations = root / "with_durations.jsonl"
    with open(with_durations, "w", encoding="utf-8") as handle:
        for i in range(lines):
            text = " ".join(rng.choice(words, size=6))
            handle.write(
                chatml(f"call{i:07d}", f"audio/clip{i % 1000:04d}.wav", text, float(durations[i % 1000])) + "\n"
            )
    distinct = root / "distinct"
    distinct.mkdir(exist_ok=True)
    clip = wav_bytes(1.5)
    without = root / "without_durations.jsonl"
    with open(without, "w", encoding="utf-8") as handle:
        for i in range(unmeasured):
            (distinct / f"u{i:06d}.wav").write_bytes(clip)
            handle.write(chatml(f"utt{i:06d}", f"distinct/u{i:06d}.wav", "请问 您好", None) + "\n")
    return with_durations, without


def one_start(manifest: str) -> None:
    """What a rank does before its first step; prints a JSON line."""
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    from nano8k.data.pipeline.datamodule import TelephoneDataModule, load_tokenizer
    from nano8k.model.bundled import mini_model_dir

    tokenizer = load_tokenizer(mini_model_dir())
    imported = time.perf_counter()
    data = TelephoneDataModule(
        train_manifests=manifest,
        telephone=None,
        num_workers=0,
        max_duration=30.0,
        on_bad_sample="skip",
        max_frames_per_batch=6000,
    )
    data.set_tokenizer(tokenizer)
    data.setup("fit")
    batches = len(data.train_dataloader())
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "utterances": len(data.datasets["train"]),
                "batches": batches,
                "seconds": done - imported,
                "import_seconds": imported - start,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--unmeasured", type=int, default=100_000)
    parser.add_argument("--workdir", help="where to write the corpus (default: a temporary folder, removed)")
    parser.add_argument("--one_start", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_start:
        one_start(args.one_start)
        return 0
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="nano8k-bench-manifest-"))
    try:
        started = time.perf_counter()
        manifests = write_corpus(root, args.lines, args.unmeasured)
        print(f"wrote {args.lines:,} + {args.unmeasured:,} lines in {time.perf_counter() - started:.0f} s under {root}")
        rows = []
        for manifest, label in zip(
            manifests, (f"{args.lines:,} lines, durations given", f"{args.unmeasured:,} lines, no durations")
        ):
            for start in ("first", "second"):
                out = subprocess.run(
                    [sys.executable, __file__, "--one_start", str(manifest)],
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append((label, start, result))
        print("\n| manifest | start | utterances | batches | load s | peak RSS MB |\n|---|---|---|---|---|---|")
        for label, start, r in rows:
            print(
                f"| {label} | {start} | {r['utterances']:,} | {r['batches']:,} | {r['seconds']:.1f} | "
                f"{r['peak_rss_mb']:,.0f} |"
            )
        print(
            f"\n(load s: setup('fit') + planning epoch 0, after imports and the tokenizer, "
            f"{rows[0][2]['import_seconds']:.1f} s; one process, torch on 1 thread)"
        )
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
