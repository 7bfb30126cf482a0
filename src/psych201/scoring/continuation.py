"""Tokenizing a piece as the continuation of earlier text: a copy of a fast tokenizer's backend
with every "add a space before the text" switch (Metaspace prepend, ByteLevel add_prefix_space,
a Prepend normalizer) turned off, made once per tokenizer."""

from __future__ import annotations

import json
from typing import Any

# Per backend tokenizer: a copy that never adds a dummy-prefix space (None: the original never
# does). Keyed by id() with the original kept alive beside it, so an id is never reused.
_CONTINUATION: dict[int, tuple[Any, Any]] = {}


def continuation_backend(backend: Any) -> Any:
    """``backend`` without a dummy-prefix space (itself where it never adds one)."""
    cached = _CONTINUATION.get(id(backend))
    if cached is not None and cached[0] is backend:
        return cached[1] if cached[1] is not None else backend
    # Cheap look first: serialising a 262k-entry vocabulary to patch nothing costs seconds.
    shape = f"{backend.normalizer!r} {backend.pre_tokenizer!r}"
    patched = None
    if not any(flag in shape for flag in _PREFIX_FLAGS):
        _CONTINUATION[id(backend)] = (backend, None)
        return backend
    spec = json.loads(backend.to_str())
    changed = _drop_prefix_space(spec)
    if changed:
        from tokenizers import Tokenizer

        patched = Tokenizer.from_str(json.dumps(spec))
    _CONTINUATION[id(backend)] = (backend, patched)
    return patched if patched is not None else backend


_PREFIX_FLAGS = (
    "Prepend(",
    "prepend_scheme=always",
    "prepend_scheme=first",
    "add_prefix_space=True",
)


def _drop_prefix_space(node: Any) -> bool:
    """Turn off every "add a space before the text" switch in a tokenizer.json tree."""
    changed = False
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "Metaspace" and node.get("prepend_scheme", "never") != "never":
            node["prepend_scheme"] = "never"
            changed = True
        if kind == "Metaspace" and node.get("add_prefix_space"):
            node["add_prefix_space"] = False
            changed = True
        if kind == "ByteLevel" and node.get("add_prefix_space"):
            node["add_prefix_space"] = False
            changed = True
        for key in ("normalizer", "pre_tokenizer"):
            sub = node.get(key)
            if isinstance(sub, dict) and sub.get("type") == "Prepend":
                node[key] = None
                changed = True
        for key in ("normalizers", "pretokenizers"):
            seq = node.get(key)
            if isinstance(seq, list):
                kept = [n for n in seq if not (isinstance(n, dict) and n.get("type") == "Prepend")]
                if len(kept) != len(seq):
                    node[key] = kept
                    changed = True
        for key in ("normalizer", "pre_tokenizer", "normalizers", "pretokenizers"):
            sub = node.get(key)
            if isinstance(sub, dict | list):
                changed = _drop_prefix_space(sub) or changed
    elif isinstance(node, list):
        for item in node:
            changed = _drop_prefix_space(item) or changed
    return changed
