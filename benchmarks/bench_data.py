"""Benchmark: feature-pipeline throughput (8 kHz audio -> 16 kHz -> fbank -> LFR) and padding waste on the demo set.

Run: ``python benchmarks/bench_data.py [--manifest data_manifests/demo/train.jsonl] [--threads 1]``.
Throughput is audio-seconds per CPU-second of this process (one torch thread by default = per core).
Targets (issue 3): >= 500x real time per core; padding waste <= 10 % with bucketing.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from nano8k.data.audio import resample
from nano8k.data.badsamples import BadSampleLog
from nano8k.data.batching import BucketBatchSampler, estimated_lfr_frames, fixed_size_batches, padding_waste
from nano8k.data.manifest import load_utterances
from nano8k.model.features import FrontendConfig, apply_lfr, fbank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest", default="data_manifests/demo/train.jsonl")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-frames", type=int, default=1000, help="LFR frames per bucketed batch (the datamodule default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    utts = load_utterances(args.manifest, BadSampleLog("error"))
    audio = [u.load() for u in utts]
    seconds = sum(w.numel() / r for w, r in audio)
    rates = sorted({r for _, r in audio})
    config = FrontendConfig(sample_rate=16000, dither=0.0)
    for w, r in audio[:5]:  # warm-up (resampler kernels, allocator)
        apply_lfr(fbank(resample(w, r, 16000), config))

    def cpu() -> float:
        t = os.times()
        return t.user + t.system

    best_cpu = best_wall = float("inf")
    for _ in range(args.repeats):
        c0, w0 = cpu(), time.perf_counter()
        for w, r in audio:
            apply_lfr(fbank(resample(w, r, 16000), config), config.lfr_m, config.lfr_n)
        best_cpu, best_wall = min(best_cpu, cpu() - c0), min(best_wall, time.perf_counter() - w0)
    print(f"feature pipeline: {len(audio)} utterances, {seconds:.1f} s of audio at {rates} Hz, torch threads "
          f"{args.threads}")
    print(f"  resample->16k + fbank + LFR: cpu {best_cpu:.3f} s, wall {best_wall:.3f} s")
    print(f"  throughput: {seconds / best_cpu:.0f}x real time per CPU-second "
          f"({seconds / best_wall:.0f}x per wall-second); target >= 500x")

    c0 = cpu()
    for u in utts:
        u.load()
    decode = cpu() - c0
    print(f"  decode alone (soundfile): {seconds / max(decode, 1e-9):.0f}x real time per CPU-second")

    lengths = [estimated_lfr_frames(u.duration or 0.0) for u in utts]
    sampler = BucketBatchSampler(lengths, args.max_frames, seed=0)
    bucketed = sampler.padding_waste()
    sizes = [len(b) for b in sampler.all_batches()]
    mean_size = max(1, round(sum(sizes) / len(sizes)))
    fixed = padding_waste(fixed_size_batches(len(lengths), mean_size, seed=0), lengths)
    print(f"padding waste on {args.manifest} ({len(lengths)} utts): bucketed (max {args.max_frames} LFR frames, "
          f"{len(sizes)} batches, mean size {sum(sizes) / len(sizes):.1f}) {bucketed:.1%}; fixed size "
          f"{mean_size} shuffled {fixed:.1%}; target <= 10%")


if __name__ == "__main__":
    main()
