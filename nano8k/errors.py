"""Every exception class nano8k raises, and the rule of every command: one ``error:`` line, exit 2, no traceback."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

USAGE_EXIT = 2  # exit status of a command refused for its arguments, config or input (argparse's own)
TRACEBACK_ENV = "NANO8K_TRACEBACK"  # set to 1 to see the traceback behind a refused command


class UserError(ValueError):
    """Base of every error a command reports as one ``error:`` line: the input, not nano8k, has to change."""


class ConfigError(UserError):
    """A configuration value that cannot work; the message names the key and the fix."""


class ResumeConfigError(ConfigError):
    """``--ckpt_path`` resumes a run whose training settings differ from the current config."""


RESUME_ADVICE = (
    "Resume with the checkpoint's values (drop the overrides), or start a new run from its weights "
    "(export it: python -m nano8k.average CKPT --out DIR, then --model.model_dir DIR/funasr)."
)


class CommandError(UserError):
    """A command cannot go on with what it was given; the message names the argument, file or key and the fix."""


class OutputError(UserError):
    """An output file or folder nano8k cannot write: not writable, the disk full, or in use by another run."""


class DataError(UserError):
    """A data problem; the message names the manifest, line, key and audio file where known."""


class AudioError(DataError):
    """An audio file that cannot be used (missing, undecodable, empty, non-finite, out of range); names the file."""


class CodecError(ValueError):
    """A codec name the machine cannot run, or a bit rate outside what the codec takes."""


class CheckpointError(UserError):
    """A model directory or checkpoint that nano8k refuses to load, with the file, key and fix in the message."""


class FeedingError(UserError):
    """A feeding record that cannot be used; the message names the file and the key."""


class PromptError(ValueError):
    """An utterance whose prompt cannot be written; it gets its own error, the others are still decoded."""


class CheckFailed(Exception):
    """Raised inside a check to report a fail with its actionable message (turned into a CheckResult)."""


class PreflightError(SystemExit):
    """Raised by ``enforce`` when a check fails; carries the formatted report (exit status 1)."""

    def __init__(self, report: str) -> None:
        super().__init__(1)
        self.report = report

    def __str__(self) -> str:
        return self.report


class SweepError(UserError):
    """An invalid sweep file; the message names the file and key."""


def one_line(err: BaseException | str) -> str:
    """An error's message on one line: its non-blank lines, stripped, joined by ``; `` (torch's, PyYAML's and
    transformers' messages span several, and a command reports one ``error:`` line)."""
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())


def fail(message: str) -> NoReturn:
    """Stop the running command with ``error: message`` and exit status 2 (see :func:`command`)."""
    raise CommandError(message)


def report(err: BaseException | str) -> int:
    """Print ``error: <err>`` on stderr (once, whatever prefix the message carries) and return :data:`USAGE_EXIT`."""
    text = str(err)
    print(text if text.startswith("error: ") else f"error: {text}", file=sys.stderr, flush=True)
    return USAGE_EXIT


def command(main: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a command's ``main(argv) -> int``: a :class:`UserError`, a ``SystemExit`` whose message starts with
    ``error:``, or an ``OSError`` naming a path (read-only, missing, existing, disk full) becomes one ``error:`` line
    on stderr and exit status 2; ``NANO8K_TRACEBACK=1`` re-raises it with its traceback instead."""

    @functools.wraps(main)
    def run(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv)
        except (SystemExit, UserError, OSError) as err:
            message = _refusal(err)
            if message is None or os.environ.get(TRACEBACK_ENV) == "1":
                raise
            return report(message)

    return run


def _refusal(err: BaseException) -> str | None:
    """The ``error:`` line a command prints for ``err``, or None when ``err`` is no refusal (a plain exit, a bug)."""
    if isinstance(err, SystemExit):
        return err.code if isinstance(err.code, str) and err.code.startswith("error: ") else None
    if isinstance(err, OSError):  # a file or folder the command was pointed at: missing, read-only, existing, full
        if err.filename is None:
            return None
        target = f"{err.filename} -> {err.filename2}" if err.filename2 else str(err.filename)
        return f"{target}: {err.strerror or err}"
    return str(err)


def _comparable(value: Any) -> Any:
    """Tuples as lists, mappings as sorted plain dicts: a YAML list and a saved tuple compare equal."""
    if isinstance(value, Mapping):
        return {k: _comparable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    return value


def resume_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (checkpoint value, current value)}`` for every setting present in both that differs (model, data and
    callback settings a resume compares with the checkpoint's)."""
    return {
        key: (saved[key], current[key])
        for key in current
        if key in saved and not key.startswith("_") and _comparable(saved[key]) != _comparable(current[key])
    }


def resume_refused(source: str, refused: Mapping[str, tuple[Any, Any]], prefix: str, advice: str) -> ResumeConfigError:
    """The error for a resume that would not honour ``refused`` (``{key: (checkpoint value, current value)}``)."""
    listing = "\n".join(f"  {prefix}{key}: checkpoint {old!r} -> now {new!r}" for key, (old, new) in refused.items())
    return ResumeConfigError(
        f"cannot resume from {source}: these settings differ from the ones it was trained with, "
        f"and a resume would not honour them:\n{listing}\n{advice}"
    )
