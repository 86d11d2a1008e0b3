"""The feeding record (config.yaml ``nano8k`` section + frontend_conf fs/dither): read, refused when wrong, written
by both export layouts, kept in checkpoints as itself."""

from __future__ import annotations

import shutil
from dataclasses import asdict, replace

import pytest
import torch
import yaml

from nano8k.errors import CheckpointError, FeedingError
from nano8k.model.checkpoint import export_funasr, export_hf, load_pretrained, read_model_configs
from nano8k.model.feeding import CHECKPOINT_KEY, Feeding
from nano8k.model.prompt import PromptSettings
from tests.conftest import TINY_DIR


def test_absent_section_is_the_release_feeding():
    config = yaml.safe_load((TINY_DIR / "config.yaml").read_text())
    assert "nano8k" not in config
    feeding = Feeding.from_funasr(config)
    assert feeding == Feeding("low_frame_rate", "release", dither=0.0) and feeding.is_release_lineage  # fixture: 0.0
    assert Feeding.from_funasr({}) == Feeding()  # the release: no section, fs 16000, FunASR's dither 1.0
    assert [feeding.token_count(n) for n in (1, 8, 9, 22)] == [1, 1, 2, 3]
    assert [Feeding("all_frames").token_count(n) for n in (1, 8, 9, 22)] == [1, 8, 9, 22]


@pytest.mark.parametrize(
    "section, message",
    [
        ({"audio_tokens": "half"}, r"cfg.yaml: nano8k.audio_tokens must be one of"),
        ({"weights": "borrowed"}, r"cfg.yaml: nano8k.weights must be one of"),
        ({"audio_token": "all_frames"}, r"cfg.yaml: unknown key\(s\) nano8k.audio_token;"),
        ("all_frames", r"cfg.yaml: 'nano8k' must be a mapping"),
        ({"prompt": {"languages": "zh"}}, r"cfg.yaml: unknown key\(s\) nano8k.prompt.languages;"),
        ({"prompt": {"language": "fr"}}, r"cfg.yaml: nano8k.prompt.language must be null, 'manifest' or one of"),
        ({"prompt": {"itn": "yes"}}, r"cfg.yaml: nano8k.prompt.itn must be true or false"),
        ({"prompt": "zh"}, r"cfg.yaml: 'nano8k.prompt' must be a mapping"),
        (
            {"audio_tokens": "all_frames"},
            r"contradicts audio_adaptor_conf.use_low_frame_rate=True; set use_low_frame_rate false",
        ),
    ],
)
def test_a_wrong_section_is_refused_naming_the_file_and_key(section, message):
    config = {"audio_adaptor_conf": {"use_low_frame_rate": True}, "nano8k": section}
    with pytest.raises(FeedingError, match=message):
        Feeding.from_funasr(config, "cfg.yaml")


@pytest.mark.parametrize(
    "section, flag, message",
    [
        (None, False, r"cfg.yaml: audio_adaptor_conf.use_low_frame_rate is false but nano8k.audio_tokens is not set"),
        ({"weights": "release"}, False, r"use_low_frame_rate is false but nano8k.audio_tokens is not set"),
        (None, "false", r"cfg.yaml: audio_adaptor_conf.use_low_frame_rate must be true or false, got 'false'"),
    ],
)
def test_an_ambiguous_flag_is_refused_not_guessed(section, flag, message):
    config = {"audio_adaptor_conf": {"use_low_frame_rate": flag}}
    if section is not None:
        config["nano8k"] = section
    with pytest.raises(FeedingError, match=message):
        Feeding.from_funasr(config, "cfg.yaml")


