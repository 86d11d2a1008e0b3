"""CLI: ``python -m nano8k.simulate IN_MANIFEST OUT_MANIFEST OUT_DIR`` — offline telephone-channel simulation."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Sequence

import soundfile as sf
import yaml

from nano8k.data.audio import MULTICHANNEL_POLICIES
from nano8k.data.badsamples import BadSampleLog, DataError
from nano8k.data.manifest import load_utterances, write_chatml
from nano8k.data.telephone import TelephoneChannel, utterance_rng


def channel_from_config(path: str | None, overrides: dict) -> TelephoneChannel:
    """A ``TelephoneChannel`` from a YAML file (its keys or a ``telephone:`` section) plus CLI overrides."""
    values: dict = {}
    if path:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        values = loaded.get("telephone", loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TelephoneChannel)}
    unknown = set(values) - known
    if unknown:
        raise SystemExit(f"unknown telephone channel option(s): {sorted(unknown)}; known: {sorted(known)}")
    return TelephoneChannel(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nano8k.simulate", description=__doc__)
    parser.add_argument("in_manifest", nargs="+", help="input manifest(s), any supported format")
    parser.add_argument("out_manifest", help="output ChatML jsonl")
    parser.add_argument("out_dir", help="folder for the simulated wav files")
    parser.add_argument("--config", help="YAML with TelephoneChannel fields (or a 'telephone:' section)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-rate", type=int, choices=[8000, 16000], default=None)
    parser.add_argument("--codec", action="append", choices=["ulaw", "alaw", "none"], dest="codecs")
    parser.add_argument("--snr-db", type=float, nargs=2, default=None)
    parser.add_argument("--hum-prob", type=float, default=None)
    parser.add_argument("--on-bad-sample", choices=["error", "skip"], default="error")
    parser.add_argument("--max-bad-fraction", type=float, default=0.0)
    parser.add_argument("--multichannel", choices=MULTICHANNEL_POLICIES, default="error",
                        help="a multi-channel file whose utterance names no channel: error, first, or mix")
    parser.add_argument("--suffix", default="", help="appended to keys and file names")
    args = parser.parse_args(argv)
    inputs = list(args.in_manifest)
    channel = channel_from_config(args.config, {
        "output_rate": args.output_rate, "codecs": tuple(args.codecs) if args.codecs else None,
        "snr_db": tuple(args.snr_db) if args.snr_db else None, "hum_prob": args.hum_prob})
    log = BadSampleLog(args.on_bad_sample, args.max_bad_fraction, name="simulate")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        utts = load_utterances(inputs, log, probe=True, multichannel=args.multichannel)
        done = []
        params_path = out_dir / "channel_params.jsonl"
        with open(params_path, "w", encoding="utf-8") as params_file:
            for utt in utts:
                waveform, rate = utt.load(args.multichannel)  # the utterance's span and channel
                out, out_rate, params = channel.simulate(waveform, rate, utterance_rng(args.seed, utt.key))
                key = utt.key + args.suffix
                wav = out_dir / f"{key}.wav"
                sf.write(str(wav), out.numpy(), out_rate, subtype="PCM_16")
                params_file.write(json.dumps({"key": key, "source": str(utt.audio), "offset": utt.offset,
                                              "channel": utt.channel, **params}) + "\n")
                done.append(replace(utt, key=key, audio=wav.resolve(), duration=out.numel() / out_rate, offset=None,
                                    channel=None))
    except DataError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 1
    write_chatml(done, args.out_manifest)
    print(f"simulated {len(done)} utterances into {out_dir} (params in {params_path}); manifest {args.out_manifest}")
    if log.count:
        print(log.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
