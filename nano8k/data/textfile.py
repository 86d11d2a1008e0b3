"""Manifest text files read line by line (plain or gzip); a line that is not UTF-8 is named with its byte column."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO, Iterator


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, gunzipped when it is a gzip file (by its magic number, whatever its name)."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def read_lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """``(line number, text, None)`` per line (1-based, end of line removed), or ``(n, None, reason)`` for a line
    that is not UTF-8: ``not UTF-8 (byte 0xff at column 7)``."""
    with open_binary(path) as handle:
        for lineno, raw in enumerate(handle, start=1):
            raw = raw.rstrip(b"\r\n")
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark
                raw = raw[3:]
            try:
                yield lineno, raw.decode("utf-8"), None
            except UnicodeDecodeError as exc:
                yield lineno, None, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
