"""Telephone channel (landline profile): real G.711 tables, band-pass depth, SNR accuracy, seeding, output rate."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.signal
import torch

from nano8k.data.audio import load_audio, resample
from nano8k.data.channel import g711
from nano8k.data.channel.telephone import TelephoneChannel, stable_seed, utterance_rng

from .conftest import SPEECH

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop")  # stdlib until Python 3.13: the reference G.711 implementation

PCM = np.arange(-32768, 32768, dtype=np.int16)
CODES = np.arange(256, dtype=np.uint8)


@pytest.mark.parametrize("law,enc,dec", [("ulaw", "lin2ulaw", "ulaw2lin"), ("alaw", "lin2alaw", "alaw2lin")])
def test_g711_matches_the_standard_tables(law, enc, dec):
    ref_codes = np.frombuffer(getattr(audioop, enc)(PCM.tobytes(), 2), dtype=np.uint8)
    np.testing.assert_array_equal(g711.encode(PCM, law), ref_codes)  # all 65536 int16 inputs
    ref_pcm = np.frombuffer(getattr(audioop, dec)(CODES.tobytes(), 2), dtype=np.int16)
    np.testing.assert_array_equal(g711.decode(CODES, law), ref_pcm)  # all 256 codes
    round_trip = g711.decode(g711.encode(PCM, law), law)
    ref_round = np.frombuffer(getattr(audioop, dec)(ref_codes.tobytes(), 2), dtype=np.int16)
    np.testing.assert_array_equal(round_trip, ref_round)


def test_g711_is_not_torchaudio_mu_law():
    import torchaudio.functional as F

    x = torch.linspace(-1, 1, 1001)
    ta = F.mu_law_decoding(F.mu_law_encoding(x, 256), 256).numpy()
    ours = g711.round_trip(x.numpy(), "ulaw")
    assert np.abs(ta - ours).max() > 1e-3


def _band_ratio_db(x: np.ndarray, rate: int = 8000) -> float:
    freqs, psd = scipy.signal.welch(x, rate, nperseg=1024)
    inside = (freqs >= 300) & (freqs <= 3400)
    return 10 * np.log10(psd[~inside].sum() / psd[inside].sum())


def _landline(
    codec: str = "ulaw",
    snr=(15.0, 25.0),
    noise_prob: float = 1.0,
    kinds=("white", "pink"),
    hum_prob: float = 0.0,
    **channel,
) -> TelephoneChannel:
    """The landline chain with chosen settings (the built-in one draws codec, noise kind and hum per utterance)."""
    effects = [
        {"effect": "bandpass"},
        {"effect": "level", "level_dbfs": [-30.0, -15.0]},
        {"effect": "noise", "kinds": list(kinds), "snr_db": list(snr), "band_limited": True, "prob": noise_prob},
        {"effect": "hum", "prob": hum_prob},
        {"effect": "codec", "codecs": [codec]},
    ]
    return TelephoneChannel(custom_profiles={"landline": effects}, **channel)


@pytest.mark.parametrize("codec", ["ulaw", "alaw", "none"])
def test_out_of_band_energy_drops_30_db(codec):
    white = torch.from_numpy(np.random.default_rng(0).standard_normal(16000 * 4).astype(np.float32) * 0.1)
    out, rate, params = _landline(codec, snr=(20, 20)).simulate(white, 16000, np.random.default_rng(1))
    assert rate == 8000 and params["codec"] == codec and params["profile"] == "landline"
    before = _band_ratio_db(resample(white, 16000, 8000).numpy())
    after = _band_ratio_db(out.numpy())
    assert before - after >= 30.0, (before, after)


def _snr(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    return float(10 * torch.log10(clean.pow(2).mean() / (noisy - clean).pow(2).mean()))


@pytest.mark.parametrize("codec", ["ulaw", "alaw", "none"])
@pytest.mark.parametrize("snr", [15.0, 20.0, 25.0])
def test_snr_within_1_db_of_request(codec, snr):
    wave, rate = load_audio(SPEECH / "en_tts_01.16k.wav")
    base = dict(codec=codec, snr=(snr, snr), kinds=("white",))
    noisy, _, params = _landline(noise_prob=1.0, **base).simulate(wave, rate, np.random.default_rng(7))
    clean, _, _ = _landline(noise_prob=0.0, **base).simulate(wave, rate, np.random.default_rng(7))
    assert params["snr_db"] == snr
    assert abs(_snr(clean, noisy) - snr) <= (0.05 if codec == "none" else 1.0)


def test_sampled_snr_and_level_are_in_range_and_reported():
    wave, rate = load_audio(SPEECH / "zh_syl_01.16k.wav")
    for i in range(3):
        noisy, _, params = _landline("none", kinds=("pink",)).simulate(wave, rate, np.random.default_rng(i))
        clean, _, _ = _landline("none", kinds=("pink",), noise_prob=0.0).simulate(wave, rate, np.random.default_rng(i))
        assert 15.0 <= params["snr_db"] <= 25.0 and -30.0 <= params["level_dbfs"] <= -15.0
        assert abs(_snr(clean, noisy) - params["snr_db"]) < 0.05
        rms_db = 20 * np.log10(float(clean.pow(2).mean().sqrt()))
        assert abs(rms_db - params["level_dbfs"]) < 0.1


def test_seeded_per_utterance():
    wave, rate = load_audio(SPEECH / "en_tts_02.16k.wav")
    channel = TelephoneChannel({"landline": 1.0, "mobile": 1.0, "voip": 1.0})
    a = channel.simulate(wave, rate, utterance_rng(3, "utt-a"))
    b = channel.simulate(wave, rate, utterance_rng(3, "utt-a"))
    c = channel.simulate(wave, rate, utterance_rng(3, "utt-b"))
    assert torch.equal(a[0], b[0]) and a[2] == b[2]
    assert not torch.equal(a[0], c[0])
    audio, out_rate = channel.transmit(wave, rate, utterance_rng(3, "utt-a"))  # the training path: audio only
    assert torch.equal(audio, a[0]) and out_rate == a[1] == a[2]["rate"]


def test_stable_seed_does_not_depend_on_python_hash():
    import os
    import subprocess
    import sys

    code = "from nano8k.data.channel.telephone import stable_seed; print(stable_seed(1, 'k', 2))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out == f"{stable_seed(1, 'k', 2)}\n"
    assert stable_seed(1, "k", 2) != stable_seed(1, "k", 3)


def test_upsampled_output_and_hum():
    wave, rate = load_audio(SPEECH / "en_real_01.8k.wav")
    out, out_rate, params = _landline(hum_prob=1.0, output_rate=16000).simulate(wave, rate, np.random.default_rng(0))
    assert out_rate == 16000 and abs(out.numel() - 2 * wave.numel()) <= 2
    assert params["hum_hz"] in (50.0, 60.0) and -35 <= params["hum_db"] <= -20
    assert out.abs().max() <= 1.0


def test_config_is_validated():
    with pytest.raises(ValueError, match="stop_lo"):
        TelephoneChannel(custom_profiles={"landline": [{"effect": "bandpass", "pass_band_hz": [200.0, 3200.0]}]})
    with pytest.raises(ValueError, match="snr_db"):
        _landline(snr=(25.0, 15.0))
    with pytest.raises(ValueError, match="profile 'landline' effect 0.*unknown field.*'cutoff'"):
        TelephoneChannel(custom_profiles={"landline": [{"effect": "bandpass", "cutoff": 3000}]})
    with pytest.raises(ValueError, match="unknown effect 'echo'"):
        TelephoneChannel(custom_profiles={"landline": [{"effect": "echo"}]})
    with pytest.raises(ValueError, match="unknown telephone profile 'satellite'.*landline.*mobile.*voip"):
        TelephoneChannel({"satellite": 1.0})
    with pytest.raises(ValueError, match="output_rate"):
        TelephoneChannel(output_rate=11025)
