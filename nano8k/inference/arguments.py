"""What the ``transcribe`` and ``evaluate`` commands share: decode options, inputs, device and output checks."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from jsonargparse import ArgumentParser

from nano8k.atomic import unwritable_reason
from nano8k.data.audio import MULTICHANNEL_POLICIES
from nano8k.data.manifests.io import Utterance, read_utterances
from nano8k.errors import OutputError
from nano8k.inference.decode import DECODE_OVERRIDES, DecodeOptions, Transcript
from nano8k.model.checkpoint import DTYPES
from nano8k.model.locate import MODEL_DIR_ENV
from nano8k.model.prompt import LANGUAGE_NAMES, MANIFEST_LANGUAGE

NO_VALUE = ("null", "none")  # a CLI value that sets a feeding setting to nothing (no language, no system turn)


def utterances_from_files(paths: Sequence[str | Path], channel: int | None = None) -> list[Utterance]:
    """One utterance per audio file (its ``channel``, 0-based, when given); the key is the file stem (the full path
    when stems collide)."""
    stems = [Path(p).stem for p in paths]
    return [
        Utterance(key=stem if stems.count(stem) == 1 else str(p), audio=_absolute(p), target="", channel=channel)
        for stem, p in zip(stems, paths)
    ]


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
    return read_utterances(path, user, transcripts=transcripts)  # a DataError names the line


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


def _prompt_language(value: str) -> str:
    """``--language`` value: a code the prompt knows, ``manifest`` (each line's own), or ``null`` / ``none``."""
    if value.lower() in NO_VALUE or value == MANIFEST_LANGUAGE:
        return value
    if value not in LANGUAGE_NAMES:
        raise argparse.ArgumentTypeError(
            f"must be one of {', '.join(LANGUAGE_NAMES)}, {MANIFEST_LANGUAGE} or null, got {value!r}"
        )
    return value


# ``--language``: a code the prompt knows, ``manifest`` (each line's own), or ``null`` / ``none``
prompt_language = ArgType(f"{' | '.join(LANGUAGE_NAMES)} | {MANIFEST_LANGUAGE} | null", _prompt_language)
# a free-text option taken as written (``null`` / ``none`` included: ``decode_options`` reads those)
text_value = ArgType("str | null", str)


def add_decode_arguments(parser: ArgumentParser) -> None:
    """Options shared by ``transcribe`` and ``evaluate``. Without the prompt and fbank options a model is fed as its
    feeding says (config.yaml); giving one overrides that field, with a notice."""
    parser.add_argument(
        "--model_dir",
        type=str | None,
        default=None,
        help=f"model folder (FunASR release or nano8k export); default ${MODEL_DIR_ENV}; 'mini' / "
        "'tiny' = the bundled models",
    )
    parser.add_argument(
        "--language",
        type=prompt_language,
        default=None,
        help="prompt language: zh, en, ja (or 中文, 英文, 日文), manifest (each line's lang) or null; "
        "default: the model's feeding (the release: null)",
    )
    parser.add_argument(
        "--itn",
        type=bool | None,
        default=None,
        help="false: prompt for text without inverse normalization; default: the model's feeding",
    )
    parser.add_argument(
        "--system_prompt",
        type=text_value,
        default=None,
        help="the prompt's system turn (null: none); default: the model's feeding",
    )
    parser.add_argument(
        "--context_header",
        type=bool | None,
        default=None,
        help="the fine-tuning context header before the task text; default: the model's feeding",
    )
    parser.add_argument("--hotwords", type=str, default="", help="comma-separated hotwords for the prompt")
    parser.add_argument("--batch_size", type=at_least(1, int), default=16, help="utterances decoded together")
    parser.add_argument(
        "--max_new_tokens", type=at_least(1, int), default=256, help="most tokens generated per utterance"
    )
    parser.add_argument(
        "--frontend_rate",
        type=choice_of([16000, 8000], nullable=True),
        default=None,
        help="fbank rate; default: the model's feeding (frontend_conf.fs, 16000 for the release)",
    )
    parser.add_argument("--dither", type=at_least(0.0, float), default=0.0, help="fbank dither (0: deterministic)")
    parser.add_argument(
        "--multichannel",
        type=choice_of(MULTICHANNEL_POLICIES),
        default="error",
        help="a multi-channel file whose utterance names no channel: error, first, or mix",
    )
    parser.add_argument("--device", type=str, default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument(
        "--llm_dtype",
        type=choice_of(DTYPES, nullable=True),
        default=None,
        help="the LLM's dtype (fp32, bf16 or fp16); default: fp32",
    )


def decode_options(args: argparse.Namespace) -> DecodeOptions:
    """The decode options of parsed arguments; only the feeding fields given on the command line are overrides."""
    hotwords = tuple(word.strip() for word in args.hotwords.split(",") if word.strip())
    given = {key: getattr(args, key) for key in DECODE_OVERRIDES if getattr(args, key) is not None}
    for key in ("language", "system_prompt"):
        if isinstance(given.get(key), str) and given[key].lower() in NO_VALUE:
            given[key] = None
    return DecodeOptions(
        overrides=given,
        hotwords=hotwords,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        dither=args.dither,
        multichannel=args.multichannel,
    )


def check_output(path: str) -> Path:
    """The ``--output`` file, checked before any decoding: a directory, a missing folder or a place that cannot be
    written is an ``OutputError`` now, naming the path, rather than after every file is decoded."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise OutputError(f"--output {path}: is a directory; name a file in it, e.g. {target / 'transcripts.jsonl'}")
    if not target.parent.is_dir():
        what = "is a file, not a folder" if target.parent.exists() else "does not exist"
        raise OutputError(f"--output {path}: its folder {target.parent} {what}; create the folder or name another file")
    reason = unwritable_reason(target.parent)
    if reason is None and target.exists() and not os.access(target, os.W_OK):
        reason = "the file is read-only"
    if reason is not None:
        raise OutputError(f"--output {path}: cannot write there ({reason}); name a file in a folder you can write")
    return target


def open_output(path: Path) -> IO[str]:
    """``path`` opened for the transcripts (``check_output`` passed; a failure still names the path)."""
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"--output {path}: cannot be written ({exc.strerror or exc})") from exc


def output_record(result: Transcript) -> dict[str, Any]:
    """One ``--output`` line: key, audio, text, and the utterance's span and channel when it has them."""
    utt = result.utt
    record: dict[str, Any] = {"key": utt.key, "audio": str(utt.audio), "text": result.text}
    if utt.is_segment:
        record.update(offset=utt.offset, duration=utt.duration)
    if utt.channel is not None:
        record["channel"] = utt.channel
    return record
