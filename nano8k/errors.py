"""User-facing error types: a configuration value cannot work; the CLIs print them without a traceback."""

from __future__ import annotations

USAGE_EXIT = 2  # exit status of a command refused for its arguments or config (argparse's own)


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and the fix."""


class ResumeConfigError(ConfigError):
    """``--ckpt_path`` resumes a run whose training settings differ from the current config."""
