"""nano8k against the reference FunASRNano with the shared side-by-side tool, nano8k stepping with its own AdamW.

``../shared/tools/bench_vs_reference.py`` times both sides with ``torch.optim.AdamW``'s default kernel; a nano8k
fit steps with ``nano8k.training.optim.build_adamw`` (``model.optimizer_impl``, default ``auto``: fused). This
script runs that tool with the nano8k worker stepping as a fit does, and adds the full-size rows the issue asks for
(batches of 2 x 4 s and 8 x 4 s, peak RSS of each worker, an optional baseline checkout of nano8k):

    python benchmarks/bench_vs_reference.py --only p1,p2,p3 --threads 2 --no-full --work runs/refbench
    python benchmarks/bench_vs_reference.py --full_size --batches 2,8 --baseline_src /tmp/base --work runs/refbench

The first form passes every flag to the shared tool (its docstring: the reference venv, what is measured). The
second writes ``<work>/full_size.txt`` and ``.json``: per batch, one process at a time (reference, nano8k, nano8k,
reference, then the baseline), each loading the full-size random-init model, checking the loss, timing steps.
``BENCH_NANO_OPTIMIZER`` (auto, fused, foreach, for_loop) picks the nano8k kernel.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOL = Path(os.environ.get("NANO8K_REFERENCE_BENCH", ROOT.parent / "shared" / "tools" / "bench_vs_reference.py"))
SECONDS = 4.0  # each full-size utterance: consecutive demo clips of one language, cut at 4 s
os.environ.setdefault("BENCH_DEMO_DIR", str(ROOT / "data_manifests" / "demo"))  # the workers run in --work


def load_tool():
    spec = importlib.util.spec_from_file_location("bench_vs_reference_tool", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.__file__ = str(Path(__file__).resolve())  # its workers run this file, so they are patched too
    return tool


def patch(tool) -> None:
    """nano8k's optimizer in the nano8k worker; peak RSS and an N x 4 s batch in both."""
    original_setup = tool.NanoWorker.cmd_train_setup

    def train_setup(self, batch_file, trainable="all", lr=tool.LR):
        info = original_setup(self, batch_file, trainable, lr)
        try:
            from nano8k.training.optim import adamw_impl, build_adamw
        except ImportError:  # a baseline checkout from before build_adamw: torch's default, as its fit did
            info["optimizer"] = "torch default (for_loop on CPU)"
            return info
        params = [p for _, p in self._unique_params() if p.requires_grad]
        impl = os.environ.get("BENCH_NANO_OPTIMIZER", "auto")
        self.opt = build_adamw([{"params": params, "weight_decay": tool.WEIGHT_DECAY}], lr, (0.9, 0.999), impl)
        info["optimizer"] = adamw_impl(self.opt)
        return info

    def reset_peak(self):
        """Linux: note the peak RSS so far (loading), then restart the mark (VmHWM) for the peak from now on."""
        self.loading_peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return {}

    def rss(self):
        with open("/proc/self/status") as handle:
            status = dict(line.split(":", 1) for line in handle if ":" in line)
        since = int(status["VmHWM"].split()[0]) / 1024
        return {
            "peak_rss_mib": max(since, getattr(self, "loading_peak_mib", 0.0)),  # the process's, loading too
            "peak_rss_since_reset_mib": since,
        }

    def make_batch(self, out_dir, model_dir, count):
        """``count`` utterances of 4 s (alternating en / zh), as the tool's own 2 x 4 s batch is made."""
        import torch

        from nano8k.data.audio import load_audio
        from nano8k.model.batch import SpeechItem, collate
        from nano8k.model.checkpoint import load_pretrained
        from nano8k.model.features import extract_features
        from nano8k.model.prompt import PromptEncoder, audio_token_count

        model = load_pretrained(model_dir, dither=0.0)
        rows = [json.loads(line) for line in open(os.path.join(tool.DEMO_DIR, "train.jsonl"), encoding="utf-8")]
        pools = {lang: iter([r for r in rows if r["lang"] == lang][4:]) for lang in ("en", "zh")}
        items = []
        for number in range(int(count)):
            lang = ("en", "zh")[number % 2]
            parts, texts, samples, rate = [], [], 0, 8000
            while samples < SECONDS * rate:
                row = next(pools[lang])
                wave, rate = load_audio(os.path.join(tool.DEMO_DIR, row["source"]))
                parts.append(wave)
                texts.append(row["target"])
                samples += wave.numel()
            feats = extract_features(torch.cat(parts)[: int(SECONDS * rate)], rate, model.frontend)
            target = (" " if lang == "en" else "").join(texts)
            prompts = PromptEncoder(model.tokenizer, model.feeding.prompt)
            prompt = prompts.encode(audio_token_count(feats.shape[0]), target)
            items.append(SpeechItem(f"cat{number}_{lang}", feats, prompt, target))
        batch = collate(items, model.pad_id)
        path = os.path.join(out_dir, f"batch_full{count}x4s.pt")
        torch.save(
            {
                name: getattr(batch, name)
                for name in (
                    "feats",
                    "feat_lens",
                    "input_ids",
                    "attention_mask",
                    "labels",
                    "audio_start",
                    "audio_tokens",
                    "source_lens",
                    "keys",
                    "targets",
                )
            },
            path,
        )
        return {
            "file": path,
            "feats": list(batch.feats.shape),
            "input_ids": list(batch.input_ids.shape),
            "label_tokens": int((batch.labels != -100).sum()),
        }

    original_prepare = tool.NanoWorker.prepare_batch

    def prepare_batch(self):
        """The tool builds the batch from its fields; what ``collate`` adds on the host is added here too."""
        original_prepare(self)
        try:
            from nano8k.model.batch import label_positions
        except ImportError:  # a baseline checkout: its collate added nothing
            return
        batch = self.speech_batch
        batch.label_index, batch.label_targets = label_positions(batch.labels)
        batch.text_prefix = int(batch.audio_start.min())

    tool.NanoWorker.cmd_train_setup = train_setup
    tool.NanoWorker.prepare_batch = prepare_batch
    tool.Common.cmd_rss = rss
    tool.Common.cmd_reset_peak = reset_peak
    tool.NanoWorker.cmd_make_batch = make_batch


