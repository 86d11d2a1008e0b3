"""CLI: ``python -m nano8k.transcribe`` — audio files or a manifest -> text, batched greedy decoding."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import IO, Any, Callable, Sequence

import torch
from jsonargparse import ArgumentParser

from nano8k.atomic import unwritable_reason
from nano8k.data.audio import MULTICHANNEL_POLICIES
from nano8k.data.manifests.io import Utterance, read_utterances
from nano8k.inference import RECORD_KEYS, DecodeOptions, Transcript, feeding, transcribe_utterances
from nano8k.model.attention_guard import guard_cudnn_sdpa
from nano8k.model.checkpoint import DTYPES, load_pretrained
from nano8k.model.features import FrontendConfig
from nano8k.model.nano import NanoASR
from nano8k.model.prompt import LANGUAGE_NAMES, MANIFEST_LANGUAGE, PromptSettings
from nano8k.model.locate import MODEL_DIR_ENV, resolve_model_dir
from nano8k.errors import command, fail, one_line


def utterances_from_files(paths: Sequence[str | Path], channel: int | None = None) -> list[Utterance]:
    """One utterance per audio file (its ``channel``, 0-based, when given); the key is the file stem (the full path
    when stems collide)."""
    stems = [Path(p).stem for p in paths]
    return [Utterance(key=stem if stems.count(stem) == 1 else str(p), audio=_absolute(p), target="",
                      channel=channel) for stem, p in zip(stems, paths)]


def _absolute(path: str | Path) -> Path:
    """``path`` resolved; a symlink loop (which ``resolve`` refuses) stays as given, made absolute, so that file fails
    alone when its audio is read and the others are still decoded."""
    path = Path(path).expanduser()
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return path.absolute()


def utterances_from_manifest(path: str | Path, transcripts: bool = True) -> list[Utterance]:
    """All entries of a manifest (any supported format); unreadable lines or repeated keys abort, naming them.
    Without ``transcripts`` an entry may lack its transcript (decoding only): its target is empty."""
    user = "nano8k (scoring needs every entry's transcript)" if transcripts else "nano8k"
    return read_utterances(path, user, transcripts=transcripts)  # a DataError is the command's error: line


def inference_device(value: str) -> str:
    """``--device``: ``auto`` is CUDA when available, else the CPU; a device torch cannot use here is refused."""
    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(value)
    except RuntimeError as exc:
        fail(f"--device {value!r}: not a torch device ({exc}); use auto, cpu, cuda or cuda:N")
    if device.type not in ("cpu", "cuda"):  # mps, xpu, ...: usable only where this torch build has it
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError) as exc:
            fail(f"--device {value}: this torch build cannot use it ({one_line(exc)}); use --device cpu (or auto)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            fail(f"--device {value}: no CUDA GPU is usable here (torch.cuda.is_available() is false); "
                 "use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            fail(f"--device {value}: only {torch.cuda.device_count()} CUDA device(s) are visible (cuda:0 ...)")
    return value


def load_model(model_dir: str | None, device: str, llm_dtype: str | None) -> NanoASR:
    """Load ``model_dir`` for inference on ``device`` (``auto``: CUDA when available)."""
    device = inference_device(device)
    try:
        path = resolve_model_dir(model_dir)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    model = load_pretrained(path, llm_dtype=llm_dtype).to(device).eval()
    try:
        guard_cudnn_sdpa(torch.device(device))  # Hopper: cuDNN SDPA off unless $NANO8K_ALLOW_CUDNN_SDPA=1
    except ValueError as exc:
        fail(str(exc))
    return model


class ArgType:
    """An argument's ``type`` callable that help text shows by ``name`` (jsonargparse prints a plain function as
    ``<function ... at 0x...>``); ``convert`` turns the string into the value or raises ``ArgumentTypeError``."""

    def __init__(self, name: str, convert: Callable[[str], Any]) -> None:
        self.name, self.convert = name, convert
        self.__name__ = name  # argparse's "invalid <type> value" message

    def __call__(self, value: str) -> Any:
        return self.convert(value)

    def __repr__(self) -> str:
        return self.name


def choice_of(values: Sequence[Any], *, nullable: bool = False) -> ArgType:
    """A type accepting one of ``values`` (compared as strings; ``null`` / ``none`` too when ``nullable``)."""
    by_text = {str(value): value for value in values}
    shown = " | ".join([*by_text, *(["null"] if nullable else [])])

    def convert(text: Any) -> Any:
        text = text if text is None else str(text)  # jsonargparse checks the converted value again
        if nullable and (text is None or text.lower() in NO_VALUE):
            return None
        if text not in by_text:
            raise argparse.ArgumentTypeError(f"must be one of {shown.replace(' | ', ', ')}, got {text!r}")
        return by_text[text]

    return ArgType(shown, convert)


def at_least(minimum: float, kind: type[int] | type[float]) -> ArgType:
    """A number type (``int`` or ``float``) refusing values below ``minimum``."""

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if not minimum <= value < float("inf"):  # NaN and infinity too
            raise argparse.ArgumentTypeError(f"must be a finite number >= {minimum}, got {text}")
        return value

    return ArgType(f"{kind.__name__} >= {minimum}", convert)


NO_VALUE = ("null", "none")  # a CLI value that sets a recipe setting to nothing (no language, no system turn)


def _prompt_language(value: str) -> str:
    """``--language`` value: a code the prompt knows, ``manifest`` (each line's own), or ``null`` / ``none``."""
    if value.lower() in NO_VALUE or value == MANIFEST_LANGUAGE:
        return value
    if value not in LANGUAGE_NAMES:
        raise argparse.ArgumentTypeError(
            f"must be one of {', '.join(LANGUAGE_NAMES)}, {MANIFEST_LANGUAGE} or null, got {value!r}")
    return value


# ``--language``: a code the prompt knows, ``manifest`` (each line's own), or ``null`` / ``none``
prompt_language = ArgType(f"{' | '.join(LANGUAGE_NAMES)} | {MANIFEST_LANGUAGE} | null", _prompt_language)
# a free-text option taken as written (``null`` / ``none`` included: ``decode_options`` reads those)
text_value = ArgType("str | null", str)


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
    parser.add_argument("--batch_size", type=at_least(1, int), default=16, help="utterances decoded together")
    parser.add_argument("--max_new_tokens", type=at_least(1, int), default=256,
                        help="most tokens generated per utterance")
    parser.add_argument("--frontend_rate", type=choice_of([16000, 8000], nullable=True), default=None,
                        help="fbank rate; default: the model's record (frontend_conf.fs, 16000 for the release)")
    parser.add_argument("--dither", type=at_least(0.0, float), default=0.0, help="fbank dither (0: deterministic)")
    parser.add_argument("--multichannel", type=choice_of(MULTICHANNEL_POLICIES), default="error",
                        help="a multi-channel file whose utterance names no channel: error, first, or mix")
    parser.add_argument("--device", type=str, default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--llm_dtype", type=choice_of(DTYPES, nullable=True), default=None,
                        help="the LLM's dtype (fp32, bf16 or fp16); default: fp32")


def decode_options(args: argparse.Namespace) -> DecodeOptions:
    """The decode options of parsed arguments; only the recipe settings given on the command line are overrides."""
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


def check_output(path: str) -> Path:
    """The ``--output`` file, checked before any decoding: a directory, a missing folder or a place that cannot be
    written is refused now, naming the path, rather than after every file is decoded."""
    target = Path(path).expanduser()
    if target.is_dir():
        fail(f"--output {path}: is a directory; name a file in it, e.g. {target / 'transcripts.jsonl'}")
    if not target.parent.is_dir():
        what = "is a file, not a folder" if target.parent.exists() else "does not exist"
        fail(f"--output {path}: its folder {target.parent} {what}; create the folder or name another file")
    reason = unwritable_reason(target.parent)
    if reason is None and target.exists() and not os.access(target, os.W_OK):
        reason = "the file is read-only"
    if reason is not None:
        fail(f"--output {path}: cannot write there ({reason}); name a file in a folder you can write")
    return target


def open_output(path: Path) -> IO[str]:
    """``path`` opened for the transcripts (``check_output`` passed; a failure still names the path)."""
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        fail(f"--output {path}: cannot be written ({exc.strerror or exc})")


def output_record(result: Transcript) -> dict[str, Any]:
    """One ``--output`` line: key, audio, text, and the utterance's span and channel when it has them."""
    utt = result.utt
    record: dict[str, Any] = {"key": utt.key, "audio": str(utt.audio), "text": result.text}
    if utt.is_segment:
        record.update(offset=utt.offset, duration=utt.duration)
    if utt.channel is not None:
        record["channel"] = utt.channel
    return record


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m nano8k.transcribe", description=__doc__)
    parser.add_argument("files", nargs="*", help="audio files (or use --manifest)")
    parser.add_argument("--manifest", type=str | None, default=None,
                        help="ChatML / {key,source,target} jsonl / Kaldi / Lhotse; transcripts are not needed")
    parser.add_argument("--output", type=str | None, default=None,
                        help="also write {key, audio, text} jsonl here, one line per utterance as its batch is "
                             "decoded (shortest first)")
    parser.add_argument("--channel", type=int | None, default=None,
                        help="decode this channel (0-based) of each file given (a manifest names its own channels)")
    add_decode_arguments(parser)
    args = parser.parse_args(argv)
    if bool(args.files) == bool(args.manifest):
        parser.error("give audio files or --manifest (one of them)")
    options = decode_options(args)
    if args.manifest and args.channel is not None:
        parser.error("--channel applies to audio files; a manifest gives each utterance's channel")
    output = check_output(args.output) if args.output else None
    utts = (utterances_from_manifest(args.manifest, transcripts=False) if args.manifest
            else utterances_from_files(args.files, args.channel))
    model = load_model(args.model_dir, args.device, args.llm_dtype)
    print_notices(model, options)
    out = open_output(output) if output else None
    written = 0
    try:
        def write(batch: Sequence[Transcript]) -> None:
            nonlocal written
            for result in batch:
                out.write(json.dumps(output_record(result), ensure_ascii=False) + "\n")
            out.flush()
            written += len(batch)

        results = transcribe_utterances(model, utts, options, on_batch=write if out else None)
        if out:
            out.close()
    except OSError as exc:  # a full disk, a device that takes no more (/dev/full)
        fail(f"--output {output}: writing failed after {written} of {len(utts)} transcripts "
             f"({exc.strerror or exc}); free space or name another file")
    finally:
        if out and not out.closed:
            with contextlib.suppress(OSError):
                out.close()
    for result in results:
        if result.error:
            print(f"{result.utt.key}: {result.error}", file=sys.stderr)
        else:
            print(f"{result.utt.key}\t{result.text}", flush=True)
    failed = sum(result.error is not None for result in results)
    if failed:
        print(f"{failed} of {len(results)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
