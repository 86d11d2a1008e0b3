"""Prompt text variants, token ids and labels against the reference goldens."""

from __future__ import annotations

import math

import pytest
from transformers import AutoTokenizer

from nano8k.model.prompt import IGNORE_INDEX, PromptEncoder, PromptSettings, audio_token_count, task_prompt
from tests.conftest import TINY_DIR


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(TINY_DIR / "Qwen3-0.6B"))


def test_inference_prompt_ids_and_labels_match_reference(tokenizer, golden, golden_meta):
    encoder = PromptEncoder(tokenizer)
    for sample in golden_meta["samples"]:
        name = sample["name"]
        encoded = encoder.encode(int(golden[f"{name}/fake_token_len"][0]), sample["target_text"])
        assert encoded.input_ids == golden[f"{name}/input_ids"].tolist()
        assert encoded.labels == golden[f"{name}/labels"].tolist()
        assert encoded.audio_start == int(golden[f"{name}/fbank_beg"][0])
        assert encoded.source_len == len(golden[f"{name}/source_ids"])


def test_training_context_header_matches_reference_dataset(tokenizer, golden, golden_meta):
    encoder = PromptEncoder(tokenizer, PromptSettings(context_header=True))
    for row, sample in enumerate(golden_meta["samples"]):
        ids = golden["train_batch/input_ids"][row]
        encoded = encoder.encode(int(golden["train_batch/fake_token_len"][row][0]), sample["target_text"])
        assert encoded.input_ids == ids[ids != -1].tolist()
        assert encoded.audio_start == int(golden["train_batch/fbank_beg"][row][0])


def test_task_prompt_variants():
    assert task_prompt() == "语音转写："
    assert task_prompt("en") == "语音转写成英文："
    assert task_prompt("zh", itn=False) == "语音转写成中文，不进行文本规整："
    assert task_prompt(itn=False) == "语音转写，不进行文本规整："
    hot = task_prompt(hotwords=["话费", "余额"])
    assert hot.endswith("热词列表：[话费, 余额]\n语音转写：") and hot.startswith("请结合上下文信息")
    with pytest.raises(ValueError, match="language must be one of"):
        task_prompt("fr")


def test_audio_token_count_is_ceil_l_over_8_and_switchable():
    for frames in range(1, 300):
        assert audio_token_count(frames) == math.ceil(frames / 8)
        assert audio_token_count(frames, "all_frames") == frames
    with pytest.raises(ValueError, match="audio token mode"):
        audio_token_count(5, "half")


def test_speech_markers_are_never_tokenized_and_source_is_unlabelled(tokenizer):
    encoded = PromptEncoder(tokenizer).encode(3, "hello")
    assert encoded.input_ids[encoded.audio_start : encoded.audio_start + 3] == [0, 0, 0]
    assert all(label == IGNORE_INDEX for label in encoded.labels[: encoded.source_len])
    assert encoded.labels[encoded.source_len :] == encoded.input_ids[encoded.source_len :]
    assert encoded.input_ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    source_only = PromptEncoder(tokenizer).encode(3)
    assert source_only.input_ids == encoded.input_ids[: encoded.source_len]
    assert "startofspeech" not in tokenizer.decode(encoded.input_ids)
