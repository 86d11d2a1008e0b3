"""Benchmark: feature-pipeline and telephone-profile throughput, codec round trips, padding waste on the demo set.

Run: ``python benchmarks/bench_data.py [--manifest data_manifests/demo/train.jsonl] [--threads 1] [--noise DIR]
[--rir DIR]``. Throughput is audio-seconds per CPU-second of this process (one torch thread by default = per core).
Targets: features >= 500x real time per core (issue 3); each telephone profile >= 500x (issue 11); padding waste
<= 10 % with bucketing.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import yaml

from nano8k.data.audio import resample
from nano8k.data.badsamples import BadSampleLog
from nano8k.data.channel import codecs
from nano8k.data.channel.telephone import PROFILES, TelephoneChannel, utterance_rng
from nano8k.data.manifests.io import load_utterances
from nano8k.data.pipeline.batching import BucketBatchSampler, estimated_lfr_frames, padding_waste
from nano8k.model.features import FrontendConfig, apply_lfr, fbank


def fixed_size_batches(num: int, batch_size: int, seed: int = 0) -> list[list[int]]:
    """Shuffled fixed-count batches (the baseline the bucketed sampler is compared against)."""
    order = np.random.default_rng(seed).permutation(num).tolist()
    return [order[i : i + batch_size] for i in range(0, num, batch_size)]


def cpu() -> float:
    return time.process_time()  # user + system CPU of this process, at a finer grain than os.times


def bench_config_mix(
    audio: list,
    seconds: float,
    config: FrontendConfig,
    noise: str | None,
    rir: str | None,
    path: str = "configs/telephone.yaml",
) -> None:
    """The training data path of ``path``: its profile mix with its ``telephone_prob``, then the features."""
    data = yaml.safe_load(open(path))["data"]
    channel = TelephoneChannel.from_config({**data["telephone"], "noise": noise, "rir": rir})
    prob = float(data["telephone_prob"])
    c0 = cpu()
    for i, (w, r) in enumerate(audio):
        rng = utterance_rng(0, str(i))
        if rng.uniform() < prob:
            w, r = channel.transmit(w, r, rng)
        apply_lfr(fbank(resample(w, r, 16000), config), config.lfr_m, config.lfr_n)
    print(
        f"  {path} mix {data['telephone']['profiles']} at telephone_prob {prob}, with the features: "
        f"{seconds / (cpu() - c0):.0f}x real time per CPU-second (one loader worker)"
    )


def bench_profiles(audio: list, seconds: float, config: FrontendConfig, noise: str | None, rir: str | None) -> None:
    """Each built-in profile alone (8 kHz out), and with the features after it; then each codec's round trip."""
    print(f"telephone profiles on the same audio (noise {noise or 'none'}, rir {rir or 'none'}):")
    for name in PROFILES:
        channel = TelephoneChannel({name: 1.0}, noise=noise, rir=rir)
        channel.transmit(*audio[0], utterance_rng(0, "warm-up"))
        c0 = cpu()
        outputs = [channel.transmit(w, r, utterance_rng(0, str(i))) for i, (w, r) in enumerate(audio)]
        alone = cpu() - c0
        c0 = cpu()
        for w, r in outputs:
            apply_lfr(fbank(resample(w, r, 16000), config), config.lfr_m, config.lfr_n)
        features = cpu() - c0
        print(
            f"  {name:9s} {seconds / alone:6.0f}x real time per CPU-second; with resample->16k + fbank + LFR "
            f"{seconds / (alone + features):5.0f}x; target >= 500x"
        )
        print(f"            {channel.describe()[0]}")
    bench_config_mix(audio, seconds, config, noise, rir)
    clip = np.concatenate([w.numpy() for w, _ in audio[:20]]).astype(np.float64)
    clip_seconds = clip.size / codecs.RATE
    parts = []
    for name in codecs.supported_codecs():
        kbps = 12.0 if codecs.CODECS[name].bitrate_kbps else None
        codecs.round_trip(clip[:8000], name, kbps)
        c0 = time.process_time()
        for _ in range(3):
            codecs.round_trip(clip, name, kbps)
        parts.append(f"{name} {3 * clip_seconds / (time.process_time() - c0):.0f}x")
    print(
        f"codec round trips alone ({clip_seconds:.0f} s at 8 kHz; Opus and AMR-NB at 12 kbit/s, MP3 at 8, its "
        "nearest rate): " + ", ".join(parts)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest", default="data_manifests/demo/train.jsonl")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--max_frames", type=int, default=1000, help="LFR frames per bucketed batch (the datamodule default)"
    )
    parser.add_argument("--noise", help="folder or manifest of recorded noise for the profiles (MUSAN noise/)")
    parser.add_argument("--rir", help="folder or manifest of room impulse responses for the profiles")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    utts = load_utterances(args.manifest, BadSampleLog("error"))
    audio = [u.load() for u in utts]
    seconds = sum(w.numel() / r for w, r in audio)
    rates = sorted({r for _, r in audio})
    config = FrontendConfig(sample_rate=16000, dither=0.0)
    for w, r in audio[:5]:  # warm-up (resampler kernels, allocator)
        apply_lfr(fbank(resample(w, r, 16000), config))

    best_cpu = best_wall = float("inf")
    for _ in range(args.repeats):
        c0, w0 = cpu(), time.perf_counter()
        for w, r in audio:
            apply_lfr(fbank(resample(w, r, 16000), config), config.lfr_m, config.lfr_n)
        best_cpu, best_wall = min(best_cpu, cpu() - c0), min(best_wall, time.perf_counter() - w0)
    print(
        f"feature pipeline: {len(audio)} utterances, {seconds:.1f} s of audio at {rates} Hz, torch threads "
        f"{args.threads}"
    )
    print(f"  resample->16k + fbank + LFR: cpu {best_cpu:.3f} s, wall {best_wall:.3f} s")
    print(
        f"  throughput: {seconds / best_cpu:.0f}x real time per CPU-second "
        f"({seconds / best_wall:.0f}x per wall-second); target >= 500x"
    )

    c0 = cpu()
    for u in utts:
        u.load()
    decode = cpu() - c0
    print(f"  decode alone (soundfile): {seconds / max(decode, 1e-9):.0f}x real time per CPU-second")

    bench_profiles(audio, seconds, config, args.noise, args.rir)

    lengths = [estimated_lfr_frames(u.duration or 0.0) for u in utts]
    sampler = BucketBatchSampler(lengths, args.max_frames, seed=0)
    bucketed = sampler.padding_waste()
    sizes = [len(b) for b in sampler.all_batches()]
    mean_size = max(1, round(sum(sizes) / len(sizes)))
    fixed = padding_waste(fixed_size_batches(len(lengths), mean_size, seed=0), lengths)
    print(
        f"padding waste on {args.manifest} ({len(lengths)} utts): bucketed (max {args.max_frames} LFR frames, "
        f"{len(sizes)} batches, mean size {sum(sizes) / len(sizes):.1f}) {bucketed:.1%}; fixed size "
        f"{mean_size} shuffled {fixed:.1%}; target <= 10%"
    )


if __name__ == "__main__":
    main()
