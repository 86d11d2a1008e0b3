"""A simulated telephone channel from a config file, applied to a manifest or drawn as a preview."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from nano8k.data.audio import MultichannelPolicy, load_audio
from nano8k.data.badsamples import BadSampleLog
from nano8k.data.channel.telephone import TelephoneChannel, utterance_rng
from nano8k.data.manifests.io import load_utterances
from nano8k.data.manifests.utterance import Utterance
from nano8k.errors import UserError

PREVIEW_CLIPS = Path(__file__).resolve().parents[2] / "assets" / "preview"  # clean clips for --preview


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


def preview(
    channel: TelephoneChannel, count: int, out_dir: Path, inputs: list[str], seed: int, multichannel: str
) -> Path:
    """``count`` example WAVs per profile of ``channel``, their ``channel_params.jsonl`` and ``spectrograms.png``
    (rows: profiles), in ``out_dir``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise UserError(f"--preview draws with matplotlib: pip install matplotlib ({exc})") from exc
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


def simulate_manifest(
    channel: TelephoneChannel,
    utts: Sequence[Utterance],
    out_dir: Path,
    seed: int,
    multichannel: MultichannelPolicy,
    suffix: str = "",
) -> tuple[list[Utterance], Path]:
    """Pass each utterance (its span and channel) through ``channel``, seeded per key: one 16-bit WAV per utterance
    in ``out_dir`` and its drawn parameters in ``channel_params.jsonl``; returns the new utterances and that file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    params_path = out_dir / "channel_params.jsonl"
    with open(params_path, "w", encoding="utf-8") as params_file:
        for utt in utts:
            waveform, rate = utt.load(multichannel)
            out, out_rate, params = channel.simulate(waveform, rate, utterance_rng(seed, utt.key))
            key = utt.key + suffix
            wav = out_dir / f"{key}.wav"
            sf.write(str(wav), out.numpy(), out_rate, subtype="PCM_16")
            params_file.write(
                json.dumps(
                    {"key": key, "source": str(utt.audio), "offset": utt.offset, "channel": utt.channel, **params}
                )
                + "\n"
            )
            done.append(
                replace(utt, key=key, audio=wav.resolve(), duration=out.numel() / out_rate, offset=None, channel=None)
            )
    return done, params_path
