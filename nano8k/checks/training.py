"""Training-side preflight checks: lr/warm-up vs data size, official tuning advice, memory, precision, W&B, outputs."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from nano8k.atomic import unwritable_reason
from nano8k.checks.context import CheckResult, Context
from nano8k.checks.data import reports, train_hours
from nano8k.checks.memory import GIB, estimate_memory
from nano8k.checks.model import shape, stage_trainable
from nano8k.errors import CheckFailed
from nano8k.training.outputs import output_folders

OFFICIAL_LLM_LR = 2e-4  # FA finetune.sh optim_conf.lr for LLM fine-tuning
WANDB_MODES = ("online", "offline", "disabled", "dryrun", "run", "shared")


def run_precision(ctx: Context) -> str:
    """``trainer.precision`` as the run uses it: unset (the parser holds None) is Lightning's ``32-true``, which its
    accelerator connector picks in private code, so it is named here."""
    return str(ctx.trainer.precision or "32-true")


def world_size(ctx: Context) -> int:
    devices = ctx.trainer.devices
    nodes = int(ctx.trainer.num_nodes or 1)
    if isinstance(devices, int):
        n = devices if devices > 0 else 1
    elif isinstance(devices, (list, tuple)):
        n = len(devices)
    elif isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        n = max(1, int(devices))
    else:
        n = 1
    return n * nodes


def steps_per_epoch(ctx: Context) -> int | None:
    """Optimizer steps per epoch from the real bucketing of the train manifest (None without train data)."""
    from nano8k.data.pipeline.batching import BucketBatchSampler, estimated_lfr_frames

    rep = reports(ctx).get("train")
    if rep is None or not rep.good:
        return None
    lengths = [estimated_lfr_frames(u.duration or 0.0) for u in rep.good]
    try:
        sampler = BucketBatchSampler(
            lengths,
            int(ctx.data.max_frames_per_batch),
            max_batch_size=ctx.data.max_batch_size,
            shuffle=False,
            sort_window=ctx.data.sort_window,
        )
    except ValueError as err:
        raise CheckFailed(f"cannot count the steps per epoch ({err}); see the data_settings check") from err
    batches = len(sampler.all_batches(0)) // world_size(ctx)
    return max(1, batches // int(ctx.trainer.accumulate_grad_batches or 1))


def run_epochs(max_epochs: Any, max_steps: int) -> int | None:
    """Epoch limit as Lightning applies it: -1 is unlimited; unset is 1000 unless max_steps bounds the run."""
    if max_epochs is None:
        return None if max_steps > 0 else 1000
    return None if int(max_epochs) == -1 else int(max_epochs)


def check_schedule(ctx: Context) -> CheckResult:
    """lr in a sane range; warm-up shorter than the run; run length vs data size."""
    name = "schedule"
    per_epoch = steps_per_epoch(ctx)
    max_steps = int(ctx.trainer.max_steps or -1)
    max_epochs = run_epochs(ctx.trainer.max_epochs, max_steps)
    if max_steps <= 0 and max_epochs is None:
        raise CheckFailed(
            f"{ctx.source}: trainer.max_epochs=-1 and no trainer.max_steps: the run never ends; "
            "set trainer.max_epochs or trainer.max_steps"
        )
    if max_steps > 0:
        total = max_steps if per_epoch is None or max_epochs is None else min(max_steps, per_epoch * max_epochs)
        how = f"trainer.max_steps={max_steps}"
    elif per_epoch is not None:
        total, how = per_epoch * max_epochs, f"{max_epochs} epochs x {per_epoch} steps"
    else:
        raise CheckFailed("cannot size the run: no readable train manifest and trainer.max_steps unset")
    warmup = int(ctx.model.warmup_steps or 0)
    warns = []
    for stage in ctx.stages:
        if not 0 < stage.lr <= 1e-2:
            raise CheckFailed(
                f"{stage.name} stage lr {stage.lr:g} ({ctx.source}: {stage.lr_key}) is outside (0, 1e-2]; "
                "fine-tuning uses 1e-5 .. 2e-4"
            )
        trains_big = not stage.freeze.get("encoder", True) or not stage.freeze.get("llm", True)
        if ctx.release_weights and trains_big and stage.lr > OFFICIAL_LLM_LR:
            warns.append(
                f"{stage.name} lr {stage.lr:g} exceeds the official fine-tuning lr {OFFICIAL_LLM_LR:g} while "
                "encoder/LLM weights train: risk of forgetting; sweep 1e-5..1e-4 (sweeps/lr.yaml)"
            )
    if warmup >= total:  # legal (a smoke run of a few steps, say), but the schedule never leaves warm-up
        warns.append(
            f"{ctx.key('model.warmup_steps')}={warmup} >= the whole run ({total} optimizer steps = {how}): "
            "the run ends inside warm-up and the lr never reaches model.lr; fine for a smoke run, for a real "
            f"one set warmup_steps to ~5-10% of the run (e.g. {max(1, total // 10)}) or train longer"
        )
    elif warmup > 0.3 * total:
        warns.append(
            f"warm-up {warmup} steps is {warmup / total:.0%} of the run ({total} steps); ~5-10% is usual "
            f"(model.warmup_steps ~{max(1, total // 10)})"
        )
    message = f"~{total} optimizer steps ({how}), warm-up {warmup}, lr " + ", ".join(
        f"{s.name} {s.lr:g}" for s in ctx.stages
    )
    return CheckResult(name, "warn" if warns else "pass", "; ".join([message, *warns]))


def check_tuning_advice(ctx: Context) -> CheckResult:
    """Official advice (Fun-ASR docs/finetune.md): < 1,000 h adaptor; < 5,000 h + encoder; > 10,000 h everything."""
    name = "tuning_advice"
    hours = train_hours(ctx)
    if hours is None:
        raise CheckFailed("no readable train manifest to size the data (see manifests)")
    if not ctx.release_weights:
        return CheckResult(
            name,
            "pass",
            f"{hours:.2f} h on {ctx.feeding.weights} weights (config.yaml nano8k.weights): "
            "the advice is for the released weights, not applied",
        )
    lora = ctx.model.lora is not None
    warns = []
    for stage in ctx.stages:
        f = stage.freeze
        if not f.get("llm", True) and not lora:
            if hours < 1000:
                raise CheckFailed(
                    f"{stage.name} stage trains the whole LLM on {hours:.1f} h; official advice: all parameters only "
                    f"with > 10,000 h. Set {stage.freeze_key}.llm true ({ctx.source}) or use LoRA (model.lora)"
                )
            if hours < 10000:
                warns.append(f"{stage.name}: LLM trains on {hours:.0f} h (< 10,000 h advised for full fine-tuning)")
        if not f.get("encoder", True) and hours < 1000:
            native = stage.frontend_rate == 8000
            warns.append(
                f"{stage.name}: encoder trains on {hours:.1f} h (advice: adaptor only below 1,000 h)"
                + (
                    "; acceptable for a short native-8 kHz adaptation stage"
                    if native
                    else f"; consider {stage.freeze_key}.encoder true and compare against an adaptor-only run"
                )
            )
    tier = (
        "adaptor only"
        if hours < 1000
        else ("encoder + adaptor" if hours < 5000 else "encoder + adaptor (+ LLM above 10,000 h)")
    )
    return CheckResult(
        name,
        "warn" if warns else "pass",
        f"{hours:.1f} h of training audio: advice {tier}" + ("; " + "; ".join(warns) if warns else ""),
    )


def _mean_stats(ctx: Context) -> tuple[float, float]:
    from nano8k.data.pipeline.batching import estimated_lfr_frames

    try:
        rep = reports(ctx).get("train")
    except CheckFailed:
        rep = None
    if rep is None or not rep.good:
        return 80.0, 30.0  # ~5 s clips, ~30 characters: used when the manifests cannot be read
    frames = sum(estimated_lfr_frames(u.duration or 0.0) for u in rep.good) / len(rep.good)
    chars = sum(len(u.target) for u in rep.good) / len(rep.good)
    return frames, chars


def local_gpu_memory() -> float | None:
    """Total memory (bytes) of CUDA device 0, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return float(torch.cuda.get_device_properties(0).total_memory)


