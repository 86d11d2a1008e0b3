"""``python -m nano8k.preflight CONFIG [--skip NAME ...] [--data.x v ...]``: the pre-training checklist as checks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from nano8k.checks.context import CheckFailed, CheckResult, Context
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
from nano8k.errors import ConfigError, command, fail

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
    "channel": "the message names the profile, effect and field; codecs this machine lacks are listed with the ones it has",
    "trainable": "unfreeze a part (model.freeze.adaptor false) or enable model.lora",
    "schedule": "model.warmup_steps ~5-10% of the run; model.lr within 1e-5..2e-4",
    "tuning_advice": "freeze the LLM below 10,000 h (model.freeze.llm true or model.lora); adaptor-only below 1,000 h",
    "memory": "lower data.max_frames_per_batch, model.gradient_checkpointing true, trainer.precision bf16-mixed",
    "precision": "trainer.strategy ddp (pip install deepspeed for deepspeed_*); bf16-mixed rather than 16-mixed",
    "wandb": "wandb login / WANDB_API_KEY, or WANDB_MODE=offline; log_model false when offline",
    "outputs": "make the folder writable, or set trainer.default_root_dir / the checkpoint dirpath / "
               "ExportOnFitEnd.out_dir to one you can write",
}


class PreflightError(SystemExit):
    """Raised by ``enforce`` when a check fails; carries the formatted report (exit status 1)."""

    def __init__(self, report: str) -> None:
        super().__init__(1)
        self.report = report

    def __str__(self) -> str:
        return self.report


def parsed_config(config: Any) -> tuple[dict[str, Any], str]:
    """``config`` (a YAML path, a mapping, or ``nano8k.fit``'s parsed Namespace) as the mapping ``nano8k.fit`` builds
    from: parsed by fit's own parser, so every default is the classes' own and nothing is instantiated."""
    if isinstance(config, (str, Path)):
        return parsed_config(parse_file(config))[0], str(config)
    if isinstance(config, Mapping):
        from nano8k.fit import parse_config

        return parsed_config(parse_config(["--config", yaml.safe_dump(dict(config))]))[0], "config"
    if hasattr(config, "as_dict"):
        data = config.as_dict()
        sources = data.pop("config", None) or []
        sources = sources if isinstance(sources, list) else [sources]
        return data, ", ".join(str(s) for s in sources if s) or "the command line's config"
    raise TypeError(f"run_preflight: expected a config path, mapping or Namespace, got {type(config).__name__}")


def parse_file(path: str | Path, overrides: Sequence[str] = ()) -> Any:
    """The Namespace ``nano8k.fit --config PATH OVERRIDES...`` would train with; a missing or malformed file is named
    first (``load_config``), not in a parser usage message."""
    from nano8k.align import load_config
    from nano8k.fit import parse_config

    load_config(path)
    return parse_config(["--config", str(path), *overrides])



def make_context(config: Any, *, gpu_memory_gb: float | None = None) -> Context:
    """The checks' view of ``config``: fit's parsed config, class_path/init_args folded (``nano8k.align.normalize``)."""
    from nano8k.align import normalize

    mapping, name = parsed_config(config)
    return Context(normalize(mapping, (), {}), source=name, gpu_memory_gb=gpu_memory_gb)


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


def enforce(config: Any, *, skip: Iterable[str] = (), gpu_memory_gb: float | None = None,
            print_fn: Callable[[str], None] = print) -> list[CheckResult]:
    """Run the checks, print them, raise ``PreflightError`` (exit 1) when any fails; for ``nano8k.fit``."""
    results = run_preflight(config, skip=skip, gpu_memory_gb=gpu_memory_gb)
    report = format_results(results)
    print_fn(report)
    if failed(results):
        raise PreflightError(report + "\nfix the failures above, skip a check (--preflight_skip '[NAME]') "
                             "or skip them all (--preflight false)")
    return results


def troubleshooting_table() -> str:
    """Markdown table of the checks: what each verifies and the command to re-run it (for the README)."""
    lines = ["| check | what it verifies | typical fix (the message names the exact key/file) |", "|---|---|---|"]
    for name, check in CHECKS.items():
        doc = " ".join((check.__doc__ or "").split())
        lines.append(f"| `{name}` | {doc} | {FIXES[name]} |")
    return "\n".join(lines) + "\n"


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nano8k.preflight", description=__doc__)
    parser.add_argument("config", nargs="?", help="LightningCLI YAML config (e.g. configs/telephone.yaml)")
    parser.add_argument("--troubleshooting", action="store_true", help="print the checks as a markdown table")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(CHECKS), metavar="NAME",
                        help=f"checks to skip: {', '.join(CHECKS)}")
    parser.add_argument("--gpu_memory", type=float, default=None, metavar="GIB",
                        help="compare the memory estimate with a GPU of this size instead of the local one")
    parser.add_argument("--strict", action="store_true", help="exit non-zero on warnings too")
    parser.epilog = ("Any nano8k.fit override may follow (--model.lr 1e-4, --data.max_frames_per_batch 4000, ...): the "
                     "config is checked as fit would train it.")
    args, overrides = parser.parse_known_args(argv)
    strays = [arg for arg in overrides if arg.startswith("-") and "." not in arg.split("=")[0]]
    if strays:
        parser.error(f"unrecognized arguments: {' '.join(strays)}")
    if args.troubleshooting:
        print(troubleshooting_table(), end="")
        return 0
    if args.config is None:
        parser.error("give a CONFIG")
    try:
        config = parse_file(args.config, overrides)  # exactly what nano8k.fit would build
        results = run_preflight(config, skip=args.skip, gpu_memory_gb=args.gpu_memory)
    except (OSError, ValueError) as err:
        fail(str(err))
    print(format_results(results))
    if failed(results) or (args.strict and any(r.status == "warn" for r in results)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
