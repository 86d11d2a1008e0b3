"""``BeforeAfterEvaluation``: CER on a held-out test manifest before fine-tuning and after it (the exported model)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from nano8k.data.audio import MultichannelPolicy
from nano8k.data.manifests.io import Utterance, read_utterances
from nano8k.errors import DataError
from nano8k.inference import DecodeOptions, decode_and_score
from nano8k.model.checkpoint import load_pretrained
from nano8k.model.nano import NanoASR
from nano8k.scoring.normalizers import NormalizerName, get_normalizer
from nano8k.training.checkpointing import ExportOnFitEnd

log = logging.getLogger(__name__)


class BeforeAfterEvaluation(Callback):
    """Decodes ``manifest`` with the starting weights (at fit start) and with the exported model (after fit).

    "After" is the model ``ExportOnFitEnd`` wrote (``export/hf``, loaded back from disk, so the export's feeding record
    is what feeds it), or the final in-memory weights when the trainer has no export callback. Prints one line,
    ``[test] <label> (N utts): CER before 0.934 → after 0.213 (en ..., zh ...)``, logs ``test/cer_before`` and
    ``test/cer_after``, and writes ``<default_root_dir>/before_after.json`` with both scores and every hypothesis.
    The "before" score is kept in checkpoints, so a resumed fit still compares with the weights it started from.
    "Before" feeds the starting model as its own feeding says (fbank rate, prompts); "after" the export's,
    which records how training fed it. ``normalizer`` (``basic``, ``funasr``, ``none``)
    is applied to both sides before scoring. ``multichannel`` is the policy for a multi-channel
    file whose utterance names no channel. Decoding runs on global rank 0 only while the other
    ranks wait, so keep the manifest to minutes of audio.
    """

    def __init__(
        self,
        manifest: str,
        label: str = "held-out test set",
        max_new_tokens: int = 64,
        batch_size: int = 32,
        multichannel: MultichannelPolicy = "error",
        normalizer: NormalizerName = "basic",
    ) -> None:
        get_normalizer(normalizer)  # an unknown name fails when the config is built
        self.manifest, self.label, self.normalizer = manifest, label, normalizer
        self.options = DecodeOptions(batch_size=batch_size, max_new_tokens=max_new_tokens, multichannel=multichannel)
        self.before: dict[str, Any] | None = None
        self.after: dict[str, Any] | None = None
        self._completed = False
        self._utts: list[Utterance] | None = None

    def utterances(self) -> list[Utterance]:
        if self._utts is None:
            utts = read_utterances(self.manifest, "BeforeAfterEvaluation")
            if not utts:
                raise DataError(f"BeforeAfterEvaluation: {self.manifest} holds no utterance")
            self._utts = utts
        return self._utts

    def evaluate(self, model: NanoASR) -> tuple[dict[str, Any], list[str]]:
        return decode_and_score(model, self.utterances(), self.options, self.manifest, self.normalizer)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._completed = False
        if self.before is None and trainer.is_global_zero:
            was_training = pl_module.training
            pl_module.eval()
            try:
                self.before, _ = self.evaluate(pl_module.model)
            finally:
                pl_module.train(was_training)  # NanoASRModule.train keeps frozen parts in eval mode
            print(
                f"[test] {self.label} ({self.before['utterances']} utts): CER before fine-tuning "
                f"{self.before['cer']:.3f}",
                flush=True,
            )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._completed = not trainer.interrupted

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # after every on_fit_end, so ExportOnFitEnd has written the export whatever the callback order
        if stage != "fit" or not self._completed or not trainer.is_global_zero:
            return
        self._completed = False
        export = next((c for c in trainer.callbacks if isinstance(c, ExportOnFitEnd) and c.exported), None)
        if export is not None:
            source = str(export.exported["hf"])
            model = load_pretrained(source).to(trainer.strategy.root_device)
        else:
            source, model = "final in-memory weights", pl_module.model
            pl_module.eval()
        self.after, hyps = self.evaluate(model)
        before = self.before or {}
        langs = ", ".join(
            f"{lang} {before.get('by_language', {}).get(lang, float('nan')):.3f} → {value:.3f}"
            for lang, value in self.after["by_language"].items()
        )
        print(
            f"[test] {self.label} ({self.after['utterances']} utts): CER before {before.get('cer', float('nan')):.3f}"
            f" → after {self.after['cer']:.3f} ({langs}); after = {source}",
            flush=True,
        )
        for logger in trainer.loggers:
            logger.log_metrics(
                {"test/cer_before": before.get("cer", float("nan")), "test/cer_after": self.after["cer"]},
                step=int(trainer.global_step),
            )
        report = {
            "label": self.label,
            "manifest": str(Path(self.manifest).resolve()),
            "after_model": source,
            "before": self.before,
            "after": self.after,
            "hypotheses": [{"key": u.key, "ref": u.target, "hyp": h} for u, h in zip(self.utterances(), hyps)],
        }
        path = Path(trainer.default_root_dir) / "before_after.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    def state_dict(self) -> dict[str, Any]:
        return {"before": self.before}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = state_dict.get("before")
