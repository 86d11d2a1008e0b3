"""Channel effects on 8 kHz float audio: band-pass, level, noise, hum, reverb, gain, clipping, codecs, packet loss.

Each effect is a frozen dataclass applied with probability ``prob``; its random draws come from the generator the
profile passes (seeded per (seed, key, epoch)), and what it drew goes into ``params``. Ranges ``(lo, hi)`` are
sampled uniformly per utterance.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.fft
import scipy.signal

from nano8k.data.audio import NARROWBAND_RATE as RATE
from nano8k.data.channel import codecs
from nano8k.data.channel.audio_pool import AudioPool
from nano8k.data.channel.settings import from_mapping


@dataclass
class EffectContext:
    """What effects share while one utterance goes through a profile: sound sources and the drawn parameters."""

    noise: AudioPool | None = None
    rir: AudioPool | None = None
    params: dict[str, Any] = field(default_factory=dict)


def _check_range(name: str, value: Any, lo: float = -np.inf, hi: float = np.inf) -> None:
    """``value`` must be a ``[low, high]`` pair of numbers with lo <= low <= high <= hi (errors name ``name``)."""
    pair = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value)
    )
    if not pair or not lo <= value[0] <= value[1] <= hi:
        raise ValueError(f"{name} must be a [low, high] pair within [{lo:g}, {hi:g}], got {value!r}")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if x.size else 0.0


@functools.lru_cache(maxsize=32)
def _elliptic_sos(stop: tuple[float, float], passband: tuple[float, float], ripple: float, atten: float):
    order, edges = scipy.signal.ellipord(passband, stop, ripple, atten, fs=RATE)
    return scipy.signal.ellip(order, ripple, atten, edges, btype="bandpass", output="sos", fs=RATE)


@dataclass(frozen=True)
class Effect:
    """Base class: ``prob`` of applying; subclasses implement ``apply`` and name themselves in ``name``."""

    name: ClassVar[str] = ""
    needs: ClassVar[str | None] = None  # "noise" or "rir": the sound source this effect draws from
    prob: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.prob, (int, float)) or not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {self.prob!r}")
        for name, bounds in self.ranges.items():
            _check_range(name, getattr(self, name), *bounds)

    ranges: ClassVar[dict[str, tuple[float, float]]] = {}  # the [low, high] settings and the bounds they lie in

    def apply(self, x: np.ndarray, rng: np.random.Generator, ctx: EffectContext) -> np.ndarray:
        raise NotImplementedError

    @property
    def label(self) -> str:
        """A short name for listings (e.g. ``codec gsm``)."""
        return self.name


@dataclass(frozen=True)
class Bandpass(Effect):
    """Telephone band: an elliptic IIR with >= ``stopband_atten_db`` outside ``stop_band_hz`` and a flat
    ``pass_band_hz`` (elliptic reaches this mask at order ~6 where a Butterworth needs ~30)."""

    name: ClassVar[str] = "bandpass"
    ranges: ClassVar[dict[str, tuple[float, float]]] = {"stop_band_hz": (0, RATE / 2), "pass_band_hz": (0, RATE / 2)}
    stop_band_hz: tuple[float, float] = (300.0, 3400.0)
    pass_band_hz: tuple[float, float] = (360.0, 3200.0)
    passband_ripple_db: float = 0.5
    stopband_atten_db: float = 50.0

    def __post_init__(self) -> None:
        super().__post_init__()
        lo, hi = self.stop_band_hz
        plo, phi = self.pass_band_hz
        if not (0 < lo < plo < phi < hi < RATE / 2):
            raise ValueError(
                f"need 0 < stop_lo < pass_lo < pass_hi < stop_hi < 4000 Hz, got stop_band_hz "
                f"{list(self.stop_band_hz)}, pass_band_hz {list(self.pass_band_hz)}"
            )

    def filter(self, x: np.ndarray) -> np.ndarray:
        sos = _elliptic_sos(
            tuple(self.stop_band_hz), tuple(self.pass_band_hz), self.passband_ripple_db, self.stopband_atten_db
        )
        return scipy.signal.sosfilt(sos, x)

    def apply(self, x, rng, ctx):
        return self.filter(x)


@dataclass(frozen=True)
class Level(Effect):
    """Scale the signal to an RMS level drawn from ``level_dbfs`` (0 dBFS: RMS 1.0), but no louder than a peak of
    ``max_peak_dbfs``: speech peaks 15-25 dB above its RMS would otherwise clip in the codec's 16-bit input (clipping
    is the ``clipping`` effect's job). ``params["level_dbfs"]`` is the level reached."""

    name: ClassVar[str] = "level"
    ranges: ClassVar[dict[str, tuple[float, float]]] = {"level_dbfs": (-120.0, 0.0)}
    level_dbfs: tuple[float, float] = (-30.0, -15.0)
    max_peak_dbfs: float = -1.0

    def apply(self, x, rng, ctx):
        level = float(rng.uniform(*self.level_dbfs))
        rms, peak = _rms(x), float(np.abs(x).max()) if x.size else 0.0
        if rms <= 1e-9:
            return x
        gain = min(10 ** (level / 20) / rms, 10 ** (self.max_peak_dbfs / 20) / peak)
        ctx.params["level_dbfs"] = 20 * np.log10(rms * gain)
        return x * gain


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    size = scipy.fft.next_fast_len(n, real=True)  # an FFT of a prime length is ~10x slower
    spectrum = scipy.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size)
    spectrum[1:] /= np.sqrt(freqs[1:])  # 1/f power
    spectrum[0] = 0.0
    return scipy.fft.irfft(spectrum, size)[:n]


