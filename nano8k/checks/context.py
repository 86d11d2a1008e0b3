"""Shared state of a preflight run: fit's parsed config, its stages, the model dir and lazily computed facts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nano8k.errors import ConfigError
from nano8k.training.config import callback_args, fold_classes

if TYPE_CHECKING:
    from transformers import FunAsrNanoConfig, FunAsrNanoForConditionalGeneration

    from nano8k.model.feeding import Feeding

Status = Literal["pass", "warn", "fail"]


@dataclass
class CheckResult:
    """Outcome of one preflight check; ``message`` says what was found and, for warn/fail, what to change."""

    name: str
    status: Status
    message: str

    def line(self) -> str:
        return f"[{self.status.upper():4}] {self.name}: {self.message}"


@dataclass
class Stage:
    """One training stage: freezing, peak lr and fbank rate (StageSwitch configs have two)."""

    name: str
    freeze: dict[str, Any]
    lr: float
    frontend_rate: int
    freeze_key: str  # config keys that set this stage, for messages
    lr_key: str
    rate_key: str

    @property
    def where(self) -> str:
        return f"{self.freeze_key} / {self.lr_key} / {self.rate_key}"


@dataclass
class Context:
    """fit's parsed config (a jsonargparse Namespace: every value typed, every default the classes' own, read by
    attribute) plus the source name for messages."""

    config: Any
    source: str = "config"
    gpu_memory_gb: float | None = None  # compare the memory estimate with this instead of the local GPU
    facts: dict[str, Any] = field(default_factory=dict)  # cache shared between checks

    @property
    def model(self) -> Any:
        """``model.*``: NanoASRModule's arguments."""
        return self.config.model

    @property
    def data(self) -> Any:
        """``data.*``: TelephoneDataModule's arguments."""
        return self.config.data

    @property
    def trainer(self) -> Any:
        """``trainer.*``: Lightning Trainer's arguments (callbacks, logger and strategy as class_path/init_args)."""
        return self.config.trainer

    @staticmethod
    def plain(node: Any) -> Any:
        """A part of the config as plain data (class_path/init_args folded) for code that takes mappings."""
        return fold_classes(node.as_dict() if hasattr(node, "as_dict") else node)

    def key(self, dotted: str) -> str:
        """``file: key`` for messages."""
        return f"{self.source}: {dotted}"

    # -- model dir --------------------------------------------------------------------------------------------
    @cached_property
    def model_dir_value(self) -> str | None:
        from nano8k.model.locate import MODEL_DIR_ENV

        value = self.model.model_dir
        return value if value not in (None, "") else os.environ.get(MODEL_DIR_ENV)

    @cached_property
    def feeding_or_error(self) -> tuple[Feeding, str | None]:
        """The model dir's feeding record, read once; the release's with the reason when unreadable or refused."""
        from nano8k.errors import CheckpointError
        from nano8k.model.checkpoint import funasr_config_file, read_feeding
        from nano8k.model.feeding import Feeding

        if self.funasr_config is None:
            return Feeding(), None
        try:
            return read_feeding(self.funasr_config, funasr_config_file(self.model_dir)), None
        except CheckpointError as err:
            return Feeding(), str(err)

    @property
    def feeding(self) -> Feeding:
        """The model dir's feeding record (token rule, weight lineage); a refused record is the model_dir check's."""
        return self.feeding_or_error[0]

    @property
    def release_weights(self) -> bool:
        """True when the model dir holds the released weights or a fine-tune of them (official advice applies)."""
        return self.feeding.is_release_lineage

    @cached_property
    def model_dir(self) -> Path | None:
        from nano8k.model.locate import resolve_model_dir

        if self.model_dir_value is None:
            return None
        try:
            return resolve_model_dir(self.model_dir_value)
        except (FileNotFoundError, ConfigError):  # reported by the model_dir check
            return Path(self.model_dir_value).expanduser()

    @cached_property
    def model_configs(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(config.yaml, LLM config.json) of the model dir in either layout, read as the loader reads them."""
        from nano8k.errors import CheckpointError
        from nano8k.model.checkpoint import read_model_configs

        if self.model_dir is None:
            return None
        try:
            return read_model_configs(self.model_dir)
        except CheckpointError:
            return None

    @property
    def funasr_config(self) -> dict[str, Any] | None:
        """The model dir's config.yaml (or the HF export's kept copy); None when absent or unreadable."""
        return self.model_configs[0] if self.model_configs else None

    @property
    def qwen_config(self) -> dict[str, Any] | None:
        return self.model_configs[1] if self.model_configs else None

    @cached_property
    def network_config(self) -> FunAsrNanoConfig:
        """``FunAsrNanoConfig`` from config.yaml + Qwen config.json; raises ValueError when it cannot be built."""
        from nano8k.model.convert import build_config

        if self.funasr_config is None or self.qwen_config is None:
            raise ValueError("model dir config.yaml or the LLM config.json is missing or unreadable")
        return build_config(self.funasr_config, self.qwen_config, source=str(self.model_dir / "config.yaml"))

    @cached_property
    def meta_network(self) -> FunAsrNanoForConditionalGeneration:
        """The network built on the meta device (shapes only, no memory) for parameter counts."""
        from nano8k.model.checkpoint import build_network

        return build_network(self.network_config, device="meta")

    @property
    def model_frontend_rate(self) -> int:
        return int(((self.funasr_config or {}).get("frontend_conf") or {}).get("fs", 16000))

    # -- stages -----------------------------------------------------------------------------------------------
    def callbacks(self, class_name: str) -> list[tuple[str, Any]]:
        """(key prefix, init_args Namespace) of every callback of class ``class_name`` in the config."""
        return callback_args(self.config, class_name)

    def stage_switch(self) -> tuple[str, Any] | None:
        """(key prefix, args) of a StageSwitch callback, if the config has one."""
        found = self.callbacks("StageSwitch")
        return found[0] if found else None

    @cached_property
    def stages(self) -> list[Stage]:
        from dataclasses import asdict

        from nano8k.training.freezing import FreezeConfig, default_stage1_freeze

        # the config is fit's parsed one: every value below is set, by the file or by its class's own default;
        # a null freeze is the class's rule (NanoASRModule: FreezeConfig(); StageSwitch: the stage's default)
        base_freeze = {**asdict(FreezeConfig()), **self.plain(self.model.freeze or {})}
        lr = float(self.model.lr)
        rate = int(self.data.frontend_sample_rate)
        switch = self.stage_switch()
        if switch is None:
            return [Stage("main", base_freeze, lr, rate, "model.freeze", "model.lr", "data.frontend_sample_rate")]
        prefix, args = switch
        stages = []
        for name, default_freeze in (("stage1", asdict(default_stage1_freeze())), ("main", asdict(FreezeConfig()))):
            freeze = {**default_freeze, **self.plain(getattr(args, f"{name}_freeze") or {})}
            stage_lr = getattr(args, f"{name}_lr")
            stages.append(
                Stage(
                    name,
                    freeze,
                    float(lr if stage_lr is None else stage_lr),
                    int(getattr(args, f"{name}_frontend_rate")),
                    f"{prefix}.{name}_freeze",
                    f"{prefix}.{name}_lr",
                    f"{prefix}.{name}_frontend_rate",
                )
            )
        return stages