def interleaved(tool, args, work: str, model_dir: str, batch_file: str, reps: int) -> dict:
    """Reference and nano8k loaded side by side, stepping in turn (ABBA): both see the same machine moments."""
    workers = {
        "ref": tool.Worker("ref", args.ref_python, work, tag="ref_pair"),
        "nano": tool.Worker("nano", args.nano_python, work, tag="nano_pair"),
    }
    try:
        for worker in workers.values():
            worker("threads", n=args.threads)
            worker("load", model_dir=model_dir, keep_initial=False)
            worker("reset_peak")
        for worker in workers.values():
            worker("train_setup", batch_file=batch_file, trainable="enc_adaptor")
        losses = {kind: worker("loss_check")["loss"] for kind, worker in workers.items()}  # also the warm-up
        walls: dict[str, list[float]] = {"ref": [], "nano": []}
        for rep in range(reps):
            for kind in ("ref", "nano") if rep % 2 == 0 else ("nano", "ref"):
                walls[kind].append(workers[kind]("train_steps", n=1)["steps"][0]["wall"])
        peaks = {kind: worker("rss")["peak_rss_since_reset_mib"] for kind, worker in workers.items()}
    finally:
        for worker in workers.values():
            worker.close()
    return {
        "walls": walls,
        "losses": losses,
        "peaks": peaks,
        "ratio_median": tool.med(walls["nano"]) / tool.med(walls["ref"]),
        "ratio_min": min(walls["nano"]) / min(walls["ref"]),
    }