NOISE_KINDS = ("white", "pink", "recorded")


@dataclass(frozen=True)
class Noise(Effect):
    """Add noise at an SNR drawn from ``snr_db`` relative to the signal at this point (exact on the whole utterance).

    ``kinds``: white, pink (synthetic) or recorded (a random stretch of the channel's noise source, e.g. MUSAN).
    ``band_limited`` first passes the noise through the default telephone band (300-3400 Hz mask; line noise,
    measured in-band); otherwise
    it is acoustic background that the later band-pass shapes with the speech.
    """

    name: ClassVar[str] = "noise"
    ranges: ClassVar[dict[str, tuple[float, float]]] = {"snr_db": (-30.0, 100.0)}
    kinds: tuple[str, ...] = ("white", "pink")
    snr_db: tuple[float, float] = (15.0, 25.0)
    band_limited: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.kinds, tuple) or not self.kinds or any(k not in NOISE_KINDS for k in self.kinds):
            raise ValueError(f"kinds must be a list of some of {list(NOISE_KINDS)}, got {self.kinds!r}")

    @property
    def needs(self) -> str | None:  # type: ignore[override]
        return "noise" if "recorded" in self.kinds else None

    @property
    def label(self) -> str:
        return f"noise {'/'.join(self.kinds)} {self.snr_db[0]:g}-{self.snr_db[1]:g} dB"

    def apply(self, x, rng, ctx):
        kind = str(rng.choice(self.kinds))
        snr = float(rng.uniform(*self.snr_db))
        signal_rms = _rms(x)
        if signal_rms < 1e-9:
            return x
        if kind == "white":
            noise = rng.standard_normal(x.size)
        elif kind == "pink":
            noise = _pink(x.size, rng)
        else:
            noise, source = ctx.noise.segment(x.size, rng)
            ctx.params["noise_source"] = source
        if self.band_limited:
            noise = Bandpass().filter(noise)
        noise_rms = _rms(noise)
        if noise_rms < 1e-12:
            return x
        ctx.params.update(noise=kind, snr_db=snr)
        return x + noise * (signal_rms / noise_rms * 10 ** (-snr / 20))


@dataclass(frozen=True)
class Hum(Effect):
    """Mains hum (50/60 Hz and odd harmonics) at ``hum_db`` relative to the signal RMS: line interference."""

    name: ClassVar[str] = "hum"
    ranges: ClassVar[dict[str, tuple[float, float]]] = {"hum_db": (-100.0, 0.0)}
    freqs_hz: tuple[float, ...] = (50.0, 60.0)
    hum_db: tuple[float, float] = (-35.0, -20.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            not isinstance(self.freqs_hz, tuple)
            or not self.freqs_hz
            or not all(isinstance(f, (int, float)) and 0 < f < RATE / 14 for f in self.freqs_hz)
        ):
            raise ValueError(
                f"freqs_hz must list mains frequencies in (0, {RATE / 14:g}) Hz (the 7th harmonic stays "
                f"below 4 kHz), got {self.freqs_hz!r}"
            )

    def apply(self, x, rng, ctx):
        freq = float(rng.choice(self.freqs_hz))
        hum_db = float(rng.uniform(*self.hum_db))
        phase = rng.uniform(0, 2 * np.pi)
        t = np.arange(x.size) / RATE
        hum = sum(np.sin(2 * np.pi * k * freq * t + k * phase) / k for k in (1, 3, 5, 7))
        ctx.params.update(hum_hz=freq, hum_db=hum_db)
        return x + hum * (_rms(x) * 10 ** (hum_db / 20) / max(_rms(hum), 1e-12))


