"""CLI: ``python -m nano8k.transcribe`` — audio files or a manifest -> text, batched greedy decoding."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import torch
from jsonargparse import ArgumentParser

from nano8k.data.audio import MULTICHANNEL_POLICIES
from nano8k.data.badsamples import DataError
from nano8k.data.manifest import Utterance, read_utterances
from nano8k.inference import RECORD_KEYS, DecodeOptions, feeding, transcribe_utterances
from nano8k.model.attention_guard import guard_cudnn_sdpa
from nano8k.model.checkpoint import load_pretrained
from nano8k.model.features import FrontendConfig
from nano8k.model.nano import NanoASR
from nano8k.model.prompt import LANGUAGE_NAMES, MANIFEST_LANGUAGE, PromptSettings
from nano8k.model.locate import MODEL_DIR_ENV, resolve_model_dir
from nano8k.errors import command


def utterances_from_files(paths: Sequence[str | Path], channel: int | None = None) -> list[Utterance]:
    """One utterance per audio file (its ``channel``, 0-based, when given); the key is the file stem (the full path
    when stems collide)."""
    stems = [Path(p).stem for p in paths]
    return [Utterance(key=stem if stems.count(stem) == 1 else str(p), audio=Path(p).expanduser().resolve(), target="",
                      channel=channel) for stem, p in zip(stems, paths)]


def utterances_from_manifest(path: str | Path) -> list[Utterance]:
    """All entries of a manifest (any supported format); unreadable lines or repeated keys abort, naming them."""
    try:
        return read_utterances(path, "nano8k")
    except DataError as exc:
        raise SystemExit(f"error: {exc}") from exc


def load_model(model_dir: str | None, device: str, llm_dtype: str | None) -> NanoASR:
    """Load ``model_dir`` for inference on ``device`` (``auto``: CUDA when available)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        path = resolve_model_dir(model_dir)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    model = load_pretrained(path, llm_dtype=llm_dtype).to(device).eval()
    try:
        guard_cudnn_sdpa(torch.device(device))  # Hopper: cuDNN SDPA off unless $NANO8K_ALLOW_CUDNN_SDPA=1
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from exc
    return model


NO_VALUE = ("null", "none")  # a CLI value that sets a recipe setting to nothing (no language, no system turn)


def prompt_language(value: str) -> str:
    """``--language`` value: a code the prompt knows, ``manifest`` (each line's own), or ``null`` / ``none``."""
    if value.lower() in NO_VALUE or value == MANIFEST_LANGUAGE:
        return value
    if value not in LANGUAGE_NAMES:
        raise argparse.ArgumentTypeError(
            f"must be one of {', '.join(LANGUAGE_NAMES)}, {MANIFEST_LANGUAGE} or null, got {value!r}")
    return value


def text_value(value: str) -> str:
    """A free-text option taken as written (``null`` / ``none`` included: ``decode_options`` reads those)."""
    return value


def add_decode_arguments(parser: ArgumentParser) -> None:
    """Options shared by ``transcribe`` and ``evaluate``. Without the prompt and fbank options a model is fed as its
    recipe record says (``frontend_conf.fs``, ``nano8k.prompt``); giving one overrides the record, with a notice."""
    parser.add_argument("--model_dir", type=str | None, default=None,
                        help=f"model folder (FunASR release or nano8k export); default ${MODEL_DIR_ENV}; 'mini' / 'tiny' = "
                             "the bundled models")
    parser.add_argument("--language", type=prompt_language, default=None,
                        help="prompt language: zh, en, ja (or 中文, 英文, 日文), manifest (each line's lang) or null; "
                             "default: the model's recipe record (the release: null)")
    parser.add_argument("--itn", type=bool | None, default=None,
                        help="false: prompt for text without inverse normalization; default: the model's record")
    parser.add_argument("--system_prompt", type=text_value, default=None,
                        help="the prompt's system turn (null: none); default: the model's record")
    parser.add_argument("--context_header", type=bool | None, default=None,
                        help="the fine-tuning context header before the task text; default: the model's record")
    parser.add_argument("--hotwords", type=str, default="", help="comma-separated hotwords for the prompt")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_new_tokens", type=int, default=256)
    parser.add_argument("--frontend_rate", type=int | None, default=None, choices=[16000, 8000, None],
                        help="fbank rate; default: the model's record (frontend_conf.fs, 16000 for the release)")
    parser.add_argument("--dither", type=float, default=0.0)
    parser.add_argument("--multichannel", type=str, default="error", choices=list(MULTICHANNEL_POLICIES),
                        help="a multi-channel file whose utterance names no channel: error, first, or mix")
    parser.add_argument("--device", type=str, default="auto")
    parser.add_argument("--llm_dtype", type=str | None, default=None, help="fp32, bf16 or fp16 for the LLM")


