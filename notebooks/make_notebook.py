"""Generate ``notebooks/telephone_finetune.ipynb`` from the cells below and run it, so it is committed with its
outputs (edit here, then re-run this script: ``python notebooks/make_notebook.py``, about 30 s on 2 CPU cores)."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).resolve().parent / "telephone_finetune.ipynb"

CELLS: list[tuple[str, str]] = [
    (
        "md",
        """# Fine-tuning Fun-ASR-Nano for 8 kHz telephone speech

This notebook walks through nano8k on the **bundled mini wideband model** (`model_dir: mini`, our own 0.4 M-parameter
Fun-ASR-Nano pretrained from scratch on clean 16 kHz spoken digit strings) and the bundled 8 kHz telephone digit
corpus (runs on a laptop CPU in about a minute): load a model directory, compare 16 kHz audio with its simulated
telephone version, compute features, score CER on telephone speech, fine-tune for a few steps with the telephone
recipe, score again, print the config alignment table and the preflight checklist, and look at the recipe's claims
measured at mini scale.

To use the real model set `NANO8K_MODEL_DIR=/path/to/Fun-ASR-Nano-2512` before starting Jupyter (and expect the
fit cell to need a GPU).""",
    ),
    (
        "code",
        """import os
from pathlib import Path

import numpy as np
import torch
import matplotlib.pyplot as plt
from IPython.display import Audio, Markdown, display
from matplotlib_inline.backend_inline import set_matplotlib_formats

set_matplotlib_formats("jpeg")  # spectrograms as JPEG keep the committed notebook small

# the repository root (holds configs/ and data_manifests/), wherever Jupyter was started
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "configs" / "demo.yaml").is_file())
os.chdir(ROOT)
MODEL_DIR = os.environ.get("NANO8K_MODEL_DIR", "mini")  # 'mini' = nano8k/assets/mini-nano (self-pretrained, wideband)
MAX_STEPS = int(os.environ.get("NANO8K_NOTEBOOK_STEPS", "150"))
torch.manual_seed(0)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
print("repo:", ROOT.name, "| model:", MODEL_DIR, "| fit steps:", MAX_STEPS)""",
    ),
    (
        "md",
        "## 1. Load a model directory\n`NanoASRModule` loads the FunASR release layout (or an HF export), its "
        "feeding record (how audio must be fed: the mini model splices all adaptor frames) and applies the "
        "telephone recipe's freezing: encoder + adaptor train, the LLM stays frozen.",
    ),
    (
        "code",
        """from nano8k.training.module import NanoASRModule
from nano8k.model.convert import parameter_counts

module = NanoASRModule(model_dir=MODEL_DIR, freeze={"encoder": False, "adaptor": False, "llm": True},
                       lr=1e-3, weight_decay=0.01, scheduler="constant", warmup_steps=5, max_new_tokens=12)
model = module.model
print("parameters:", {k: f"{v:,}" for k, v in parameter_counts(model.network).items()})
print("feeding:   ", model.feeding)
print("trainable: ", {k: f"{v:,}" for k, v in module.trainable.items()})
print("frontend:  ", model.frontend)""",
    ),
    (
        "md",
        "## 2. 16 kHz vs simulated 8 kHz telephone audio\nThe data layer's `TelephoneChannel` band-limits to "
        "300-3400 Hz, adds noise/hum and applies G.711; the result is 8 kHz.",
    ),
    (
        "code",
        """from nano8k.data.audio import load_audio
from nano8k.data.channel.telephone import TelephoneChannel
from nano8k.model.features import resample

wideband = sorted((ROOT / "tests" / "fixtures" / "speech").glob("*.16k.wav"))
if wideband:
    wave16, rate = load_audio(wideband[0])
else:  # fall back to a demo clip upsampled to 16 kHz
    wave8, rate8 = load_audio(ROOT / "data_manifests" / "demo" / "wav" / "val_en_000.flac")
    wave16, rate = resample(wave8, rate8, 16000), 16000
tel8, rate8, drawn = TelephoneChannel().simulate(wave16, rate, np.random.default_rng(0))
print(f"wideband {rate} Hz, {len(wave16) / rate:.2f} s -> telephone {rate8} Hz; channel draw: {drawn}")
display(Audio(wave16.numpy(), rate=rate), Audio(tel8.numpy(), rate=rate8))""",
    ),
    (
        "code",
        """fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), sharey=True)