@dataclass(frozen=True)
class Reverb(Effect):
    """Convolve with a room impulse response from the channel's RIR source (hands-free rooms).

    The response is cut to ``max_seconds`` and aligned on its direct path (its peak), so the output keeps the
    input's length and timing; its RMS is kept too.
    """

    name: ClassVar[str] = "reverb"
    needs: ClassVar[str | None] = "rir"
    max_seconds: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.max_seconds, (int, float)) or not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds!r}")

    def apply(self, x, rng, ctx):
        rir, source = ctx.rir.impulse(rng)
        peak = int(np.argmax(np.abs(rir)))
        rir = rir[peak : peak + int(self.max_seconds * RATE)]
        if not x.size or not np.any(rir):
            return x
        wet = scipy.signal.oaconvolve(x, rir)[: x.size]
        ctx.params["rir_source"] = source
        return wet * (_rms(x) / max(_rms(wet), 1e-12))


@dataclass(frozen=True)
class GainRamp(Effect):
    """Slow gain changes (automatic gain control, a speaker moving off the microphone): a piecewise-linear
    envelope in dB with a knot every ``period_s`` seconds, each within +- ``depth_db``."""

    name: ClassVar[str] = "gain_ramp"
    ranges: ClassVar[dict[str, tuple[float, float]]] = {"depth_db": (0.0, 40.0), "period_s": (0.01, 3600.0)}
    depth_db: tuple[float, float] = (3.0, 10.0)
    period_s: tuple[float, float] = (0.5, 2.0)

    def apply(self, x, rng, ctx):
        depth = float(rng.uniform(*self.depth_db))
        period = float(rng.uniform(*self.period_s))
        knots = int(np.ceil(x.size / RATE / period)) + 1
        gains_db = rng.uniform(-depth, depth, knots)
        envelope = np.interp(np.arange(x.size) / RATE / period, np.arange(knots), gains_db)
        ctx.params.update(gain_ramp_db=depth)
        return x * 10 ** (envelope / 20)


@dataclass(frozen=True)
class Clipping(Effect):
    """Hard clipping of the loudest ``fraction`` of samples (an overdriven microphone or line)."""

    name: ClassVar[str] = "clipping"
    ranges: ClassVar[dict[str, tuple[float, float]]] = {"fraction": (0.0, 1.0)}
    fraction: tuple[float, float] = (0.001, 0.02)

    def apply(self, x, rng, ctx):
        fraction = float(rng.uniform(*self.fraction))
        if not x.size or fraction <= 0:
            return x
        threshold = float(np.quantile(np.abs(x), 1.0 - fraction))
        ctx.params["clipping_drawn"] = fraction
        return np.clip(x, -threshold, threshold) if threshold > 0 else x


@dataclass(frozen=True)
class Codec(Effect):
    """An encode/decode round trip through one of ``codecs`` (``nano8k.data.channel.codecs``), bit rate drawn from
    ``bitrate_kbps`` for the variable-rate ones (Opus, MP3, AMR-NB)."""

    name: ClassVar[str] = "codec"
    codecs: tuple[str, ...] = ("ulaw", "alaw")
    bitrate_kbps: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.codecs, tuple) or not self.codecs:
            raise ValueError(f"codecs must be a list of at least one codec, got {self.codecs!r}")
        for name in self.codecs:
            codecs.check_codec(name, self.bitrate_kbps)
        if self.bitrate_kbps is not None:
            _check_range("bitrate_kbps", self.bitrate_kbps, 0.0, 512.0)
            if not any(codecs.CODECS[name].bitrate_kbps for name in self.codecs):
                raise ValueError(
                    f"bitrate_kbps applies to the variable-rate codecs (opus, mp3, amr_nb), and "
                    f"{list(self.codecs)} has none"
                )

    @property
    def label(self) -> str:
        rate = f" {self.bitrate_kbps[0]:g}-{self.bitrate_kbps[1]:g} kbit/s" if self.bitrate_kbps else ""
        return f"codec {'/'.join(self.codecs)}{rate}"

    def apply(self, x, rng, ctx):
        name = str(rng.choice(self.codecs))
        spec = codecs.CODECS[name]
        kbps = None
        if spec.bitrate_kbps is not None:  # the rate the codec runs at: MP3 and AMR-NB have a few
            kbps = codecs.nearest_rate(name, float(rng.uniform(*(self.bitrate_kbps or spec.bitrate_kbps))))
        clipped = float(np.mean(np.abs(x) >= 1.0)) if x.size else 0.0  # the codec's 16-bit input clips these
        ctx.params["clipped_fraction"] = max(ctx.params.get("clipped_fraction", 0.0), clipped)
        y, measured = codecs.round_trip(x, name, kbps)
        ctx.params["codec"] = name  # the last codec of the chain: what the audio ends up coded with
        ctx.params.setdefault("codecs", []).append(name)
        ctx.params.setdefault("codec_kbps_drawn", []).append(None if kbps is None else round(kbps, 2))
        ctx.params.setdefault("codec_kbps", []).append(round(measured, 2))
        return y


