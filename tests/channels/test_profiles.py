"""Channel profiles: built-in chains drawn by weight per (seed, key, epoch), start-up errors, preview, preflight."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
import torch

from nano8k.commands.simulate import main as simulate_main
from nano8k.data.channel.telephone import PROFILES, TelephoneChannel, utterance_rng

from .conftest import SPEECH, write_noise_folder

WIDEBAND = SPEECH / "en_real_03.16k.wav"


def _wave() -> tuple[torch.Tensor, int]:
    x, rate = sf.read(str(WIDEBAND), dtype="float32")
    return torch.from_numpy(x), rate


@pytest.mark.parametrize("name", list(PROFILES))
@pytest.mark.parametrize("output_rate", [8000, 16000])
def test_each_profile_is_reproducible_per_seed_key_epoch(name, output_rate):
    wave, rate = _wave()
    channel = TelephoneChannel({name: 1.0}, output_rate=output_rate)
    a = channel.simulate(wave, rate, utterance_rng(1, "call-7", 0))
    b = channel.simulate(wave, rate, utterance_rng(1, "call-7", 0))
    c = channel.simulate(wave, rate, utterance_rng(1, "call-7", 1))
    assert torch.equal(a[0], b[0]) and a[2] == b[2] and a[2]["profile"] == name
    assert not torch.equal(a[0], c[0])
    assert a[1] == output_rate and abs(a[0].numel() - wave.numel() * output_rate / rate) <= 2
    assert a[0].abs().max() <= 1.0 and torch.isfinite(a[0]).all()


def test_profiles_are_drawn_by_weight():
    wave, rate = _wave()
    wave = wave[:4000]
    channel = TelephoneChannel({"landline": 0.6, "archive": 0.3, "mobile": 0.1})
    counts = Counter(channel.simulate(wave, rate, utterance_rng(0, f"u{i}"))[2]["profile"] for i in range(300))
    assert abs(counts["landline"] / 300 - 0.6) < 0.1 and abs(counts["archive"] / 300 - 0.3) < 0.1
    assert 0 < counts["mobile"] < 60


def test_built_in_chains():
    wave, rate = _wave()
    seen = {name: TelephoneChannel({name: 1.0}).simulate(wave, rate, utterance_rng(0, "k"))[2] for name in PROFILES}
    assert seen["landline"]["codecs"] in (["ulaw"], ["alaw"])
    assert seen["mobile"]["codecs"][0] == "gsm" and seen["mobile"]["codecs"][1] in ("ulaw", "alaw")
    assert seen["voip"]["codecs"] == ["opus"] and 8 <= seen["voip"]["codec_kbps"][0] <= 26
    assert seen["archive"]["codecs"][1] in ("mp3", "vox_adpcm", "gsm", "ima_adpcm")


def test_source_effects_are_off_until_a_source_is_named(tmp_path):
    off = TelephoneChannel({"mobile": 1.0})
    assert "noise recorded 5-20 dB p=0.7 [off: no data.telephone.noise]" in off.describe()[0]
    assert "reverb p=0.2 [off: no data.telephone.rir]" in off.describe()[0]
    noise = write_noise_folder(tmp_path)
    on = TelephoneChannel({"mobile": 1.0}, noise=str(noise))
    assert "[off: no data.telephone.noise]" not in on.describe()[0]
    wave, rate = _wave()
    drawn = [on.simulate(wave, rate, utterance_rng(0, f"u{i}"))[2] for i in range(10)]
    assert any("noise-" in d.get("noise_source", "") and 5 <= d["snr_db"] <= 20 for d in drawn)
    assert not any("noise_source" in off.simulate(wave, rate, utterance_rng(0, f"u{i}"))[2] for i in range(10))


def test_custom_profiles_and_start_up_errors():
    custom = TelephoneChannel(
        {"trunk": 1.0},
        custom_profiles={
            "trunk": [
                {"effect": "bandpass"},
                {"effect": "codec", "codecs": ["g723_24"]},
                {"effect": "packet_loss", "loss_rate": [0.05, 0.05], "concealment": ["repeat"]},
            ]
        },
    )
    wave, rate = _wave()
    params = custom.simulate(wave, rate, utterance_rng(0, "k"))[2]
    assert params["codecs"] == ["g723_24"] and params["concealment"] == "repeat"
    with pytest.raises(
        ValueError,
        match=r"profile 'trunk' effect 1 \(codec\): unknown codec 'g729'; this machine "
        r"supports: none, ulaw, alaw, gsm, g721",
    ):
        TelephoneChannel(
            {"trunk": 1.0}, custom_profiles={"trunk": [{"effect": "bandpass"}, {"effect": "codec", "codecs": ["g729"]}]}
        )
    with pytest.raises(ValueError, match="profile weights"):
        TelephoneChannel({"landline": -1.0})


def test_the_channel_travels_as_settings_only():
    import pickle

    channel = TelephoneChannel({"voip": 0.5, "mobile": 0.5})
    channel.describe()  # builds the effects
    copy = pickle.loads(pickle.dumps(channel))
    assert copy == channel and set(vars(copy)) == {"profiles", "custom_profiles", "noise", "rir", "output_rate"}
    wave, rate = _wave()
    assert torch.equal(
        copy.simulate(wave, rate, utterance_rng(0, "k"))[0], channel.simulate(wave, rate, utterance_rng(0, "k"))[0]
    )


def test_simulate_preview_writes_examples_and_spectrograms(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "preview"
    assert simulate_main(["--preview", "2", str(out)]) == 0
    wavs = sorted(p.name for p in out.glob("*.wav"))
    assert len(wavs) == 2 * len(PROFILES) and all(sf.info(str(out / w)).samplerate == 8000 for w in wavs)
    assert {w.split("_")[0] for w in wavs} == set(PROFILES)
    png = out / "spectrograms.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "wrote 2 examples per profile" in capsys.readouterr().out


def test_simulate_names_a_bad_channel_and_exits_2(tmp_path, capsys):
    assert (
        simulate_main(
            ["--preview", "1", str(tmp_path / "p"), "--profile", "mobile", "--noise", str(tmp_path / "missing")]
        )
        == 2
    )
    assert "noise source not found" in capsys.readouterr().err
    assert simulate_main(["--preview", "1", str(tmp_path / "p"), "--profile", "satellite"]) == 2
    assert "unknown telephone profile 'satellite'" in capsys.readouterr().err


def test_preflight_builds_the_channel_and_names_the_key(tmp_path):
    from nano8k.checks import make_context
    from nano8k.checks.data import check_channel
    from nano8k.errors import CheckFailed

    def Context(config, source):  # noqa: N802 - the checks' view of a config as fit parses it, named source
        context = make_context(config)
        context.source = source
        return context

    good = check_channel(
        Context(
            {"data": {"telephone": {"profiles": {"voip": 1.0}}, "speed_perturb": {"factors": [0.9, 1.0, 1.1]}}},
            "c.yaml",
        )
    )
    assert good.status == "pass" and "voip" in good.message and "speed perturbation" in good.message
    with pytest.raises(CheckFailed, match=r"c.yaml: data.telephone: profile 'x' effect 0 \(codec\): unknown codec"):
        check_channel(
            Context(
                {
                    "data": {
                        "telephone": {
                            "profiles": {"x": 1.0},
                            "custom_profiles": {"x": [{"effect": "codec", "codecs": ["silk"]}]},
                        }
                    }
                },
                "c.yaml",
            )
        )
    with pytest.raises(CheckFailed, match=r"c.yaml: data.telephone: rir source not found"):
        check_channel(Context({"data": {"telephone": {"rir": str(tmp_path / "none")}}}, "c.yaml"))


def test_training_items_go_through_the_profiles():
    from nano8k.data.pipeline.datamodule import TelephoneDataModule

    root = Path(__file__).resolve().parents[1]

    def train_set(telephone):
        dm = TelephoneDataModule(
            train_manifests=str(root / "fixtures" / "data" / "simple.jsonl"),
            tokenizer_dir=str(root / "fixtures" / "tiny-nano"),
            num_workers=0,
            dither=0.0,
            specaugment=None,
            telephone_prob=1.0,
            telephone_max_input_rate=None,
            telephone=telephone,
        )
        dm.setup("fit")
        return dm.datasets["train"]

    simulated, clean = train_set(TelephoneChannel({name: 1.0 for name in PROFILES})), train_set(None)
    for epoch in range(3):
        for i in range(len(simulated)):
            item = simulated[(i, epoch, None)]
            assert item.feats.shape[1] == 560 and torch.isfinite(item.feats).all()
            assert not torch.equal(item.feats, clean[(i, epoch, None)].feats)


def test_simulate_reads_the_channel_of_a_fit_config(tmp_path, capsys):
    import yaml

    out = tmp_path / "p"
    fit = tmp_path / "fit.yaml"
    fit.write_text(yaml.safe_dump({"model": {"lr": 1e-4}, "data": {"train_manifests": "x.jsonl"}}))
    assert simulate_main(["--preview", "1", str(out), "--config", str(fit)]) == 0  # no data.telephone: the default
    assert "100% landline" in capsys.readouterr().out
    fit.write_text(yaml.safe_dump({"data": {"telephone": None}}))
    assert simulate_main(["--preview", "1", str(out), "--config", str(fit)]) == 2
    assert f"{fit}: data.telephone is null" in capsys.readouterr().err
    fit.write_text(yaml.safe_dump({"data": {"telephone": {"codecs": ["ulaw"], "snr_db": [10, 20]}}}))
    assert simulate_main(["--preview", "1", str(out), "--config", str(fit)]) == 2
    err = capsys.readouterr().err
    assert f"{fit}: data.telephone: unknown field(s) ['codecs', 'snr_db']" in err
    assert "custom_profiles {landline: [...]}" in err


@pytest.mark.parametrize(
    "telephone, message",
    [
        ({"custom_profiles": {"v": None}, "profiles": {"v": 1.0}}, "custom profile 'v' must be a list of effects"),
        ({"profiles": ["landline", "mobile"]}, "profiles must map profile names to weights"),
        ({"profiles": {"landline": "high"}}, "profiles must map profile names to weights"),
        ({"profile": {"mobile": 1.0}}, r"unknown field\(s\) \['profile'\]; known: \['profiles'"),
    ],
)
def test_malformed_channel_settings_are_named(telephone, message):
    with pytest.raises(ValueError, match=message):
        TelephoneChannel.from_config(telephone)


def test_preflight_shows_the_mix_the_config_asks_for():
    from nano8k.checks import make_context
    from nano8k.checks.data import check_channel

    context = make_context({"data": {"telephone": {"profiles": {"mobile": 1.0}}}})  # parsed as fit parses it
    message = check_channel(context).message
    assert "100% mobile" in message and "landline" not in message


@pytest.mark.parametrize(
    "speed, message",
    [
        ([0.9, 1.0, 1.1], "expected a mapping"),
        ({"factors": 1.1}, "factors must be a list"),
        ({"factors": [0.9, "fast"]}, "factors must be a list"),
        ({"factors": []}, "factors must be a list"),
        ({"factor": [1.1]}, r"unknown field\(s\) \['factor'\]; known: \['factors'"),
        ({"factor_range": [0.9, 1.0, 1.1]}, r"factor_range must be a \[low, high\] pair"),
    ],
)
def test_speed_settings_are_named(speed, message):
    from nano8k.data.pipeline.speed import SpeedPerturb

    with pytest.raises(ValueError, match=message):
        SpeedPerturb.from_config(speed)
