"""Narrowband codec round trips in memory: libsndfile through soundfile; Opus and AMR-NB through PyAV."""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import numpy as np
import scipy.signal
import soundfile as sf

from nano8k.data.audio import NARROWBAND_RATE as RATE
from nano8k.data.audio import clip_int16
from nano8k.data.channel import g711
from nano8k.errors import CodecError


@dataclass(frozen=True)
class CodecSpec:
    """How one codec is reached: ``library`` "g711" (nano8k.data.channel.g711), "soundfile" (libsndfile ``format`` /
    ``subtype``) or "av" (PyAV); ``bitrate_kbps`` is the range a variable-rate codec takes (None: a fixed rate)."""

    library: str
    format: str = ""
    subtype: str = ""
    bitrate_kbps: tuple[float, float] | None = None


CODECS: dict[str, CodecSpec] = {
    "none": CodecSpec("g711"),  # 16-bit PCM
    "ulaw": CodecSpec("g711"),  # G.711 mu-law
    "alaw": CodecSpec("g711"),  # G.711 A-law
    "gsm": CodecSpec("soundfile", "WAV", "GSM610"),  # GSM 06.10 full rate, 13 kbit/s (mobile; WAV49 recorders)
    "g721": CodecSpec("soundfile", "AU", "G721_32"),  # G.721 ADPCM, 32 kbit/s
    "g723_24": CodecSpec("soundfile", "AU", "G723_24"),  # G.723 ADPCM, 24 kbit/s
    "g723_40": CodecSpec("soundfile", "AU", "G723_40"),  # G.723 ADPCM, 40 kbit/s
    "ima_adpcm": CodecSpec("soundfile", "WAV", "IMA_ADPCM"),  # IMA ADPCM in WAV, 32 kbit/s
    "ms_adpcm": CodecSpec("soundfile", "WAV", "MS_ADPCM"),  # Microsoft ADPCM in WAV, 32 kbit/s
    "vox_adpcm": CodecSpec("soundfile", "RAW", "VOX_ADPCM"),  # Dialogic VOX ADPCM, 32 kbit/s (call recorders)
    "opus": CodecSpec("av", bitrate_kbps=(6.0, 64.0)),  # VoIP; libopus at complexity OPUS_COMPLEXITY
    "mp3": CodecSpec("soundfile", "MP3", "MPEG_LAYER_III", bitrate_kbps=(8.0, 64.0)),  # constant rate (recorders)
    "amr_nb": CodecSpec("av", bitrate_kbps=(4.75, 12.2)),  # mobile; PyAV's opencore encoder, the 8 AMR modes
}
AMR_NB_MODES_KBPS = (4.75, 5.15, 5.9, 6.7, 7.4, 7.95, 10.2, 12.2)
MP3_KBPS_AT_8K = (8, 16, 24, 32, 40, 48, 56, 64)  # MPEG-2.5 layer III bit rates
# libopus effort 0..10. libsndfile's own Opus encoder is fixed at 10 and costs ~30 ms per second of a 2 s clip
# here, ~5x more than PyAV's libopus at 0; phones and softphones themselves run at low complexities.
OPUS_COMPLEXITY = 0


def _encode_decode(x: np.ndarray, codec: str, kbps: float | None) -> tuple[np.ndarray, int]:
    """Raw round trip: (decoded samples as float64, encoded size in bytes); the output may be longer or delayed."""
    spec = CODECS[codec]
    if spec.library == "g711":
        if codec == "none":
            return _pcm16(x) / 32768, x.size * 2
        return g711.round_trip(x, codec), x.size
    if spec.library == "av":
        return _av_round_trip(x, codec, kbps or spec.bitrate_kbps[1])
    buffer = io.BytesIO()
    options: dict = {}
    if codec == "mp3":
        options["compression_level"] = (64.0 - kbps) / 56.0 * 0.9999  # 1.0 itself is refused by libsndfile
        options["bitrate_mode"] = "CONSTANT"
    if spec.subtype == "VOX_ADPCM" and x.size % 2:  # two samples per byte: an odd count cannot be written
        x = np.append(x, 0.0)
    sf.write(buffer, x, RATE, format=spec.format, subtype=spec.subtype, **options)
    size = buffer.tell()
    buffer.seek(0)
    if spec.format == "RAW":
        y, _ = sf.read(buffer, samplerate=RATE, channels=1, format="RAW", subtype=spec.subtype, dtype="float64")
    else:
        y, _ = sf.read(buffer, dtype="float64")
    return y, size


def _pcm16(x: np.ndarray) -> np.ndarray:
    return np.round(clip_int16(x) * 32768).astype(np.int16)