for ax, (x, sr, title) in zip(axes, [(wave16, rate, "original 16 kHz"), (tel8, rate8, "simulated telephone 8 kHz")]):
    ax.specgram(x.numpy(), NFFT=400, Fs=sr, noverlap=240, cmap="magma")
    ax.set_title(title); ax.set_xlabel("s"); ax.set_ylim(0, 8000)
axes[0].set_ylabel("Hz")
plt.tight_layout(); plt.show()""",
    ),
    (
        "md",
        "## 3. Features\nMain stage: the 8 kHz audio is resampled to 16 kHz and featurised like the release "
        "(80 mel bins to 8 kHz, ~20 of them above 4 kHz stay empty). Stage 1: native 8 kHz fbank (every bin "
        "moves, so the encoder must adapt).",
    ),
    (
        "code",
        """from nano8k.model.features import FrontendConfig, extract_features, fbank

fb16 = fbank(resample(tel8, rate8, 16000), FrontendConfig(sample_rate=16000))
fb8 = fbank(tel8, FrontendConfig(sample_rate=8000))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
panels = [(fb16, "telephone audio, 16 kHz fbank (main)"), (fb8, "native 8 kHz fbank (stage 1)")]
for ax, (f, title) in zip(axes, panels):
    ax.imshow(f.T.numpy(), origin="lower", aspect="auto", cmap="viridis"); ax.set_title(title)
    ax.set_xlabel("10 ms frames"); ax.set_ylabel("mel bin")
plt.tight_layout(); plt.show()
lfr = extract_features(tel8, rate8, model.frontend)
print("fbank", tuple(fb16.shape), "-> LFR features", tuple(lfr.shape), "(one row per 60 ms)")""",
    ),
    (
        "md",
        "## 4. CER on telephone speech before fine-tuning\nGreedy decoding of validation clips of the bundled "
        "telephone corpus (voices the model never heard). The wideband model has never heard a telephone line. "
        "`build_report` scores them per language, as `python -m nano8k.evaluate --group_by lang` does.",
    ),
    (
        "code",
        """from nano8k.data.manifests.io import read_utterances
from nano8k.inference import DecodeOptions, transcribe_utterances
from nano8k.scoring.report import Scored, build_report

corpus = "data_manifests/telephone-digits"
val_all = list(read_utterances(f"{corpus}/val.jsonl", "notebook"))
val_utts = [u for u in val_all if u.lang == "en"][:24] + [u for u in val_all if u.lang == "zh"][:24]

def score(module) -> dict:  # decoded as `nano8k transcribe` does: fed as the model's feeding says
    module.eval()
    results = transcribe_utterances(module.model, val_utts, DecodeOptions(batch_size=8, max_new_tokens=12))
    return build_report([Scored(r.utt.key, r.utt.target, r.text, {"lang": r.utt.lang}) for r in results], ["lang"])

before = score(module)
cer_before = before["overall"]["cer"]
print(f"CER before: {cer_before:.3f}", {lang: round(g["cer"], 3) for lang, g in before["groups"]["lang"].items()})
for row in before["utterances"][:3]:
    print(f"  ref: {row['ref']}\\n  hyp: {row['hyp']!r}")""",
    ),
    (
        "md",
        "## 5. A short fit\nA few optimizer steps with Lightning on CPU (the whole demo is "
        "`python -m nano8k.fit --config configs/demo.yaml`; the real recipe `configs/telephone.yaml`).",
    ),
    (
        "code",
        """import lightning as L

from nano8k.data.pipeline.datamodule import TelephoneDataModule

data = TelephoneDataModule(train_manifests=f"{corpus}/train.jsonl", val_manifests=f"{corpus}/val.jsonl", dither=0.0,
                           telephone=None, specaugment=None, max_frames_per_batch=480, max_batch_size=8,
                           num_workers=0, seed=1234)
data.connect(model)  # the model's feeding (data.* overrides it), tokenizer and encoder limit
trainer = L.Trainer(max_steps=MAX_STEPS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                    use_distributed_sampler=False, gradient_clip_val=5.0, log_every_n_steps=5)
losses = []

