"""Benchmark: reading a 3 s segment of a 1 h 8 kHz recording vs decoding the whole file, per storage format.

Run: ``python benchmarks/bench_segment_read.py [--hours 1] [--formats wav-pcm16,flac,...] [--reads 10]``.
Writes one long stereo call per format (mono for GSM 6.10, which libsndfile writes mono only) into a temporary
folder, then times ``nano8k.data.audio.load_audio(path, offset=..., duration=3, channel=1)`` at ``--reads`` offsets
spread over the file (median) against decoding the whole file once (what a reader without seeking does for every
segment), and checks that the segment equals the slice of the full decode.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from nano8k.data.audio import load_audio

RATE = 8000
FORMATS = {  # name: (container, subtype, extension, channels)
    "wav-pcm16": ("WAV", "PCM_16", "wav", 2),
    "wav-ulaw": ("WAV", "ULAW", "wav", 2),
    "wav-alaw": ("WAV", "ALAW", "wav", 2),
    "wav-gsm610": ("WAV", "GSM610", "wav", 1),
    "flac": ("FLAC", "PCM_16", "flac", 2),
    "ogg-opus": ("OGG", "OPUS", "opus", 2),
    "mp3": ("MP3", "MPEG_LAYER_III", "mp3", 2),
}


def _write(path: Path, container: str, subtype: str, channels: int, seconds: float) -> None:
    """Speech-like noise (bursts and pauses), written a minute at a time so memory stays small."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", RATE, channels, subtype=subtype, format=container) as out:
        for _ in range(int(seconds // 60)):
            envelope = np.repeat(rng.uniform(0, 1, 60 * 4) > 0.4, RATE // 4)[:, None]
            out.write((0.1 * rng.standard_normal((60 * RATE, channels)) * envelope).astype(np.float32))


def _timed(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated: {', '.join(FORMATS)}")
    parser.add_argument("--reads", type=int, default=10, help="segment reads per format (offsets spread over the file)")
    parser.add_argument("--segment", type=float, default=3.0, help="segment length in seconds")
    args = parser.parse_args()
    seconds = args.hours * 3600
    print(f"{args.segment:g} s segment of a {args.hours:g} h {RATE} Hz recording; median of {args.reads} reads\n")
    print("| format | file MB | write s | segment read ms | whole-file decode ms | ratio | same samples |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.formats.split(","):
            container, subtype, ext, channels = FORMATS[name]
            path = Path(tmp) / f"call-{name}.{ext}"
            write_s = _timed(lambda: _write(path, container, subtype, channels, seconds))
            frames = sf.info(str(path)).frames
            offsets = np.linspace(30.0, seconds - args.segment - 30.0, args.reads)
            channel = channels - 1
            reads = [
                _timed(lambda o=o: load_audio(path, offset=float(o), duration=args.segment, channel=channel), 3)
                for o in offsets
            ]
            full_s = _timed(lambda: sf.read(str(path), dtype="float32", always_2d=True, frames=frames))
            full, _ = sf.read(str(path), dtype="float32", always_2d=True, frames=frames)
            last = float(offsets[-1])
            segment = load_audio(path, offset=last, duration=args.segment, channel=channel)[0].numpy()
            start = int(round(last * RATE))
            same = float(np.abs(segment - full[start : start + segment.size, channel]).max()) < 1e-5
            del full
            median_ms = statistics.median(reads) * 1000
            print(
                f"| {name} | {path.stat().st_size / 2**20:.1f} | {write_s:.1f} | {median_ms:.2f} | "
                f"{full_s * 1000:.0f} | {full_s * 1000 / median_ms:.0f}x | {'yes' if same else 'NO'} |",
                flush=True,
            )
            path.unlink()


if __name__ == "__main__":
    main()
