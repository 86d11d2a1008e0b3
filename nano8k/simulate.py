"""CLI: ``python -m nano8k.simulate IN_MANIFEST OUT_MANIFEST OUT_DIR`` (offline telephone channel) or ``--preview N OUT``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import yaml

from nano8k.data.audio import MULTICHANNEL_POLICIES, load_audio
from nano8k.data.badsamples import BadSampleLog
from nano8k.data.manifest import load_utterances, write_chatml
from nano8k.data.telephone import PROFILES, TelephoneChannel, utterance_rng
from nano8k.errors import command, fail

PREVIEW_CLIPS = Path(__file__).parent / "assets" / "preview"


def channel_from_config(path: str | None, overrides: dict) -> TelephoneChannel:
    """A ``TelephoneChannel`` from a YAML file (a fit config's ``data.telephone``, a ``telephone:`` section, or its
    fields at the top; a fit config without ``data.telephone`` gets the default channel) plus CLI overrides.
    Raises ``ValueError`` naming the file and key."""
    values: dict = {}
    where = "command line"
    if path:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        for key, tree in (("data.telephone", loaded.get("data")), ("telephone", loaded)):
            if isinstance(tree, dict) and "telephone" in tree:
                where, values = f"{path}: {key}", tree["telephone"]
                break
        else:
            where, values = (f"{path}: data.telephone", {}) if "data" in loaded else (path, loaded)
        if values is None:
            raise ValueError(f"{where} is null: there is no channel to simulate")
        if not isinstance(values, dict):
            raise ValueError(f"{where} must be a mapping of TelephoneChannel fields, got {values!r}")
        values = dict(values.get("init_args", values))
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TelephoneChannel.from_config(values)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _spectrogram(ax, x: np.ndarray, rate: int) -> None:
    window = rate // 40  # 25 ms
    with np.errstate(divide="ignore"):  # digital silence (a lost packet) has no log power
        ax.specgram(x, NFFT=window, Fs=rate, noverlap=window * 3 // 4, cmap="magma")


def preview(channel: TelephoneChannel, count: int, out_dir: Path, inputs: list[str], seed: int,
            multichannel: str) -> Path:
    """``count`` example WAVs per profile of ``channel``, their ``channel_params.jsonl`` and ``spectrograms.png``
    (rows: profiles), in ``out_dir``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit(f"--preview draws with matplotlib: pip install matplotlib ({exc})") from exc
    if inputs:
        utts = load_utterances(inputs, BadSampleLog("error"), multichannel=multichannel)
        clips = [(u.key, *u.load(multichannel)) for u in utts[:count]]  # only the ones shown are decoded
    else:
        clips = [(p.name.split(".")[0], *load_audio(p)) for p in sorted(PREVIEW_CLIPS.glob("*.flac"))]
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(channel.mix)
    singles = {name: channel.profile(name) for name in names}
    fig, axes = plt.subplots(len(names) + 1, count, figsize=(3.2 * count, 2.2 * (len(names) + 1)), squeeze=False)
    drawn = []
    for col in range(count):
        key, wave, rate = clips[col % len(clips)]
        _spectrogram(axes[0][col], wave.numpy(), rate)
        axes[0][col].set_title(f"clean: {key}", fontsize=8)
        for row, name in enumerate(names, start=1):
            out, out_rate, params = singles[name].simulate(wave, rate, utterance_rng(seed, f"{key}-{col}"))
            wav = f"{name}_{col}_{key}.wav"
            sf.write(str(out_dir / wav), out.numpy(), out_rate, subtype="PCM_16")
            drawn.append(json.dumps({"file": wav, **params}))
            _spectrogram(axes[row][col], out.numpy(), out_rate)
            codecs = "+".join(params.get("codecs", [])) or "no codec"
            axes[row][col].set_title(f"{name}: {codecs}", fontsize=8)
    for ax in np.ravel(axes):
        ax.set_ylim(0, 8000)
        ax.tick_params(labelsize=6)
    (out_dir / "channel_params.jsonl").write_text("\n".join(drawn) + "\n", encoding="utf-8")
    fig.tight_layout()
    png = out_dir / "spectrograms.png"
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nano8k.simulate", description=__doc__)
    parser.add_argument("paths", nargs="*", help="IN_MANIFEST... OUT_MANIFEST OUT_DIR (with --preview: optional "
                                                 "input manifests; default the bundled clean clips)")
    parser.add_argument("--preview", nargs=2, metavar=("N", "OUT"),
                        help="write N example WAVs per profile and spectrograms.png into OUT")
    parser.add_argument("--config", help="YAML with data.telephone (a fit config), a telephone: section, or its fields")
    parser.add_argument("--profile", action="append", dest="profiles", metavar="NAME",
                        help=f"use only these profiles, equally weighted (built-in: {', '.join(PROFILES)}; default: "
                             "the config's, else landline; --preview: all built-in)")
    parser.add_argument("--noise", help="folder or manifest of recorded background noise (MUSAN noise/)")
    parser.add_argument("--rir", help="folder or manifest of room impulse responses (RIRS_NOISES)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_rate", type=int, choices=[8000, 16000], default=None)
    parser.add_argument("--on_bad_sample", choices=["error", "skip"], default="error")
    parser.add_argument("--max_bad_fraction", type=float, default=0.0)
    parser.add_argument("--multichannel", choices=MULTICHANNEL_POLICIES, default="error",
                        help="a multi-channel file whose utterance names no channel: error, first, or mix")
    parser.add_argument("--suffix", default="", help="appended to keys and file names")
    args = parser.parse_args(argv)
    if args.preview and not (args.preview[0].isdigit() and int(args.preview[0]) > 0):
        parser.error(f"--preview N OUT: N must be a whole number of examples > 0, got {args.preview[0]!r}")
    if args.preview and not args.profiles and not args.config:
        args.profiles = list(PROFILES)  # preview every built-in profile
    try:
        channel = channel_from_config(args.config, {
            "output_rate": args.output_rate, "noise": args.noise, "rir": args.rir,
            "profiles": {name: 1.0 for name in args.profiles} if args.profiles else None})
    except (ValueError, OSError, yaml.YAMLError) as exc:  # DataError too: one error: line, exit 2 (@command)
        fail(str(exc))
    for line in channel.describe():
        print(f"profile {line}")
    if args.preview:
        png = preview(channel, int(args.preview[0]), Path(args.preview[1]), args.paths, args.seed, args.multichannel)
        print(f"wrote {args.preview[0]} examples per profile and {png}")
        return 0
    if len(args.paths) < 3:
        parser.error("give IN_MANIFEST... OUT_MANIFEST OUT_DIR (or --preview N OUT)")
    *inputs, out_manifest, out_dir_name = args.paths
    log = BadSampleLog(args.on_bad_sample, args.max_bad_fraction, name="simulate")
    out_dir = Path(out_dir_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    utts = load_utterances(inputs, log, probe=True, multichannel=args.multichannel)  # a DataError: @command's line
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
    write_chatml(done, out_manifest)
    print(f"simulated {len(done)} utterances into {out_dir} (params in {params_path}); manifest {out_manifest}")
    if log.count:
        print(log.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
