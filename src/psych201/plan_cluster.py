"""Planning a cluster run: GPU kinds and how many each model needs (peak memory with headroom),
the makespan of the jobs on a pool, and the plan per group of models (from :mod:`psych201.plan`'s
per-model plans)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from psych201.plan import ModelPlan


@dataclass(frozen=True)
class GpuKind:
    """A GPU model: its memory and its dense bf16/fp16 matmul peak (datasheet figures)."""

    name: str
    memory_bytes: float
    peak_flops: float


#: GPUs ``plan --gpus NxKIND`` knows (memory as the driver reports it, dense bf16 peak).
GPU_KINDS: dict[str, GpuKind] = {g.name.lower(): g for g in (
    GpuKind("H100", 80e9, 989e12),
    GpuKind("H200", 141e9, 989e12),
    GpuKind("A100", 80e9, 312e12),
    GpuKind("A100-40GB", 40e9, 312e12),
    GpuKind("L40S", 48e9, 362e12),
    GpuKind("L4", 24e9, 121e12),
    GpuKind("A10", 24e9, 125e12),
)}


#: Share of a GPU's memory the weights and activations may take (the rest: CUDA context,
#: allocator slack, a vLLM KV cache's minimum).
MEMORY_HEADROOM = 0.85
#: Achieved share of the matmul peak a planned hour assumes, until ``--calibrate`` or a
#: ``--benchmark`` measures it (packed scoring of long sessions reaches 35-50 % on an H100).
PLANNED_MFU = 0.4


@dataclass(frozen=True)
class GpuPool:
    """``8xH100``: how many GPUs of which kind."""

    count: int
    kind: GpuKind

    @classmethod
    def parse(cls, text: str) -> GpuPool:
        count, sep, kind = text.lower().partition("x")
        known = ", ".join(g.name for g in GPU_KINDS.values())
        if not sep or not count.isdigit() or not 1 <= int(count) <= 100_000:
            raise ValueError(f"--gpus {text}: expected NxKIND, e.g. 8xH100 (kinds: {known})")
        if kind not in GPU_KINDS:
            raise ValueError(f"--gpus {text}: unknown GPU {kind!r} (kinds: {known})")
        return cls(int(count), GPU_KINDS[kind])


def gpus_for(peak_memory_bytes: float, kind: GpuKind) -> int:
    """GPUs a model needs for ``peak_memory_bytes`` (weights + one batch's activations), a
    power of two (tensor parallelism splits attention heads evenly)."""
    needed = max(1, math.ceil(peak_memory_bytes / (kind.memory_bytes * MEMORY_HEADROOM)))
    return 1 << (needed - 1).bit_length()


def makespan(jobs: Sequence[tuple[float, int]], gpus: int) -> float:
    """Hours until the last of ``jobs`` (hours, GPUs each) ends on ``gpus`` GPUs: longest first,
    each on the GPUs that free up first (a job needing more GPUs than there are is refused)."""
    free = [0.0] * gpus
    end = 0.0
    for hours, need in sorted(jobs, key=lambda j: -j[0]):
        if need > gpus:
            raise ValueError(f"a model needs {need} GPUs, more than the {gpus} given")
        free.sort()
        start = free[need - 1]
        for i in range(need):
            free[i] = start + hours
        end = max(end, start + hours)
    return end


@dataclass(frozen=True)
class GroupPlan:
    """One model's cells on a cluster: its GPUs (``gpus_from``: the study file or the memory
    estimate), peak memory, and wall hours on those GPUs."""

    model: str
    cells: int
    peak_gb: float
    gpus: int
    gpus_from: str
    hours: float


def cluster_plan(plans: Sequence[ModelPlan], pool: GpuPool, gpus_given: Mapping[str, int],
                 flops_per_s: float | None = None) -> tuple[list[GroupPlan], float]:
    """Per model (its cells together, loaded once): GPUs, memory and hours; and the makespan
    of them all on ``pool``. Hours divide FLOPs by the model's GPUs times ``flops_per_s`` per
    GPU (measured), else :data:`PLANNED_MFU` of the pool's peak."""
    rate = flops_per_s or pool.kind.peak_flops * PLANNED_MFU
    groups = []
    for model in dict.fromkeys(p.model for p in plans):
        mine = [p for p in plans if p.model == model]
        peak = max(p.peak_memory_bytes or 0 for p in mine)
        flops = sum(p.flops or 0.0 for p in mine)
        given = gpus_given.get(model)
        gpus = given or gpus_for(peak, pool.kind)
        groups.append(GroupPlan(model, len(mine), peak / 1e9, gpus,
                                "study file" if given else "memory", flops / (gpus * rate) / 3600))
    span = makespan([(g.hours, g.gpus) for g in groups], pool.count)
    return groups, span