def check_memory(ctx: Context) -> CheckResult:
    """Per-GPU memory estimate for each stage (see nano8k.checks.memory for the formula) vs the GPU."""
    name = "memory"
    s = shape(ctx)
    mean_frames, mean_chars = _mean_stats(ctx)
    precision = run_precision(ctx)
    ddp = world_size(ctx) > 1 or "ddp" in str(ctx.plain(ctx.trainer.strategy))
    worst, lines = None, []
    for stage in ctx.stages:
        est = estimate_memory(
            s,
            stage_trainable(ctx, stage),
            precision=precision,
            llm_dtype=ctx.model.llm_dtype,
            max_frames=int(ctx.data.max_frames_per_batch),
            max_tokens=ctx.data.max_tokens_per_batch,
            max_batch_size=ctx.data.max_batch_size,
            mean_frames=mean_frames,
            mean_target_chars=mean_chars,
            gradient_checkpointing=bool(ctx.model.gradient_checkpointing),
            ddp=ddp,
            audio_tokens=ctx.feeding.audio_tokens,
        )
        lines.append(f"{stage.name} {est.describe()}")
        worst = est if worst is None or est.total > worst.total else worst
    accelerator = str(ctx.trainer.accelerator)
    capacity = ctx.gpu_memory_gb * GIB if ctx.gpu_memory_gb else None
    where = f"--gpu_memory {ctx.gpu_memory_gb:g}" if capacity else "local GPU"
    if capacity is None and accelerator != "cpu":
        capacity = local_gpu_memory()
    text = "; ".join(lines) + f" [estimate, precision {precision}]"
    if capacity is None or accelerator == "cpu":
        return CheckResult(name, "pass", text + ("; CPU run" if accelerator == "cpu" else "; no GPU here to compare"))
    fix = (
        "lower data.max_frames_per_batch, set model.gradient_checkpointing true, use trainer.precision bf16-mixed "
        "or freeze more (model.freeze)"
    )
    if worst.total > capacity:
        raise CheckFailed(f"{text} exceeds the {capacity / GIB:.0f} GiB of the {where}: {fix}")
    if worst.total > 0.9 * capacity:
        return CheckResult(name, "warn", f"{text} is within 10% of the {capacity / GIB:.0f} GiB {where}: {fix}")
    return CheckResult(name, "pass", f"{text}; fits the {capacity / GIB:.0f} GiB {where}")


