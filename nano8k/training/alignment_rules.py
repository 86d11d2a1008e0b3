"""The rule table of the alignment table (``nano8k.align``): dotted-key pattern -> criticality and a reason."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Rule:
    """``pattern`` is an fnmatch pattern on the dotted key; a change to a ``critical`` key is tagged CRITICAL."""

    pattern: str
    critical: bool
    reason: str


# First match wins: put specific patterns before their wildcards. Keys are LightningCLI paths with class_path /
# init_args folded away (trainer.logger.project, trainer.callbacks.StageSwitch.stage1_lr, ...).
RULES: tuple[Rule, ...] = (
    # -- freezing: what trains (official advice: adaptor < 1,000 h; + encoder < 5,000 h; all > 10,000 h) --------
    Rule(
        "model.freeze.encoder",
        True,
        "encoder trainable (false) or frozen; official advice: train the encoder only with 1,000-5,000 h",
    ),
    Rule("model.freeze.encoder_frozen_layers", True, "first N encoder layers stay frozen; changes the trainable set"),
    Rule("model.freeze.adaptor", True, "the adaptor is what the official advice trains first (< 1,000 h)"),
    Rule(
        "model.freeze.llm",
        True,
        "LLM trainable adds ~9.6 GB optimizer state; official advice: all parameters only with > 10,000 h",
    ),
    Rule("model.freeze*", True, "freezing decides the trainable set and the memory budget"),
    Rule("model.lora*", True, "LoRA on the LLM changes the trainable set (release: use_lora false)"),
    Rule("trainer.callbacks.StageSwitch.*freeze*", True, "freezing of a stage run by StageSwitch"),
    Rule(
        "trainer.callbacks.StageSwitch.*frontend_rate",
        True,
        "fbank rate of a stage: 16000 = resampled 8 kHz (release features), 8000 = native narrowband remap",
    ),
    Rule("trainer.callbacks.StageSwitch.*lr", True, "learning rate of a stage"),
    Rule("trainer.callbacks.StageSwitch*", False, "encoder-adaptation stage length / switch point"),
    # -- optimisation ---------------------------------------------------------------------------------------------
    Rule("model.lr", True, "peak learning rate (release optim_conf.lr 5e-6; official LLM fine-tune 2e-4)"),
    Rule("model.lr_multipliers*", True, "per-module learning-rate factors"),
    Rule("model.weight_decay_overrides*", False, "per-module weight decay"),
    Rule("model.weight_decay", False, "AdamW weight decay (release 0.0); mild decay regularises small-data runs"),
    Rule("model.decay_norm_and_bias", False, "whether biases and norm weights get weight decay"),
    Rule("model.betas", False, "AdamW betas"),
    Rule("model.optimizer_impl", False, "AdamW kernel (fused / foreach / per-tensor): the same update, speed only"),
    Rule("model.scheduler", False, "lr schedule (release warmuplr: linear warm-up then 1/sqrt(t))"),
    Rule("model.warmup_steps", False, "steps to peak lr (release 2500); must be well below the total steps"),
    Rule("model.min_lr_ratio", False, "floor of the cosine schedule as a fraction of lr"),
    Rule("model.max_consecutive_nonfinite", False, "NaN/Inf-loss guard: consecutive skipped steps before abort"),
    Rule("model.gradient_checkpointing", False, "trades compute for activation memory"),
    # -- precision, strategy, model ----------------------------------------------------------------------------
    Rule("model.model_dir", True, "which checkpoint (and so which model dims) is fine-tuned"),
    Rule("model.llm_dtype", True, "LLM weight dtype (release llm_dtype bf16); fp16 risks overflow"),
    Rule("trainer.precision", True, "numeric precision (release use_bf16 false, DeepSpeed bf16); changes memory"),
    Rule("trainer.strategy*", True, "distributed strategy (release use_deepspeed true; nano8k: ddp/auto)"),
    Rule("trainer.accelerator", False, "device type"),
    Rule("trainer.devices", False, "devices per node; the effective batch scales with it"),
    Rule("trainer.num_nodes", False, "nodes; the effective batch scales with it"),
    Rule("trainer.plugins*", False, "checkpoint I/O and precision plugins"),
    # -- data / features --------------------------------------------------------------------------------------
    Rule(
        "data.frontend_sample_rate",
        True,
        "fbank rate: 16000 = 8 kHz resampled (release features); 8000 = native, every mel bin moves",
    ),
    Rule(
        "data.specaugment*",
        False,
        "SpecAugment: the release applies none (FunASRNano.forward); nano8k masks fbank before LFR",
    ),
    Rule("data.telephone_prob", False, "share of wideband training audio sent through the telephone channel"),
    Rule("data.telephone_max_input_rate", False, "audio above this rate is eligible for channel simulation"),
    Rule(
        "data.telephone*",
        False,
        "telephone channel profiles (landline, mobile, VoIP, archive: codecs, noise, "
        "reverb, packet loss) for wideband audio",
    ),
    Rule("data.speed_perturb*", False, "speed/tempo perturbation factors (the release config sets none)"),
    Rule("data.dither", False, "fbank dither (release runtime default 1.0; 0.0 is deterministic)"),
    Rule("data.max_frames_per_batch", False, "batch size in LFR frames (release batch_size 6000 tokens)"),
    Rule("data.max_tokens_per_batch", False, "batch cap in LLM tokens (release max_token_length 3500)"),
    Rule("data.max_batch_size", False, "batch cap in utterances (release batch_size_sample_max 10)"),
    Rule("data.pad_*_to_multiple", False, "batch widths padded to a multiple: fewer kernel shapes, same loss"),
    Rule("data.min_duration", False, "shorter audio is rejected"),
    Rule("data.max_duration", False, "longer audio is rejected (release max_source_length 12000 frames)"),
    Rule("data.*_manifests", False, "training / validation / test data"),
    Rule("data.multichannel", False, "a multi-channel file with no channel named: error, first, or mix"),
    Rule("data.on_bad_sample", False, "error: stop on a bad sample; skip: count and continue"),
    Rule("data.max_bad_fraction", False, "abort when more than this fraction of samples is bad"),
    Rule("data.language", False, "prompt language (release: auto, 语音转写：)"),
    Rule("data.itn", False, "prompt asks for inverse text normalisation; must match how labels are written"),
    Rule("data.context_header", False, "official training prompt header (MultiContextPrompt)"),
    Rule("data.system_prompt", False, "chat system prompt; must equal the one used at inference"),
    Rule("data.num_workers", False, "data loader processes"),
    Rule("data.*", False, "data pipeline setting"),
    # -- schedule of the run, logging, callbacks --------------------------------------------------------------
    Rule("trainer.max_epochs", False, "training length (release max_epoch 2; official finetune.sh 50)"),
    Rule("trainer.max_steps", False, "training length in optimizer steps (-1 = use max_epochs)"),
    Rule("trainer.gradient_clip_val", False, "gradient-norm clip (release grad_clip 5)"),
    Rule("trainer.accumulate_grad_batches", False, "gradient accumulation (release accum_grad 1)"),
    Rule("trainer.val_check_interval", False, "validation frequency (release validate_interval 2000 steps)"),
    Rule("trainer.check_val_every_n_epoch", False, "validation frequency in epochs"),
    Rule("trainer.logger*", False, "experiment logging (W&B: offline without an API key)"),
    Rule(
        "trainer.callbacks.ModelCheckpoint*",
        False,
        "checkpoint selection (release keep_nbest_models 200 by acc; nano8k by val/cer)",
    ),
    Rule("trainer.callbacks.WEREvaluation*", False, "generated CER/WER at validation"),
    Rule("trainer.callbacks*", False, "training callback"),
    Rule("trainer.*", False, "Lightning Trainer setting"),
    Rule("model.*", False, "NanoASRModule setting"),
    Rule("seed_everything", False, "global seed"),
    Rule("ckpt_path", False, "resume checkpoint"),
)

NO_RULE = "no rule: add one to nano8k/training/alignment_rules.py"


def rule_for(key: str) -> Rule | None:
    """The first rule whose pattern matches ``key``, or None."""
    for rule in RULES:
        if fnmatchcase(key, rule.pattern):
            return rule
    return None
