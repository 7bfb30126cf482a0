"""Registry entries for adapters, so they flow through ``compare`` and ``report`` like checkpoints.

An adapter's entry (format of :mod:`psych201.analysis.registry`) has the adapter's name as ``id``
(the ``model`` column its score tables carry), the base's family, generation and size, the
post-training type of its recipe (``instruct`` or ``human``; the preference recipe is
``instruct`` on its own figure line) and the base as its pair. A base the packaged registry does
not know (a local folder) gets an entry of its own, so the fragment always loads.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from psych201.lab.adapter import AdapterCard
from psych201.lab.settings import REGISTRY_LINE

REGISTRY_FORMAT = "psych201-models/1"


def _describe(card: AdapterCard) -> str:
    s = card.settings
    lora = s.get("lora", {})
    layers = lora.get("layers") or []
    where = f" layers {layers[0]}-{layers[-1]}" if layers else ""
    data = card.data
    if card.recipe == "human":
        source = "training split of " + ", ".join(sorted(data.get("studies", {})))
    else:
        source = str(data.get("source", ""))
    return (
        f"LoRA r={lora.get('r')} on {'/'.join(lora.get('target_modules', []))}{where} of "
        f"{card.base}; recipe {card.recipe}; data: {source}; {card.steps} steps x "
        f"{s.get('batch_size')} sequences of <= {s.get('max_tokens')} tokens; seed {card.seed}"
    )


def registry_entries(
    cards: Iterable[AdapterCard], *, aliases: dict[str, list[str]] | None = None
) -> list[dict[str, Any]]:
    """One entry per adapter (plus one per base unknown to the packaged registry)."""
    from psych201.analysis.registry import load_registry

    registry = load_registry()
    entries: list[dict[str, Any]] = []
    added_bases: set[str] = set()
    for card in cards:
        base = registry.get(card.base)
        if base is None:
            base_id = card.base
            if base_id not in added_bases:
                entries.append(
                    {
                        "id": base_id,
                        "name": Path(base_id).name or base_id,
                        "family": Path(base_id).name or base_id,
                        "post_training": "base",
                        "paper": False,
                        "local": True,
                        "note": "base of a psych201 posttrain adapter",
                    }
                )
                added_bases.add(base_id)
            family, generation, params_b = Path(base_id).name or base_id, None, None
        else:
            base_id, family, generation, params_b = base.id, base.family, base.generation, \
                base.params_b
        entry: dict[str, Any] = {
            "id": card.name,
            "name": card.name,
            "family": family,
            "post_training": card.post_training,
            "base": base_id,
            "line": REGISTRY_LINE.get(card.recipe, card.recipe),
            "paper": False,
            "local": True,
            "note": _describe(card),
        }
        if generation is not None:
            entry["generation"] = generation
        if params_b is not None:
            entry["params_b"] = params_b
        extra = [a for a in (aliases or {}).get(card.name, []) if a != card.name]
        if extra:
            entry["aliases"] = extra
        entries.append(entry)
    return entries


def registry_fragment(
    cards: Iterable[AdapterCard], *, aliases: dict[str, list[str]] | None = None
) -> str:
    """The YAML text of a registry file holding the adapters' entries."""
    body = {"format": REGISTRY_FORMAT, "models": registry_entries(cards, aliases=aliases)}
    header = (
        "# psych201 registry fragment written by `psych201 posttrain`: pass it to\n"
        "# `psych201 compare/report --registry <this file>` to pair each adapter with its base.\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)


def write_registry_fragment(
    cards: Iterable[AdapterCard], path: str | Path, *,
    aliases: dict[str, list[str]] | None = None,
) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(registry_fragment(cards, aliases=aliases), encoding="utf-8")
    return out
