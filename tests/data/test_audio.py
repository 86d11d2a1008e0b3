"""Audio decoding (formats, multichannel policy) and resampling consistency of features across input rates."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch

from nano8k.data.audio import load_audio, probe_audio
from nano8k.data.pipeline.specaugment import kaldi_mel_centres
from nano8k.errors import AudioError
from nano8k.model.features import FrontendConfig, fbank, resample

from .conftest import SPEECH, tone


@pytest.mark.parametrize("fmt,ext", [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg")])
def test_formats_decode_to_float32_mono(tmp_path, fmt, ext):
    t = np.arange(8000) / 8000
    wave = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    path = tmp_path / f"x.{ext}"
    sf.write(str(path), wave, 8000, format=fmt, subtype="VORBIS" if fmt == "OGG" else "PCM_16")
    out, rate = load_audio(path)
    assert rate == 8000 and out.dtype == torch.float32 and out.dim() == 1
    assert abs(out.numel() - 8000) <= 64
    tol = 0.05 if fmt == "OGG" else 1e-4
    assert float((out[:7900] - torch.from_numpy(wave[:7900])).abs().max()) < tol


def test_stereo_follows_the_multichannel_policy(tmp_path):
    left = np.full(800, 0.5, dtype=np.float32)
    right = np.full(800, -0.1, dtype=np.float32)
    sf.write(str(tmp_path / "s.wav"), np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"s\.wav has 2 channels and the utterance names none.*data\.multichannel"):
        load_audio(tmp_path / "s.wav")  # the default never mixes agent and customer silently
    assert torch.allclose(load_audio(tmp_path / "s.wav", multichannel="mix")[0], torch.full((800,), 0.2))
    assert torch.equal(load_audio(tmp_path / "s.wav", multichannel="first")[0], torch.full((800,), 0.5))
    assert torch.allclose(load_audio(tmp_path / "s.wav", channel=1)[0], torch.full((800,), -0.1))
    assert torch.allclose(load_audio(tmp_path / "s.wav", channel=(0, 1))[0], torch.full((800,), 0.2))
    with pytest.raises(AudioError, match=r"channel 2 does not exist in .*s\.wav \(2 channel"):
        load_audio(tmp_path / "s.wav", channel=2)
    assert probe_audio(tmp_path / "s.wav").channels == 2


def test_decode_errors_name_the_file(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(AudioError, match="junk.wav"):
        load_audio(tmp_path / "junk.wav")
    sf.write(str(tmp_path / "zero.wav"), np.zeros(0, dtype=np.float32), 8000)
    with pytest.raises(AudioError, match="zero-length.*zero.wav"):
        load_audio(tmp_path / "zero.wav")
    nan = np.zeros(800, dtype=np.float32)
    nan[10] = np.nan
    sf.write(str(tmp_path / "nan.wav"), nan, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN.*nan.wav"):
        load_audio(tmp_path / "nan.wav")
    with pytest.raises(AudioError, match="not found.*missing.wav"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "folder.wav").mkdir()
    for read in (load_audio, probe_audio):
        with pytest.raises(AudioError, match="a directory, not an audio file: .*folder.wav"):
            read(tmp_path / "folder.wav")


def test_8_16_44k_inputs_give_consistent_features(tmp_path):
    """The same band-limited speech stored at 8, 16 and 44.1 kHz gives the same 16 kHz fbank below 3 kHz."""
    wave, rate = load_audio(SPEECH / "en_real_03.16k.wav")
    assert rate == 16000
    sos = scipy.signal.butter(10, 3400, fs=16000, output="sos")
    speech = torch.from_numpy(scipy.signal.sosfiltfilt(sos, wave.numpy()).astype(np.float32))
    reference = fbank(speech, FrontendConfig())
    low = torch.from_numpy(kaldi_mel_centres(80, 16000) < 3000)
    for stored_rate in (8000, 16000, 44100):
        path = tmp_path / f"s{stored_rate}.wav"
        sf.write(str(path), resample(speech, 16000, stored_rate).numpy(), stored_rate, subtype="PCM_16")
        loaded, loaded_rate = load_audio(path)
        assert loaded_rate == stored_rate
        feats = fbank(resample(loaded, loaded_rate, 16000), FrontendConfig())
        assert feats.shape == reference.shape
        diff = (feats - reference)[:, low].abs()
        assert float(diff.mean()) < 0.05, (stored_rate, float(diff.mean()))
        assert float(diff.mean(dim=0).max()) < 0.1
    # the comparison is sensitive: the 8 kHz copy has nothing above 4 kHz while the others do
    eight = fbank(resample(load_audio(tmp_path / "s8000.wav")[0], 8000, 16000), FrontendConfig())
    high = torch.from_numpy(kaldi_mel_centres(80, 16000) > 4500)
    assert (
        float(
            (eight - fbank(resample(load_audio(tmp_path / "s44100.wav")[0], 44100, 16000), FrontendConfig()))[:, high]
            .abs()
            .mean()
        )
        > 1.0
    )


def test_probe_reports_header(tmp_path):
    info = probe_audio(tone(tmp_path / "t.wav", 1.5, rate=16000, channels=2))
    assert (info.sample_rate, info.channels, info.frames) == (16000, 2, 24000)
    assert info.duration == pytest.approx(1.5)
