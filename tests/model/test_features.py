"""Frontend parity with the reference goldens, LFR rule, and 8 kHz handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from nano8k.model.features import FrontendConfig, apply_lfr, extract_features, fbank, resample
from tests.conftest import TINY_DIR

SAMPLES = ["s1_16k_1p30s", "s2_16k_0p83s", "s3_8k_1p05s"]
# torchaudio's fbank under torch 2.14 differs from the torch 2.9 run that made the goldens by float32 FFT
# rounding: <= 5e-5 on 16 kHz inputs, <= 3.5e-4 in the near-empty 4-8 kHz bins of the upsampled 8 kHz clip.
FEATURE_TOLERANCE = 1e-3


def _wav(name: str) -> tuple[torch.Tensor, int]:
    audio, rate = sf.read(TINY_DIR / f"{name}.wav", dtype="float32")
    return torch.from_numpy(audio), rate


@pytest.mark.parametrize("name", SAMPLES)
def test_waveform_fbank_and_feats_match_reference(name, golden):
    audio, rate = _wav(name)
    assert np.array_equal((audio.numpy() * 32768).astype(np.int16), golden[f"{name}/wav_file_samples"])
    wave16 = resample(audio, rate, 16000)
    assert np.abs(wave16.numpy() - golden[f"{name}/waveform_16k"]).max() <= 1e-6
    assert np.abs(fbank(wave16).numpy() - golden[f"{name}/fbank"]).max() <= FEATURE_TOLERANCE
    feats = extract_features(audio, rate, FrontendConfig())
    assert feats.shape == golden[f"{name}/feats"].shape
    assert np.abs(feats.numpy() - golden[f"{name}/feats"]).max() <= FEATURE_TOLERANCE


def test_lfr_of_golden_fbank_is_exact(golden):
    for name in SAMPLES:
        stacked = apply_lfr(torch.from_numpy(golden[f"{name}/fbank"]))
        assert np.array_equal(stacked.numpy(), golden[f"{name}/feats"])


@pytest.mark.parametrize("frames", list(range(1, 40)) + [127, 128, 1499])
def test_lfr_matches_the_reference_padding_rule(frames):
    fb = torch.randn(frames, 3)
    rows = math.ceil(frames / 6)
    padded = [fb[0]] * 3 + list(fb)
    padded += [fb[-1]] * max(0, (rows - 1) * 6 + 7 - len(padded))
    expected = torch.stack([torch.cat(padded[6 * i : 6 * i + 7]) for i in range(rows)])
    assert torch.equal(apply_lfr(fb), expected)


def test_scaling_by_32768_is_applied():
    wave = 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(0))  # broadband: no bin at the log floor
    ours = fbank(wave)
    import torchaudio

    unscaled = torchaudio.compliance.kaldi.fbank(
        wave[None], num_mel_bins=80, dither=0.0, energy_floor=0.0, window_type="hamming"
    )
    assert torch.allclose(ours - unscaled, torch.full_like(ours, 2 * math.log(32768)), atol=1e-3)


def test_dither_is_configurable():
    wave = torch.zeros(8000)
    wave[4000:] = 0.05 * torch.sin(torch.arange(4000) * 0.3)
    torch.manual_seed(0)
    plain = fbank(wave, FrontendConfig(dither=0.0))
    dithered = fbank(wave, FrontendConfig(dither=1.0))
    assert torch.equal(plain, fbank(wave, FrontendConfig(dither=0.0)))
    assert not torch.equal(plain, dithered)


def test_native_8k_features_have_the_same_width():
    audio, rate = _wav("s3_8k_1p05s")
    native = extract_features(audio, rate, FrontendConfig(sample_rate=8000))
    resampled = extract_features(audio, rate, FrontendConfig(sample_rate=16000))
    assert native.shape[1] == resampled.shape[1] == 560
    assert native.shape[0] == resampled.shape[0]  # 10 ms shift at either rate
    assert not torch.allclose(native, resampled)


def test_bad_frontend_settings_and_input_are_refused():
    with pytest.raises(ValueError, match="sample_rate must be 8000 or 16000"):
        FrontendConfig(sample_rate=22050)
    with pytest.raises(ValueError, match="cmvn_file"):
        FrontendConfig.from_funasr({"cmvn_file": "am.mvn"})
    with pytest.raises(ValueError, match="empty waveform"):
        fbank(torch.zeros(0))
    with pytest.raises(ValueError, match="1-D mono"):
        fbank(torch.zeros(2, 100))
    assert FrontendConfig.from_funasr({"fs": 16000}).dither == 1.0  # absent key = reference default
