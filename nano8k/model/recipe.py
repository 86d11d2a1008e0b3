"""The recipe record of a model directory: how its audio and prompts must be fed and where its weights came from.

It lives in the model's ``config.yaml`` (the HF export keeps the same file beside its weights). What the release's
own keys say stays there: the fbank rate is ``frontend_conf.fs`` and the dither ``frontend_conf.dither`` (exports
write the ones training used). The rest is one section::

    nano8k:
      audio_tokens: all_frames     # low_frame_rate (ceil(L/8), the release) | all_frames (L)
      weights: self-pretrained     # release | random-init | self-pretrained
      prompt:                      # how training wrote the prompts (nano8k.model.prompt.PromptSettings)
        system_prompt: You are a helpful assistant.   # null: no system turn
        context_header: false      # the official fine-tuning header before the task text
        language: null             # null | zh | en | ja | manifest (each utterance's own)
        itn: true

A directory without the section, or a key missing from it, is the release's (``low_frame_rate``, ``release``,
the prompt defaults above); one whose
``use_low_frame_rate`` is false must say its rule in the section. Exports write the section and keep
the release's own key ``audio_adaptor_conf.use_low_frame_rate`` consistent with it, so FunASR's inference code (which
reads that flag) feeds an ``all_frames`` export all frames too. FunASR's *training* dataset ignores the flag and always
uses ceil(L/8), so the flag alone does not decide the rule: the nano8k section does.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from nano8k.errors import UserError
from nano8k.model.prompt import AUDIO_TOKEN_MODES, PromptSettings, audio_token_count

SECTION = "nano8k"
WEIGHTS_ORIGINS = ("release", "random-init", "self-pretrained")


class RecipeError(UserError):
    """A recipe section that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Recipe:
    """What decides how a trained model must be fed, read from and written into ``config.yaml``."""

    audio_tokens: str = "low_frame_rate"  # speech placeholders per utterance: ceil(L/8) or all L adaptor frames
    weights: str = "release"  # lineage of the weights: fine-tuning advice for the release does not apply otherwise
    prompt: PromptSettings = field(default_factory=PromptSettings)  # how its prompts were written in training

    def __post_init__(self) -> None:
        if self.audio_tokens not in AUDIO_TOKEN_MODES:
            raise RecipeError(f"audio_tokens must be one of {AUDIO_TOKEN_MODES}, got {self.audio_tokens!r}")
        if self.weights not in WEIGHTS_ORIGINS:
            raise RecipeError(f"weights must be one of {WEIGHTS_ORIGINS}, got {self.weights!r}")

    @property
    def is_release_lineage(self) -> bool:
        """True for the released weights and models fine-tuned from them (the official advice applies)."""
        return self.weights == "release"

    def token_count(self, num_frames: int) -> int:
        """Speech placeholders for an utterance of ``num_frames`` LFR frames under this model's rule."""
        return audio_token_count(num_frames, self.audio_tokens)

    @classmethod
    def from_funasr(cls, funasr: Mapping[str, Any], source: str = "config.yaml") -> "Recipe":
        """Read the ``nano8k`` section of a ``config.yaml`` mapping; absent means the release's recipe."""
        section = funasr.get(SECTION)
        if section is not None and not isinstance(section, Mapping):
            raise RecipeError(f"{source}: '{SECTION}' must be a mapping (e.g. {{audio_tokens: all_frames}})")
        section = dict(section or {})
        _refuse_unknown(section, cls, SECTION, source)
        prompt = _prompt_settings(section.pop("prompt", None), source)
        try:
            recipe = cls(**section, prompt=prompt)
        except RecipeError as err:
            raise RecipeError(f"{source}: {SECTION}.{err}") from err
        flag = (funasr.get("audio_adaptor_conf") or {}).get("use_low_frame_rate")
        if flag is not None and not isinstance(flag, bool):
            raise RecipeError(f"{source}: audio_adaptor_conf.use_low_frame_rate must be true or false, got {flag!r}")
        if "audio_tokens" not in section and flag is False:
            raise RecipeError(
                f"{source}: audio_adaptor_conf.use_low_frame_rate is false but {SECTION}.audio_tokens is not set. "
                "FunASR's trainer ignores that flag (ceil(L/8) tokens) while its inference honours it (all frames), so "
                f"it does not say how the weights were trained: add '{SECTION}: {{audio_tokens: low_frame_rate}}' or "
                "'{audio_tokens: all_frames}'"
            )
        if flag is not None and flag != (recipe.audio_tokens == "low_frame_rate"):
            raise RecipeError(
                f"{source}: {SECTION}.audio_tokens={recipe.audio_tokens} contradicts "
                f"audio_adaptor_conf.use_low_frame_rate={flag}; set use_low_frame_rate "
                f"{str(recipe.audio_tokens == 'low_frame_rate').lower()} (or remove it)"
            )
        return recipe

    def written_into(self, funasr: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``funasr`` carrying this recipe (section + a consistent ``use_low_frame_rate``)."""
        out = copy.deepcopy(dict(funasr))
        out[SECTION] = asdict(self)
        adaptor = out.get("audio_adaptor_conf")
        if isinstance(adaptor, dict):
            adaptor["use_low_frame_rate"] = self.audio_tokens == "low_frame_rate"
        return out


def _prompt_settings(section: Any, source: str) -> PromptSettings:
    """``nano8k.prompt`` of a config.yaml as ``PromptSettings``; absent keys are the release's."""
    if section is None:
        return PromptSettings()
    if not isinstance(section, Mapping):
        raise RecipeError(f"{source}: '{SECTION}.prompt' must be a mapping (e.g. {{language: zh}})")
    _refuse_unknown(section, PromptSettings, f"{SECTION}.prompt", source)
    try:
        return PromptSettings(**section)
    except ValueError as err:
        raise RecipeError(f"{source}: {SECTION}.prompt.{err}") from err


def _refuse_unknown(section: Mapping[str, Any], cls: type, where: str, source: str) -> None:
    """``RecipeError`` naming every key of ``section`` (at ``where`` in ``source``) that is no field of ``cls``."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise RecipeError(f"{source}: unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; "
                          f"the section takes {sorted(known)}")