class Record(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if outputs is not None:
            losses.append(float(outputs["loss"]))

trainer.callbacks.append(Record())
trainer.fit(module, datamodule=data)
print(f"{trainer.global_step} steps, train loss {losses[0]:.2f} -> {losses[-1]:.2f}")
plt.figure(figsize=(5, 2.5)); plt.plot(losses); plt.xlabel("step"); plt.ylabel("train loss"); plt.show()""",
    ),
    (
        "code",
        """after = score(module)
cer_after = after["overall"]["cer"]
print(f"CER before {cer_before:.3f} -> after {cer_after:.3f} ({trainer.global_step} steps)")
for row in after["utterances"][:3]:
    print(f"  ref: {row['ref']}\\n  hyp: {row['hyp']!r}")
sets = ["overall", *after["groups"]["lang"]]
pick = lambda report, name: (report["overall"] if name == "overall" else report["groups"]["lang"][name])["cer"]
x = np.arange(len(sets))
plt.figure(figsize=(5, 2.8))
plt.bar(x - 0.2, [pick(before, s) for s in sets], 0.4, label="before")
plt.bar(x + 0.2, [pick(after, s) for s in sets], 0.4, label=f"after {trainer.global_step} steps")
plt.xticks(x, sets); plt.ylabel("CER, telephone val"); plt.legend(); plt.show()""",
    ),
    (
        "md",
        "## 6. Config alignment and preflight\nThe alignment table is generated from the configs "
        "(`python -m nano8k.align CONFIG --against configs/pretrained.yaml`); the preflight runs the "
        "pre-training checklist (`python -m nano8k.preflight CONFIG`).",
    ),
    (
        "code",
        """from nano8k.training.alignment import align_files, to_markdown

config = "configs/telephone.yaml" if Path("configs/telephone.yaml").is_file() else "configs/demo.yaml"
against = "configs/pretrained.yaml" if Path("configs/pretrained.yaml").is_file() else "configs/demo.yaml"
alignment = align_files(config, against)
alignment.rows = [r for r in alignment.rows if r.tag != "ALIGNED"]
display(Markdown(to_markdown(alignment)))""",
    ),
    (
        "code",
        """from nano8k.checks import format_results, run_preflight

print(format_results(run_preflight("configs/demo.yaml")))""",
    ),
    (
        "md",
        "## 7. The recipe's claims at mini scale\n`python -m nano8k.reproduce` fine-tunes the mini model once per "
        "claim (adaptor only, lr x1 vs x10, SpecAugment, native 8 kHz stage 1, telephone_prob) and writes "
        "`docs/results/mini_reproduction.md` with this plot. A mini-scale result: it claims nothing about the "
        "0.8B model.",
    ),
    (
        "code",
        """from IPython.display import Image

results = ROOT / "docs" / "results"
if (results / "mini_reproduction_cer.png").is_file():
    display(Image(filename=str(results / "mini_reproduction_cer.png")))
    report = (results / "mini_reproduction.md").read_text(encoding="utf-8")
    display(Markdown(report[report.index("## CER per test set"):report.index("## The recipe's claims")]))
else:
    print("no docs/results/mini_reproduction_cer.png yet: run python -m nano8k.reproduce")""",
    ),
]


def sources_digest(nb: nbformat.NotebookNode) -> str:
    """SHA-256 of the cells' kinds and sources: what the committed outputs were produced from."""
    digest = hashlib.sha256()
    for cell in nb.cells:
        digest.update(f"{cell.cell_type}\0{cell.source}\0".encode())
    return digest.hexdigest()


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in CELLS]
    return nb


def execute(nb: nbformat.NotebookNode, timeout: int = 900) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel from ``notebooks/`` and stamp the sources the outputs came from."""
    from nbclient import NotebookClient

    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(OUT.parent)}}
    ).execute()
    for cell in nb.cells:  # library warnings name this machine's paths; a failing cell raised above already
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    nb.metadata["nano8k"] = {"outputs_from_sources_sha256": sources_digest(nb)}
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", nargs="?", default=str(OUT))
    parser.add_argument(
        "--no_execute",
        action="store_true",
        help="write the cells without outputs (the committed notebook is executed: leave this off)",
    )
    args = parser.parse_args(argv)
    nb = build() if args.no_execute else execute(build())
    nbformat.write(nb, args.out)
    print(f"wrote {args.out}" + ("" if args.no_execute else " (executed)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
