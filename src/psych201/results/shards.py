"""Deterministic partition of participant sessions into shards (``--shard i/N``).

A session's shard is a stable hash of its :class:`SessionKey` (SHA-256, not Python's salted
``hash``), so every machine, process and Python version agrees on it and the union of all N shards
is exactly the unsharded run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from psych201.data.records import SessionKey

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def key_hash(key: SessionKey) -> int:
    """A 64-bit integer that depends only on the key's four fields."""
    text = "\x1f".join((key.study, key.experiment, key.participant, str(key.line)))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= i < N and N >= 1")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse ``"i/N"`` (e.g. ``"0/4"``)."""
        match = _SHARD.match(text)
        if not match:
            raise ValueError(f"shard {text!r}: expected i/N, e.g. 0/4")
        return cls(int(match.group(1)), int(match.group(2)))

    def contains(self, key: SessionKey) -> bool:
        return key_hash(key) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def to_dict(self) -> dict[str, int]:
        return {"index": self.index, "count": self.count}
