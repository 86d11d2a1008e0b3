"""Full-size Fun-ASR-Nano (random init, release dims): build, forward and a training step; step time and peak memory.

Proves the real-size path (config translation, network, splice, loss, backward) without the 800M weights, and on a
GPU measures what a telephone.yaml-style step costs:

    python benchmarks/bench_full_size.py --device cpu --batch 2 --seconds 4          # CPU smoke (about a minute)
    python benchmarks/bench_full_size.py --device cuda --llm_dtype bf16 --batch 8 --seconds 10 --steps 5
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from release_dims import release_funasr_config, release_qwen_config
from transformers import AutoTokenizer

from nano8k.model.batch import SpeechItem, collate
from nano8k.model.bundled import TINY_TEMPLATE_DIR
from nano8k.model.checkpoint import DTYPES, build_network
from nano8k.model.convert import build_config, parameter_counts
from nano8k.model.features import FrontendConfig, extract_features
from nano8k.model.nano import NanoASR
from nano8k.model.prompt import PromptEncoder, audio_token_count


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def build_model(device: torch.device, llm_dtype: torch.dtype) -> NanoASR:
    funasr, qwen = release_funasr_config(), release_qwen_config()
    network = build_network(build_config(funasr, qwen), device=device, random_init=True)
    network.model.language_model.to(llm_dtype)
    network.lm_head.to(llm_dtype)
    # the tiny byte-level tokenizer stands in for Qwen3's (its ids are valid in the 151,936-entry vocabulary)
    tokenizer = AutoTokenizer.from_pretrained(str(TINY_TEMPLATE_DIR / "Qwen3-0.6B"))
    return NanoASR(network, tokenizer, FrontendConfig(), funasr, qwen)


def make_batch(model: NanoASR, batch: int, seconds: float, device: torch.device):
    generator = torch.Generator().manual_seed(0)
    items = []
    for i in range(batch):
        wave = 0.1 * torch.randn(int(8000 * seconds * (1 - 0.1 * i / max(batch, 1))), generator=generator)
        feats = extract_features(wave, 8000, model.frontend)  # 8 kHz telephone audio -> 16 kHz features
        target = "我想查询一下话费余额，谢谢。" if i % 2 else "please transfer me to the billing department"
        prompt = PromptEncoder(model.tokenizer, model.feeding.prompt).encode(audio_token_count(feats.shape[0]), target)
        items.append(SpeechItem(f"u{i}", feats, prompt, target))
    return collate(items, model.pad_id).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--llm_dtype", default="bf16", choices=sorted(DTYPES))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing")
    args = parser.parse_args()
    device = torch.device(args.device)

    start = time.perf_counter()
    model = build_model(device, DTYPES[args.llm_dtype])
    built = time.perf_counter() - start
    counts = parameter_counts(model.network)
    print(
        f"built full-size random-init model on {device} in {built:.1f} s: "
        + ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in counts.items())
    )
    expected = {"encoder": 221_136_992, "adaptor": 12_604_928, "llm": 596_049_920}
    assert counts == expected, f"parameter counts {counts} differ from the release {expected}"

    batch = make_batch(model, args.batch, args.seconds, device)
    print(
        f"batch: {args.batch} x {args.seconds:.1f} s of 8 kHz audio -> feats {tuple(batch.feats.shape)}, "
        f"ids {tuple(batch.input_ids.shape)}, speech tokens {batch.audio_tokens.tolist()}"
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    model.eval()
    with torch.no_grad(), autocast:
        start = time.perf_counter()
        loss = model(batch).loss
        forward = time.perf_counter() - start
    print(f"eval forward: loss {loss.item():.3f} (random weights: ~ln(151936) = 11.9), {forward:.2f} s")

    # telephone.yaml: encoder + adaptor trainable (fp32), LLM frozen
    for param in model.llm.parameters():
        param.requires_grad_(False)
    model.network.lm_head.requires_grad_(False)
    model.train()
    model.llm.eval()
    if args.checkpointing:
        model.network.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=5e-5, weight_decay=0.01)
    times = []
    for _ in range(args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            loss = model(batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    grads_ok = all(p.grad is None for p in trainable)  # zeroed after the step
    print(
        f"train step (encoder+adaptor, {sum(p.numel() for p in trainable) / 1e6:.1f}M trainable): "
        f"loss {loss.item():.3f}, step times {[round(t, 2) for t in times]} s, "
        f"peak memory {peak_memory_gib(device):.2f} GiB "
        f"({'CUDA allocated' if device.type == 'cuda' else 'process RSS'})"
    )
    assert torch.isfinite(loss) and grads_ok


if __name__ == "__main__":
    main()
