"""Manifest text files read line by line (plain or gzip); a line that is not UTF-8 is named with its byte column."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from nano8k.errors import DataError


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, gunzipped when it is a gzip file (by its magic number, whatever its name)."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def read_lines(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """``(line number, text, None)`` per line (1-based, end of line removed). A line that is not UTF-8 comes as
    ``(n, text with U+FFFD for the bad bytes, reason)``, the reason naming the first bad byte: ``not UTF-8 (byte 0xff
    at column 7)``. A corrupt gzip file raises ``DataError`` naming the line it stopped at."""
    lineno = 0
    try:
        with open_binary(path) as handle:
            for lineno, raw in enumerate(handle, start=1):
                raw = raw.rstrip(b"\r\n")
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark
                    raw = raw[3:]
                try:
                    yield lineno, raw.decode("utf-8"), None
                except UnicodeDecodeError as exc:
                    yield (
                        lineno,
                        raw.decode("utf-8", errors="replace"),
                        f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
                    )
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}:{lineno + 1}: corrupt or truncated gzip file ({exc})") from exc


JSON_ARRAY_PEEK = 1 << 16  # bytes read to see whether a manifest starts with '[' (past a BOM and blank space)


def refuse_json_array(path: Path) -> None:
    """A ``DataError`` when ``path`` starts with ``[``: one JSON array, not JSON Lines (one JSON object per line,
    what every jsonl reader here and FunASR's take); the message gives the one-line conversion."""
    try:
        with open_binary(path) as handle:
            start = handle.read(JSON_ARRAY_PEEK).removeprefix(b"\xef\xbb\xbf").lstrip()
    except (EOFError, gzip.BadGzipFile, zlib.error):
        return  # a corrupt gzip file: read_lines names the line it stops at
    if start.startswith(b"["):
        raise DataError(
            f"{path} is a JSON array (it starts with '['), not JSON Lines: a manifest has one JSON object "
            f"per line. Convert it with: jq -c '.[]' {path} > {path.with_name(path.stem + '.lines.jsonl')}"
        )


def first_json_object(path: Path, kind: Callable[[Any], str | None]) -> str | None:
    """``kind(obj)`` of the first line that decodes to JSON with a kind (lines that are not JSON are passed over);
    a file that is one JSON array is refused (``refuse_json_array``)."""
    refuse_json_array(path)
    for _, text, error in read_lines(path):
        if error is not None or not text.strip():
            continue
        try:
            found = kind(json.loads(text))
        except json.JSONDecodeError:
            continue
        if found:
            return found
    return None


def json_line(text: str) -> tuple[Any, str | None]:
    """A line decoded as JSON, or the reason it is not: ``bad JSON: <message> (column N)``."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"bad JSON: {exc.msg} (column {exc.pos + 1})"
