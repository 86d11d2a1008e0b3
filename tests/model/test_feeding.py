"""The recipe record (config.yaml ``nano8k`` section): read, refused when wrong, written by both export layouts."""

from __future__ import annotations

import shutil
from dataclasses import asdict, replace

import pytest
import yaml

from nano8k.model.checkpoint import CheckpointError, export_funasr, export_hf, load_pretrained, model_recipe
from nano8k.model.prompt import PromptSettings
from nano8k.model.recipe import Recipe, RecipeError
from tests.conftest import TINY_DIR


def test_absent_section_is_the_release_recipe():
    config = yaml.safe_load((TINY_DIR / "config.yaml").read_text())
    assert "nano8k" not in config
    recipe = Recipe.from_funasr(config)
    assert recipe == Recipe("low_frame_rate", "release") and recipe.is_release_lineage
    assert [recipe.token_count(n) for n in (1, 8, 9, 22)] == [1, 1, 2, 3]
    assert [Recipe("all_frames").token_count(n) for n in (1, 8, 9, 22)] == [1, 8, 9, 22]


@pytest.mark.parametrize("section, message", [
    ({"audio_tokens": "half"}, r"cfg.yaml: nano8k.audio_tokens must be one of"),
    ({"weights": "borrowed"}, r"cfg.yaml: nano8k.weights must be one of"),
    ({"audio_token": "all_frames"}, r"cfg.yaml: unknown key\(s\) nano8k.audio_token;"),
    ("all_frames", r"cfg.yaml: 'nano8k' must be a mapping"),
    ({"prompt": {"languages": "zh"}}, r"cfg.yaml: unknown key\(s\) nano8k.prompt.languages;"),
    ({"prompt": {"language": "fr"}}, r"cfg.yaml: nano8k.prompt.language must be null, 'manifest' or one of"),
    ({"prompt": {"itn": "yes"}}, r"cfg.yaml: nano8k.prompt.itn must be true or false"),
    ({"prompt": "zh"}, r"cfg.yaml: 'nano8k.prompt' must be a mapping"),
    ({"audio_tokens": "all_frames"}, r"contradicts audio_adaptor_conf.use_low_frame_rate=True; set use_low_frame_rate false"),
])
def test_a_wrong_section_is_refused_naming_the_file_and_key(section, message):
    config = {"audio_adaptor_conf": {"use_low_frame_rate": True}, "nano8k": section}
    with pytest.raises(RecipeError, match=message):
        Recipe.from_funasr(config, "cfg.yaml")


@pytest.mark.parametrize("section, flag, message", [
    (None, False, r"cfg.yaml: audio_adaptor_conf.use_low_frame_rate is false but nano8k.audio_tokens is not set"),
    ({"weights": "release"}, False, r"use_low_frame_rate is false but nano8k.audio_tokens is not set"),
    (None, "false", r"cfg.yaml: audio_adaptor_conf.use_low_frame_rate must be true or false, got 'false'"),
])
def test_an_ambiguous_flag_is_refused_not_guessed(section, flag, message):
    config = {"audio_adaptor_conf": {"use_low_frame_rate": flag}}
    if section is not None:
        config["nano8k"] = section
    with pytest.raises(RecipeError, match=message):
        Recipe.from_funasr(config, "cfg.yaml")


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
    model.recipe = Recipe(audio_tokens="all_frames", weights="self-pretrained", prompt=prompt)
    model.frontend = replace(model.frontend, sample_rate=8000, dither=0.0)  # a native 8 kHz stage-1 model
    out = (export_funasr if layout == "funasr" else export_hf)(model, tmp_path / layout)
    written = yaml.safe_load((out / ("config.yaml" if layout == "funasr" else "nano8k_funasr_config.yaml")).read_text())
    assert written["nano8k"] == {"audio_tokens": "all_frames", "weights": "self-pretrained", "prompt": asdict(prompt)}
    assert written["audio_adaptor_conf"]["use_low_frame_rate"] is False  # FunASR's own inference then feeds all frames
    assert (written["frontend_conf"]["fs"], written["frontend_conf"]["dither"]) == (8000, 0.0)  # the release's keys
    assert model_recipe(out) == model.recipe
    reloaded = load_pretrained(out)
    assert reloaded.recipe == model.recipe and reloaded.frontend == model.frontend
    assert reloaded.prompts.settings == prompt
    back = export_funasr(reloaded, tmp_path / f"{layout}-again")
    assert model_recipe(back) == model.recipe
