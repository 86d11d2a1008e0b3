"""The batch contract between the data layer and the model: padded features, ids, labels and speech slots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

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
    label_index: torch.Tensor | None = None  # [N] flat positions in [B * S] that predict a label (label_positions)
    label_targets: torch.Tensor | None = None  # [N] the labels they predict
    text_prefix: int = 0  # positions before every row's speech (min audio_start), known on the host
    text_prefix_ids: tuple[int, ...] = ()  # their ids when every row has the same ones (the system turn), else ()

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SpeechBatch:
        """Every tensor on ``device`` (``non_blocking`` from pinned memory: the host does not wait for the copy)."""
        return self._map(lambda tensor: tensor.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> SpeechBatch:
        """Every tensor in page-locked memory (``DataLoader(pin_memory=True)`` calls this), for copies that overlap."""
        return self._map(lambda tensor: tensor.pin_memory())

    def _map(self, function: Any) -> SpeechBatch:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return SpeechBatch(
            **{name: function(value) if isinstance(value, torch.Tensor) else value for name, value in values.items()}
        )

    def __len__(self) -> int:
        return int(self.feats.shape[0])

    def sources(self, pad_id: int) -> SourceBatch:
        """The prompts without their targets, left-padded for generation (validation decodes a training batch)."""
        width = int(self.source_lens.max())
        shift = width - self.source_lens  # [B]
        columns = torch.arange(width, device=shift.device)[None, :] - shift[:, None]
        mask = columns >= 0
        ids = torch.gather(self.input_ids, 1, columns.clamp(min=0))
        ids = torch.where(mask, ids, torch.full_like(ids, pad_id))
        return SourceBatch(
            self.feats, self.feat_lens, ids, mask.long(), self.audio_start + shift, self.audio_tokens, list(self.keys)
        )


@dataclass
class SourceBatch:
    """Left-padded prompts without targets, for generation: every row's source ends at the last column."""

    feats: torch.Tensor  # [B, Lmax, D] float32, zero-padded on the right
    feat_lens: torch.Tensor  # [B] LFR frames
    input_ids: torch.Tensor  # [B, S] left-padded with the pad id; speech placeholders are id 0
    attention_mask: torch.Tensor  # [B, S], 0 on the left padding
    audio_start: torch.Tensor  # [B] index of the first speech placeholder (after the padding)
    audio_tokens: torch.Tensor  # [B] number of speech placeholders
    keys: list[str] = field(default_factory=list)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SourceBatch:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return SourceBatch(
            **{
                name: value.to(device, non_blocking=non_blocking) if isinstance(value, torch.Tensor) else value
                for name, value in values.items()
            }
        )

    def __len__(self) -> int:
        return int(self.feats.shape[0])


def collate_sources(items: Sequence[SpeechItem], pad_id: int) -> SourceBatch:
    """Pad source-only items (``PromptEncoder.encode`` without a target) into a left-padded ``SourceBatch``."""
    if not items:
        raise ValueError("cannot collate an empty list of utterances")
    _check_slots(items)
    feat_lens = torch.tensor([item.feats.shape[0] for item in items], dtype=torch.long)
    width = max(item.prompt.source_len for item in items)
    feats = torch.zeros(len(items), int(feat_lens.max()), items[0].feats.shape[1], dtype=torch.float32)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(len(items), width, dtype=torch.long)
    shifts = []
    for row, item in enumerate(items):
        source = item.prompt.input_ids[: item.prompt.source_len]
        shift = width - len(source)
        feats[row, : item.feats.shape[0]] = item.feats
        input_ids[row, shift:] = torch.tensor(source)
        attention_mask[row, shift:] = 1
        shifts.append(shift)
    return SourceBatch(
        feats=feats,
        feat_lens=feat_lens,
        input_ids=input_ids,
        attention_mask=attention_mask,
        audio_start=torch.tensor(
            [item.prompt.audio_start + shift for item, shift in zip(items, shifts)], dtype=torch.long
        ),
        audio_tokens=torch.tensor([item.prompt.audio_tokens for item in items], dtype=torch.long),
        keys=[item.key for item in items],
    )


def _check_slots(items: Sequence[SpeechItem]) -> None:
    for item in items:
        if item.prompt.audio_tokens > item.feats.shape[0]:
            raise ValueError(
                f"utterance {item.key!r}: {item.prompt.audio_tokens} speech slots exceed its {item.feats.shape[0]} "
                "feature frames: the prompt was built for other features"
            )


def label_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices into ``[B * S]`` of the positions that predict a label, and those labels.

    Position ``t`` predicts ``labels[t + 1]`` (the HF causal-LM shift). ``collate`` computes them on the host, so the
    training step never asks the device how many labels there are.
    """
    following = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX).flatten()
    index = (following != IGNORE_INDEX).nonzero().squeeze(1)
    return index, following[index]


def padded_length(length: Any, multiple: int, limit: int | None = None) -> Any:
    """``length`` rounded up to a multiple of ``multiple``, but not past ``limit`` (when ``length`` is within it).

    ``length`` is an int, or without ``limit`` an integer array (the sampler's planned lengths)."""
    if multiple < 1:
        raise ValueError(f"a padding multiple must be >= 1, got {multiple}")
    rounded = -(-length // multiple) * multiple
    return min(rounded, max(length, limit)) if limit is not None else rounded


def collate(
    items: Sequence[SpeechItem],
    pad_id: int,
    frame_multiple: int = 1,
    token_multiple: int = 1,
    max_frames: int | None = None,
) -> SpeechBatch:
    """Pad a list of items into a ``SpeechBatch``.

    The feature and token widths are rounded up to ``frame_multiple`` / ``token_multiple`` (fewer distinct shapes for
    an accelerator's kernels to plan for; the padding is masked, so the loss is unchanged), the frames not past
    ``max_frames`` (the encoder's limit). Each utterance's speech slots must fit its frames.
    """
    if not items:
        raise ValueError("cannot collate an empty list of utterances")
    _check_slots(items)
    feat_lens = torch.tensor([item.feats.shape[0] for item in items], dtype=torch.long)
    seq_lens = [len(item.prompt.input_ids) for item in items]
    batch = len(items)
    max_frames = padded_length(int(feat_lens.max()), frame_multiple, max_frames)
    max_len = padded_length(max(seq_lens), token_multiple)
    feats = torch.zeros(batch, max_frames, items[0].feats.shape[1], dtype=torch.float32)
    input_ids = torch.full((batch, max_len), pad_id, dtype=torch.long)
    labels = torch.full((batch, max_len), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros(batch, max_len, dtype=torch.long)
    for row, (item, length) in enumerate(zip(items, seq_lens)):
        feats[row, : item.feats.shape[0]] = item.feats
        input_ids[row, :length] = torch.tensor(item.prompt.input_ids)
        labels[row, :length] = torch.tensor(item.prompt.labels)
        attention_mask[row, :length] = 1
    label_index, label_targets = label_positions(labels)
    prefix = min(item.prompt.audio_start for item in items)
    shared = {tuple(item.prompt.input_ids[:prefix]) for item in items}
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
        label_index=label_index,
        label_targets=label_targets,
        text_prefix=prefix,
        text_prefix_ids=shared.pop() if len(shared) == 1 else (),
    )
