"""Model-side preflight checks: model dir, frontend rate per stage, dims, trainable parameters per module."""

from __future__ import annotations

from nano8k.checks.context import CheckResult, Context, Stage
from nano8k.checks.memory import ModelShape, model_shape
from nano8k.errors import CheckFailed
from nano8k.model.checkpoint import llm_dir, missing_tokenizer_files
from nano8k.model.features import FRONTEND_RATES


def check_model_dir(ctx: Context) -> CheckResult:
    """Model dir set, files present, config.yaml + LLM config.json build a network config."""
    name = "model_dir"
    if ctx.model_dir_value is None:
        raise CheckFailed(
            f"model.model_dir is not set in {ctx.source} and NANO8K_MODEL_DIR is unset: set "
            "model.model_dir to the Fun-ASR-Nano-2512 download (or 'mini' for the bundled demo model)"
        )
    d = ctx.model_dir
    if not d.is_dir():
        raise CheckFailed(
            f"{ctx.key('model.model_dir')}={ctx.model_dir_value!r}: directory not found; download "
            "Fun-ASR-Nano-2512 (model.pt, config.yaml, Qwen3-0.6B/) and point model.model_dir at it"
        )
    if (d / "config.yaml").is_file():
        needed = ["config.yaml", "model.pt"]
        llm = llm_dir(d, ctx.funasr_config or {}).relative_to(d)
        needed.append(f"{llm}/config.json")
        tokenizer, layout = d / llm, "FunASR release"
    elif (d / "config.json").is_file():
        needed, layout, tokenizer = ["config.json", "nano8k_funasr_config.yaml", "model.safetensors"], "HF export", d
        needed = [n for n in needed if n != "model.safetensors" or not list(d.glob("model*.safetensors"))] or needed
    else:
        raise CheckFailed(
            f"{d}: neither config.yaml (FunASR release layout) nor config.json (HF export) found; "
            "point model.model_dir at the folder that holds model.pt and config.yaml"
        )
    missing = [
        n for n in needed if not (d / n).exists() and not (n == "model.safetensors" and list(d.glob("*.safetensors")))
    ]
    missing += [str((tokenizer / name).relative_to(d)) for name in missing_tokenizer_files(tokenizer)]
    if missing:
        raise CheckFailed(f"{d}: {layout} layout is missing {missing}; re-download the model or fix model.model_dir")
    if ctx.funasr_config is None:
        raise CheckFailed(f"{d}/config.yaml: not a readable YAML mapping; re-download it")
    feeding, refused = ctx.feeding_or_error
    if refused:
        raise CheckFailed(refused)
    fed = f"audio tokens {feeding.audio_tokens}, {feeding.weights} weights"
    if layout == "HF export":
        return CheckResult(name, "pass", f"{d} ({layout}; {fed})")
    try:
        _ = ctx.network_config  # builds it: a config it cannot build fails here
    except ValueError as err:
        raise CheckFailed(f"{err}") from err
    size = (d / "model.pt").stat().st_size / 1e9
    return CheckResult(name, "pass", f"{d} ({layout}; model.pt {size:.2f} GB; config.yaml builds the network; {fed})")


def check_frontend(ctx: Context) -> CheckResult:
    """Fbank rate per stage: 16 kHz (resampled 8 kHz, the release features) for main; native 8 kHz only when the
    encoder trains (stage 1)."""
    name = "frontend"
    model_rate = ctx.model_frontend_rate
    lines, warns = [], []
    switch = ctx.stage_switch() is not None
    for stage in ctx.stages:
        if stage.frontend_rate not in FRONTEND_RATES:
            raise CheckFailed(
                f"{stage.name} stage fbank rate {stage.frontend_rate} Hz ({ctx.source}: {stage.rate_key}) "
                f"is not supported: use 16000 (8 kHz audio resampled, release features) or 8000 "
                "(native narrowband encoder adaptation)"
            )
        if stage.frontend_rate != model_rate and stage.freeze.get("encoder", True):
            raise CheckFailed(
                f"{stage.name} stage computes {stage.frontend_rate} Hz fbank but the model was trained on "
                f"{model_rate} Hz (frontend_conf.fs) and the encoder is frozen: every mel bin moves and nothing can "
                f"adapt. Set {stage.rate_key} to {model_rate} or let the encoder train "
                f"({stage.freeze_key}.encoder false)"
            )
        kind = "native 8 kHz (encoder adaptation)" if stage.frontend_rate == 8000 else "16 kHz from resampled audio"
        lines.append(f"{stage.name}: {stage.frontend_rate} Hz, {kind}")
        if switch and stage.name == "stage1" and stage.frontend_rate == model_rate:
            warns.append(
                f"stage1 uses {model_rate} Hz features: the encoder-adaptation stage is meant to run on native "
                "8 kHz fbank (stage1_frontend_rate 8000)"
            )
        if switch and stage.name == "main" and stage.frontend_rate != model_rate:
            warns.append(
                f"main stage runs at {stage.frontend_rate} Hz, not the release's {model_rate} Hz (main_frontend_rate)"
            )
        if not switch and stage.frontend_rate != model_rate and stage.frontend_rate == 8000:
            warns.append(
                f"the whole run uses native {stage.frontend_rate} Hz fbank (a stage-1 run): follow it with the "
                f"main stage at {model_rate} Hz (configs/telephone.yaml)"
            )
        elif not switch and stage.frontend_rate != model_rate:
            lines.append(
                f"the model dir records {model_rate} Hz (a stage-1 export): its encoder moves to "
                f"{stage.frontend_rate} Hz features here, the two-stage recipe's main stage"
            )
    message = "; ".join(lines + warns)
    return CheckResult(name, "warn" if warns else "pass", message)


