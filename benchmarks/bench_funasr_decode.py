"""Does FunASR's own inference read what nano8k exports? Decode one export with both and compare the text.

    python benchmarks/bench_funasr_decode.py --export runs/demo/export/funasr \\
        --manifest data_manifests/telephone-digits/test.jsonl --ref_python .venv-ref/bin/python

nano8k decodes the manifest with ``nano8k.inference`` (batched greedy decoding, the export's feeding record); the
reference decodes each file with ``funasr.AutoModel(model=EXPORT)`` and ``FunASRNano.inference`` (funasr 1.4.16,
transformers 4.57: the throwaway venv that ../shared/tools/bench_vs_reference.py's docstring builds), run by this same
file as ``--worker`` under ``--ref_python``. Texts are compared after stripping surrounding white space. Writes
``OUT/funasr_decode.json`` (every pair) and prints the identical fraction; exits 1 below ``--min_identical``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def reference_worker(export: str, items: list[dict], max_new_tokens: int) -> list[str]:
    """FunASR's side, run under the reference venv: AutoModel on the export folder, one file at a time."""
    import torch
    from funasr import AutoModel

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = AutoModel(model=export, device="cpu", disable_update=True, disable_pbar=True, disable_log=True)
    kwargs = dict(model.kwargs, max_length=max_new_tokens)
    texts = []
    with torch.no_grad():
        for item in items:
            result, _ = model.model.inference(data_in=[item["audio"]], key=[item["key"]], **kwargs)
            texts.append(result[0]["text"])
    return texts


def nano8k_texts(export: str, manifest: str, max_new_tokens: int) -> tuple[list[dict], list[str]]:
    """nano8k's side: the manifest's utterances (key, audio path) and their transcripts from the export."""
    from nano8k.data.manifests.io import read_utterances
    from nano8k.inference import DecodeOptions, transcribe_utterances
    from nano8k.model.checkpoint import load_pretrained

    utterances = read_utterances(manifest, "nano8k")
    spans = [u for u in utterances if u.offset is not None or u.channel is not None]
    if spans:
        raise SystemExit(
            f"error: {manifest}: {len(spans)} utterances are spans or channels of a file (first "
            f"{spans[0].key}); FunASR's inference takes whole mono files"
        )
    model = load_pretrained(export).eval()
    results = transcribe_utterances(model, utterances, DecodeOptions(max_new_tokens=max_new_tokens))
    failed = [r for r in results if r.error]
    if failed:
        raise SystemExit(
            f"error: nano8k could not decode {len(failed)} utterances (first {failed[0].utt.key}: {failed[0].error})"
        )
    return [{"key": u.key, "audio": str(u.audio)} for u in utterances], [r.text for r in results]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True, help="a nano8k export in the FunASR layout (export/funasr)")
    parser.add_argument("--manifest", required=True, help="held-out utterances: whole mono files with keys")
    parser.add_argument("--ref_python", default=".venv-ref/bin/python", help="python of the funasr 1.4.16 venv")
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--min_identical", type=float, default=0.95, help="exit 1 below this fraction")
    parser.add_argument("--out", default="runs/funasr_decode")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # a JSON job file: the reference side
    args = parser.parse_args(argv)
    if args.worker:
        job = json.loads(Path(args.worker).read_text(encoding="utf-8"))
        texts = reference_worker(job["export"], job["items"], job["max_new_tokens"])
        Path(job["result"]).write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        return 0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    items, ours = nano8k_texts(args.export, args.manifest, args.max_new_tokens)
    nano_seconds = time.monotonic() - started
    job = {
        "export": str(Path(args.export).resolve()),
        "items": items,
        "max_new_tokens": args.max_new_tokens,
        "result": str((out / "reference_texts.json").resolve()),
    }
    (out / "job.json").write_text(json.dumps(job), encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", MODELSCOPE_OFFLINE="1")
    started = time.monotonic()
    done = subprocess.run(
        [
            args.ref_python,
            __file__,
            "--export",
            args.export,
            "--manifest",
            args.manifest,
            "--worker",
            str(out / "job.json"),
        ],
        env=env,
    )
    if done.returncode != 0:
        print(
            f"error: the reference worker ({args.ref_python}) failed with exit status {done.returncode}",
            file=sys.stderr,
        )
        return 2
    ref_seconds = time.monotonic() - started
    theirs = json.loads((out / "reference_texts.json").read_text(encoding="utf-8"))
    pairs = [
        {"key": item["key"], "nano8k": a, "funasr": b, "identical": a.strip() == b.strip()}
        for item, a, b in zip(items, ours, theirs)
    ]
    same = sum(p["identical"] for p in pairs)
    fraction = same / len(pairs) if pairs else 0.0
    (out / "funasr_decode.json").write_text(
        json.dumps(
            {"export": args.export, "manifest": args.manifest, "identical": same, "total": len(pairs), "pairs": pairs},
            ensure_ascii=False,
            indent=1,
        ),
        encoding="utf-8",
    )
    for pair in [p for p in pairs if not p["identical"]][:10]:
        print(f"  differs {pair['key']}: nano8k {pair['nano8k']!r} | funasr {pair['funasr']!r}")
    print(
        f"identical text: {same} of {len(pairs)} ({fraction:.1%}); nano8k {nano_seconds:.0f} s, FunASR "
        f"{ref_seconds:.0f} s; pairs in {out / 'funasr_decode.json'}"
    )
    return 0 if pairs and fraction >= args.min_identical else 1


if __name__ == "__main__":
    sys.exit(main())
