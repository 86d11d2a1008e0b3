"""A tiny synthetic data module (random features, fixed transcripts) for training tests on the bundled model."""

from __future__ import annotations

from functools import partial
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader
from transformers import AutoTokenizer

from nano8k.model.batch import SpeechBatch, SpeechItem, collate
from nano8k.model.bundled import TINY_TEMPLATE_DIR
from nano8k.model.prompt import PromptEncoder, audio_token_count, pad_token_id

WORDS = ["hello", "world", "yes", "no", "call", "back", "today", "please"]


def tiny_tokenizer():
    return AutoTokenizer.from_pretrained(str(TINY_TEMPLATE_DIR / "Qwen3-0.6B"))


def make_items(tokenizer, count: int, seed: int = 0) -> list[SpeechItem]:
    gen = torch.Generator().manual_seed(seed)
    encoder = PromptEncoder(tokenizer)
    items = []
    for i in range(count):
        frames = int(torch.randint(12, 30, (1,), generator=gen))
        target = " ".join(WORDS[int(j)] for j in torch.randint(0, len(WORDS), (2,), generator=gen))
        prompt = encoder.encode(audio_token_count(frames), target)
        items.append(SpeechItem(f"utt{seed}_{i}", torch.randn(frames, 560, generator=gen), prompt, target))
    return items


def make_batch(count: int = 3, seed: int = 0) -> SpeechBatch:
    tokenizer = tiny_tokenizer()
    return collate(make_items(tokenizer, count, seed), pad_token_id(tokenizer))


class SyntheticDataModule(L.LightningDataModule):
    """Fixed random utterances; records the frontend rate it is asked for (like TelephoneDataModule)."""

    def __init__(self, n_train: int = 16, n_val: int = 4, batch_size: int = 4, seed: int = 0) -> None:
        super().__init__()
        tokenizer = tiny_tokenizer()
        self.pad_id = pad_token_id(tokenizer)
        self.train_items = make_items(tokenizer, n_train, seed)
        self.val_items = make_items(tokenizer, n_val, seed + 1)
        self.batch_size = batch_size
        self.frontend_rate = 16000

    def set_frontend_rate(self, rate: int) -> None:
        self.frontend_rate = int(rate)

    def _loader(self, items: list[SpeechItem]) -> DataLoader:
        return DataLoader(
            items, batch_size=self.batch_size, shuffle=False, collate_fn=partial(collate, pad_id=self.pad_id)
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_items)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_items)

    def state_dict(self) -> dict[str, Any]:
        return {"frontend_rate": self.frontend_rate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.frontend_rate = int(state["frontend_rate"])
