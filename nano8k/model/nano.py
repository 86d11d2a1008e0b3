"""Fun-ASR-Nano forward pass: encoder + adaptor, splice of the speech frames (the model's token rule), loss, greedy decoding."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nano8k.model.batch import SpeechBatch
from nano8k.model.features import FrontendConfig
from nano8k.model.prompt import PromptEncoder
from nano8k.model.recipe import Recipe


@dataclass
class NanoOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor


def postprocess_text(text: str) -> str:
    """Reference post-processing of a decoded response: ``/sil`` becomes a space, whitespace collapses."""
    return re.sub(r"\s+", " ", text.replace("/sil", " ")).strip()


def frame_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, max_len] long mask, 1 on the first ``lengths[b]`` positions."""
    return (torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]).long()


class NanoASR(nn.Module):
    """The released network (transformers ``FunAsrNanoForConditionalGeneration``) with the reference data path."""

    def __init__(
        self,
        network: nn.Module,
        tokenizer: Any,
        frontend: FrontendConfig,
        funasr_config: dict[str, Any],
        qwen_config: dict[str, Any],
        extra_tensors: dict[str, torch.Tensor] | None = None,
        recipe: Recipe | None = None,
    ):
        super().__init__()
        self.network = network
        self.tokenizer = tokenizer
        self.frontend = frontend
        self.funasr_config = funasr_config
        self.qwen_config = qwen_config
        self.extra_tensors = dict(extra_tensors or {})  # e.g. untrained CTC tensors, kept only for export
        self.recipe = recipe or Recipe()  # token rule and weight lineage, from the model dir's config.yaml
        self.prompts = PromptEncoder(tokenizer)

    @property
    def encoder(self) -> nn.Module:
        return self.network.model.audio_tower

    @property
    def adaptor(self) -> nn.Module:
        return self.network.model.multi_modal_projector

    @property
    def llm(self) -> nn.Module:
        return self.network.model.language_model

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids("<|im_end|>"))

    @property
    def max_frames(self) -> int:
        """The most LFR frames the encoder takes: its sinusoid table rows less the unused position 0 (release: 2048)."""
        return int(self.encoder.config.max_position_embeddings) - 1

    def encode_audio(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> torch.Tensor:
        """Encoder + adaptor over a padded batch ``[B, L, 560]`` with its full mask -> ``[B, L, llm_dim]``."""
        longest, seconds = self.max_frames, self.frontend.lfr_frame_seconds
        if feats.shape[1] > longest:
            raise ValueError(
                f"audio of {feats.shape[1]} LFR frames ({feats.shape[1] * seconds:.1f} s) exceeds the encoder's "
                f"{longest} frames ({longest * seconds:.1f} s); split long recordings (the release trained on <= 2000 "
                "frames, 120 s) or lower data.max_duration"
            )
        mask = frame_mask(feat_lens, feats.shape[1])
        encoded = self.encoder(input_features=feats, input_features_mask=mask).last_hidden_state
        return self.adaptor(encoded, mask)

    def splice(
        self, input_ids: torch.Tensor, audio_start: torch.Tensor, audio_tokens: torch.Tensor, adaptor_out: torch.Tensor
    ) -> torch.Tensor:
        """Token embeddings with ``adaptor_out[b, :audio_tokens[b]]`` written at ``audio_start[b]`` (no per-frame loop)."""
        if bool((audio_tokens > adaptor_out.shape[1]).any()):
            raise ValueError(
                f"speech slots ({audio_tokens.tolist()}) exceed the adaptor frames ({adaptor_out.shape[1]}): "
                "the prompts were built for other features"
            )
        embeds = self.llm.get_input_embeddings()(input_ids.clamp(min=0))
        offsets = torch.arange(int(audio_tokens.max()), device=input_ids.device)
        valid = offsets[None, :] < audio_tokens[:, None]
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(valid)[valid]
        frames = offsets[None, :].expand_as(valid)[valid]
        positions = (audio_start[:, None] + offsets[None, :])[valid]
        return embeds.index_put((rows, positions), adaptor_out[rows, frames].to(embeds.dtype))

    def embed(self, batch: SpeechBatch) -> torch.Tensor:
        adaptor_out = self.encode_audio(batch.feats, batch.feat_lens)
        return self.splice(batch.input_ids, batch.audio_start, batch.audio_tokens, adaptor_out)

    def forward(self, batch: SpeechBatch) -> NanoOutput:
        """Teacher-forced logits and the causal-LM loss (mean over labelled target tokens of the batch)."""
        out = self.network(
            inputs_embeds=self.embed(batch), attention_mask=batch.attention_mask, labels=batch.labels, use_cache=False
        )
        return NanoOutput(loss=out.loss, logits=out.logits)

    def left_padded_sources(self, batch: SpeechBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Source parts of the batch, left-padded: (input_ids, attention_mask, audio_start)."""
        width = int(batch.source_lens.max())
        shift = width - batch.source_lens  # [B]
        columns = torch.arange(width, device=shift.device)[None, :] - shift[:, None]
        mask = columns >= 0
        ids = torch.gather(batch.input_ids, 1, columns.clamp(min=0))
        ids = torch.where(mask, ids, torch.full_like(ids, self.pad_id))
        return ids, mask.long(), batch.audio_start + shift

    @torch.no_grad()
    def generate_ids(self, batch: SpeechBatch, max_new_tokens: int = 512) -> list[list[int]]:
        """Batched greedy decoding; each row equals decoding that utterance alone. Stops at ``<|im_end|>``."""
        ids, mask, audio_start = self.left_padded_sources(batch)
        adaptor_out = self.encode_audio(batch.feats, batch.feat_lens)
        embeds = self.splice(ids, audio_start, batch.audio_tokens, adaptor_out)
        generated = self.network.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=self.eos_id,
            pad_token_id=self.pad_id,
        )
        results = []
        for row in generated.tolist():
            if self.eos_id in row:
                row = row[: row.index(self.eos_id)]
            results.append(row)
        return results

    def decode(self, ids: list[int]) -> str:
        return postprocess_text(self.tokenizer.decode(ids, skip_special_tokens=True))

    def transcribe(self, batch: SpeechBatch, max_new_tokens: int = 512) -> list[str]:
        """Batched greedy transcription with reference text post-processing."""
        return [self.decode(ids) for ids in self.generate_ids(batch, max_new_tokens)]