def test_loader_refuses_a_bad_record_before_reading_weights(tmp_path):
    target = tmp_path / "m"
    shutil.copytree(TINY_DIR, target, ignore=shutil.ignore_patterns("*.wav", "golden*", "model.pt"))
    config = yaml.safe_load((target / "config.yaml").read_text())
    config["nano8k"] = {"audio_tokens": "every_other"}
    (target / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(CheckpointError, match=r"m/config.yaml: nano8k.audio_tokens must be one of"):
        load_pretrained(target)  # no model.pt here: the record is checked first


@pytest.mark.parametrize("layout", ["funasr", "hf"])
def test_the_whole_record_round_trips_through_both_export_layouts(tmp_path, layout):
    model = load_pretrained(TINY_DIR)
    prompt = PromptSettings(system_prompt=None, context_header=True, language="manifest", itn=False)
    model.feeding = Feeding.of(
        audio_tokens="all_frames", weights="self-pretrained", prompt=prompt, frontend_rate=8000, dither=0.5
    )  # a native 8 kHz stage-1 model
    out = (export_funasr if layout == "funasr" else export_hf)(model, tmp_path / layout)
    written = yaml.safe_load((out / ("config.yaml" if layout == "funasr" else "nano8k_funasr_config.yaml")).read_text())
    assert written["nano8k"] == {"audio_tokens": "all_frames", "weights": "self-pretrained", "prompt": asdict(prompt)}
    assert written["audio_adaptor_conf"]["use_low_frame_rate"] is False  # FunASR's own inference then feeds all frames
    assert (written["frontend_conf"]["fs"], written["frontend_conf"]["dither"]) == (8000, 0.5)  # the release's keys
    assert Feeding.from_funasr(read_model_configs(out)[0]) == model.feeding
    reloaded = load_pretrained(out)
    assert reloaded.feeding == model.feeding and reloaded.frontend == model.frontend
    assert reloaded.feeding.prompt == prompt and reloaded.frontend.sample_rate == 8000
    back = export_funasr(reloaded, tmp_path / f"{layout}-again")
    assert Feeding.from_funasr(read_model_configs(back)[0]) == model.feeding


@pytest.mark.parametrize(
    "section, message",
    [
        (
            {"frontend_rate": 8000},
            r"cfg.yaml: unknown key\(s\) nano8k.frontend_rate; the section takes "
            r"\['audio_tokens', 'prompt', 'weights'\]",
        ),  # the rate is frontend_conf.fs
    ],
)
def test_the_fbank_settings_are_not_section_keys(section, message):
    with pytest.raises(FeedingError, match=message):
        Feeding.from_funasr({"nano8k": section}, "cfg.yaml")


def test_a_bad_frontend_conf_names_the_file():
    with pytest.raises(FeedingError, match=r"cfg.yaml: frontend sample_rate must be 8000 or 16000, got 22050"):
        Feeding.from_funasr({"frontend_conf": {"fs": 22050}}, "cfg.yaml")


def test_overrides_are_checked_like_the_file():
    with pytest.raises(FeedingError, match="language must be null"):
        replace(Feeding(), language="fr")
    with pytest.raises(FeedingError, match="8000 or 16000"):
        replace(Feeding(), frontend_rate=44100)
    assert replace(Feeding(), language="en").prompt == PromptSettings(language="en")


def test_a_checkpoint_keeps_the_feeding_itself_and_reads_the_old_dict(tmp_path):
    feeding = Feeding.of(
        audio_tokens="all_frames",
        weights="self-pretrained",
        frontend_rate=8000,
        dither=0.25,
        prompt=PromptSettings(system_prompt=None, language="en", itn=False),
    )
    torch.save({CHECKPOINT_KEY: feeding}, tmp_path / "new.ckpt")
    assert Feeding.from_checkpoint(torch.load(tmp_path / "new.ckpt", weights_only=True)) == feeding
    old = {
        CHECKPOINT_KEY: {
            "recipe": feeding.section(),  # written before the Feeding: {recipe, frontend}
            "frontend": {
                "sample_rate": 8000,
                "n_mels": 80,
                "frame_length_ms": 25.0,
                "frame_shift_ms": 10.0,
                "lfr_m": 7,
                "lfr_n": 6,
                "dither": 0.25,
                "window": "hamming",
            },
        }
    }
    torch.save(old, tmp_path / "old.ckpt")
    assert Feeding.from_checkpoint(torch.load(tmp_path / "old.ckpt", weights_only=True)) == feeding
    assert Feeding.from_checkpoint({}) is None
