"""Sharing a study's model groups out to N workers (``run STUDY --cells i/N``, a Slurm array).

Every worker computes the same deterministic split from the study file alone: the model groups
are weighed by their planned cost and dealt greedily, longest first, to the least loaded of N
bins (LPT scheduling), so that N array tasks finish at about the same time. The cost needs no
data and no model: scoring forwards the same text through every model of a study, so a group's
planned hours are proportional to its model's parameters times its number of cells.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from psych201.errors import UsageError
from psych201.study.cells import ModelGroup

if TYPE_CHECKING:
    from psych201.analysis.registry import ModelRegistry

#: Most array tasks a study is shared over (a Slurm array's usual ``MaxArraySize`` is 1001).
MAX_SHARES = 1000


@dataclass(frozen=True)
class Share:
    """Task ``index`` (1-based) of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str, *, what: str = "--cells") -> Share:
        found = re.fullmatch(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*", text)
        if found is None:
            raise UsageError(f"{what} {text}: expected i/N, e.g. 2/8 (task 2 of 8)")
        index, count = int(found[1]), int(found[2])
        if not 1 <= count <= MAX_SHARES:
            raise UsageError(f"{what} {text}: N must be between 1 and {MAX_SHARES}")
        if not 1 <= index <= count:
            raise UsageError(f"{what} {text}: i must be between 1 and N ({count})")
        return cls(index, count)


def params_billions(model: str, source: str | None = None, *,
                    registry: ModelRegistry | None = None) -> float | None:
    """A model's parameters in billions: the registry's, else its local weights' size (bf16 /
    float32 alike read as 2 bytes a parameter: only the ratio between models matters here)."""
    from psych201.analysis.registry import load_registry

    info = (registry or load_registry()).get(model)
    if info is not None and info.params_b is not None:
        return float(info.params_b)
    folder = Path(source or model).expanduser()
    if folder.is_dir():
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        return size / 2e9 if size else None
    return None


def group_costs(groups: Sequence[ModelGroup]) -> list[float]:
    """Planned cost of each group: parameters × cells (unknown parameters count as 1B)."""
    from psych201.analysis.registry import load_registry

    registry = load_registry()
    costs = []
    for group in groups:
        params = params_billions(group.model, group.cells[0].source if group.cells else None,
                                 registry=registry)
        costs.append((params if params is not None else 1.0) * len(group.cells))
    return costs


def balance(costs: Sequence[float], bins: int) -> list[list[int]]:
    """Indices of ``costs`` per bin: longest first into the least loaded bin (ties: the lower
    index), each bin's indices in their original order. Deterministic."""
    loads = [0.0] * bins
    dealt: list[list[int]] = [[] for _ in range(bins)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        target = min(range(bins), key=lambda b: (loads[b], b))
        loads[target] += costs[i]
        dealt[target].append(i)
    return [sorted(d) for d in dealt]


def shares(groups: Sequence[ModelGroup], count: int) -> list[list[ModelGroup]]:
    """The model groups of each of ``count`` tasks."""
    return [[groups[i] for i in dealt] for dealt in balance(group_costs(groups), count)]


def share_groups(groups: Sequence[ModelGroup], share: Share) -> list[ModelGroup]:
    """The model groups task ``share`` runs."""
    return shares(groups, share.count)[share.index - 1]


def group_gpus(group: ModelGroup, *, dtype: str, batch_tokens: int, kind: str = "H100",
               registry: ModelRegistry | None = None) -> int:
    """GPUs one model group needs: the study file's ``gpus``, else the planner's memory
    estimate (weights + one batch) against ``kind``'s memory; 0 for engines without weights
    on a GPU (a served model, the oracle)."""
    from psych201.plan import peak_memory
    from psych201.plan_cluster import GPU_KINDS, gpus_for
    from psych201.scoring.engines import engine_entry

    if group.engine.gpus:
        return group.engine.gpus
    if not engine_entry(group.engine.name).capabilities.gpu:
        return 0
    params = params_billions(group.model, group.cells[0].source if group.cells else None,
                             registry=registry)
    memory = peak_memory(None, params if params is not None else 1.0, batch_tokens,
                         4 if dtype == "float32" else 2)
    return gpus_for(memory or 0, GPU_KINDS[kind.lower()])