def check_precision(ctx: Context) -> CheckResult:
    """Precision and strategy are usable: DeepSpeed installed, StageSwitch on single-device/DDP, no fp16 LLM."""
    name = "precision"
    precision = run_precision(ctx)
    strategy = ctx.plain(ctx.trainer.strategy)
    strategy_name = strategy.get("class_path", "") if isinstance(strategy, dict) else str(strategy)
    accelerator = str(ctx.trainer.accelerator)
    if "deepspeed" in strategy_name.lower():
        if importlib.util.find_spec("deepspeed") is None:
            raise CheckFailed(
                f"{ctx.key('trainer.strategy')}={strategy_name} needs the deepspeed package, which is "
                "not installed: use strategy ddp (nano8k's tested path) or pip install deepspeed"
            )
    if ctx.stage_switch() is not None and strategy_name.lower() not in (
        "auto",
        "ddp",
        "ddpstrategy",
        "single_device",
        "singledevicestrategy",
    ):
        raise CheckFailed(
            f"{ctx.key('trainer.strategy')}={strategy_name}: StageSwitch supports single-device and DDP "
            "only; set trainer.strategy ddp (or auto)"
        )
    warns = []
    if precision.startswith("16") or str(ctx.model.llm_dtype).lower() in ("fp16", "float16"):
        warns.append(
            "fp16 overflows in Qwen3 (trained in bf16): use trainer.precision bf16-mixed and model.llm_dtype bf16"
        )
    if accelerator == "cpu" and precision.startswith("bf16"):
        warns.append("bf16 on CPU is slow; use precision 32-true for CPU runs")
    msg = f"precision {precision}, strategy {strategy_name}, accelerator {accelerator}"
    return CheckResult(name, "warn" if warns else "pass", "; ".join([msg, *warns]))


