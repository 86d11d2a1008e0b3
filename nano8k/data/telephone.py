"""Telephone channel simulation: 8 kHz, 300-3400 Hz band-pass, noise at a sampled SNR, hum, level, G.711, upsample."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.signal
import torch

from nano8k.data import g711
from nano8k.data.audio import resample

NARROWBAND_RATE = 8000
CODECS = ("ulaw", "alaw", "none")
NOISE_TYPES = ("white", "pink")


def stable_seed(*parts: object) -> int:
    """A process-independent 64-bit seed from ``parts`` (Python's ``hash()`` is salted per process)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def utterance_rng(seed: int, key: str, epoch: int = 0, salt: str = "") -> np.random.Generator:
    """The generator for one utterance in one epoch: same (seed, key, epoch, salt) -> same draws."""
    return np.random.default_rng(stable_seed(seed, key, epoch, salt))


@functools.lru_cache(maxsize=32)
def _bandpass_sos(stop: tuple[float, float], passband: tuple[float, float], ripple: float, atten: float, fs: int):
    order, edges = scipy.signal.ellipord(passband, stop, ripple, atten, fs=fs)
    return scipy.signal.ellip(order, ripple, atten, edges, btype="bandpass", output="sos", fs=fs)


@dataclass(frozen=True)
class TelephoneChannel:
    """Every parameter of the simulated channel; ranges ``(lo, hi)`` are sampled uniformly per utterance.

    The band-pass is an elliptic IIR whose stop-band starts at ``stop_band_hz`` (attenuation >=
    ``stopband_atten_db`` outside 300-3400 Hz) with a flat pass-band ``pass_band_hz``; elliptic reaches this
    mask at order ~6 where a Butterworth needs ~30. Noise is band-limited by the same filter and scaled so the
    in-band SNR equals the drawn value exactly (before the codec). Hum (mains 50/60 Hz + odd harmonics) is
    line interference added after the filter.
    """

    codecs: tuple[str, ...] = ("ulaw", "alaw")
    stop_band_hz: tuple[float, float] = (300.0, 3400.0)
    pass_band_hz: tuple[float, float] = (360.0, 3200.0)
    passband_ripple_db: float = 0.5
    stopband_atten_db: float = 50.0
    noise_prob: float = 1.0
    noise_types: tuple[str, ...] = NOISE_TYPES
    snr_db: tuple[float, float] = (15.0, 25.0)
    hum_prob: float = 0.2
    hum_freqs_hz: tuple[float, ...] = (50.0, 60.0)
    hum_db: tuple[float, float] = (-35.0, -20.0)  # hum RMS relative to the speech RMS
    level_dbfs: tuple[float, float] = (-30.0, -15.0)  # speech RMS after the level stage
    output_rate: int = NARROWBAND_RATE  # 8000: narrowband out; 16000: upsampled back

    def __post_init__(self) -> None:
        for codec in self.codecs:
            if codec not in CODECS:
                raise ValueError(f"unknown codec {codec!r}; choose from {CODECS}")
        for kind in self.noise_types:
            if kind not in NOISE_TYPES:
                raise ValueError(f"unknown noise type {kind!r}; choose from {NOISE_TYPES}")
        if not self.codecs:
            raise ValueError("codecs must name at least one of ulaw, alaw, none")
        lo, hi = self.stop_band_hz
        plo, phi = self.pass_band_hz
        if not (0 < lo < plo < phi < hi < NARROWBAND_RATE / 2):
            raise ValueError(f"need 0 < stop_lo < pass_lo < pass_hi < stop_hi < 4000 Hz, got {self.stop_band_hz}, "
                             f"{self.pass_band_hz}")
        for name in ("snr_db", "hum_db", "level_dbfs"):
            a, b = getattr(self, name)
            if a > b:
                raise ValueError(f"{name} range must be (low, high), got {(a, b)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def bandpass(self, waveform: np.ndarray) -> np.ndarray:
        """Apply the channel filter to an 8 kHz signal."""
        sos = _bandpass_sos(tuple(self.stop_band_hz), tuple(self.pass_band_hz), self.passband_ripple_db,
                            self.stopband_atten_db, NARROWBAND_RATE)
        return scipy.signal.sosfilt(sos, waveform).astype(np.float64)

    def simulate(
        self, waveform: torch.Tensor, rate: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, int, dict[str, Any]]:
        """Pass a mono float waveform at ``rate`` through the channel; returns (waveform, its rate, drawn params)."""
        x = resample(waveform.to(torch.float32), rate, NARROWBAND_RATE).numpy().astype(np.float64)
        params: dict[str, Any] = {"codec": str(rng.choice(self.codecs))}
        speech = self.bandpass(x)
        speech_rms = float(np.sqrt(np.mean(speech**2))) if speech.size else 0.0
        level = float(rng.uniform(*self.level_dbfs))
        gain = 10 ** (level / 20) / speech_rms if speech_rms > 1e-9 else 1.0
        speech *= gain
        target_rms = speech_rms * gain if speech_rms > 1e-9 else 10 ** (level / 20)
        params["level_dbfs"] = level
        out = speech
        if rng.uniform() < self.noise_prob and out.size:
            kind = str(rng.choice(self.noise_types))
            snr = float(rng.uniform(*self.snr_db))
            noise = self.bandpass(_noise(kind, out.size, rng))
            noise *= target_rms / (np.sqrt(np.mean(noise**2)) + 1e-20) * 10 ** (-snr / 20)
            out = out + noise
            params.update(noise=kind, snr_db=snr)
        if rng.uniform() < self.hum_prob and out.size:
            freq = float(rng.choice(self.hum_freqs_hz))
            hum_db = float(rng.uniform(*self.hum_db))
            t = np.arange(out.size) / NARROWBAND_RATE
            phase = rng.uniform(0, 2 * np.pi)
            hum = sum(np.sin(2 * np.pi * k * freq * t + k * phase) / k for k in (1, 3, 5, 7))
            hum *= target_rms * 10 ** (hum_db / 20) / np.sqrt(np.mean(hum**2))
            out = out + hum
            params.update(hum_hz=freq, hum_db=hum_db)
        params["clipped_fraction"] = float(np.mean(np.abs(out) >= 1.0)) if out.size else 0.0
        out = np.clip(out, -1.0, 32767 / 32768)
        if params["codec"] != "none":
            out = g711.round_trip(out, params["codec"])
        result = torch.from_numpy(np.asarray(out, dtype=np.float32))
        if self.output_rate != NARROWBAND_RATE:
            result = resample(result, NARROWBAND_RATE, self.output_rate)
        params["rate"] = self.output_rate
        return result, self.output_rate, params


def _noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n)
    spectrum[1:] /= np.sqrt(freqs[1:])  # 1/f power
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n)


def simulate(
    waveform: torch.Tensor, rate: int, rng: np.random.Generator, channel: TelephoneChannel | None = None
) -> tuple[torch.Tensor, int, dict[str, Any]]:
    """Functional form of ``TelephoneChannel.simulate`` (default channel when ``channel`` is None)."""
    return (channel or TelephoneChannel()).simulate(waveform, rate, rng)
