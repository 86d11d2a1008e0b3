"""``Feeding``: how a model must be fed (token rule, weight lineage, prompts, fbank rate, dither), one record."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from nano8k.errors import FeedingError
from nano8k.model.features import FrontendConfig
from nano8k.model.prompt import AUDIO_TOKEN_MODES, DEFAULT_SYSTEM_PROMPT, PromptSettings, audio_token_count

SECTION = "nano8k"  # config.yaml's section: audio_tokens, weights, prompt (docs/architecture.md, "Feeding")
SECTION_KEYS = ("audio_tokens", "weights", "prompt")
WEIGHTS_ORIGINS = ("release", "random-init", "self-pretrained")
CHECKPOINT_KEY = "nano8k_feeding"  # a Lightning checkpoint's Feeding (before: a dict {recipe, frontend})
PROMPT_FIELDS = tuple(f.name for f in fields(PromptSettings))


@dataclass(frozen=True)
class Feeding:
    """How a trained model must be fed; config.yaml keeps it (``from_funasr`` / ``written_into``).

    The nano8k section holds the token rule, the weight lineage and the prompt settings; the fbank rate and dither
    stay the release's own keys ``frontend_conf.fs`` / ``frontend_conf.dither``, which FunASR reads too.
    """

    audio_tokens: str = "low_frame_rate"  # speech placeholders per utterance: ceil(L/8) or all L adaptor frames
    weights: str = "release"  # lineage of the weights: fine-tuning advice for the release does not apply otherwise
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT  # the prompt settings (PromptSettings) training wrote with
    context_header: bool = False
    language: str | None = None
    itn: bool = True
    frontend_rate: int = 16000  # the rate the fbank runs at (frontend_conf.fs)
    dither: float = 1.0  # fbank dither (frontend_conf.dither; absent in the release: FunASR's 1.0)

    def __post_init__(self) -> None:
        if self.audio_tokens not in AUDIO_TOKEN_MODES:
            raise FeedingError(f"audio_tokens must be one of {AUDIO_TOKEN_MODES}, got {self.audio_tokens!r}")
        if self.weights not in WEIGHTS_ORIGINS:
            raise FeedingError(f"weights must be one of {WEIGHTS_ORIGINS}, got {self.weights!r}")
        try:
            self.prompt  # noqa: B018 - PromptSettings validates its fields
            FrontendConfig(sample_rate=self.frontend_rate)
        except ValueError as err:
            raise FeedingError(str(err)) from err
        if not self.dither >= 0:
            raise FeedingError(f"dither must be >= 0, got {self.dither!r}")

    @classmethod
    def of(cls, *, prompt: PromptSettings | None = None, **values: Any) -> Feeding:
        """A Feeding from its fields with the prompt settings given as one ``PromptSettings``."""
        return cls(**values, **asdict(prompt or PromptSettings()))

    @property
    def prompt(self) -> PromptSettings:
        """How prompts are written for this model."""
        return PromptSettings(**{name: getattr(self, name) for name in PROMPT_FIELDS})

    @property
    def is_release_lineage(self) -> bool:
        """True for the released weights and models fine-tuned from them (the official advice applies)."""
        return self.weights == "release"

    def token_count(self, num_frames: int) -> int:
        """Speech placeholders for an utterance of ``num_frames`` LFR frames under this model's rule."""
        return audio_token_count(num_frames, self.audio_tokens)

    def frontend(self, base: FrontendConfig | None = None) -> FrontendConfig:
        """``base`` (the model's other fbank settings) at this fbank rate and dither."""
        settings = asdict(base or FrontendConfig())
        return FrontendConfig(**{**settings, "sample_rate": self.frontend_rate, "dither": self.dither})

    @classmethod
    def from_funasr(cls, funasr: Mapping[str, Any], source: str = "config.yaml") -> Feeding:
        """Read a ``config.yaml`` mapping: its ``nano8k`` section (absent: the release's) and ``frontend_conf``."""
        section = funasr.get(SECTION)
        if section is not None and not isinstance(section, Mapping):
            raise FeedingError(f"{source}: '{SECTION}' must be a mapping (e.g. {{audio_tokens: all_frames}})")
        section = dict(section or {})
        _refuse_unknown(section, SECTION_KEYS, SECTION, source)
        prompt = _prompt_settings(section.pop("prompt", None), source)
        try:
            frontend = FrontendConfig.from_funasr(funasr.get("frontend_conf") or {})
        except ValueError as err:  # fs not 8000 or 16000, a cmvn_file
            raise FeedingError(f"{source}: {err}") from err
        try:
            feeding = cls.of(**section, prompt=prompt, frontend_rate=frontend.sample_rate, dither=frontend.dither)
        except FeedingError as err:
            raise FeedingError(f"{source}: {SECTION}.{err}") from err
        flag = (funasr.get("audio_adaptor_conf") or {}).get("use_low_frame_rate")
        if flag is not None and not isinstance(flag, bool):
            raise FeedingError(f"{source}: audio_adaptor_conf.use_low_frame_rate must be true or false, got {flag!r}")
        if "audio_tokens" not in section and flag is False:
            raise FeedingError(
                f"{source}: audio_adaptor_conf.use_low_frame_rate is false but {SECTION}.audio_tokens is not set. "
                "FunASR's trainer ignores that flag (ceil(L/8) tokens) while its inference honours it (all frames), so "
                f"it does not say how the weights were trained: add '{SECTION}: {{audio_tokens: low_frame_rate}}' or "
                "'{audio_tokens: all_frames}'"
            )
        if flag is not None and flag != (feeding.audio_tokens == "low_frame_rate"):
            raise FeedingError(
                f"{source}: {SECTION}.audio_tokens={feeding.audio_tokens} contradicts "
                f"audio_adaptor_conf.use_low_frame_rate={flag}; set use_low_frame_rate "
                f"{str(feeding.audio_tokens == 'low_frame_rate').lower()} (or remove it)"
            )
        return feeding

    def section(self) -> dict[str, Any]:
        """config.yaml's ``nano8k`` section of this feeding (the fbank rate and dither live in ``frontend_conf``)."""
        return {"audio_tokens": self.audio_tokens, "weights": self.weights, "prompt": asdict(self.prompt)}

    def written_into(self, funasr: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``funasr`` carrying this feeding: the section, a consistent ``use_low_frame_rate``, and
        ``frontend_conf.fs`` / ``dither`` where they differ from what the file says (nothing else of the frontend)."""
        out = copy.deepcopy(dict(funasr))
        out[SECTION] = self.section()
        adaptor = out.get("audio_adaptor_conf")
        if isinstance(adaptor, dict):
            adaptor["use_low_frame_rate"] = self.audio_tokens == "low_frame_rate"
        front = out.get("frontend_conf")
        if isinstance(front, dict):
            recorded = FrontendConfig.from_funasr(front)
            if recorded.sample_rate != self.frontend_rate:
                front["fs"] = self.frontend_rate
            if recorded.dither != self.dither:
                front["dither"] = self.dither
        return out

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any]) -> Feeding | None:
        """The Feeding a Lightning checkpoint recorded (None: none); an older checkpoint's dict
        ``{recipe, frontend}`` is read too."""
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved is None or isinstance(saved, cls):
            return saved
        source = f"checkpoint {CHECKPOINT_KEY}"
        recipe = dict(saved["recipe"])
        _refuse_unknown(recipe, SECTION_KEYS, SECTION, source)
        prompt = _prompt_settings(recipe.pop("prompt", None), source)
        frontend = saved["frontend"]
        return cls.of(
            **recipe, prompt=prompt, frontend_rate=int(frontend["sample_rate"]), dither=float(frontend["dither"])
        )


# checkpoints hold the Feeding itself: torch.load(weights_only=True) reads it
torch.serialization.add_safe_globals([Feeding, PromptSettings])


def _prompt_settings(section: Any, source: str) -> PromptSettings:
    """``nano8k.prompt`` of a config.yaml as ``PromptSettings``; absent keys are the release's."""
    if section is None:
        return PromptSettings()
    if not isinstance(section, Mapping):
        raise FeedingError(f"{source}: '{SECTION}.prompt' must be a mapping (e.g. {{language: zh}})")
    _refuse_unknown(section, PROMPT_FIELDS, f"{SECTION}.prompt", source)
    try:
        return PromptSettings(**section)
    except ValueError as err:
        raise FeedingError(f"{source}: {SECTION}.prompt.{err}") from err


def _refuse_unknown(section: Mapping[str, Any], known: tuple[str, ...], where: str, source: str) -> None:
    """``FeedingError`` naming every key of ``section`` (at ``where`` in ``source``) that is not ``known``."""
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise FeedingError(
            f"{source}: unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; the section takes {sorted(known)}"
        )
