"""The telephone recipe's claims measured at mini scale, one fine-tune per claim.

Reads top to bottom: (1) the test sets: clean 16 kHz (the mini model's held-out pretraining voices), simulated 8 kHz
telephone (``data_manifests/telephone-digits/test.jsonl``) and a real 8 kHz voice (Asterisk digit recordings);
(2) the fine-tuning data: the bundled 8 kHz telephone train split plus freshly rendered 16 kHz wideband strings that
the online telephone channel simulates with ``telephone_prob``; (3) the mini model alone, then each ``variants()``
row fine-tuned with ``python -m nano8k.fit`` and scored from its export. Every row shares the recipe config
(``configs/demo.yaml`` with this run's data, online channel at ``telephone_prob`` 0.5, ``STEPS`` steps, no
before/after callback) and changes one thing; (4) ``docs/results/mini_reproduction.md`` (table per test set and
language, what each
claim came to, the command, versions) and a CER-vs-step PNG. Every number comes from this run.

Needs espeak-ng and the Asterisk digit recordings (``apt-get install espeak-ng asterisk-core-sounds-en-wav``).
Run from the repository root; about 16 min on 2 CPU cores. A mini-scale result: it shows what the
recipe does to a 0.4 M-parameter model on synthetic digit strings and claims nothing about the 0.8B model.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from nano8k.mini.corpus import Rendering, asterisk_digit_strings, plan_split, pretraining_plan, write_corpus
from nano8k.mini.scoring import score_model
from nano8k.model.locate import resolve_model_dir
from nano8k.paths import project_file
from nano8k.scoring.plots import pyplot
from nano8k.training.config import layered_config
from nano8k.training.sweeps import isolate, read_metric

SEED = 8080
RECIPE_CONFIG = "configs/demo.yaml"
STEPS = 1200  # per fine-tune: six of them fit the 30-minute budget on 2 CPU cores
TEST_SETS = ("clean", "telephone", "real")
TEST_LABELS = {
    "clean": "clean 16 kHz (held-out voices)",
    "telephone": "simulated 8 kHz telephone (held-out voices)",
    "real": "real 8 kHz voice (Asterisk digits)",
}


@dataclass(frozen=True)
class Variant:
    """One fine-tune: the recipe config with ``overrides`` (dotted keys) and optionally a StageSwitch callback."""

    name: str
    label: str
    overrides: dict[str, Any] = field(default_factory=dict)
    stage1_steps: int | None = None  # > 0: native 8 kHz encoder stage for this many steps, then the 16 kHz main stage


def variants(lr: float, steps: int) -> list[Variant]:
    """The recipe and one variant per claim; ``lr`` is the recipe's (demo) fine-tuning lr, "x10" in its terms."""
    return [
        Variant(
            "recipe", f"recipe: encoder + adaptor, lr {lr:g} (x10), SpecAugment, 16 kHz main stage, telephone_prob 0.5"
        ),
        Variant("adaptor_only", "adaptor only (encoder frozen)", {"model.freeze.encoder": True}),
        Variant("lr_x1", f"lr {lr / 10:g} (x1: the release config's lr, scaled)", {"model.lr": lr / 10}),
        Variant("no_specaugment", "SpecAugment off", {"data.specaugment": None}),
        Variant(
            "stage1_main",
            f"native 8 kHz stage 1 ({steps // 3} steps, encoder only) → 16 kHz main stage",
            stage1_steps=steps // 3,
        ),
        Variant(
            "telephone_prob_1",
            "telephone_prob 1.0 (every wideband utterance through the channel)",
            {"data.telephone_prob": 1.0},
        ),
    ]


# -- (1) + (2) data -----------------------------------------------------------------------------------------------
def prepare_data(work: Path, telephone_dir: Path, wideband_per_lang: int, real_count: int) -> dict[str, Path]:
    """Render what is not bundled; returns manifests: clean/telephone/real tests, telephone train/val, wideband
    train."""
    telephone_dir = telephone_dir.resolve()
    data = {
        "telephone": telephone_dir / "test.jsonl",
        "telephone_train": telephone_dir / "train.jsonl",
        "telephone_val": telephone_dir / "val.jsonl",
    }
    for key, path in data.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: bundled telephone corpus missing ({key}); run from the repository root")
    clean = pretraining_plan()["test"]  # the voices and strings the mini model's README scores
    data["clean"] = write_corpus(work / "clean", {"test": clean}, Rendering(rate=16000))["test"]
    wideband = [u for lang in ("en", "zh") for u in plan_split("train", lang, wideband_per_lang, SEED, prefix="ft_")]
    data["wideband_train"] = write_corpus(work / "wideband", {"train": wideband}, Rendering(rate=16000))["train"]
    data["real"] = asterisk_digit_strings(work / "real", real_count, SEED)
    return data


