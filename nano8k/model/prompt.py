"""Reference chat prompts for Fun-ASR-Nano: task text variants, token ids, speech placeholders and labels."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100
SPEECH_PLACEHOLDER_ID = 0  # the reference fills speech slots with token id 0 ("!") before splicing
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
END_OF_TURN = "<|im_end|>"

LANGUAGE_NAMES = {"zh": "中文", "en": "英文", "ja": "日文", "中文": "中文", "英文": "英文", "日文": "日文"}
AUDIO_TOKEN_MODES = ("low_frame_rate", "all_frames")
MANIFEST_LANGUAGE = "manifest"  # PromptSettings.language: each utterance's own language

INFERENCE_HOTWORD_HEADER = (
    "请结合上下文信息，更加准确地完成语音转写任务。如果没有相关信息，我们会留空。\n\n\n**上下文信息：**\n\n\n"
)
TRAINING_CONTEXT_HEADERS = {
    "zh": "请结合下面提供的上下文信息，更加准确地完成语音转写任务。如果没有相关信息，我们会留空。\n",
    "en": (
        "Please combine the context information provided below to complete the speech transcription task more "
        "accurately. If there is no relevant information, we will leave it blank.\n"
    ),
}
TRAINING_HOTWORD_LINE = {"zh": "热词列表：{}\n", "en": "Hotword list: {}\n"}


def audio_token_count(num_frames: int, mode: str = "low_frame_rate") -> int:
    """Speech placeholders for ``num_frames`` LFR frames: ceil(L/8) as the released model, or L ("all_frames")."""
    if mode == "low_frame_rate":
        return math.ceil(num_frames / 8)
    if mode == "all_frames":
        return int(num_frames)
    raise ValueError(f"audio token mode must be one of {AUDIO_TOKEN_MODES}, got {mode!r}")


def pad_token_id(tokenizer: Any) -> int:
    """The id batches pad prompts with: the tokenizer's pad token, else its end-of-sequence token (Qwen3 has no pad)."""
    pad = tokenizer.pad_token_id
    return int(pad if pad is not None else tokenizer.eos_token_id)


def task_prompt(language: str | None = None, itn: bool = True, hotwords: Sequence[str] = ()) -> str:
    """The user-turn text before the speech slot, as the reference ``get_prompt`` writes it."""
    text = "语音转写"
    if language is not None:
        if language not in LANGUAGE_NAMES:
            raise ValueError(f"language must be one of {sorted(LANGUAGE_NAMES)} or None, got {language!r}")
        text += "成" + LANGUAGE_NAMES[language]
    if not itn:
        text += "，不进行文本规整"
    text += "："
    if hotwords:
        text = INFERENCE_HOTWORD_HEADER + "热词列表：[" + ", ".join(hotwords) + "]\n" + text
    return text


def _prompt_language(text: str) -> str:
    """zh when Chinese characters outnumber English letters and exceed 30 % of the text (reference rule)."""
    chinese = len(re.findall(r"[\u4e00-\u9fff]", text))
    english = len(re.findall(r"[A-Za-z]", text))
    return "zh" if chinese > english and chinese > 0.3 * max(len(text), 1) else "en"


def training_context_header(task_text: str, hotwords: Sequence[str] = ()) -> str:
    """The official fine-tuning (MultiContextPrompt) header placed before the task text."""
    language = _prompt_language(task_text)
    body = TRAINING_HOTWORD_LINE[language].format(", ".join(hotwords)) if hotwords else "\n\n\n"
    return TRAINING_CONTEXT_HEADERS[language] + body


@dataclass(frozen=True)
class PromptSettings:
    """How a model's prompts are written; training uses them, and a model's feeding record carries them to inference."""

    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT  # None: no system turn
    context_header: bool = False  # the official fine-tuning (MultiContextPrompt) header before the task text
    language: str | None = None  # the task's language: None (none named), a code (zh/en/ja), or "manifest" (per line)
    itn: bool = True  # False asks for text without inverse normalization

    def __post_init__(self) -> None:
        if self.language is not None and self.language != MANIFEST_LANGUAGE and self.language not in LANGUAGE_NAMES:
            raise ValueError(
                f"language must be null, '{MANIFEST_LANGUAGE}' or one of {', '.join(LANGUAGE_NAMES)}, "
                f"got {self.language!r}"
            )
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            raise ValueError(f"system_prompt must be a string or null, got {self.system_prompt!r}")
        for name in ("context_header", "itn"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class EncodedPrompt:
    """Token ids of one utterance: source (prompt with speech placeholders) followed by the optional target."""

    input_ids: list[int]
    labels: list[int]
    audio_start: int
    audio_tokens: int
    source_len: int


class PromptEncoder:
    """Encodes the reference chat layout with a tokenizer; text on each side of the speech slot is tokenized apart."""

    def __init__(self, tokenizer, settings: PromptSettings = PromptSettings()):
        self.tokenizer = tokenizer
        self.settings = settings

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def source_text(self, prompt: str) -> tuple[str, str]:
        """Text before and after the speech slot."""
        system = self.settings.system_prompt
        before = f"<|im_start|>system\n{system}<|im_end|>\n" if system is not None else ""
        before += f"<|im_start|>user\n{prompt}"
        return before, "<|im_end|>\n<|im_start|>assistant\n"

    def encode(
        self,
        audio_tokens: int,
        target: str | None = None,
        *,
        prompt: str | None = None,
        lang: str | None = None,
        hotwords: Sequence[str] = (),
    ) -> EncodedPrompt:
        """Ids and labels for one utterance under ``settings``: its own task text ``prompt`` (a manifest line's) if
        given, else the task text in the settings' language (``manifest``: the utterance's ``lang``) and itn. Under
        ``settings.context_header`` the training header (with the hotwords) goes before the task text."""
        if audio_tokens < 1:
            raise ValueError(f"an utterance needs at least one speech token, got {audio_tokens}")
        settings = self.settings
        language = lang if settings.language == MANIFEST_LANGUAGE else settings.language
        if settings.context_header:
            task = task_prompt(language, settings.itn) if prompt is None else prompt
            prompt = training_context_header(task, hotwords) + task
        elif prompt is None:
            prompt = task_prompt(language, settings.itn, hotwords)
        before, after = self.source_text(prompt)
        before_ids = self._ids(before)
        source = before_ids + [SPEECH_PLACEHOLDER_ID] * audio_tokens + self._ids(after)
        target_ids = self._ids(target + END_OF_TURN) if target is not None else []
        return EncodedPrompt(
            input_ids=source + target_ids,
            labels=[IGNORE_INDEX] * len(source) + target_ids,
            audio_start=len(before_ids),
            audio_tokens=audio_tokens,
            source_len=len(source),
        )
