"""Fun-ASR-Nano forward pass: encoder + adaptor, splice of the speech frames (token rule), loss, greedy decoding."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nano8k.model.batch import SourceBatch, SpeechBatch, label_positions
from nano8k.model.features import FrontendConfig
from nano8k.model.feeding import Feeding
from nano8k.model.prompt import pad_token_id


@dataclass
class NanoOutput:
    """Teacher-forced outputs. The LM head runs only where a label is, unless all logits were asked for."""

    loss: torch.Tensor  # mean cross-entropy over the batch's labelled target tokens (the HF causal-LM loss)
    label_logits: torch.Tensor  # [N, vocab] logits at the N positions that predict a label
    label_targets: torch.Tensor  # [N] the labels they predict
    logits: torch.Tensor | None = None  # [B, S, vocab] at every position, only with forward(all_logits=True)

    def token_accuracy(self) -> torch.Tensor:
        """Teacher-forced next-token accuracy over the labelled positions (0 when there are none)."""
        correct = (self.label_logits.detach().argmax(-1) == self.label_targets).sum()
        return correct.float() / max(1, self.label_targets.numel())


def postprocess_text(text: str) -> str:
    """Reference post-processing of a decoded response: ``/sil`` becomes a space, whitespace collapses."""
    return re.sub(r"\s+", " ", text.replace("/sil", " ")).strip()


def frame_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, max_len] long mask, 1 on the first ``lengths[b]`` positions."""
    return (torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]).long()


