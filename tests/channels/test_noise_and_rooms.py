"""Recorded noise at the requested SNR, MUSAN-style folders and manifests as sources, reverberation, clipping, ramps."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from nano8k.data.channel.audio_pool import AudioPool
from nano8k.data.channel.effects import Clipping, EffectContext, GainRamp, Noise, Reverb
from nano8k.data.channel.telephone import TelephoneChannel
from nano8k.errors import DataError

from .conftest import SPEECH, speech_8k, write_noise_folder


def _snr(clean: np.ndarray, noisy: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(clean**2) / np.sum((noisy - clean) ** 2)))


@pytest.mark.parametrize("kind", ["white", "pink", "recorded"])
@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_noise_lands_within_1_db_of_the_drawn_snr(tmp_path, kind, snr):
    pool = AudioPool(write_noise_folder(tmp_path))
    x = speech_8k(4.0) * 0.3
    for band_limited in (False, True):
        params: dict = {}
        y = Noise(kinds=(kind,), snr_db=(snr, snr + 5.0), band_limited=band_limited).apply(
            x, np.random.default_rng(int(snr)), EffectContext(noise=pool, params=params)
        )
        assert snr <= params["snr_db"] <= snr + 5.0 and params["noise"] == kind
        assert abs(_snr(x, y) - params["snr_db"]) <= 1.0
        if kind == "recorded":
            assert "noise-" in params["noise_source"]


def test_musan_folder_and_manifests_are_sources(tmp_path):
    pool = AudioPool(write_noise_folder(tmp_path / "musan"))
    assert len(pool) == 3 and abs(pool.total_seconds - 5.7) < 1e-6  # README / ANNOTATIONS are not audio
    short = pool.clips[[c.audio.name for c in pool.clips].index("noise-free-sound-0001.wav")]
    rng = np.random.default_rng(0)
    for _ in range(20):  # any clip, looped when shorter than asked (0.7 s clip -> 2 s)
        segment, source = pool.segment(16000, rng)
        assert segment.shape == (16000,) and np.abs(segment).max() > 0
    assert short.duration == pytest.approx(0.7)
    manifest = tmp_path / "noise.jsonl"
    manifest.write_text(
        "".join(f'{{"key": "n{i}", "source": "{c.audio}", "target": "-"}}\n' for i, c in enumerate(pool.clips))
    )
    assert len(AudioPool(manifest)) == 3


def test_missing_or_empty_sources_are_start_up_errors(tmp_path):
    with pytest.raises(DataError, match="noise source not found: .*nowhere"):
        TelephoneChannel({"mobile": 1.0}, noise=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="rir source .*empty holds no audio"):
        TelephoneChannel({"voip": 1.0}, rir=str(tmp_path / "empty"))


def test_reverb_keeps_length_timing_and_level(tmp_path):
    rate = 16000
    t = np.arange(int(0.4 * rate)) / rate
    rir = np.random.default_rng(1).standard_normal(t.size) * np.exp(-t / 0.08) * 0.05
    rir[: int(0.01 * rate)] = 0.0
    rir[int(0.01 * rate)] = 1.0  # direct path 10 ms in
    (tmp_path / "rirs").mkdir()
    sf.write(str(tmp_path / "rirs" / "room1.wav"), rir, rate, subtype="FLOAT")
    x = speech_8k(3.0) * 0.3
    params: dict = {}
    y = Reverb().apply(
        x, np.random.default_rng(0), EffectContext(rir=AudioPool(tmp_path / "rirs", "rir"), params=params)
    )
    assert y.shape == x.shape and params["rir_source"].endswith("room1.wav")
    corr = np.correlate(y, x[400:-400], mode="valid")
    assert int(np.argmax(corr)) - 400 == 0  # aligned on the direct path
    assert abs(np.sqrt(np.mean(y**2)) - np.sqrt(np.mean(x**2))) < 1e-6
    assert _snr(x, y) < 15.0  # and audibly reverberant


def test_clipping_and_gain_ramps():
    x = speech_8k(4.0) * 0.3
    params: dict = {}
    y = Clipping(fraction=(0.01, 0.01)).apply(x, np.random.default_rng(0), EffectContext(params=params))
    peak = np.abs(y).max()
    assert abs(np.mean(np.abs(y) >= peak - 1e-12) - 0.01) < 0.002 and peak < np.abs(x).max()
    y = GainRamp(depth_db=(6.0, 6.0), period_s=(0.5, 0.5)).apply(
        x, np.random.default_rng(0), EffectContext(params=params)
    )
    gain_db = 20 * np.log10(np.abs(y[np.abs(x) > 1e-3] / x[np.abs(x) > 1e-3]))
    assert gain_db.max() <= 6.0 + 1e-9 and gain_db.min() >= -6.0 - 1e-9 and gain_db.std() > 1.0


def test_rir_folders_leave_out_noise_recordings_and_spans_run_to_the_file_end(tmp_path):
    room = tmp_path / "real_rirs_isotropic_noises"
    room.mkdir()
    sf.write(str(room / "air_type1_air_binaural_stairway_1_1_90.wav"), np.r_[1.0, np.zeros(799)], 8000)
    sf.write(str(room / "RVB2014_type1_noise_largeroom1_1.wav"), np.full(800, 0.1), 8000)
    pool = AudioPool(room, "rir")
    assert [c.audio.name for c in pool.clips] == ["air_type1_air_binaural_stairway_1_1_90.wav"]
    assert len(AudioPool(room, "noise")) == 2  # as background noise, both are sound
    (tmp_path / "kaldi").mkdir()
    (tmp_path / "kaldi" / "wav.scp").write_text(f"r1 {room / 'RVB2014_type1_noise_largeroom1_1.wav'}\n")
    (tmp_path / "kaldi" / "segments").write_text("s1 r1 0.02 -1\n")
    (tmp_path / "kaldi" / "text").write_text("s1 -\n")
    clip = AudioPool(tmp_path / "kaldi").clips[0]
    assert clip.offset == pytest.approx(0.02) and clip.duration == pytest.approx(0.08)  # 0.1 s file, from 0.02 s


def test_level_leaves_headroom_so_only_the_clipping_effect_clips():
    from nano8k.data.channel.telephone import TelephoneChannel, utterance_rng

    wave, rate = sf.read(str(SPEECH / "en_real_03.16k.wav"), dtype="float32")
    import torch

    loud = TelephoneChannel(
        custom_profiles={
            "landline": [
                {"effect": "level", "level_dbfs": [-12.0, -12.0]},
                {"effect": "gain_ramp", "depth_db": [10.0, 10.0]},
                {"effect": "level", "level_dbfs": [-12.0, -12.0]},
                {"effect": "codec", "codecs": ["ulaw"]},
            ]
        }
    )
    for i in range(20):
        params = loud.simulate(torch.from_numpy(wave), rate, utterance_rng(0, f"u{i}"))[2]
        assert params["clipped_fraction"] == 0.0  # the peak cap (-1 dBFS) keeps the codec's input unclipped
        assert params["level_dbfs"] <= -12.0 + 1e-9
    clipping = TelephoneChannel(
        custom_profiles={
            "landline": [
                {"effect": "level"},
                {"effect": "clipping"},
                {"effect": "level", "level_dbfs": [-3.0, -3.0], "max_peak_dbfs": 3.0},
                {"effect": "codec", "codecs": ["ulaw"]},
            ]
        }
    )
    assert clipping.simulate(torch.from_numpy(wave), rate, utterance_rng(0, "u"))[2]["clipped_fraction"] > 0


@pytest.mark.parametrize(
    "effect, field, value",
    [
        ("gain_ramp", "period_s", [0.0, 0.0]),
        ("gain_ramp", "depth_db", 5),
        ("hum", "hum_db", -20),
        ("hum", "freqs_hz", []),
        ("noise", "snr_db", 10),
        ("noise", "snr_db", ["a", "b"]),
        ("reverb", "max_seconds", -1),
        ("packet_loss", "frame_ms", 0),
        ("level", "level_dbfs", [-10.0, 5.0]),
        ("clipping", "fraction", [0.5, 2.0]),
        ("codec", "codecs", "gsm"),
        ("noise", "kinds", "white"),
        ("packet_loss", "concealment", []),
    ],
)
def test_every_effect_setting_is_checked_at_start_up_naming_the_field(effect, field, value):
    from nano8k.data.channel.telephone import TelephoneChannel

    with pytest.raises(ValueError, match=rf"profile 'landline' effect 0 \({effect}\): {field} must"):
        TelephoneChannel(custom_profiles={"landline": [{"effect": effect, field: value}]})
