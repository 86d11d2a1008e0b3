"""Build the mini wideband "release": an espeak-ng digit corpus, a Fun-ASR-Nano pretrained on it from scratch with
``nano8k.fit``, written in the FunASR release layout (nano8k/assets/mini-nano, the demo's starting model).

Steps: (1) render the clean 16 kHz corpus (``nano8k.mini.corpus.pretraining_plan``: English + Mandarin digit
strings, 51 train voices, 6 val and 10 test voices never heard in training, speaking rate 80-220 wpm, and an "easy"
English-only 150-200 wpm split); (2) write a seeded random-init model of the tiny dimensions
(``nano8k/assets/tiny-nano``) whose recipe record says ``audio_tokens: all_frames``; (3) a two-phase curriculum, each
phase a ``python -m nano8k.fit --config configs/mini_pretrain.yaml`` run: phase 1 on the easy split (learns to align
speech and digits), phase 2 from phase 1's export on the full corpus; (4) copy the export to ``--out`` with the record
``weights: self-pretrained``, score the held-out clean test voices and write ``scores.json`` + ``README.md``.

Usage (needs `apt-get install espeak-ng`; about 30 min on 2 CPU cores):
    python scripts/make_mini_release.py                                  # rebuild nano8k/assets/mini-nano
    python scripts/make_mini_release.py --out /tmp/mini --compare nano8k/assets/mini-nano   # regenerate and compare
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from nano8k.mini.corpus import PRETRAIN_SEED, Rendering, describe, pretraining_plan, write_corpus
from nano8k.mini.scoring import score_model
from nano8k.model.bundled import MINI_MODEL_DIR, TINY_TEMPLATE_DIR, write_random_init
from nano8k.model.feeding import Feeding
from nano8k.training.config import layered_config
from nano8k.training.sweeps import isolate

REPO = Path(__file__).resolve().parents[1]

CONFIG = REPO / "configs" / "mini_pretrain.yaml"
# name, train split, val split, max_steps, warm-up. Phase 1 ends early once easy-val CER reaches PHASE1_TARGET: the
# alignment is learned suddenly, at a step that varies from run to run (measured between ~2,000 and ~4,000).
PHASES = (("phase1", "easy", "easy_val", 8000, 100), ("phase2", "train", "val", 6000, 10))
PHASE1_TARGET = 0.3


def pretrain_config(work: Path, phase: str, model_dir: Path, train: Path, val: Path, steps: int, warmup: int) -> Path:
    """configs/mini_pretrain.yaml for one phase, with this build's paths (model, corpus, run folders)."""
    config = isolate(layered_config(CONFIG), work / phase)
    if phase == "phase1":
        config["trainer"]["callbacks"].append(
            {
                "class_path": "lightning.pytorch.callbacks.EarlyStopping",
                "init_args": {
                    "monitor": "val/cer",
                    "mode": "min",
                    "stopping_threshold": PHASE1_TARGET,
                    "patience": 1000,
                },
            }
        )
    config["model"]["model_dir"] = str(model_dir)
    config["model"]["warmup_steps"] = warmup
    config["trainer"]["max_steps"] = steps
    config["data"]["train_manifests"], config["data"]["val_manifests"] = str(train), str(val)
    path = work / f"{phase}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def readme(scores: dict) -> str:
    clean = scores["clean_test"]
    langs = ", ".join(f"{k} {v:.3f}" for k, v in clean["by_language"].items())
    train = scores["corpus"]["train"]
    return f"""# mini-nano: our self-pretrained mini wideband Fun-ASR-Nano (the demo's starting model)

A Fun-ASR-Nano of the tiny dimensions (encoder 64-d, 3+2 SAN-M blocks; adaptor 1 block; Qwen3 64-d, 2 layers,
vocabulary 512; {scores["parameters"]:,} parameters) **pretrained from scratch** by nano8k on clean 16 kHz espeak-ng
digit strings (English and Mandarin, numerals as targets). It stands in for the released 0.8B model, which is never
on our machines: a wideband model that has never heard a telephone line, for the demo to fine-tune.

* Layout: the FunASR release layout (`model.pt` bf16 `{{"state_dict": ...}}`, `config.yaml`, `Qwen3-0.6B/`).
* Feeding record (`config.yaml`, section `nano8k`): `audio_tokens: all_frames` (every adaptor frame goes to the
  LLM; at this scale the release's first-ceil(L/8) rule does not learn), `weights: self-pretrained`.
* Pretraining, a two-phase curriculum of `configs/mini_pretrain.yaml` runs ({scores["minutes"]:.0f} min in all on
  {scores["machine"]}, corpus rendering included):
  1. {scores["steps"]["phase1"]} steps on {scores["corpus"]["easy"]["utterances"]} English utterances at 150-200 wpm
     ({scores["corpus"]["easy"]["minutes"]:.0f} min of audio), where the model learns to align speech and digits (the
     phase ends once the CER of English val voices is <= {PHASE1_TARGET}, at most {PHASES[0][3]} steps);
  2. {scores["steps"]["phase2"]} steps on {scores["corpus"]["train"]["utterances"]} English and Mandarin utterances
     ({train["minutes"]:.0f} min), {train["voices"]} voices, {train["speed_wpm"][0]}-{train["speed_wpm"][1]} wpm;
     the export is the checkpoint with the best validation CER.

| held-out test set | utts | CER |
|---|---|---|
| clean 16 kHz, voices never heard in training | {clean["utterances"]} | **{clean["cer"]:.3f}** ({langs}) |

This is a mini-scale model: it recognises spoken digit strings from speech synthesis and claims nothing about the
released model. Regenerate it (and check it scores within 0.05) with:

```
apt-get install -y espeak-ng
python scripts/make_mini_release.py --out /tmp/mini-nano --compare nano8k/assets/mini-nano
```
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(MINI_MODEL_DIR), help="where the release folder goes")
    parser.add_argument("--work", default="runs/mini_release", help="corpus, random init and training run")
    parser.add_argument(
        "--compare", default=None, help="a shipped mini-nano folder whose clean CER must be within 0.05"
    )
    parser.add_argument("--phase1_steps", type=int, default=PHASES[0][3], help="at most (ends at the target CER)")
    parser.add_argument("--phase2_steps", type=int, default=PHASES[1][3])
    args = parser.parse_args()
    work, out = Path(args.work).resolve(), Path(args.out).resolve()
    started = time.time()

    splits = pretraining_plan()
    corpus = write_corpus(work / "corpus", splits, Rendering(rate=16000))
    stats = {}
    for split, path in corpus.items():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        stats[split] = {**describe(splits[split]), "minutes": sum(r["duration"] for r in rows) / 60}
    print(f"[corpus] {json.dumps(stats)}", flush=True)

    model_dir = work / "init"
    shutil.rmtree(model_dir, ignore_errors=True)
    feeding = Feeding(audio_tokens="all_frames", weights="random-init", dither=0.0)
    write_random_init(TINY_TEMPLATE_DIR, model_dir, PRETRAIN_SEED, feeding)
    steps = {"phase1": args.phase1_steps, "phase2": args.phase2_steps}
    for phase, split, val, _, warmup in PHASES:
        config = pretrain_config(work, phase, model_dir, corpus[split], corpus[val], steps[phase], warmup)
        shutil.rmtree(work / phase, ignore_errors=True)
        command = [sys.executable, "-m", "nano8k.fit", "--config", str(config)]
        print(f"[{phase}] " + " ".join(command), flush=True)
        subprocess.run(command, check=True, cwd=REPO, env={**os.environ, "WANDB_MODE": "disabled"})
        model_dir = work / phase / "export" / "funasr"
        last = torch.load(work / phase / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        steps[phase] = int(last["global_step"])  # phase 1 may stop early

    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(model_dir, out)
    funasr = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    funasr = Feeding(audio_tokens="all_frames", weights="self-pretrained", dither=0.0).written_into(funasr)
    (out / "config.yaml").write_text(yaml.safe_dump(funasr, sort_keys=False, allow_unicode=True), encoding="utf-8")

    clean = score_model(out, corpus["test"])
    scores = {
        "clean_test": clean,
        "corpus": stats,
        "steps": steps,
        "minutes": (time.time() - started) / 60,
        "parameters": clean.pop("parameters"),
        "seed": PRETRAIN_SEED,
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()})",
        "command": "python scripts/make_mini_release.py",
    }
    (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(readme(scores), encoding="utf-8")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    print(f"[release] {out}: {size:.1f} MB; held-out clean test CER {clean['cer']:.3f} {clean['by_language']}")
    if args.compare:
        shipped = json.loads((Path(args.compare) / "scores.json").read_text(encoding="utf-8"))["clean_test"]["cer"]
        delta = abs(clean["cer"] - shipped)
        print(
            f"[compare] regenerated {clean['cer']:.3f} vs shipped {shipped:.3f}: |diff| {delta:.3f} "
            f"({'within' if delta <= 0.05 else 'NOT within'} 0.05)"
        )
        return 0 if delta <= 0.05 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