def causal_mask(attention_mask: torch.Tensor, first_query: int = 0) -> torch.Tensor:
    """``[B, 1, S - first_query, S]`` boolean SDPA mask: query ``q`` sees keys ``<= q`` that are not padding."""
    width = attention_mask.shape[1]
    queries = torch.arange(first_query, width, device=attention_mask.device)[:, None]
    keys = torch.arange(width, device=attention_mask.device)[None, :]
    return (keys <= queries)[None, None] & attention_mask.bool()[:, None, None, :]


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
        feeding: Feeding | None = None,
    ):
        super().__init__()
        self.network = network
        self.tokenizer = tokenizer
        self._fbank_settings = frontend  # its rate and dither are the feeding's
        self.funasr_config = funasr_config
        self.qwen_config = qwen_config
        self.extra_tensors = dict(extra_tensors or {})  # e.g. untrained CTC tensors, kept only for export
        # token rule, weight lineage, prompt settings, fbank rate and dither: the model dir's config.yaml
        self.feeding = feeding or Feeding(frontend_rate=frontend.sample_rate, dither=frontend.dither)
        self._prefix_states: tuple | None = None  # (key, hidden, per-layer keys/values) of a shared text prefix

    @property
    def frontend(self) -> FrontendConfig:
        """The fbank settings: config.yaml's ``frontend_conf`` at the feeding's rate and dither."""
        return self.feeding.frontend(self._fbank_settings)

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
        return pad_token_id(self.tokenizer)

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids("<|im_end|>"))

    @property
    def max_frames(self) -> int:
        """The most LFR frames the encoder takes: its sinusoid table rows less the unused position 0 (release: 2048)."""
        return int(self.encoder.config.max_position_embeddings) - 1

    @property
    def builds_masks(self) -> bool:
        """Whether this model makes its own SDPA attention masks (boolean, 4-D) on the device.

        transformers' mask builders ask the device whether a batch has padding (``mask.all()``: a host sync, so a
        GPU stall, per encoder, adaptor and LLM call); a 4-D mask is used as given. Other attention
        implementations keep transformers' own masks.
        """
        return getattr(self.network.config, "_attn_implementation", None) == "sdpa"

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
        if not self.builds_masks:
            encoded = self.encoder(input_features=feats, input_features_mask=mask).last_hidden_state
            return self.adaptor(encoded, mask)
        # the encoder's own forward, with the SDPA mask made here (FSMN still takes the frame mask)
        keys = mask.bool()[:, None, None, :]  # [B, 1, 1, L]: every query sees the valid frames
        encoder = self.encoder
        hidden = feats.to(encoder.layers[0].input_layernorm.weight.dtype)
        hidden = hidden * encoder.scaling + encoder.position_embeddings(hidden)
        for layer in encoder.layers:
            hidden = layer(hidden, keys, mask)
        return self.adaptor(hidden, keys)  # a 4-D mask is used as given

    def splice(
        self, input_ids: torch.Tensor, audio_start: torch.Tensor, audio_tokens: torch.Tensor, adaptor_out: torch.Tensor
    ) -> torch.Tensor:
        """Token embeddings with ``adaptor_out[b, :audio_tokens[b]]`` written at ``audio_start[b]``.

        Gather and select over the padded width, no boolean indexing: no value travels from the device to the host
        (``collate`` has checked on the host that each utterance's slots fit its frames).
        """
        embeds = self.llm.get_input_embeddings()(input_ids.clamp(min=0))
        frame = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] - audio_start[:, None]  # [B, S]
        is_audio = (frame >= 0) & (frame < audio_tokens[:, None])
        index = frame.clamp(0, adaptor_out.shape[1] - 1)[..., None].expand(-1, -1, adaptor_out.shape[2])
        speech = adaptor_out.gather(1, index).to(embeds.dtype)
        return torch.where(is_audio[..., None], speech, embeds)

    def embed(self, batch: SpeechBatch) -> torch.Tensor:
        adaptor_out = self.encode_audio(batch.feats, batch.feat_lens)
        return self.splice(batch.input_ids, batch.audio_start, batch.audio_tokens, adaptor_out)

    def forward(self, batch: SpeechBatch, all_logits: bool = False) -> NanoOutput:
        """Teacher-forced loss (mean over the labelled target tokens of the batch, as the HF causal-LM loss).

        The LM head (151,936 outputs at full size) runs on the hidden states of the labelled positions only; the
        logits of every position are computed too when ``all_logits``.
        """
        hidden = self.llm_hidden(self.embed(batch), batch.attention_mask, batch.text_prefix, batch.text_prefix_ids)
        index, targets = batch.label_index, batch.label_targets
        if index is None or targets is None:
            index, targets = label_positions(batch.labels)
        label_logits = self.network.lm_head(hidden.flatten(0, 1).index_select(0, index))
        loss = nn.functional.cross_entropy(label_logits.float(), targets)
        logits = self.network.lm_head(hidden) if all_logits else None
        return NanoOutput(loss=loss, label_logits=label_logits, label_targets=targets, logits=logits)

    def llm_hidden(
        self, embeds: torch.Tensor, attention_mask: torch.Tensor, text_prefix: int = 0, prefix_ids: tuple[int, ...] = ()
    ) -> torch.Tensor:
        """The LLM's last hidden states ``[B, S, H]``.

        When gradients flow but no LLM weight trains, the first ``text_prefix`` positions (text before every row's
        speech: nothing trainable reaches them) run without autograd and the rest attends to their cached keys and
        values: the same hidden states, and no backward through the prefix. When every row's prefix is the same
        ``prefix_ids`` (the system turn), its states are computed once and reused while the weights stay the same.
        """
        language_model = self.network.model.language_model
        params = list(language_model.parameters())
        frozen = torch.is_grad_enabled() and not any(p.requires_grad for p in params)
        # a checkpointed layer in train mode drops the cache (transformers' GradientCheckpointingLayer)
        drops_cache = any(
            getattr(layer, "gradient_checkpointing", False) and layer.training for layer in language_model.layers
        )

        def mask(first: int, last: int) -> torch.Tensor:  # queries first..last-1 over keys 0..last-1
            return causal_mask(attention_mask[:, :last], first) if self.builds_masks else attention_mask[:, :last]

        width = embeds.shape[1]
        if not (frozen and not drops_cache and 0 < text_prefix < width):
            return language_model(
                inputs_embeds=embeds, attention_mask=mask(0, width), use_cache=False
            ).last_hidden_state
        if prefix_ids and len(prefix_ids) == text_prefix:
            head, cache = self._shared_prefix(prefix_ids, embeds[:1, :text_prefix], embeds.shape[0], params)
        else:
            with torch.no_grad():
                out = language_model(
                    inputs_embeds=embeds[:, :text_prefix], attention_mask=mask(0, text_prefix), use_cache=True
                )
            head, cache = out.last_hidden_state, out.past_key_values
        rest = language_model(
            inputs_embeds=embeds[:, text_prefix:],
            attention_mask=mask(text_prefix, width),
            past_key_values=cache,
            use_cache=True,
        )
        return torch.cat([head, rest.last_hidden_state], dim=1)

    def forget_prefix_states(self) -> None:
        """Drop the kept prefix states (after a weight change the in-place versions may not show, e.g. via .data)."""
        self._prefix_states = None

    def _shared_prefix(
        self, ids: tuple[int, ...], embeds: torch.Tensor, rows: int, params: list[torch.nn.Parameter]
    ) -> tuple[torch.Tensor, Any]:
        """Hidden states ``[rows, P, H]`` and a fresh key/value cache of a text prefix every row shares, through the
        frozen LLM (whose ``params`` are given): computed once and kept while the weights are unchanged (their
        in-place versions)."""
        from transformers import DynamicCache

        language_model = self.network.model.language_model
        key = (
            ids,
            embeds.dtype,
            embeds.device,
            torch.is_autocast_enabled(embeds.device.type),
            params[0].data_ptr(),
            sum(p._version for p in params),
        )
        if self._prefix_states is None or self._prefix_states[0] != key:
            with torch.no_grad():
                out = language_model(inputs_embeds=embeds, use_cache=True)
            states = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
            self._prefix_states = (key, out.last_hidden_state, states)
        _, hidden, states = self._prefix_states
        cache = DynamicCache(config=language_model.config)
        for index, (keys, values) in enumerate(states):
            cache.update(keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1), index)
        return hidden.expand(rows, -1, -1), cache

    @torch.no_grad()
    def generate_ids(self, batch: SourceBatch, max_new_tokens: int = 512) -> list[list[int]]:
        """Batched greedy decoding of left-padded sources; each row equals decoding that utterance alone. Stops at
        ``<|im_end|>``."""
        adaptor_out = self.encode_audio(batch.feats, batch.feat_lens)
        embeds = self.splice(batch.input_ids, batch.audio_start, batch.audio_tokens, adaptor_out)
        generated = self.network.generate(
            inputs_embeds=embeds,
            attention_mask=batch.attention_mask,
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

    def transcribe(self, batch: SourceBatch, max_new_tokens: int = 512) -> list[str]:
        """Batched greedy transcription with reference text post-processing."""
        return [self.decode(ids) for ids in self.generate_ids(batch, max_new_tokens)]
