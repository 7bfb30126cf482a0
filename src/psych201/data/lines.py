"""Raw JSONL lines and field values: byte-limited line splitting, JSON, id and RT checks."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import IO, Any

#: Lines longer than this are rejected without being held in memory (the longest real session is
#: ~120 K characters; the contributor guideline is 32 K tokens).
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024

#: Fields every line must have; everything else is metadata.
REQUIRED_FIELDS: tuple[str, ...] = ("text", "experiment", "participant")

LFS_PREFIX = b"version https://git-lfs.github.com/spec/"
LFS_MESSAGE = "this is a Git LFS pointer, not data: fetch the real file (git lfs pull)"
_BOM = b"\xef\xbb\xbf"
_READ_CHUNK = 1 << 20


class _DuplicateField(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys silently; a transcript with two "text" fields
    # is ambiguous, so refuse it.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateField(key)
        obj[key] = value
    return obj


#: Digits of the largest integer a float holds (about 1.8e308): a longer one overflows every
#: numeric field (an age of 400 digits made ``float()`` raise OverflowError).
_MAX_INT_DIGITS = 308


def _bounded_int(text: str) -> int:
    """``json.loads``'s ``parse_int``: refuse integers no float can hold (ValueError: a line
    error), before Python's own limit of 4,300 digits."""
    digits = len(text.lstrip("-"))
    if digits > _MAX_INT_DIGITS:
        raise ValueError(f"an integer of {digits} digits, beyond the range of any float")
    return int(text)


def _peek_study(raw: bytes) -> str | None:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    study = obj.get("study") if isinstance(obj, dict) else None
    return study if isinstance(study, str) and study else None


def parse_rts(value: Any) -> list[float | None] | None:
    """An RT list as floats (NaN where missing, None where unreadable); None if not a list.

    Accepts a JSON list of numbers or numeric strings, and the string forms found in real data
    (``"[1159, 987]"``, ``"['1159', '987']"``, with ``nan`` entries).
    """
    if isinstance(value, str):
        body = value.strip()
        if not (body.startswith("[") and body.endswith("]")):
            return None
        items: list[Any] = [item.strip().strip("'\"") for item in body[1:-1].split(",")]
        if items == [""]:
            items = []
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return None
    return [_rt(item) for item in items]


def _rt(item: Any) -> float | None:
    if item is None:
        return math.nan
    if isinstance(item, bool):
        return None
    if isinstance(item, int | float):
        return float(item)
    if isinstance(item, str):
        text = item.strip()
        if text.lower() in ("", "nan", "none", "null"):
            return math.nan
        try:
            return float(text)
        except ValueError:
            return None
    return None


def _iter_raw_lines(stream: IO[bytes], max_bytes: int) -> Iterator[tuple[int, bytes | int]]:
    """(line number, bytes) per line; an over-long line yields its size instead of its bytes.

    ``readline(limit)`` never holds more than ``max_bytes`` of one line: the rest of a long line is
    consumed in 1 MiB chunks and only counted.
    """
    number = 0
    while True:
        chunk = stream.readline(max_bytes + 1)
        if not chunk:
            return
        number += 1
        if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
            size = len(chunk)
            del chunk
            while True:
                more = stream.readline(_READ_CHUNK)
                size += len(more)
                if not more or more.endswith(b"\n"):
                    break
            yield number, size
            continue
        yield number, chunk


def _identifier(value: Any) -> str | None:
    """Experiment and participant ids as strings; ints are fine, NaN/bool/None/lists are not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else str(value)
    return None


def _encodable(obj: Any) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }
    return names.get(type(value), type(value).__name__)
