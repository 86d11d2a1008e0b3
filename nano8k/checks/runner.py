"""The preflight run: every check on fit's parsed config, their report, and the refusal ``nano8k.fit`` raises."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from nano8k.checks.context import CheckResult, Context
from nano8k.checks.data import check_channel, check_data_settings, check_manifests, check_overlap, check_sample_rates
from nano8k.checks.model import check_dims, check_frontend, check_model_dir, check_trainable
from nano8k.checks.training import (
    check_memory,
    check_outputs,
    check_precision,
    check_schedule,
    check_tuning_advice,
    check_wandb,
)
from nano8k.errors import CheckFailed, ConfigError, PreflightError
from nano8k.training.config import named_sources, parse_config, parse_file

__all__ = ["CHECKS", "CheckResult", "PreflightError", "enforce", "format_results", "run_preflight"]

CHECKS: dict[str, Callable[[Context], CheckResult]] = {
    "model_dir": check_model_dir,
    "frontend": check_frontend,
    "dims": check_dims,
    "data_settings": check_data_settings,
    "manifests": check_manifests,
    "overlap": check_overlap,
    "sample_rates": check_sample_rates,
    "channel": check_channel,
    "trainable": check_trainable,
    "schedule": check_schedule,
    "tuning_advice": check_tuning_advice,
    "memory": check_memory,
    "precision": check_precision,
    "wandb": check_wandb,
    "outputs": check_outputs,
}


FIXES: dict[str, str] = {
    "model_dir": "set model.model_dir (or NANO8K_MODEL_DIR) to the Fun-ASR-Nano-2512 folder; re-download missing files",
    "frontend": "data.frontend_sample_rate 16000 for the main stage; 8000 only with model.freeze.encoder false",
    "dims": "the model dir's config.yaml must describe its checkpoint (encoder_dim/llm_dim/n_mels/lfr_m)",
    "data_settings": "the message names the data.* key and the values it accepts",
    "manifests": "fix or drop bad lines (python -m nano8k.data.validate ... --convert clean.jsonl) or "
    "data.on_bad_sample skip",
    "overlap": "remove the shared keys/audio from the val/test manifests",
    "sample_rates": "resample < 8 kHz audio to 8 kHz; set data.telephone for wideband training audio",
    "channel": "the message names the profile, effect and field; a codec this machine lacks is listed with the ones "
    "it has",
    "trainable": "unfreeze a part (model.freeze.adaptor false) or enable model.lora",
    "schedule": "model.warmup_steps ~5-10% of the run; model.lr within 1e-5..2e-4",
    "tuning_advice": "freeze the LLM below 10,000 h (model.freeze.llm true or model.lora); adaptor-only below 1,000 h",
    "memory": "lower data.max_frames_per_batch, model.gradient_checkpointing true, trainer.precision bf16-mixed",
    "precision": "trainer.strategy ddp (pip install deepspeed for deepspeed_*); bf16-mixed rather than 16-mixed",
    "wandb": "wandb login / WANDB_API_KEY, or WANDB_MODE=offline; log_model false when offline",
    "outputs": "make the folder writable, or set trainer.default_root_dir / the checkpoint dirpath / "
    "ExportOnFitEnd.out_dir to one you can write",
}


def parsed_config(config: Any) -> tuple[Any, str]:
    """``config`` (a YAML path, a mapping, or ``nano8k.fit``'s parsed Namespace) as the Namespace ``nano8k.fit``
    trains with, and the name messages give it: parsed by fit's own parser, so every default is the classes' own
    and nothing is instantiated."""
    if isinstance(config, (str, Path)):
        return parse_file(config), str(config)
    if isinstance(config, Mapping):
        return parse_config(["--config", yaml.safe_dump(dict(config))]), "config"
    if hasattr(config, "as_dict"):
        return config, named_sources(config)
    raise TypeError(f"run_preflight: expected a config path, mapping or Namespace, got {type(config).__name__}")


def make_context(config: Any, *, gpu_memory_gb: float | None = None) -> Context:
    """The checks' view of ``config``: fit's parsed Namespace and the name of the file(s) it came from."""
    namespace, name = parsed_config(config)
    return Context(namespace, source=name, gpu_memory_gb=gpu_memory_gb)


def run_preflight(config: Any, *, skip: Iterable[str] = (), gpu_memory_gb: float | None = None) -> list[CheckResult]:
    """Run every check not in ``skip`` on ``config`` (YAML path, mapping or LightningCLI Namespace)."""
    skip = set(skip)
    unknown = skip - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown preflight check(s) {sorted(unknown)}; known: {list(CHECKS)}")
    ctx = make_context(config, gpu_memory_gb=gpu_memory_gb)
    results = []
    for name, check in CHECKS.items():
        if name in skip:
            continue
        try:
            results.append(check(ctx))
        except CheckFailed as err:
            results.append(CheckResult(name, "fail", str(err)))
        except ConfigError as err:  # a setting another check names (model_dir, say) stops this one too
            results.append(CheckResult(name, "fail", str(err)))
        except Exception as err:  # a crashing check is a failed check, reported with its cause
            results.append(CheckResult(name, "fail", f"check crashed: {type(err).__name__}: {err}"))
    return results


def failed(results: Sequence[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.status == "fail"]


def format_results(results: Sequence[CheckResult]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "warn", "fail")}
    tail = f"preflight: {counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail"
    return "\n".join([*(r.line() for r in results), tail])


def enforce(
    config: Any,
    *,
    skip: Iterable[str] = (),
    gpu_memory_gb: float | None = None,
    print_fn: Callable[[str], None] = print,
) -> list[CheckResult]:
    """Run the checks, print them, raise ``PreflightError`` (exit 1) when any fails; for ``nano8k.fit``."""
    results = run_preflight(config, skip=skip, gpu_memory_gb=gpu_memory_gb)
    report = format_results(results)
    print_fn(report)
    if failed(results):
        raise PreflightError(
            report + "\nfix the failures above, skip a check (--preflight_skip '[NAME]') "
            "or skip them all (--preflight false)"
        )
    return results


def troubleshooting_table() -> str:
    """Markdown table of the checks: what each verifies and the command to re-run it (for the README)."""
    lines = ["| check | what it verifies | typical fix (the message names the exact key/file) |", "|---|---|---|"]
    for name, check in CHECKS.items():
        doc = " ".join((check.__doc__ or "").split())
        lines.append(f"| `{name}` | {doc} | {FIXES[name]} |")
    return "\n".join(lines) + "\n"