def _av_round_trip(x: np.ndarray, codec: str, kbps: float) -> tuple[np.ndarray, int]:
    """Opus or AMR-NB through PyAV (its wheels bundle libopus and the opencore AMR-NB encoder)."""
    import av

    pcm = _pcm16(x)
    encoder = av.CodecContext.create("libopus" if codec == "opus" else "libopencore_amrnb", "w")
    encoder.sample_rate, encoder.layout, encoder.format = RATE, "mono", "s16"
    encoder.bit_rate = int(kbps * 1000)
    if codec == "opus":
        encoder.options = {"compression_level": str(OPUS_COMPLEXITY), "application": "voip", "frame_duration": "20"}
    frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
    frame.sample_rate, frame.pts = RATE, 0
    packets = encoder.encode(frame) + encoder.encode(None)  # PyAV cuts the frame into the codec's 20 ms frames
    decoder = av.CodecContext.create("opus" if codec == "opus" else "amrnb", "r")
    decoder.layout = "mono"
    decoder.sample_rate = 48000 if codec == "opus" else RATE  # FFmpeg decodes Opus at 48 kHz
    out = [f.to_ndarray().reshape(-1) for p in packets for f in decoder.decode(p)]
    y = np.concatenate(out).astype(np.float64) if out else np.zeros(0)
    if out and out[0].dtype.kind == "i":
        y /= 32768.0
    if codec == "opus":
        y = scipy.signal.resample_poly(y, 1, 48000 // RATE)
    return y, sum(p.size for p in packets)


def _probe_signal() -> np.ndarray:
    """One second of smoothed noise, quiet for its first quarter: a codec's delay shows by cross-correlation."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(RATE) * 0.1
    x[: RATE // 4] *= 0.2
    return np.convolve(x, np.ones(3) / 3, mode="same")


@functools.lru_cache(maxsize=64)
def codec_delay(codec: str, kbps: float | None = None) -> int:
    """Samples by which the codec's decoded output lags its input (0 for most; MP3 at a constant rate: 1105)."""
    x = _probe_signal()
    y, _ = _encode_decode(x, codec, kbps)
    n = min(x.size, y.size)
    search = min(2048, n // 2)
    corr = np.correlate(y[:n], x[search : n - search], mode="valid")
    return int(np.argmax(corr)) - search


@functools.lru_cache(maxsize=1)
def supported_codecs() -> tuple[str, ...]:
    """The codecs whose round trip works on this machine (each tried once, on a short signal)."""
    working = []
    for name, spec in CODECS.items():
        try:
            kbps = spec.bitrate_kbps[1] if spec.bitrate_kbps else None
            _encode_decode(np.zeros(RATE // 10), name, kbps)
        except Exception:  # a missing library (PyAV) or a libsndfile built without the codec
            continue
        working.append(name)
    return tuple(working)


def _av_hint(codec: str) -> str:
    """Why a PyAV codec is missing and how to get it: PyAV 18 dropped the opencore AMR-NB encoder from its wheels."""
    try:
        import av
    except ImportError:
        return "it needs PyAV with its bundled codecs: pip install 'av>=14,<18'"
    if codec == "amr_nb":
        return (
            f"PyAV {av.__version__} has no libopencore_amrnb encoder; PyAV 14-17 wheels bundle it: install from "
            "nano8k's lock file (requirements.lock) or pip install 'av>=14,<18'"
        )
    return f"PyAV {av.__version__} cannot run it"


def check_codec(codec: str, bitrate_kbps: tuple[float, float] | None = None) -> None:
    """Raise ``CodecError`` naming ``codec`` and what this machine supports when it cannot run here."""
    if codec not in CODECS:
        raise CodecError(f"unknown codec {codec!r}; this machine supports: {', '.join(supported_codecs())}")
    if codec not in supported_codecs():
        hint = (
            f" ({_av_hint(codec)})"
            if CODECS[codec].library == "av"
            else (f" (this libsndfile {sf.__libsndfile_version__} lacks {CODECS[codec].subtype})")
        )
        raise CodecError(
            f"codec {codec!r} does not run on this machine{hint}; it supports: {', '.join(supported_codecs())}"
        )
    limits = CODECS[codec].bitrate_kbps
    if bitrate_kbps is not None and limits is not None:
        lo, hi = bitrate_kbps
        if not limits[0] <= lo <= hi <= limits[1]:
            raise CodecError(f"codec {codec!r}: bitrate_kbps {list(bitrate_kbps)} must lie within {list(limits)}")


def nearest_rate(codec: str, kbps: float) -> float:
    """The bit rate the codec really runs at for a requested ``kbps``: the nearest AMR-NB mode or MP3 rate, Opus in
    whole kbit/s."""
    if codec == "amr_nb":
        return min(AMR_NB_MODES_KBPS, key=lambda mode: abs(mode - kbps))
    if codec == "mp3":
        return float(min(MP3_KBPS_AT_8K, key=lambda rate: abs(rate - kbps)))
    return float(round(kbps))


def round_trip(x: np.ndarray, codec: str, kbps: float | None = None) -> tuple[np.ndarray, float]:
    """Encode and decode 8 kHz float audio; returns (decoded audio, measured bit rate in kbit/s).

    The output has the input's length and timing: the codec's delay (``codec_delay``) is removed and its padding
    cut (or the rare short tail padded with zeros). Samples are clipped to the int16 range first, as a real
    encoder's input is.
    """
    kbps = nearest_rate(codec, kbps) if kbps is not None else None
    x = clip_int16(np.asarray(x, dtype=np.float64))
    if x.size == 0:
        return x, 0.0
    y, size = _encode_decode(x, codec, kbps)
    delay = codec_delay(codec, kbps)
    y = y[delay : delay + x.size] if delay >= 0 else np.concatenate([np.zeros(-delay), y])[: x.size]
    if y.size < x.size:
        y = np.concatenate([y, np.zeros(x.size - y.size)])
    return y, size * 8 / (x.size / RATE) / 1000
