"""Reading a file to check: bytes to text, or the problem that stops it being checked.

A file that cannot be read, is too large, holds a NUL byte, is not UTF-8, starts with a byte
order mark or is empty is reported (WA001-WA006), never raised: CI must get a located message.
"""

from __future__ import annotations

from pathlib import Path

from service.checker.problems import Problem

MAX_BYTES = 10 * 1024 * 1024


def read_source(path: Path) -> tuple[str | None, list[Problem]]:
    """A file's text, or None and the problem that stops it being checked."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return None, [Problem(str(path), 1, 1, "WA001", f"cannot read the file: {reason}")]
    return decode_source(data, str(path))


def decode_source(data: bytes, path: str) -> tuple[str | None, list[Problem]]:
    """Decode a file's bytes as UTF-8 text, or None and the problem with them."""
    if len(data) > MAX_BYTES:
        return None, [Problem(path, 1, 1, "WA004", "the file is larger than 10 MiB")]
    if b"\0" in data:
        where = _byte_position(data, data.index(b"\0"))
        return None, [Problem.at(path, where, "WA003", "NUL byte: this is not a text file")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = _byte_position(data, exc.start)
        return None, [Problem.at(path, where, "WA002", "not UTF-8: save the file as UTF-8")]
    if text.startswith("\ufeff"):
        return None, [Problem(path, 1, 1, "WA006", "byte order mark: save as UTF-8 without BOM")]
    if not text.strip():
        return None, [Problem(path, 1, 1, "WA005", "the file is empty")]
    return text, []


def _byte_position(data: bytes, offset: int) -> tuple[int, int]:
    """Line and column (in characters) of a byte offset."""
    start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[start:offset].decode("utf-8", "replace")) + 1
    return data.count(b"\n", 0, offset) + 1, column


def numbered_lines(text: str) -> list[tuple[int, str]]:
    """Lines split on LF as casbin reads them, a CR before the LF dropped, numbered from 1."""
    return [(n, line.removesuffix("\r")) for n, line in enumerate(text.split("\n"), 1)]


def is_blank_or_comment(line: str) -> bool:
    """Blank lines and lines whose first non-blank character is # carry no row."""
    stripped = line.strip()
    return not stripped or stripped.startswith("#")