def _wandb_loggers(ctx: Context) -> list[tuple[str, dict[str, Any]]]:
    logger = ctx.plain(ctx.trainer.logger)
    found = []
    if isinstance(logger, dict) and logger.get("class_path") == "WandbLogger":
        found.append(("trainer.logger", logger))
    elif isinstance(logger, dict):
        for name, value in logger.items():
            if isinstance(value, dict) and value.get("class_path") == "WandbLogger":
                found.append((f"trainer.logger.{name}", value))
    return found


def check_wandb(ctx: Context) -> CheckResult:
    """W&B: whether a WandbLogger is configured, and whether it will log online, offline or not at all."""
    name = "wandb"
    loggers = _wandb_loggers(ctx)
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode is not None and env_mode not in WANDB_MODES:
        raise CheckFailed(f"WANDB_MODE={env_mode!r} is not a W&B mode; use online, offline or disabled")
    if not loggers:
        return CheckResult(
            name,
            "warn",
            f"no WandbLogger in {ctx.key('trainer.logger')}: add class_path "
            "lightning.pytorch.loggers.WandbLogger (project, name, offline) to log to W&B",
        )
    key, args = loggers[0]
    offline = bool(args.get("offline", False))
    log_model = args.get("log_model", False)
    if offline and log_model not in (False, None):
        raise CheckFailed(
            f"{ctx.source}: {key}.offline true with log_model={log_model!r}: WandbLogger refuses this "
            "combination; set log_model false or run online"
        )
    project = args.get("project")
    where = f"project {project!r}, name {args.get('name')!r}"
    if env_mode in ("disabled",):
        return CheckResult(name, "pass", f"WANDB_MODE=disabled: W&B logging off ({where})")
    if offline or env_mode in ("offline", "dryrun"):
        return CheckResult(
            name,
            "pass",
            f"offline ({where}); runs are stored under {args.get('save_dir', '.')}/wandb, "
            "upload later with `wandb sync <run dir>`",
        )
    warns = []
    if not project:
        warns.append(f"{key}.project is not set (runs go to the default project)")
    if not os.environ.get("WANDB_API_KEY"):
        warns.append(
            "online logging but WANDB_API_KEY is not set: run `wandb login` (or export WANDB_API_KEY), or "
            f"export WANDB_MODE=offline / set {key}.offline true"
        )
    return CheckResult(name, "warn" if warns else "pass", "; ".join([f"online ({where})", *warns]))


def check_outputs(ctx: Context) -> CheckResult:
    """Output folders (trainer.default_root_dir, checkpoint dirpaths, ExportOnFitEnd.out_dir, logger save_dir) can be
    created and written."""
    name = "outputs"
    folders = output_folders(ctx.config.as_dict())
    problems = [
        f"{folder.key}={folder.path}: {why}"
        for folder in folders
        if (why := unwritable_reason(folder.path)) is not None
    ]
    if problems:
        raise CheckFailed(
            f"{ctx.source}: cannot write " + "; ".join(problems) + ": make the folder writable or set "
            "the key to a folder you can write"
        )
    if not folders:
        return CheckResult(name, "pass", "no output folder set: Lightning writes lightning_logs/ in the current folder")
    return CheckResult(name, "pass", "writable: " + ", ".join(str(folder.path) for folder in folders))
