"""Codec round trips: real encoders, the signal changed the way each codec changes it, length and timing kept."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from nano8k.data.channel import codecs
from nano8k.data.channel.effects import Codec, EffectContext
from nano8k.data.channel.telephone import PROFILES

from .conftest import speech_8k

# (codec, kbit/s asked, waveform SNR range in dB after alignment, measured bit rate range): parametric codecs (GSM,
# AMR, Opus) keep the spectrum but not the waveform, so their SNR is low; waveform coders (G.711, ADPCM) keep it.
EXPECTED = {
    "ulaw": (None, (30, 45), (64, 64)),
    "alaw": (None, (30, 45), (64, 64)),
    "gsm": (None, (8, 25), (12.5, 13.5)),
    "g721": (None, (15, 35), (31.5, 32.5)),
    "g723_24": (None, (12, 30), (23.5, 24.5)),
    "g723_40": (None, (20, 40), (39.5, 40.5)),
    "ima_adpcm": (None, (12, 30), (31, 34)),
    "ms_adpcm": (None, (12, 30), (31, 34)),
    "vox_adpcm": (None, (12, 30), (31.5, 32.5)),
    "opus": (12.0, (3, 20), (9, 15)),
    "mp3": (16.0, (8, 30), (15, 17)),
    "amr_nb": (12.2, (1, 15), (12, 13.5)),
}
BANDS = ((300, 800), (800, 1500), (1500, 2500), (2500, 3400))


def _band_levels_db(x: np.ndarray) -> np.ndarray:
    freqs, psd = scipy.signal.welch(x, 8000, nperseg=512)
    return np.array([10 * np.log10(psd[(freqs >= lo) & (freqs < hi)].sum()) for lo, hi in BANDS])


def test_every_listed_codec_runs_here():
    assert set(codecs.supported_codecs()) == set(codecs.CODECS)  # libsndfile 1.2 + PyAV provide them all


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_round_trip_changes_the_signal_like_the_codec(name):
    kbps, snr_range, rate_range = EXPECTED[name]
    x = speech_8k() * 0.5
    y, measured = codecs.round_trip(x, name, kbps)
    assert y.shape == x.shape and np.isfinite(y).all()  # same length: delay removed, padding cut
    snr = 10 * np.log10(np.sum(x**2) / np.sum((y - x) ** 2))
    assert snr_range[0] <= snr <= snr_range[1], snr  # changed (not a copy), but aligned (not noise)
    assert rate_range[0] <= measured <= rate_range[1], measured
    assert np.abs(_band_levels_db(y) - _band_levels_db(x)).max() < 6.0  # the speech band survives
    y2, _ = codecs.round_trip(x, name, kbps)
    np.testing.assert_array_equal(y, y2)  # a codec is deterministic


def test_codec_effect_is_reproducible_per_draw_and_records_what_it_did():
    x = speech_8k(3.0) * 0.3
    effect = Codec(codecs=("opus", "mp3", "gsm"), bitrate_kbps=(8.0, 16.0))
    runs = []
    for seed in (1, 1, 2):
        params: dict = {}
        runs.append((effect.apply(x, np.random.default_rng(seed), EffectContext(params=params)), params))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1] and runs[0][1]["codec"] in ("opus", "mp3", "gsm")
    assert runs[0][1]["codecs"] == [runs[0][1]["codec"]] and len(runs[0][1]["codec_kbps"]) == 1


def test_unknown_or_unavailable_codec_is_named_with_what_the_machine_supports(monkeypatch):
    with pytest.raises(codecs.CodecError, match=r"unknown codec 'amr'; this machine supports: none, ulaw, alaw, gsm"):
        Codec(codecs=("amr",))
    monkeypatch.setattr(codecs, "supported_codecs", lambda: ("none", "ulaw", "alaw", "gsm"))
    with pytest.raises(
        codecs.CodecError,
        match=r"'amr_nb' does not run on this machine \(PyAV [\d.]+ has no "
        r"libopencore_amrnb encoder; .*requirements.lock.*'av>=14,<18'\); it "
        r"supports: none, ulaw, alaw, gsm",
    ):
        Codec(codecs=("amr_nb",))
    with pytest.raises(codecs.CodecError, match=r"'opus' does not run.*lacks OPUS|'opus' does not run.*PyAV"):
        Codec(codecs=("opus",))
    monkeypatch.undo()
    with pytest.raises(codecs.CodecError, match=r"bitrate_kbps \[2.0, 8.0\] must lie within \[6.0, 64.0\]"):
        Codec(codecs=("opus",), bitrate_kbps=(2.0, 8.0))
    with pytest.raises(ValueError, match=r"bitrate_kbps applies to the variable-rate codecs.*\['gsm'\] has none"):
        Codec(codecs=("gsm",), bitrate_kbps=(1.0, 2.0))


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_codec_a_built_in_profile_names_runs_in_this_environment(profile):
    """A new release of a codec library (PyAV 18 dropped AMR-NB) fails here, not in a user's first command."""
    named = sorted({name for effect in PROFILES[profile] if effect["effect"] == "codec" for name in effect["codecs"]})
    missing = {name: str(err) for name in named if (err := _refusal(name)) is not None}
    assert not missing, f"profile {profile!r} names codecs this environment cannot run: {missing}"


def _refusal(codec: str) -> Exception | None:
    try:
        codecs.check_codec(codec)
    except codecs.CodecError as err:
        return err
    return None


def test_nearest_rates_are_the_codecs_own():
    assert codecs.nearest_rate("amr_nb", 11.0) == 10.2 and codecs.nearest_rate("amr_nb", 5.0) == 5.15
    assert codecs.nearest_rate("mp3", 13.0) == 16.0 and codecs.nearest_rate("opus", 11.6) == 12.0
