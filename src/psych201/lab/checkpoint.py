"""Training checkpoints: an interrupted LoRA training resumes where it stopped.

Every ``every`` optimiser steps (and when interrupted) the trainable weights, the AdamW state,
the torch random state (dropout), the DPO reference cache and the step log are saved: tensors in
one safetensors file (never a pickle), the rest as JSON, both written atomically, the JSON last
(it names the tensor file's SHA-256, so a half-written pair is ignored, never half-loaded). A
checkpoint belongs to one training: its ``fingerprint`` (settings and data) must match, otherwise
it is ignored and training starts from step 0. Resuming gives bit-for-bit the adapter of an
uninterrupted run on the same device (same order of examples, same random draws).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from psych201.atomic import write_bytes_atomic, write_text_atomic

STATE_FILE = "state.json"
TENSORS_FILE = "tensors.safetensors"
FORMAT = 1


@dataclass
class Checkpoint:
    """What a training needs to go on after step ``step``."""

    step: int
    logs: list[dict[str, Any]]
    reference: dict[int, tuple[float, float]]


def fingerprint(settings: dict[str, Any], data_description: Any, n_items: int) -> str:
    """Identity of one training: its settings and its data."""
    payload = json.dumps({"settings": settings, "data": data_description, "items": n_items},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(folder: Path, key: str, model: Any, optimiser: torch.optim.Optimizer,
                    state: Checkpoint, *, rng: torch.Tensor) -> None:
    """Write ``state`` with the trainable weights, optimiser state and ``rng`` (the torch
    random state step ``state.step`` starts from) into ``folder``."""
    from safetensors.torch import save

    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {"rng": rng}
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    for name, param in model.named_parameters():
        if param.requires_grad:
            tensors[f"param/{name}"] = param.detach().cpu().contiguous()
    for index, param in enumerate(p for p in model.parameters() if p.requires_grad):
        for field, value in optimiser.state.get(param, {}).items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt/{index}/{field}"] = value.detach().cpu().contiguous()
    write_bytes_atomic(save(tensors), folder / TENSORS_FILE)
    body = {"format": FORMAT, "fingerprint": key, "step": state.step, "params": names,
            "tensors_sha256": _sha256(folder / TENSORS_FILE), "logs": state.logs,
            "reference": {str(k): list(v) for k, v in state.reference.items()}}
    write_text_atomic(json.dumps(body) + "\n", folder / STATE_FILE)


def load_checkpoint(folder: Path, key: str, model: Any,
                    optimiser: torch.optim.Optimizer) -> Checkpoint | None:
    """Restore the state saved in ``folder`` into ``model`` and ``optimiser``; None (nothing
    restored) when there is none, it belongs to another training, or it is damaged."""
    from safetensors.torch import load_file

    try:
        body = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    tensors_path = folder / TENSORS_FILE
    if (not isinstance(body, dict) or body.get("format") != FORMAT
            or body.get("fingerprint") != key or not tensors_path.is_file()
            or body.get("tensors_sha256") != _sha256(tensors_path)):
        return None
    tensors = load_file(str(tensors_path))
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if [name for name, _ in trainable] != body.get("params"):
        return None
    with torch.no_grad():
        for name, param in trainable:
            param.copy_(tensors[f"param/{name}"].to(param.device))
    for index, (_, param) in enumerate(trainable):
        fields = {k.rsplit("/", 1)[-1]: v for k, v in tensors.items()
                  if k.startswith(f"opt/{index}/")}
        if fields:
            optimiser.state[param] = {k: v.to(param.device) if k != "step" else v
                                      for k, v in fields.items()}
    torch.set_rng_state(tensors["rng"])
    reference = {int(k): (float(v[0]), float(v[1]))
                 for k, v in (body.get("reference") or {}).items()}
    return Checkpoint(int(body["step"]), list(body.get("logs") or []), reference)


def remove_checkpoint(folder: Path) -> None:
    """Delete a finished training's checkpoint."""
    for name in (STATE_FILE, TENSORS_FILE):
        (folder / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # something else in there: not ours to delete
        folder.rmdir()