def decode_options(args: argparse.Namespace) -> DecodeOptions:
    """The decode options of parsed arguments; only the recipe settings given on the command line are overrides."""
    if args.batch_size < 1:
        raise SystemExit(f"error: --batch_size must be >= 1, got {args.batch_size}")
    hotwords = tuple(word.strip() for word in args.hotwords.split(",") if word.strip())
    given = {key: getattr(args, key) for key in RECORD_KEYS if getattr(args, key) is not None}
    for key in ("language", "system_prompt"):
        if isinstance(given.get(key), str) and given[key].lower() in NO_VALUE:
            given[key] = None
    return DecodeOptions(overrides=given, hotwords=hotwords, batch_size=args.batch_size,
                         max_new_tokens=args.max_new_tokens, dither=args.dither, multichannel=args.multichannel)


def print_notices(model: NanoASR, options: DecodeOptions) -> tuple[FrontendConfig, PromptSettings]:
    """Say on stderr which settings of the model's recipe record the command line overrides; returns the frontend
    and prompt settings the model is decoded with (``inference.feeding``)."""
    frontend, prompts, notices = feeding(model, options)
    for notice in notices:
        print(f"notice: {notice}", file=sys.stderr)
    return frontend, prompts


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m nano8k.transcribe", description=__doc__)
    parser.add_argument("files", nargs="*", help="audio files (or use --manifest)")
    parser.add_argument("--manifest", type=str | None, default=None, help="ChatML / {key,source,target} jsonl / Kaldi / Lhotse")
    parser.add_argument("--output", type=str | None, default=None, help="also write {key, audio, text} jsonl here")
    parser.add_argument("--channel", type=int | None, default=None,
                        help="decode this channel (0-based) of each file given (a manifest names its own channels)")
    add_decode_arguments(parser)
    args = parser.parse_args(argv)
    if bool(args.files) == bool(args.manifest):
        parser.error("give audio files or --manifest (one of them)")
    options = decode_options(args)
    if args.manifest and args.channel is not None:
        parser.error("--channel applies to audio files; a manifest gives each utterance's channel")
    utts = utterances_from_manifest(args.manifest) if args.manifest else utterances_from_files(args.files, args.channel)
    model = load_model(args.model_dir, args.device, args.llm_dtype)
    print_notices(model, options)
    results = transcribe_utterances(model, utts, options)
    out = open(args.output, "w", encoding="utf-8") if args.output else None
    try:
        for result in results:
            if result.error:
                print(f"{result.utt.key}: {result.error}", file=sys.stderr)
                continue
            print(f"{result.utt.key}\t{result.text}", flush=True)
            if out:
                utt = result.utt
                record = {"key": utt.key, "audio": str(utt.audio), "text": result.text}
                if utt.is_segment:
                    record.update(offset=utt.offset, duration=utt.duration)
                if utt.channel is not None:
                    record["channel"] = utt.channel
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if out:
            out.close()
    failed = sum(result.error is not None for result in results)
    if failed:
        print(f"{failed} of {len(results)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
