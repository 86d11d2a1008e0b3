"""Benchmark: batched (16) vs one-by-one greedy decoding of validation-style batches on the tiny model.

Run: ``.venv/bin/python benchmarks/bench_decode.py [--utterances 32] [--batch_size 16] [--max_new_tokens 32]``.
Checks that both ways generate identical token ids, then prints the wall times and the speed-up (target >= 5x).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from nano8k.data.audio import load_audio
from nano8k.model.batch import SpeechItem, collate_sources
from nano8k.model.bundled import tiny_model_dir
from nano8k.model.checkpoint import load_pretrained
from nano8k.model.features import extract_features
from nano8k.model.nano import NanoASR
from nano8k.model.prompt import PromptEncoder, audio_token_count

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def build_items(model: NanoASR, count: int) -> list[SpeechItem]:
    """``count`` utterances cycling over the tiny-nano and speech fixture clips (16 kHz fbank, no dither)."""
    clips = sorted((FIXTURES / "tiny-nano").glob("*.wav")) + sorted((FIXTURES / "speech").glob("*.wav"))
    if not clips:
        raise SystemExit(f"no wav fixtures under {FIXTURES}")
    feats = [extract_features(*load_audio(path), model.frontend) for path in clips]
    items = []
    prompts = PromptEncoder(model.tokenizer, model.feeding.prompt)
    for index in range(count):
        f = feats[index % len(clips)]
        prompt = prompts.encode(audio_token_count(f.shape[0]))
        items.append(SpeechItem(key=f"{clips[index % len(clips)].stem}#{index}", feats=f, prompt=prompt))
    return items


def decode(
    model: NanoASR, items: list[SpeechItem], batch_size: int, max_new_tokens: int, device: str
) -> list[list[int]]:
    """Generated token ids (up to ``<|im_end|>``) per utterance, in batches of ``batch_size``."""
    ids: list[list[int]] = []
    for start in range(0, len(items), batch_size):
        batch = collate_sources(items[start : start + batch_size], model.pad_id).to(device)
        ids += model.generate_ids(batch, max_new_tokens)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return ids


def timed(fn, repeats: int) -> tuple[float, list[list[int]]]:
    best, result = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="best of N timings")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    model = load_pretrained(tiny_model_dir(), dither=0.0).to(args.device).eval()
    items = build_items(model, args.utterances)
    decode(model, items[: args.batch_size], args.batch_size, args.max_new_tokens, args.device)  # warm-up
    t_batched, batched = timed(
        lambda: decode(model, items, args.batch_size, args.max_new_tokens, args.device), args.repeats
    )
    t_single, single = timed(lambda: decode(model, items, 1, args.max_new_tokens, args.device), args.repeats)
    mismatches = [item.key for item, a, b in zip(items, batched, single) if a != b]
    if mismatches:
        raise SystemExit(f"batched and one-by-one outputs differ for {len(mismatches)} utterance(s): {mismatches[:5]}")
    lengths = [len(ids) for ids in batched]
    print(
        f"device {args.device}, torch threads {torch.get_num_threads()}, {len(items)} utterances, "
        f"max_new_tokens {args.max_new_tokens}, mean generated {sum(lengths) / len(lengths):.1f} tokens"
    )
    print(f"token ids identical: {len(items)}/{len(items)}")
    print(f"one-by-one      : {t_single:7.3f} s  ({len(items) / t_single:7.1f} utt/s)")
    print(f"batched ({args.batch_size:>3})   : {t_batched:7.3f} s  ({len(items) / t_batched:7.1f} utt/s)")
    print(f"speed-up        : {t_single / t_batched:7.2f}x  (target >= 5x)")


if __name__ == "__main__":
    main()