# -- (3) fine-tunes -----------------------------------------------------------------------------------------------
def set_dotted(config: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def variant_config(
    base: dict[str, Any], variant: Variant, run_dir: Path, data: dict[str, Path], steps: int, val_every: int
) -> dict[str, Any]:
    """The recipe config for one variant, every output inside ``run_dir``."""
    config = isolate(base, run_dir)
    trainer = config["trainer"]
    trainer["callbacks"] = [cb for cb in trainer["callbacks"] if not cb["class_path"].endswith("BeforeAfterEvaluation")]
    trainer.update(max_steps=steps, val_check_interval=val_every)
    config["data"].update(
        train_manifests=[str(data["telephone_train"]), str(data["wideband_train"])],
        val_manifests=str(data["telephone_val"]),
        telephone_prob=0.5,
        telephone_max_input_rate=8000,
    )
    config["data"].pop("telephone", None)  # the default TelephoneChannel, online, on the wideband utterances
    for dotted, value in variant.overrides.items():
        set_dotted(config, dotted, value)
    if variant.stage1_steps:
        freeze = config["model"]["freeze"]
        trainer["callbacks"].append(
            {
                "class_path": "nano8k.training.callbacks.StageSwitch",
                "init_args": {
                    "stage1_steps": variant.stage1_steps,
                    "stage1_frontend_rate": 8000,
                    "main_frontend_rate": 16000,
                    "stage1_freeze": {**freeze, "encoder": False, "adaptor": True, "llm": True},
                    "main_freeze": dict(freeze),
                },
            }
        )
    return config


@dataclass
class RunResult:
    variant: Variant
    seconds: float
    returncode: int
    curve: list[tuple[int, float]]
    scores: dict[str, dict[str, Any]]
    run_dir: Path


def fine_tune(variant: Variant, config: dict[str, Any], run_dir: Path) -> tuple[int, float]:
    """``python -m nano8k.fit`` on the variant's config (W&B off); stdout/stderr kept in the run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    command = [sys.executable, "-m", "nano8k.fit", "--config", str(path)]
    (run_dir / "command.txt").write_text(" ".join(command) + "\n", encoding="utf-8")
    start = time.monotonic()
    with open(run_dir / "stdout.log", "w") as out, open(run_dir / "stderr.log", "w") as err:
        rc = subprocess.run(command, stdout=out, stderr=err, env={**os.environ, "WANDB_MODE": "disabled"}).returncode
    return rc, time.monotonic() - start


def score_sets(model_dir: Path, data: dict[str, Path], normalizer: str = "basic") -> dict[str, dict[str, Any]]:
    return {name: score_model(model_dir, data[name], normalizer=normalizer) for name in (*TEST_SETS, "telephone_val")}


# -- (4) report ---------------------------------------------------------------------------------------------------
def _cell(scores: dict[str, Any], lang: str | None = None) -> str:
    value = scores["cer"] if lang is None else scores["by_language"].get(lang)
    return "–" if value is None else f"{value:.3f}"


def table(base: dict[str, dict[str, Any]], results: Sequence[RunResult]) -> list[str]:
    lines = [
        "| fine-tune | clean en | clean zh | **clean** | tel en | tel zh | **tel** | real en | min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [("mini model, no fine-tuning", base, None)] + [(r.variant.label, r.scores, r.seconds) for r in results]
    for label, scores, seconds in rows:
        if not scores:
            lines.append(f"| {label} | failed (see its run folder) ||||||| |")
            continue
        c, t, real = scores["clean"], scores["telephone"], scores["real"]
        lines.append(
            f"| {label} | {_cell(c, 'en')} | {_cell(c, 'zh')} | **{_cell(c)}** | {_cell(t, 'en')} | "
            f"{_cell(t, 'zh')} | **{_cell(t)}** | {_cell(real)} | "
            f"{'' if seconds is None else f'{seconds / 60:.1f}'} |"
        )
    return lines


def claims(base: dict[str, dict[str, Any]], results: Sequence[RunResult]) -> list[str]:
    """What each recipe claim came to in this run, read from the table's numbers."""
    by = {r.variant.name: r.scores for r in results if r.scores}
    if "recipe" not in by:
        return ["- no recipe run in this reproduction (failed or left out with --only): no claim can be judged"]
    recipe = by["recipe"]

    def tel(name: str) -> float:
        return by[name]["telephone"]["cer"]

    def verdict(better: bool) -> str:
        return "**holds**" if better else "**does not hold**"

    out = [
        f"- Fine-tuning helps on telephone speech: {base['telephone']['cer']:.3f} → {tel('recipe'):.3f} "
        f"({verdict(tel('recipe') < base['telephone']['cer'])})."
    ]
    checks = [
        ("adaptor_only", "Training the encoder too beats adaptor-only"),
        ("lr_x1", "The x10 learning rate beats the release config's x1"),
        ("no_specaugment", "SpecAugment helps (a regulariser: a short run may be too short for it to pay)"),
        ("stage1_main", "A native 8 kHz stage 1 before the 16 kHz main stage helps"),
    ]
    for name, claim in checks:
        if name in by:
            out.append(
                f"- {claim}: telephone CER {tel('recipe'):.3f} (recipe) vs {tel(name):.3f} ({name}) "
                f"({verdict(tel('recipe') < tel(name)) if name != 'stage1_main' else verdict(tel(name) < tel('recipe'))})."  # noqa: E501
            )
    if "telephone_prob_1" in by:
        clean0, clean_half, clean_all = (
            base["clean"]["cer"],
            recipe["clean"]["cer"],
            by["telephone_prob_1"]["clean"]["cer"],
        )
        out.append(
            f"- telephone_prob 0.5 keeps wideband accuracy better than 1.0: clean CER {clean0:.3f} before, "
            f"{clean_half:.3f} at 0.5, {clean_all:.3f} at 1.0 ({verdict(clean_half < clean_all)}); "
            f"telephone CER {tel('recipe'):.3f} at 0.5 vs {tel('telephone_prob_1'):.3f} at 1.0."
        )
    real0, real1 = base["real"]["cer"], recipe["real"]["cer"]
    out.append(
        f"- Telephone fine-tuning on synthetic speech carries over to the real 8 kHz voice: {real0:.3f} → "
        f"{real1:.3f} with the recipe ({verdict(real1 < real0)})."
    )
    return out


def plot(curves: dict[str, list[tuple[int, float]]], path: Path) -> None:
    """CER on the telephone val split vs optimizer step, one line per fine-tune."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    for label, points in curves.items():
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o", markersize=3, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("CER, telephone val (held-out voices)")
    ax.set_title("nano8k mini reproduction: telephone fine-tuning of the mini wideband model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def versions() -> str:
    names = ("torch", "torchaudio", "lightning", "transformers", "peft")
    parts = [f"{n} {metadata.version(n)}" for n in names]
    try:
        espeak = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.split()[3]
        parts.append(f"espeak-ng {espeak}")
    except (OSError, IndexError):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "nano8k", "configs", "scripts", "pyproject.toml"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        parts.append(f"nano8k {commit or 'unknown commit'}{' + uncommitted changes' if dirty else ''}")
    except OSError:
        pass
    return ", ".join(parts) + f"; Python {platform.python_version()}, {os.cpu_count()} CPU cores"


def write_report(
    path: Path,
    png: Path,
    command: str,
    base: dict,
    results: Sequence[RunResult],
    steps: int,
    data: dict[str, Path],
    minutes: float,
) -> None:
    sizes = {
        name: sum(1 for _ in open(data[name], encoding="utf-8"))
        for name in (*TEST_SETS, "telephone_train", "wideband_train")
    }
    text = [
        "# Mini reproduction of the telephone recipe",
        "",
        "**A mini-scale result.** The model is nano8k's own 0.4 M-parameter Fun-ASR-Nano pretrained from scratch on",
        "clean 16 kHz espeak-ng digit strings (`nano8k/assets/mini-nano`); the speech is synthetic digit strings "
        "plus one",
        "real voice. It shows what the recipe's choices do to such a model. It claims nothing about the released 0.8B",
        "Fun-ASR-Nano, whose weights were never on the machine that made this page.",
        "",
        f"Made by `{command}` in {minutes:.0f} min ({versions()}). Every number below comes from that run; "
        "the run folders",
        "(config, logs, exports) are under `runs/reproduce/`.",
        "",
        "## Setup",
        f"- Fine-tuning data: {sizes['telephone_train']} bundled 8 kHz G.711 telephone utterances "
        f"(`data_manifests/telephone-digits/train.jsonl`) + {sizes['wideband_train']} 16 kHz wideband utterances "
        "of the",
        "  training voices, which the online telephone channel simulates with probability `telephone_prob`.",
        f"- Each fine-tune: `{RECIPE_CONFIG}` (the demo's recipe) with one change, {steps} optimizer steps (the demo",
        "  runs more), scored from its export (`export/hf`, loaded back with its feeding record).",
        f"- Test sets (voices never heard in any training): {TEST_LABELS['clean']}, {sizes['clean']} utts; "
        f"{TEST_LABELS['telephone']}, {sizes['telephone']} utts; {TEST_LABELS['real']}, {sizes['real']} utts.",
        "- CER: pooled character error rate of the numerals (`nano8k.scoring.metrics`), text normalized by "
        f"`{next(iter(base.values()))['normalizer']}` (`nano8k.scoring.normalizers`).",
        "",
        "## CER per test set and language",
        "",
        *table(base, results),
        "",
        "## The recipe's claims at this scale",
        "",
        *claims(base, results),
        "",
        f"![CER vs step]({png.name})",
        "",
    ]
    path.write_text("\n".join(text), encoding="utf-8")


def reproduce(
    work: str | Path,
    out: str | Path,
    telephone_dir: str | None = None,
    steps: int = STEPS,
    val_every: int = 150,
    wideband_per_lang: int = 400,
    real: int = 100,
    only: Sequence[str] | None = None,
    normalizer: str = "basic",
    command: str = "python -m nano8k.reproduce",
) -> int:
    """The whole reproduction (see the module docstring); 0 when every fine-tune finished, else 1."""
    started = time.monotonic()
    work, out = Path(work).resolve(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base_config = layered_config(project_file(RECIPE_CONFIG))
    lr = float(base_config["model"]["lr"])

    telephone_dir = Path(telephone_dir) if telephone_dir else project_file("data_manifests/telephone-digits")
    data = prepare_data(work / "data", telephone_dir, wideband_per_lang, real)
    mini = resolve_model_dir(base_config["model"]["model_dir"])
    base = score_sets(mini, data, normalizer)
    print("[reproduce] mini model: " + ", ".join(f"{k} {v['cer']:.3f}" for k, v in base.items()), flush=True)

    results = []
    for variant in variants(lr, steps):
        if only and variant.name not in only:
            continue
        run_dir = work / variant.name
        shutil.rmtree(run_dir, ignore_errors=True)  # a rerun must not mix its logs and checkpoints with the last one
        config = variant_config(base_config, variant, run_dir, data, steps, val_every)
        rc, seconds = fine_tune(variant, config, run_dir)
        export = run_dir / "export" / "hf"
        scores = score_sets(export, data, normalizer) if rc == 0 and export.is_dir() else {}
        curve = [(0, base["telephone_val"]["cer"])] + read_metric(run_dir, "", "val/cer")
        results.append(RunResult(variant, seconds, rc, curve, scores, run_dir))
        summary = ", ".join(f"{k} {v['cer']:.3f}" for k, v in scores.items()) if scores else f"exit {rc}"
        print(f"[reproduce] {variant.name}: {summary} ({seconds / 60:.1f} min)", flush=True)

    png = out / "mini_reproduction_cer.png"
    plot({r.variant.name: r.curve for r in results}, png)
    minutes = (time.monotonic() - started) / 60
    md = out / "mini_reproduction.md"
    write_report(md, png, command, base, results, steps, data, minutes)
    (out / "mini_reproduction.json").write_text(
        json.dumps(
            {
                "command": command,
                "minutes": minutes,
                "steps": steps,
                "base": base,
                "runs": {
                    r.variant.name: {
                        "label": r.variant.label,
                        "seconds": r.seconds,
                        "returncode": r.returncode,
                        "scores": r.scores,
                        "curve": r.curve,
                    }
                    for r in results
                },
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"[reproduce] wrote {md} and {png} in {minutes:.1f} min", flush=True)
    return 0 if all(r.returncode == 0 for r in results) else 1
