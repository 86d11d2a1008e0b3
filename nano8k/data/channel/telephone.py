"""Telephone channel simulation: named profiles of effects (landline, mobile, VoIP, archive), one per utterance."""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nano8k.data.audio import NARROWBAND_RATE, clip_int16, resample
from nano8k.data.channel.audio_pool import shared_pool
from nano8k.data.channel.effects import Effect, EffectContext, build_effect
from nano8k.data.channel.settings import from_mapping

# The fields TelephoneChannel had before profiles: named in the error a config with them gets.
LANDLINE_ERA_FIELDS = (
    "codecs",
    "stop_band_hz",
    "pass_band_hz",
    "passband_ripple_db",
    "stopband_atten_db",
    "noise_prob",
    "noise_types",
    "snr_db",
    "hum_prob",
    "hum_freqs_hz",
    "hum_db",
    "level_dbfs",
)


def stable_seed(*parts: object) -> int:
    """A process-independent 64-bit seed from ``parts`` (Python's ``hash()`` is salted per process)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def utterance_rng(seed: int, key: str, epoch: int = 0, salt: str = "") -> np.random.Generator:
    """The generator for one utterance in one epoch: same (seed, key, epoch, salt) -> same draws."""
    return np.random.default_rng(stable_seed(seed, key, epoch, salt))


def landline(
    snr_db: tuple[float, float] = (15.0, 25.0), hum_prob: float = 0.2, codecs: tuple[str, ...] = ("ulaw", "alaw")
) -> list[dict[str, Any]]:
    """The PSTN landline: 300-3400 Hz, a level, line noise measured in-band, sometimes mains hum, G.711."""
    return [
        {"effect": "bandpass"},
        {"effect": "level", "level_dbfs": [-30.0, -15.0]},
        {"effect": "noise", "kinds": ["white", "pink"], "snr_db": list(snr_db), "band_limited": True},
        {"effect": "hum", "prob": hum_prob},
        {"effect": "codec", "codecs": list(codecs)},
    ]


# Built-in profiles: effects in order, each with its probability. Effects that draw from a sound source (recorded
# noise, reverb) are off until data.telephone.noise / .rir name one (TelephoneChannel.describe() says so).
PROFILES: dict[str, list[dict[str, Any]]] = {
    "landline": landline(),
    "mobile": [  # a handset in a street or room, GSM or AMR over the radio, G.711 from the network to the call centre
        {"effect": "reverb", "prob": 0.2},
        {"effect": "noise", "kinds": ["recorded"], "snr_db": [5.0, 20.0], "prob": 0.7},
        {"effect": "bandpass"},
        {"effect": "gain_ramp", "prob": 0.3},
        {"effect": "level", "level_dbfs": [-32.0, -12.0]},
        {"effect": "clipping", "prob": 0.05},
        {"effect": "codec", "codecs": ["gsm", "amr_nb"], "bitrate_kbps": [4.75, 12.2]},
        {"effect": "codec", "codecs": ["ulaw", "alaw"]},
    ],
    "voip": [  # a softphone or headset, Opus at narrowband rates, lost packets concealed
        {"effect": "reverb", "prob": 0.3},
        {"effect": "noise", "kinds": ["recorded"], "snr_db": [10.0, 25.0], "prob": 0.6},
        {"effect": "bandpass"},
        {"effect": "level", "level_dbfs": [-30.0, -15.0]},
        {"effect": "codec", "codecs": ["opus"], "bitrate_kbps": [8.0, 24.0]},
        {"effect": "packet_loss", "loss_rate": [0.01, 0.08], "burst_frames": 2.0, "prob": 0.8},
    ],
    "archive": landline()
    + [  # a call recorder storing the G.711 call in a compressed format
        {"effect": "codec", "codecs": ["mp3", "vox_adpcm", "gsm", "ima_adpcm"], "bitrate_kbps": [8.0, 16.0]},
    ],
}


@dataclass(frozen=True)
class ChannelProfile:
    """One named chain of effects; ``off`` lists the effects whose sound source is not configured."""

    name: str
    effects: tuple[Effect, ...]
    off: frozenset[int] = frozenset()

    def apply(self, x: np.ndarray, rng: np.random.Generator, ctx: EffectContext) -> np.ndarray:
        for i, effect in enumerate(self.effects):
            if rng.uniform() < effect.prob and i not in self.off:  # one draw per effect, applied or not
                x = effect.apply(x, rng, ctx)
        return x

    def describe(self) -> str:
        parts = []
        for i, effect in enumerate(self.effects):
            text = effect.label + (f" p={effect.prob:g}" if effect.prob < 1 else "")
            if i in self.off:
                text += f" [off: no data.telephone.{effect.needs}]"
            parts.append(text)
        return f"{self.name}: " + " -> ".join(parts)


_BUILT: dict[int, tuple[list[ChannelProfile], np.ndarray, EffectContext]] = {}


@dataclass(frozen=True)
class TelephoneChannel:
    """The simulated channels: ``profiles`` maps profile names to weights (one profile drawn per utterance).

    Names are the built-in ``PROFILES`` (landline, mobile, voip, archive) or keys of ``custom_profiles``, each a
    list of ``{"effect": name, field: value}`` (see ``nano8k.data.channel.effects``; a custom name equal to a built-in
    one replaces it). ``noise`` and ``rir`` are folders of audio files (MUSAN ``noise/``, ``RIRS_NOISES``) or manifests
    in any format nano8k reads, for the effects that draw recorded noise or room impulse responses. ``output_rate`` 8000
    returns narrowband audio, 16000 upsamples it again. Everything is checked here, at start-up: an unknown profile,
    effect, field or codec, or a missing sound source, is a ``ValueError`` / ``DataError`` naming it.
    """

    profiles: dict[str, float] | None = None  # None: {landline: 1.0}
    custom_profiles: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    noise: str | None = None
    rir: str | None = None
    output_rate: int = NARROWBAND_RATE

    def __post_init__(self) -> None:
        if self.output_rate not in (8000, 16000):
            raise ValueError(f"output_rate must be 8000 or 16000, got {self.output_rate}")
        weights = self.mix.values() if isinstance(self.mix, dict) else None
        if not weights or not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
            raise ValueError(
                f"profiles must map profile names to weights, e.g. {{landline: 0.5, mobile: 0.5}}, got "
                f"{self.profiles!r}"
            )
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"profile weights must be >= 0 with a positive sum, got {self.profiles}")
        if not isinstance(self.custom_profiles, dict):
            raise ValueError(f"custom_profiles must map names to lists of effects, got {self.custom_profiles!r}")
        for name, effects in self.custom_profiles.items():
            if not isinstance(effects, (list, tuple)) or not effects:
                raise ValueError(
                    f"custom profile {name!r} must be a list of effects ({{effect: codec, ...}}), got {effects!r}"
                )
        self._built()

    @property
    def mix(self) -> dict[str, float]:
        """Profile name -> weight (``profiles``, or landline alone when it is None)."""
        return {"landline": 1.0} if self.profiles is None else self.profiles

    def _built(self) -> tuple[list[ChannelProfile], np.ndarray, EffectContext]:
        """The profiles' effects, their weights and the sound sources, built once per instance (kept outside the
        instance, so configs, checkpoints and loader workers carry only the settings)."""
        cached = _BUILT.get(id(self))
        if cached is not None:
            return cached
        pools = {
            "noise": shared_pool(self.noise, "noise") if self.noise else None,
            "rir": shared_pool(self.rir, "rir") if self.rir else None,
        }
        specs = {**PROFILES, **self.custom_profiles}
        built = []
        for name in self.mix:
            if name not in specs:
                raise ValueError(
                    f"unknown telephone profile {name!r}; built-in: {list(PROFILES)}, custom: "
                    f"{list(self.custom_profiles)}"
                )
            effects = tuple(build_effect(spec, f"profile {name!r} effect {i}") for i, spec in enumerate(specs[name]))
            off = frozenset(i for i, e in enumerate(effects) if e.needs and pools[e.needs] is None)
            built.append(ChannelProfile(name, effects, off))
        weights = np.array([self.mix[p.name] for p in built], dtype=np.float64)
        cached = (built, weights / weights.sum(), EffectContext(noise=pools["noise"], rir=pools["rir"]))
        _BUILT[id(self)] = cached
        weakref.finalize(self, _BUILT.pop, id(self), None)
        return cached

    @classmethod
    def from_config(cls, value: Any) -> TelephoneChannel:
        """A channel from a config value (a mapping of its fields, or an instance); unknown keys are named, with
        where the fields of the landline-only channel went."""
        hint = ""
        if isinstance(value, dict) and set(value.get("init_args", value)) & set(LANDLINE_ERA_FIELDS):
            hint = (
                " (the landline settings are now effects of a profile: give custom_profiles {landline: [...]}, "
                "see the README's Telephone channels)"
            )
        return from_mapping(cls, value, hint)

    def describe(self) -> list[str]:
        """One line per profile: its weight and effects (and which are off for want of a sound source)."""
        built, weights, _ = self._built()
        return [f"{w:.0%} {p.describe()}" for p, w in zip(built, weights)]

    def profile(self, name: str) -> TelephoneChannel:
        """This channel restricted to the one profile ``name`` (same sources and output rate)."""
        if name not in self.mix:
            raise ValueError(f"profile {name!r} is not in this channel's profiles {list(self.mix)}")
        return TelephoneChannel({name: 1.0}, self.custom_profiles, self.noise, self.rir, self.output_rate)

    def transmit(
        self, waveform: torch.Tensor, rate: int, rng: np.random.Generator, drawn: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, int]:
        """Pass a mono float waveform at ``rate`` through a profile drawn by weight; returns (waveform, its rate).

        ``drawn``, when given, receives what was drawn: the profile, each effect's parameters, the clipped fraction
        and the output rate.
        """
        built, weights, shared = self._built()
        x = resample(waveform.to(torch.float32), rate, NARROWBAND_RATE).numpy().astype(np.float64)
        chosen = built[int(rng.choice(len(built), p=weights))] if len(built) > 1 else built[0]
        params: dict[str, Any] = {"profile": chosen.name}
        x = chosen.apply(x, rng, EffectContext(shared.noise, shared.rir, params))
        if drawn is not None:
            drawn.update(params)
            if "clipped_fraction" not in drawn:  # a codec records what its 16-bit input clipped
                drawn["clipped_fraction"] = float(np.mean(np.abs(x) >= 1.0)) if x.size else 0.0
            drawn["rate"] = self.output_rate
        result = torch.from_numpy(clip_int16(x).astype(np.float32))
        if self.output_rate != NARROWBAND_RATE:
            result = resample(result, NARROWBAND_RATE, self.output_rate)
        return result, self.output_rate

    def simulate(
        self, waveform: torch.Tensor, rate: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, int, dict[str, Any]]:
        """``transmit`` and what it drew: (waveform, its rate, drawn params), for callers that record the draw."""
        drawn: dict[str, Any] = {}
        result, out_rate = self.transmit(waveform, rate, rng, drawn)
        return result, out_rate, drawn
