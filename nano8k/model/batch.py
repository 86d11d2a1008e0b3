"""The batch contract between the data layer and the model: padded features, ids, labels and speech slots."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Sequence

import torch

from nano8k.model.prompt import IGNORE_INDEX, EncodedPrompt


@dataclass
class SpeechItem:
    """One utterance ready for collation."""

    key: str
    feats: torch.Tensor  # [L, 560]
    prompt: EncodedPrompt
    target: str = ""


@dataclass
class SpeechBatch:
    """Right-padded batch; every tensor has batch size B first."""

    feats: torch.Tensor  # [B, Lmax, D] float32, zero-padded
    feat_lens: torch.Tensor  # [B] LFR frames
    input_ids: torch.Tensor  # [B, S] right-padded with the pad id; speech placeholders are id 0
    attention_mask: torch.Tensor  # [B, S]
    labels: torch.Tensor  # [B, S], IGNORE_INDEX on the source and on padding
    audio_start: torch.Tensor  # [B] index of the first speech placeholder
    audio_tokens: torch.Tensor  # [B] number of speech placeholders
    source_lens: torch.Tensor  # [B] prompt length up to and including "assistant\n"
    targets: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # samples the data layer dropped (BadSample.record())

    def to(self, device: torch.device | str) -> "SpeechBatch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device)
        return SpeechBatch(**moved)

    def __len__(self) -> int:
        return int(self.feats.shape[0])


def collate(items: Sequence[SpeechItem], pad_id: int) -> SpeechBatch:
    """Pad a list of items into a ``SpeechBatch``."""
    if not items:
        raise ValueError("cannot collate an empty list of utterances")
    feat_lens = torch.tensor([item.feats.shape[0] for item in items], dtype=torch.long)
    seq_lens = [len(item.prompt.input_ids) for item in items]
    batch, max_frames, max_len = len(items), int(feat_lens.max()), max(seq_lens)
    feats = torch.zeros(batch, max_frames, items[0].feats.shape[1], dtype=torch.float32)
    input_ids = torch.full((batch, max_len), pad_id, dtype=torch.long)
    labels = torch.full((batch, max_len), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros(batch, max_len, dtype=torch.long)
    for row, (item, length) in enumerate(zip(items, seq_lens)):
        feats[row, : item.feats.shape[0]] = item.feats
        input_ids[row, :length] = torch.tensor(item.prompt.input_ids)
        labels[row, :length] = torch.tensor(item.prompt.labels)
        attention_mask[row, :length] = 1
    return SpeechBatch(
        feats=feats,
        feat_lens=feat_lens,
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        audio_start=torch.tensor([item.prompt.audio_start for item in items], dtype=torch.long),
        audio_tokens=torch.tensor([item.prompt.audio_tokens for item in items], dtype=torch.long),
        source_lens=torch.tensor([item.prompt.source_len for item in items], dtype=torch.long),
        targets=[item.target for item in items],
        keys=[item.key for item in items],
    )
