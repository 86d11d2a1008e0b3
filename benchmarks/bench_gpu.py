"""One-shot GPU benchmark of the full-size model: step time, audio hours per GPU hour, peak memory, MFU, host syncs.

Full-size random-init Fun-ASR-Nano (release dims; LLM in bf16, trainable parts fp32 under bf16-mixed autocast),
trained by ``NanoASRModule`` in a Lightning ``Trainer`` as ``nano8k.fit`` does (label-only LM head, fused AdamW,
device-side skip decisions, gradient clip 5), on batches of real demo audio of ``--max_frames`` LFR frames (6,000:
telephone.yaml's and the release's batch), for three recipes: adaptor only; encoder + adaptor (telephone.yaml);
adaptor + LoRA on the LLM. Beside each measured peak it prints preflight's memory estimate for the same batch, and
first the Hopper cuDNN-SDPA NaN check (``check_hopper_sdpa.py``). Writes ``<out_dir>/gpu_bench.json`` and ``.md``.

    python benchmarks/bench_gpu.py                                  # one GPU, about 4-8 minutes
    python benchmarks/bench_gpu.py --tiny --device cpu --steps 2    # the bundled tiny model: a smoke run anywhere

Batches are built once on the CPU before timing (with telephone.yaml's augmentations), so the figures are the GPU's,
not the data loader's (``benchmarks/bench_data.py`` measures that). The prompts use the bundled byte-level tokenizer
(its ids are valid in Qwen3's vocabulary): transcripts are longer in tokens than with Qwen3's, so the LLM share of
the work is overstated, not understated. Step time: the timed steps as a whole, the device synchronised at their
start and end only. MFU = FLOPs counted by ``torch.profiler`` (``with_flops``) for one step of the recipe / step
time / ``--peak_tflops`` (H100/H200 SXM bf16 dense: 989). Host syncs are counted with
``torch.cuda.set_sync_debug_mode`` over the timed steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_full_size import build_model  # noqa: E402

from nano8k.checks.memory import estimate_memory, model_shape  # noqa: E402
from nano8k.data.pipeline.datamodule import TelephoneDataModule  # noqa: E402
from nano8k.model.checkpoint import export_funasr  # noqa: E402
from nano8k.model.locate import resolve_model_dir  # noqa: E402
from nano8k.training.freezing import FreezeConfig, LoraConfig, trainable_counts  # noqa: E402
from nano8k.training.module import NanoASRModule  # noqa: E402

RECIPES: dict[str, dict[str, Any]] = {
    "adaptor": {"freeze": FreezeConfig(encoder=True, adaptor=False, llm=True), "lora": None},
    "encoder_adaptor": {"freeze": FreezeConfig(encoder=False, adaptor=False, llm=True), "lora": None},
    "lora": {"freeze": FreezeConfig(encoder=True, adaptor=False, llm=True), "lora": LoraConfig()},
}
LFR_SECONDS = 0.06


def write_full_size_model(directory: Path) -> Path:
    """A random-init model at the release's dims, in the FunASR layout (bf16), with the bundled tokenizer."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return export_funasr(build_model(device, torch.bfloat16), directory)


def build_batches(model_dir: str, max_frames: int, count: int, seed: int = 0) -> list[Any]:
    """``count`` training batches of the demo corpus, telephone.yaml's augmentations, built once."""
    data = TelephoneDataModule(
        train_manifests=str(ROOT / "data_manifests" / "demo" / "train.jsonl"),
        tokenizer_dir=str(resolve_model_dir(model_dir)),
        max_frames_per_batch=max_frames,
        num_workers=0,
        seed=seed,
        probe_audio=False,
    )
    data.setup("fit")  # both models here are fed as the release is (ceil(L/8) speech tokens)
    batches: list[Any] = []
    while len(batches) < count:
        batches.extend(batch for batch in data.train_dataloader() if len(batch))
    return batches[:count]