CONCEALMENTS = ("silence", "repeat", "fade")


@dataclass(frozen=True)
class PacketLoss(Effect):
    """Lost VoIP packets of ``frame_ms``: a loss rate drawn from ``loss_rate``; ``burst_frames`` > 1 makes losses
    come in bursts of that mean length (a two-state Gilbert model with the same overall rate).

    A lost frame is concealed by one of ``concealment``: silence (zeros), repeat (the last frame received), or fade
    (the last frame received at half its amplitude, then halved again for each further frame of the burst).
    """

    name: ClassVar[str] = "packet_loss"
    ranges: ClassVar[dict[str, tuple[float, float]]] = {"loss_rate": (0.0, 0.5)}
    loss_rate: tuple[float, float] = (0.01, 0.1)
    burst_frames: float = 1.0
    frame_ms: float = 20.0
    concealment: tuple[str, ...] = CONCEALMENTS

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.frame_ms, (int, float)) or not 2.5 <= self.frame_ms <= 1000:
            raise ValueError(f"frame_ms must be in [2.5, 1000] (VoIP packets carry 10-60 ms), got {self.frame_ms!r}")
        if not isinstance(self.burst_frames, (int, float)) or self.burst_frames < 1.0:
            raise ValueError(f"burst_frames must be >= 1, got {self.burst_frames}")
        if (
            not isinstance(self.concealment, tuple)
            or not self.concealment
            or any(c not in CONCEALMENTS for c in self.concealment)
        ):
            raise ValueError(f"concealment must be a list of some of {list(CONCEALMENTS)}, got {self.concealment!r}")

    def lost_frames(self, count: int, rate: float, rng: np.random.Generator) -> np.ndarray:
        """Which of ``count`` frames are lost (bool), at long-run loss fraction ``rate``."""
        if self.burst_frames <= 1.0:
            return rng.uniform(size=count) < rate
        leave = 1.0 / self.burst_frames  # bad -> good; mean burst = burst_frames
        enter = rate * leave / (1.0 - rate)  # good -> bad, so the stationary bad fraction is ``rate``
        draws = rng.uniform(size=count)
        lost = np.zeros(count, dtype=bool)
        state = rng.uniform() < rate
        for i in range(count):
            lost[i] = state
            state = draws[i] >= leave if state else draws[i] < enter
        return lost

    @property
    def label(self) -> str:
        return f"packet_loss {self.loss_rate[0]:.0%}-{self.loss_rate[1]:.0%}"

    def apply(self, x, rng, ctx):
        rate = float(rng.uniform(*self.loss_rate))
        mode = str(rng.choice(self.concealment))
        size = max(1, int(round(self.frame_ms * RATE / 1000)))
        count = int(np.ceil(x.size / size))
        lost = self.lost_frames(count, rate, rng)
        ctx.params.update(loss_rate=rate, lost_frames=int(lost.sum()), frames=count, concealment=mode)
        if not lost.any():
            return x
        frames = np.zeros(count * size)
        frames[: x.size] = x
        frames = frames.reshape(count, size)
        last = np.zeros(size)
        run = 0
        for i in range(count):
            if not lost[i]:
                last, run = frames[i].copy(), 0
                continue
            run += 1
            frames[i] = 0.0 if mode == "silence" else last if mode == "repeat" else last * 0.5**run
        return frames.reshape(-1)[: x.size]


EFFECTS: dict[str, type[Effect]] = {
    cls.name: cls for cls in (Bandpass, Level, Noise, Hum, Reverb, GainRamp, Clipping, Codec, PacketLoss)
}


def build_effect(spec: dict[str, Any] | Effect, where: str) -> Effect:
    """An effect from ``{"effect": name, field: value, ...}`` (lists become tuples); errors name ``where``."""
    if isinstance(spec, Effect):
        return spec
    if not isinstance(spec, dict) or "effect" not in spec:
        raise ValueError(f"{where}: an effect is a mapping with an 'effect' key (one of {list(EFFECTS)}), got {spec!r}")
    cls = EFFECTS.get(spec["effect"])
    if cls is None:
        raise ValueError(f"{where}: unknown effect {spec['effect']!r}; known: {list(EFFECTS)}")
    try:
        return from_mapping(cls, {k: v for k, v in spec.items() if k != "effect"})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} ({cls.name}): {exc}") from None