def full_size(tool, args) -> None:
    """Full-size training steps, one process at a time, for each batch size; a table and the raw runs."""
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    report = tool.Report(os.path.join(work, "full_size.json"))
    report(
        f"# full-size train step (encoder + adaptor trainable, LLM frozen, fp32, {args.threads} threads)  "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}  loadavg {os.getloadavg()}"
    )
    full_dir = os.path.join(work, "models", "full")
    if not os.path.exists(os.path.join(full_dir, "model.pt")):
        maker = tool.Worker("ref", args.ref_python, work, tag="ref_makefull")
        try:
            maker("threads", n=args.threads)
            report(f"  full-size model dir: {maker('make_model_dir', kind='full', out=full_dir)}")
        finally:
            maker.close()
    kinds = ["ref", "nano", "nano", "ref"] + (["base"] if args.baseline_src else [])
    rows = []
    for count in (int(c) for c in args.batches.split(",")):
        maker = tool.Worker("nano", args.nano_python, work, tag="nano_makebatch")
        try:
            batch = maker("make_batch", out_dir=work, model_dir=tool.FIXTURE, count=count)
        finally:
            maker.close()
        report(
            f"\n## batch {count} x {SECONDS:.0f} s: feats {batch['feats']}, ids {batch['input_ids']}, "
            f"label tokens {batch['label_tokens']}"
        )
        if args.interleave and count in {int(c) for c in args.interleave_batches.split(",")}:
            pair = interleaved(tool, args, work, full_dir, batch["file"], args.interleave)
            report.data.setdefault("interleaved", []).append(dict(pair, batch=count))
            report(
                f"  interleaved (ABBA, {args.interleave} steps each): "
                f"reference median {tool.med(pair['walls']['ref']):.2f}"
                f" s (min {min(pair['walls']['ref']):.2f}), nano8k median {tool.med(pair['walls']['nano']):.2f} s "
                f"(min {min(pair['walls']['nano']):.2f}); ratio median {pair['ratio_median']:.3f}, min "
                f"{pair['ratio_min']:.3f}; loss0 {pair['losses']}; training peak RSS {pair['peaks']} MiB"
            )
            report.dump()
            continue
        runs = []
        for kind in kinds:
            if kind == "base":
                os.environ["PYTHONPATH"] = args.baseline_src  # the baseline checkout's nano8k, this venv
            worker = tool.Worker(
                "nano" if kind != "ref" else "ref",
                args.ref_python if kind == "ref" else args.nano_python,
                work,
                tag=f"{kind}_full{count}",
            )
            os.environ.pop("PYTHONPATH", None)
            try:
                worker("threads", n=args.threads)
                worker("load", model_dir=full_dir, keep_initial=False)
                worker("reset_peak")
                setup = worker("train_setup", batch_file=batch["file"], trainable="enc_adaptor")
                check = worker("loss_check")  # forward + backward: also the warm-up
                steps = worker("train_steps", n=args.steps)["steps"]
                rss = worker("rss")
            finally:
                worker.close()
            runs.append(
                dict(
                    kind=kind,
                    loss0=check["loss"],
                    steps=steps,
                    peak_rss_mib=rss["peak_rss_mib"],
                    train_rss_mib=rss["peak_rss_since_reset_mib"],
                    optimizer=setup.get("optimizer", "torch default"),
                    loadavg=os.getloadavg()[0],
                )
            )
            report(
                f"  {kind:4s}: loss0 {check['loss']:.6f}, steps {[round(s['wall'], 2) for s in steps]} s, "
                f"peak RSS training {rss['peak_rss_since_reset_mib']:,.0f} MiB (process, loading included, "
                f"{rss['peak_rss_mib']:,.0f} MiB), optimizer {runs[-1]['optimizer']}"
            )
        walls = {k: tool.med([s["wall"] for r in runs if r["kind"] == k for s in r["steps"]]) for k in set(kinds)}
        peaks = {k: max(r["train_rss_mib"] for r in runs if r["kind"] == k) for k in set(kinds)}
        loading = {k: max(r["peak_rss_mib"] for r in runs if r["kind"] == k) for k in set(kinds)}
        losses = {k: [r["loss0"] for r in runs if r["kind"] == k] for k in set(kinds)}
        row = dict(
            batch=count,
            walls=walls,
            peaks=peaks,
            loading_peaks=loading,
            losses=losses,
            ratio=walls["nano"] / walls["ref"],
            loss0_diff=abs(losses["nano"][0] - losses["ref"][0]),
            runs=runs,
        )
        rows.append(row)
        report(
            f"  step: reference {walls['ref']:.2f} s, nano8k {walls['nano']:.2f} s, ratio {row['ratio']:.3f}"
            + (
                f", baseline nano8k {walls['base']:.2f} s (ratio {walls['base'] / walls['ref']:.3f})"
                if "base" in walls
                else ""
            )
            + f"; loss0 |diff| {row['loss0_diff']:.2e}; peak RSS training "
            + ", ".join(f"{k} {v:,.0f} MiB" for k, v in sorted(peaks.items()))
            + " (process: "
            + ", ".join(f"{k} {v:,.0f} MiB" for k, v in sorted(loading.items()))
            + ")"
        )
    report.data["rows"] = rows
    report(
        "\n| batch | reference s | nano8k s | nano8k / ref | baseline s | loss0 diff | peak RSS training, ref / "
        "nano8k / baseline MiB | process peak (loading), ref / nano8k / baseline MiB |"
    )
    report("|---|---|---|---|---|---|---|---|")
    for row in rows:
        walls, peaks = row["walls"], row["peaks"]
        report(
            f"| {row['batch']} x 4 s | {walls['ref']:.2f} | {walls['nano']:.2f} | {row['ratio']:.3f} | "
            f"{walls.get('base', float('nan')):.2f} | {row['loss0_diff']:.1e} | {peaks['ref']:,.0f} / "
            f"{peaks['nano']:,.0f} / {peaks.get('base', float('nan')):,.0f} | {row['loading_peaks']['ref']:,.0f} / "
            f"{row['loading_peaks']['nano']:,.0f} / {row['loading_peaks'].get('base', float('nan')):,.0f} |"
        )
    report.dump()


def main() -> None:
    tool = load_tool()
    patch(tool)
    if "--full_size" not in sys.argv:
        tool.main()  # the shared tool's own flags (and its --worker mode, in which the patches apply)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full_size", action="store_true", required=True)
    parser.add_argument("--batches", default="2,8", help="utterances of 4 s per batch, comma list")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--interleave",
        type=int,
        default=0,
        help="steps per side for a reference / nano8k pair loaded together and stepping in turn",
    )
    parser.add_argument("--interleave_batches", default="2", help="batch sizes timed as such a pair (memory: both)")
    parser.add_argument("--baseline_src", default=None, help="a nano8k checkout (e.g. git worktree) to time as well")
    parser.add_argument("--work", default="runs/refbench")
    parser.add_argument("--ref_python", default=".venv-ref/bin/python")
    parser.add_argument("--nano_python", default=".venv/bin/python")
    args = parser.parse_args()
    args.ref_python, args.nano_python = os.path.abspath(args.ref_python), os.path.abspath(args.nano_python)
    full_size(tool, args)


if __name__ == "__main__":
    main()