class StepTimer(Callback):
    """Wall time of the timed steps as a whole (the device synchronised at the start and the end only, so the host
    runs ahead as in a real fit), peak memory and host syncs over them."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.steps, self.seconds, self.syncs = warmup, 0, float("nan"), 0
        self._start = 0.0
        self._caught: Any = None

    @staticmethod
    def _sync(device: torch.device) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx != self.warmup:
            return
        self._sync(pl_module.device)
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
            self._caught = warnings.catch_warnings(record=True)
            self._records = self._caught.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += batch_idx >= self.warmup

    def on_train_end(self, trainer, pl_module) -> None:
        if self._caught is not None:
            torch.cuda.set_sync_debug_mode("default")
            self.syncs = sum("synchroniz" in str(w.message) for w in self._records)
            self._caught.__exit__(None, None, None)
        self._sync(pl_module.device)
        self.seconds = time.perf_counter() - self._start


def step_flops(module: NanoASRModule, batch: Any, device: torch.device) -> int:
    """FLOPs of one forward + backward of the recipe, as the profiler counts them (matrix products and
    convolutions; attention, norms and the optimizer are left out, so MFU is if anything understated)."""
    from torch.profiler import ProfilerActivity, profile

    module.train()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, with_flops=True) as prof:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = module.model(batch.to(device)).loss
        loss.backward()
    module.zero_grad(set_to_none=True)
    return int(sum(event.flops or 0 for event in prof.key_averages()))


def run_recipe(name: str, model_dir: str, batches: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    recipe = RECIPES[name]
    device = torch.device(args.device)
    module = NanoASRModule(
        model_dir,
        freeze=recipe["freeze"],
        lora=recipe["lora"],
        lr=5e-5,
        warmup_steps=100,
        llm_dtype="bf16" if device.type == "cuda" else None,
        max_new_tokens=8,
    )
    timer = StepTimer(args.warmup)
    precision = "bf16-mixed" if device.type == "cuda" else "32-true"
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_steps=args.warmup + args.steps,
        gradient_clip_val=5.0,
        logger=False,
        log_every_n_steps=50,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    order = [batches[i % len(batches)] for i in range(args.warmup + args.steps)]
    trainer.fit(module, train_dataloaders=DataLoader(order, batch_size=None))
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else float("nan")
    flops = step_flops(module, order[-1], device)
    step = timer.seconds / max(1, timer.steps)
    audio_s = statistics.mean(float(b.feat_lens.sum()) * LFR_SECONDS for b in order[args.warmup :])
    frames = [float(b.feat_lens.float().mean()) for b in batches]
    chars = [statistics.mean(len(t) for t in b.targets) for b in batches]
    shape = model_shape(module.model.network, None if recipe["lora"] is None else vars(recipe["lora"]))
    trainable = trainable_counts(shape.parameter_sizes(), recipe["freeze"], recipe["lora"] is not None)
    llm_dtype = "bf16" if device.type == "cuda" else None
    estimate = estimate_memory(
        shape,
        trainable,
        precision=precision,
        llm_dtype=llm_dtype,
        max_frames=args.max_frames,
        mean_frames=statistics.mean(frames),
        mean_target_chars=statistics.mean(chars),
    )
    result = {
        "recipe": name,
        "trainable": dict(module.trainable),
        "steps_timed": timer.steps,
        "step_s": step,
        "audio_s_per_batch": audio_s,
        "audio_hours_per_gpu_hour": audio_s / step,
        "tflops_per_step": flops / 1e12,
        "achieved_tflops": flops / step / 1e12,
        "mfu": flops / step / (args.peak_tflops * 1e12),
        "peak_memory_gib": peak / 2**30,
        "preflight_estimate_gib": estimate.total / 2**30,
        "estimate_vs_measured": estimate.total / peak if peak == peak else float("nan"),
        "host_syncs_per_step": timer.syncs / max(1, timer.steps) if device.type == "cuda" else None,
        "optimizer": "fused" if trainer.optimizers[0].param_groups[0].get("fused") else "foreach/for_loop",
    }
    print(
        f"[{name}] step {step * 1e3:.1f} ms, {result['audio_hours_per_gpu_hour']:,.0f} audio h per GPU h, "
        f"MFU {100 * result['mfu']:.1f} %, peak {result['peak_memory_gib']:.2f} GiB (preflight "
        f"{result['preflight_estimate_gib']:.2f} GiB), host syncs/step {result['host_syncs_per_step']}",
        flush=True,
    )
    del trainer, module
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def hopper_check() -> str:
    """The Hopper cuDNN-SDPA check's printout and its verdict (no GPU: says so)."""
    import contextlib
    import io

    import check_hopper_sdpa

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = check_hopper_sdpa.main()
    if not torch.cuda.is_available():
        return buffer.getvalue()
    return buffer.getvalue() + ("guarded gradients finite\n" if code == 0 else "GUARDED GRADIENTS NON-FINITE\n")


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# GPU benchmark ({report['device']})",
        "",
        f"`{report['command']}` on {report['date']}; torch "
        f"{report['torch']}. Batches of {report['max_frames']} LFR frames of demo audio "
        f"({report['batches']} distinct), bf16-mixed, gradient clip 5, {report['steps']} timed steps after "
        f"{report['warmup']} warm-up.",
        "",
        "| recipe | trainable M | step ms | audio h / GPU h | TFLOP/step | MFU | peak GiB | preflight GiB | "
        "estimate / peak | host syncs / step |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        trainable = sum(r["trainable"].values()) / 1e6
        lines.append(
            f"| {r['recipe']} | {trainable:.1f} | {r['step_s'] * 1e3:.1f} | "
            f"{r['audio_hours_per_gpu_hour']:,.0f} | {r['tflops_per_step']:.2f} | {100 * r['mfu']:.1f} % | "
            f"{r['peak_memory_gib']:.2f} | {r['preflight_estimate_gib']:.2f} | "
            f"{r['estimate_vs_measured']:.2f} | {r['host_syncs_per_step']} |"
        )
    lines += ["", "Hopper cuDNN SDPA check:", "```", report["hopper_check"].rstrip(), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--recipes", default="adaptor,encoder_adaptor,lora")
    parser.add_argument("--max_frames", type=int, default=6000, help="LFR frames per batch (padding included)")
    parser.add_argument("--batches", type=int, default=4, help="distinct batches, cycled")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--peak_tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H100/H200: 989)")
    parser.add_argument("--tiny", action="store_true", help="the bundled tiny model (a smoke run)")
    parser.add_argument("--out_dir", default=str(ROOT / "docs" / "results"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    L.seed_everything(0, verbose=False)
    report: dict[str, Any] = {
        "command": "python benchmarks/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else args.device,
        "max_frames": args.max_frames,
        "batches": args.batches,
        "steps": args.steps,
        "warmup": args.warmup,
        "peak_tflops": args.peak_tflops,
        "hopper_check": hopper_check(),
    }
    print(report["hopper_check"], end="", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = "tiny" if args.tiny else str(write_full_size_model(Path(scratch) / "full"))
        batches = build_batches(model_dir, args.max_frames, args.batches)
        report["results"] = [run_recipe(name, model_dir, batches, args) for name in args.recipes.split(",")]
    report["seconds"] = time.perf_counter() - started
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_bench.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (out / "gpu_bench.md").write_text(markdown(report), encoding="utf-8")
    print(f"wrote {out / 'gpu_bench.md'} and .json in {report['seconds']:.0f} s", flush=True)
    return report


if __name__ == "__main__":
    main()