def check_dims(ctx: Context) -> CheckResult:
    """config.yaml dims agree with each other, the LLM config and the data pipeline's 80x7 LFR features."""
    name = "dims"
    cfg = ctx.funasr_config
    if cfg is None or ctx.qwen_config is None:
        raise CheckFailed("cannot read the model dir's config.yaml and LLM config.json (see model_dir)")
    src = f"{ctx.model_dir}/config.yaml"
    enc = cfg.get("audio_encoder_conf") or {}
    ada = cfg.get("audio_adaptor_conf") or {}
    front = cfg.get("frontend_conf") or {}
    hidden = int(ctx.qwen_config.get("hidden_size", -1))
    problems = []
    if "encoder_dim" in ada and int(ada["encoder_dim"]) != int(enc.get("output_size", -1)):
        problems.append(
            f"audio_adaptor_conf.encoder_dim={ada['encoder_dim']} != audio_encoder_conf.output_size="
            f"{enc.get('output_size')}"
        )
    if "llm_dim" in ada and int(ada["llm_dim"]) != hidden:
        problems.append(
            f"audio_adaptor_conf.llm_dim={ada['llm_dim']} != LLM hidden_size={hidden} "
            "(config.yaml describes another LLM)"
        )
    heads = int(enc.get("attention_heads", 1) or 1)
    if int(enc.get("output_size", 0)) % heads:
        problems.append(
            f"audio_encoder_conf.output_size={enc.get('output_size')} is not divisible by attention_heads={heads}"
        )
    from nano8k.model.features import FrontendConfig

    data_front = FrontendConfig()
    for key, ours in (("n_mels", data_front.n_mels), ("lfr_m", data_front.lfr_m), ("lfr_n", data_front.lfr_n)):
        if key in front and int(front[key]) != ours:
            problems.append(f"frontend_conf.{key}={front[key]} but the data pipeline computes {ours}")
    if problems:
        raise CheckFailed(f"{src}: " + "; ".join(problems) + ". Fix config.yaml so it describes this checkpoint")
    try:
        _ = ctx.network_config  # builds it: a config it cannot build fails here
    except ValueError as err:
        raise CheckFailed(str(err)) from err
    return CheckResult(
        name,
        "pass",
        f"features {data_front.feature_dim} -> encoder {enc.get('output_size')} x "
        f"{int(enc.get('num_blocks', 0)) + int(enc.get('tp_blocks', 0))} layers -> adaptor "
        f"{ada.get('ffn_dim')} -> LLM {hidden} (vocab {ctx.qwen_config.get('vocab_size')})",
    )


def shape(ctx: Context) -> ModelShape:
    """Cached ``ModelShape`` of the model dir (meta-device build)."""
    if "shape" not in ctx.facts:
        try:
            ctx.facts["shape"] = model_shape(ctx.meta_network, ctx.plain(ctx.model.lora))
        except ValueError as err:
            raise CheckFailed(f"cannot build the network from the model dir ({err}); see model_dir/dims") from err
    return ctx.facts["shape"]


def stage_trainable(ctx: Context, stage: Stage) -> dict[str, int]:
    """Trainable parameters per group under ``stage``'s freezing, by the module's own rule (meta-device counts).

    Raises ValueError for a freezing the module refuses (more frozen encoder layers than exist, say); the config
    parse has already refused unknown keys.
    """
    from nano8k.training.freezing import FreezeConfig, trainable_counts

    freeze = FreezeConfig(**stage.freeze)
    return trainable_counts(shape(ctx).parameter_sizes(), freeze, ctx.model.lora is not None)


def check_trainable(ctx: Context) -> CheckResult:
    """Trainable parameters per module for each stage's freezing (from a meta-device build)."""
    name = "trainable"
    s = shape(ctx)
    lora = ctx.model.lora is not None
    parts = []
    for stage in ctx.stages:
        try:
            counts = stage_trainable(ctx, stage)
        except ValueError as err:
            raise CheckFailed(f"{stage.name} stage ({ctx.source}: {stage.freeze_key}): {err}") from err
        if not any(counts.values()):
            raise CheckFailed(
                f"{stage.name} stage freezes everything ({ctx.source}: {stage.freeze_key} = {stage.freeze}): "
                "unfreeze the adaptor (freeze.adaptor false) or enable LoRA (model.lora)"
            )
        total = sum(counts.values())
        parts.append(
            f"{stage.name}: "
            + ", ".join(f"{k} {v:,}" for k, v in counts.items() if k != "lora" or lora)
            + f" (total {total:,} of {s.encoder_params + s.adaptor_params + s.llm_params:,})"
        )
    return CheckResult(name, "pass", "; ".join(parts))
