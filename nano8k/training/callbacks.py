"""Training callbacks: ``StageSwitch`` (encoder-adaptation stage -> main stage, resumable) and ``WEREvaluation``."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

from nano8k.errors import RESUME_ADVICE, resume_changes, resume_refused
from nano8k.model.batch import SpeechBatch
from nano8k.model.features import FRONTEND_RATES
from nano8k.scoring.metrics import ErrorRateAccumulator, text_language
from nano8k.scoring.normalizers import NormalizerName, get_normalizer
from nano8k.training.freezing import FreezeConfig, default_stage1_freeze

log = logging.getLogger(__name__)

STAGE1, MAIN = "stage1", "main"


def _freeze(value: FreezeConfig | dict[str, Any] | None, default: FreezeConfig) -> FreezeConfig:
    if value is None:
        return default
    return FreezeConfig(**value) if isinstance(value, dict) else value


def optimizer_param_ids(trainer: L.Trainer) -> set[int]:
    """Ids of every parameter held by the trainer's optimizers."""
    return {id(p) for opt in trainer.optimizers for group in opt.param_groups for p in group["params"]}


def trainable_param_ids(module: torch.nn.Module) -> set[int]:
    return {id(p) for p in module.parameters() if p.requires_grad}


class StageSwitch(Callback):
    """Runs an encoder-adaptation stage (its own freezing, lr and fbank rate), then switches to the main stage.

    Give exactly one of ``stage1_steps`` / ``stage1_epochs``:

    - ``stage1_steps=N``: freezing, lr and optimizer/scheduler switch right after optimizer step N (the first
      main-stage step is N + 1); the data module's fbank rate is switched at the same moment. ``TelephoneDataModule``
      carries the rate through its batch sampler, so loader workers build main-stage features from the next batch
      they make; only batches already prefetched (at most ``num_workers * prefetch_factor``) keep stage-1 features.
      Use ``stage1_epochs`` when not even those may mix.
    - ``stage1_epochs=E``: everything switches at the end of epoch E (0-based epochs 0..E-1 are stage 1).

    At the switch: ``pl_module.set_stage(main_freeze, main_lr)`` (re-freezes; the module restarts its schedule),
    ``trainer.strategy.setup_optimizers(trainer)`` (new optimizer and scheduler groups for the new trainable set;
    under DDP the model is re-wrapped first so DDP reduces the newly trainable parameters, tested on 2 CPU
    processes in tests/training/test_fit.py) and
    ``trainer.datamodule.set_frontend_rate(main_frontend_rate)``.

    ``state_dict`` holds the stage and the switch step/epoch. On resume Lightning restores module and callback
    state *before* ``configure_optimizers`` (Lightning 2.6 ``Trainer._run``: restore modules/callbacks ->
    ``strategy.setup`` -> ``on_fit_start`` -> optimizer states), so a main-stage resume re-applies main freezing
    before the optimizer is built and the saved main-stage optimizer state loads into matching groups. (Callbacks
    cannot tell in ``setup`` whether a checkpoint follows, so a resume first applies stage 1 and then moves to the
    saved stage.) Only single-device and DDP strategies are supported (FSDP/DeepSpeed shard or wrap the optimizer
    differently).
    """

    def __init__(
        self,
        stage1_steps: int | None = None,
        stage1_epochs: int | None = None,
        stage1_freeze: FreezeConfig | None = None,
        stage1_lr: float | None = None,
        stage1_frontend_rate: int = 8000,
        main_freeze: FreezeConfig | None = None,
        main_lr: float | None = None,
        main_frontend_rate: int = 16000,
    ) -> None:
        """``*_lr=None`` means the module's own ``lr`` hyperparameter; ``*_freeze=None`` the defaults below."""
        if (stage1_steps is None) == (stage1_epochs is None):
            raise ValueError("StageSwitch: give exactly one of stage1_steps or stage1_epochs")
        length = stage1_steps if stage1_steps is not None else stage1_epochs
        if int(length) < 1:
            raise ValueError(f"StageSwitch: stage-1 length must be >= 1, got {length}")
        for name, rate in (("stage1_frontend_rate", stage1_frontend_rate), ("main_frontend_rate", main_frontend_rate)):
            if rate not in FRONTEND_RATES:
                raise ValueError(f"StageSwitch.{name} must be 8000 or 16000, got {rate}")
        self.stage1_steps, self.stage1_epochs = stage1_steps, stage1_epochs
        # stage 1 = encoder adaptation (freezing.default_stage1_freeze); main = the adaptor-first default
        self.stage1_freeze = _freeze(stage1_freeze, default_stage1_freeze())
        self.main_freeze = _freeze(main_freeze, FreezeConfig())
        self.stage1_lr, self.main_lr = stage1_lr, main_lr
        self.stage1_frontend_rate, self.main_frontend_rate = stage1_frontend_rate, main_frontend_rate
        self.stage = STAGE1
        self.switch_step: int | None = None
        self.switch_epoch: int | None = None
        self._module: L.LightningModule | None = None
        self._trainer: L.Trainer | None = None

    # -- stage application -------------------------------------------------------------------------------------
    def _stage_settings(self) -> tuple[FreezeConfig, float | None, int]:
        if self.stage == MAIN:
            return self.main_freeze, self.main_lr, self.main_frontend_rate
        return self.stage1_freeze, self.stage1_lr, self.stage1_frontend_rate

    def _set_rate(self, trainer: L.Trainer, rate: int) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "set_frontend_rate"):
            log.warning(
                "StageSwitch: the trainer has no data module with set_frontend_rate(); the fbank rate "
                "stays as the data pipeline set it (wanted %d Hz)",
                rate,
            )
            return
        datamodule.set_frontend_rate(rate)

    def _apply(self, trainer: L.Trainer, pl_module: L.LightningModule, force: bool = True) -> None:
        """Freeze/lr and fbank rate of the current stage; skipped freezing when the module already has it."""
        freeze, lr, rate = self._stage_settings()
        if lr is None:  # the module's configured lr (hparams.lr), not whatever the previous stage used
            lr = getattr(pl_module, "hparams", {}).get("lr")
        current = getattr(pl_module, "freeze_cfg", None)
        if force or current != freeze:
            pl_module.set_stage(freeze, lr)
        self._set_rate(trainer, rate)

    def _rebuild_optimizers(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        strategy = trainer.strategy
        if type(strategy) is DDPStrategy:
            # DDP registers the parameters that require grad when it wraps the model: re-wrap for the new set
            strategy.model = pl_module
            strategy.configure_ddp()
        strategy.setup_optimizers(trainer)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not isinstance(trainer.strategy, SingleDeviceStrategy) and type(trainer.strategy) is not DDPStrategy:
            raise NotImplementedError(
                f"StageSwitch supports single-device and DDP training, not {type(trainer.strategy).__name__}: it "
                "rebuilds the optimizer for the new trainable set, which that strategy shards or wraps. Use "
                "trainer.strategy ddp, or run the two stages as two fits (configs/stage1_encoder_adapt.yaml, then "
                "configs/telephone.yaml with model.model_dir set to the stage-1 export)"
            )
        if not hasattr(pl_module, "set_stage"):
            raise TypeError(f"StageSwitch needs a LightningModule with set_stage(); got {type(pl_module).__name__}")
        self._trainer, self._module = trainer, pl_module
        # Before strategy.setup -> configure_optimizers. Lightning does not tell callbacks at this point whether a
        # checkpoint will be restored; on resume load_state_dict (called next) moves to the saved stage.
        self._apply(trainer, pl_module)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if optimizer_param_ids(trainer) != trainable_param_ids(pl_module):
            log.warning("StageSwitch: optimizer parameters differ from the trainable set; rebuilding the optimizer")
            self._rebuild_optimizers(trainer, pl_module)
        if trainer.is_global_zero:
            print(f"[stage] {self.stage} ({self._describe()})", flush=True)

    # -- switching ---------------------------------------------------------------------------------------------
    def _describe(self) -> str:
        freeze, lr, rate = self._stage_settings()
        until = (
            f"until step {self.stage1_steps}" if self.stage1_steps is not None else f"for {self.stage1_epochs} epoch(s)"
        )
        where = until if self.stage == STAGE1 else f"since step {self.switch_step}"
        return f"{where}; freeze {freeze}, lr {'module default' if lr is None else lr}, fbank {rate} Hz"

    def switch(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Move to the main stage now (called by the hooks; public for manual use)."""
        self.stage = MAIN
        self.switch_step, self.switch_epoch = int(trainer.global_step), int(trainer.current_epoch)
        self._apply(trainer, pl_module)
        pl_module.train()  # parts that were frozen (eval mode) in stage 1 may train now
        self._rebuild_optimizers(trainer, pl_module)
        if trainer.is_global_zero:
            print(f"[stage] switched to main at step {self.switch_step} ({self._describe()})", flush=True)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.stage == STAGE1 and self.stage1_steps is not None and trainer.global_step >= self.stage1_steps:
            self.switch(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stage == STAGE1 and self.stage1_epochs is not None and trainer.current_epoch + 1 >= self.stage1_epochs:
            self.switch(trainer, pl_module)

    # -- checkpoint state --------------------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        """The configured schedule of stages, compared with the checkpoint's on resume."""
        return {
            "stage1_steps": self.stage1_steps,
            "stage1_epochs": self.stage1_epochs,
            "stage1_freeze": asdict(self.stage1_freeze),
            "stage1_lr": self.stage1_lr,
            "stage1_frontend_rate": self.stage1_frontend_rate,
            "main_freeze": asdict(self.main_freeze),
            "main_lr": self.main_lr,
            "main_frontend_rate": self.main_frontend_rate,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "switch_step": self.switch_step,
            "switch_epoch": self.switch_epoch,
            **self._settings(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        stage = state_dict.get("stage")
        if stage not in (STAGE1, MAIN):
            raise ValueError(f"StageSwitch checkpoint state has stage={stage!r}; expected {STAGE1!r} or {MAIN!r}")
        changed = resume_changes(state_dict, self._settings())
        if changed:
            source = getattr(self._trainer, "ckpt_path", None) or "the checkpoint"
            raise resume_refused(source, changed, "StageSwitch.", RESUME_ADVICE)
        self.stage = stage
        self.switch_step, self.switch_epoch = state_dict.get("switch_step"), state_dict.get("switch_epoch")
        if self._module is not None and self._trainer is not None:
            # runs before configure_optimizers; a module that restored its own stage (NanoASRModule) is left alone
            self._apply(self._trainer, self._module, force=False)


LANGUAGES = ("en", "zh", "mixed")  # the reference scripts WEREvaluation reports on their own


class WEREvaluation(Callback):
    """Greedy-decodes validation batches as they run and logs ``val/cer``, ``val/wer``, ``val/mer``.

    Each validation batch (``SpeechBatch``; ``None`` batches are skipped) is decoded with
    ``pl_module.transcribe_batch(batch, max_new_tokens)`` in ``on_validation_batch_end`` (no second pass over the
    data), scored against ``batch.targets`` with ``ErrorRateAccumulator`` (text normalized by ``normalizer``:
    ``basic``, ``funasr`` or ``none``, see ``nano8k.scoring.normalizers``; pooled counts, summed across DDP ranks)
    and logged in ``on_validation_epoch_end`` so ``ModelCheckpoint(monitor="val/cer", mode="min")`` can use it.
    Per language, ``val/cer_zh``, ``val/cer_en`` and ``val/cer_mixed`` are logged for the languages that occurred,
    the language being the reference's script (``text_language``: CJK only, Latin only, both).
    ``every_n_steps=None`` decodes at every validation; ``every_n_steps=N`` decodes at the first validation at
    least N optimizer steps after the last decoded one (always at the first); validations in between log no fresh
    ``val/cer``, so monitor it only with ``every_n_steps=None`` or with checkpointing at the same cadence.
    ``limit_batches`` caps the decoded batches per validation. The sanity check is not decoded. At every decoded
    validation the first ``num_examples`` ref/hyp pairs are printed (``[val example] key`` then ``ref:`` / ``hyp:``
    lines) and logged as a table to W&B (``val/examples``) or TensorBoard, and one summary line goes to stdout, e.g.
    ``[val] step 120  cer 0.873  wer 0.951  mer 0.900  cer_en 0.912  cer_zh 0.841  loss 4.12``.
    """

    def __init__(
        self,
        every_n_steps: int | None = None,
        max_new_tokens: int = 128,
        num_examples: int = 3,
        limit_batches: int | None = None,
        normalizer: NormalizerName = "basic",
    ) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"WEREvaluation.every_n_steps must be >= 1 or None, got {every_n_steps}")
        if limit_batches is not None and limit_batches < 1:
            raise ValueError(f"WEREvaluation.limit_batches must be >= 1 or None, got {limit_batches}")
        self.every_n_steps, self.max_new_tokens = every_n_steps, max_new_tokens
        self.num_examples, self.limit_batches = num_examples, limit_batches
        self.normalize = get_normalizer(normalizer)  # once per text; the accumulators get normalized text
        self.metric = ErrorRateAccumulator("none")
        self.by_language = {lang: ErrorRateAccumulator("none") for lang in LANGUAGES}
        self.examples: list[tuple[str, str, str]] = []
        self.last: dict[str, float] = {}
        self._active = False
        self._decoded_batches = 0
        self._last_step: int | None = None

    def _due(self, trainer: L.Trainer) -> bool:
        if trainer.sanity_checking:
            return False
        if self.every_n_steps is None or self._last_step is None:
            return True
        return trainer.global_step - self._last_step >= self.every_n_steps

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._active = self._due(trainer)
        self._decoded_batches = 0
        self.examples = []
        for metric in (self.metric, *self.by_language.values()):
            metric.reset()
            metric.to(pl_module.device)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active or not isinstance(batch, SpeechBatch):  # None or a SkippedBatch: nothing to decode
            return
        if self.limit_batches is not None and self._decoded_batches >= self.limit_batches:
            return
        hyps = pl_module.transcribe_batch(batch, self.max_new_tokens)
        refs, normalized = [self.normalize(r) for r in batch.targets], [self.normalize(h) for h in hyps]
        self.metric.update(refs, normalized)
        langs = [text_language(ref) for ref in refs]  # SpeechBatch carries no language: the reference's script
        for lang, metric in self.by_language.items():
            pairs = [(ref, hyp) for ref, hyp, ref_lang in zip(refs, normalized, langs) if ref_lang == lang]
            metric.update([ref for ref, _ in pairs], [hyp for _, hyp in pairs])
        self._decoded_batches += 1
        for key, ref, hyp in zip(batch.keys, batch.targets, hyps):
            if len(self.examples) < self.num_examples:
                self.examples.append((key, ref, hyp))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active:
            return
        result = self.metric.compute()  # all-reduces the sums under DDP
        self._last_step = int(trainer.global_step)
        if int(result["utterances"]) == 0:
            log.warning("WEREvaluation: no validation utterance with a non-empty reference; nothing logged")
            self.last = {}
            return
        self.last = {name: float(result[name]) for name in ("cer", "wer", "mer")}
        for lang, metric in self.by_language.items():  # every rank computes every language: the sync matches
            per_lang = metric.compute()
            if int(per_lang["utterances"]):
                self.last[f"cer_{lang}"] = float(per_lang["cer"])
        for name, value in self.last.items():
            pl_module.log(f"val/{name}", value, sync_dist=True)
        if int(result["empty_refs"]):
            log.warning(
                "WEREvaluation: %d utterance(s) with an empty reference left out of the rates",
                int(result["empty_refs"]),
            )
        if trainer.is_global_zero:
            self._log_examples(trainer)

    def _log_examples(self, trainer: L.Trainer) -> None:
        if not self.examples:
            return
        rows = [list(example) for example in self.examples]
        for key, ref, hyp in rows:  # printed (not logged at INFO): the user sees what the model writes
            print(f"[val example] {key}\n  ref: {ref}\n  hyp: {hyp}", flush=True)
        for logger in trainer.loggers:
            try:
                if hasattr(logger, "log_text"):  # WandbLogger
                    logger.log_text(
                        key="val/examples",
                        columns=["key", "reference", "hypothesis"],
                        data=rows,
                        step=trainer.global_step,
                    )
                elif hasattr(getattr(logger, "experiment", None), "add_text"):  # TensorBoard
                    table = "\n".join(f"| {k} | {r} | {h} |" for k, r, h in rows)
                    logger.experiment.add_text(
                        "val/examples", "| key | reference | hypothesis |\n|---|---|---|\n" + table, trainer.global_step
                    )
            except Exception as exc:  # an example table must never stop training
                log.warning("WEREvaluation: could not log examples to %s: %s", type(logger).__name__, exc)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active or not self.last or not trainer.is_global_zero:
            return
        loss = trainer.callback_metrics.get("val/loss")
        line = f"[val] step {trainer.global_step}  " + "  ".join(f"{k} {v:.3f}" for k, v in self.last.items())
        print(line + (f"  loss {float(loss):.2f}" if loss is not None else ""), flush=True)

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_step = state_dict.get("last_step")
