"""ITU-T G.711 mu-law and A-law companding (the standard tables, as in the Sun reference g711.c), in numpy."""

from __future__ import annotations

import functools

import numpy as np

_BIAS = 0x84
_ULAW_CLIP = 8159
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _ulaw_encode_int16(pcm: np.ndarray) -> np.ndarray:
    val = pcm.astype(np.int32) >> 2  # 16-bit input, 14-bit magnitude scale
    mask = np.where(val < 0, 0x7F, 0xFF)
    val = np.minimum(np.abs(val), _ULAW_CLIP) + (_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, val, side="left")  # first seg with val <= seg_end
    code = (seg << 4) | ((val >> (seg + 1)) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _ulaw_decode_codes(codes: np.ndarray) -> np.ndarray:
    u = ~codes.astype(np.int32) & 0xFF
    t = ((u & 0x0F) << 3) + _BIAS
    t = t << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _BIAS - t, t - _BIAS).astype(np.int16)


def _alaw_encode_int16(pcm: np.ndarray) -> np.ndarray:
    val = pcm.astype(np.int32) >> 3  # 16-bit input, 13-bit scale
    mask = np.where(val >= 0, 0xD5, 0x55)
    val = np.where(val >= 0, val, -val - 1)
    seg = np.searchsorted(_ALAW_SEG_END, val, side="left")
    quant = np.where(seg < 2, val >> 1, val >> np.maximum(seg, 1)) & 0xF
    code = np.where(seg >= 8, 0x7F, (seg << 4) | quant)
    return (code ^ mask).astype(np.uint8)


def _alaw_decode_codes(codes: np.ndarray) -> np.ndarray:
    a = codes.astype(np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


@functools.cache
def _tables(law: str) -> tuple[np.ndarray, np.ndarray]:
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    codes = np.arange(256, dtype=np.uint8)
    if law == "ulaw":
        return _ulaw_encode_int16(pcm), _ulaw_decode_codes(codes)
    if law == "alaw":
        return _alaw_encode_int16(pcm), _alaw_decode_codes(codes)
    raise ValueError(f"unknown G.711 law {law!r} (ulaw or alaw)")


def encode(pcm16: np.ndarray, law: str) -> np.ndarray:
    """int16 PCM -> 8-bit G.711 codes (``law`` is ``ulaw`` or ``alaw``)."""
    return _tables(law)[0][pcm16.astype(np.int32) + 32768]


def decode(codes: np.ndarray, law: str) -> np.ndarray:
    """8-bit G.711 codes -> int16 PCM."""
    return _tables(law)[1][codes.astype(np.uint8)]


def round_trip(waveform: np.ndarray, law: str) -> np.ndarray:
    """Float [-1, 1] -> int16 (saturating) -> G.711 -> float; the codec's quantisation applied to a signal."""
    pcm = np.clip(np.round(waveform * 32768.0), -32768, 32767).astype(np.int16)
    return decode(encode(pcm, law), law).astype(np.float32) / 32768.0
