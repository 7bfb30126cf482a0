"""``k=v,k2=v2`` option values (lm-eval style), as ``--model-args`` and friends take them."""

from __future__ import annotations

from typing import Any

from psych201.errors import UsageError


def parse_kv(text: str | None, *, what: str = "--model-args") -> dict[str, Any]:
    """Parse ``k=v,k2=v2`` into a dict (ints, floats, true/false, none coerced)."""
    if not text:
        return {}
    out: dict[str, Any] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{what}: expected key=value, got {item!r}")
        out[key] = _coerce(value.strip())
    return out


def _coerce(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
