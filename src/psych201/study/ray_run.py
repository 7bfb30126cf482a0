"""``psych201 run STUDY --ray ADDRESS``: the study's model groups as Ray tasks.

Each model group (one model's cells, conditions × data) is one task that asks for the GPUs the
study file or the planner's memory estimate gives it; Ray runs as many at once as the cluster
holds, longest planned first. A task runs :func:`psych201.study.run.run_study` on its cells in
the worker, so the model is loaded once there and each cell is written (parts as they finish)
into the study's folder, which every node must see (a shared file system). A worker that dies
loses only its unfinished part: Ray retries the task once, elsewhere if it can, and the retry
resumes the cells from their parts; a group whose task fails twice is reported as failed while
the others go on.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from psych201.errors import UsageError
from psych201.scoring.engines import RAY_PACKAGE
from psych201.study.cells import Cell, ModelGroup, expand, model_groups, score_config
from psych201.study.resume import is_complete
from psych201.study.run import CellOutcome, StudyOutcome, duration_text, run_study
from psych201.study.schema import StudyFile
from psych201.study.share import group_costs, group_gpus

#: How long a cluster address may take to answer before the run is refused.
CONNECT_TIMEOUT_S = 30.0
#: Attempts per model group (Ray's ``max_retries`` is this minus one).
ATTEMPTS = 2
#: Seconds between the driver's looks at the cells' folders (study-wide progress).
POLL_S = 5.0


class CellWatch:
    """Study-wide progress over every cell: which are complete on the shared file system.

    The workers write each cell's run folder as it finishes, so the driver learns of a cell
    from its manifest, whichever node scored it. The ETA is the plan's (each cell costs its
    group's planned cost over the group's cells) refreshed from measured throughput: elapsed
    time over the planned cost of the cells finished in this run, times the cost left. Cells
    complete before the run (a resume) count as done and are not timed.
    """

    def __init__(self, study: StudyFile, groups: Sequence[ModelGroup],
                 costs: Sequence[float], started: float) -> None:
        self.study, self.started = study, started
        self.cost = {c.out: costs[i] / len(g.cells) for i, g in enumerate(groups)
                     for c in g.cells}
        self.cells = [c for g in groups for c in g.cells]
        self.before = {c.out for c in self.cells if self._complete(c)}
        self.seen = set(self.before)

    def _complete(self, cell: Cell) -> bool:
        try:
            return is_complete(cell, score_config(cell, self.study))
        except (OSError, ValueError):  # a folder being written: looked at again next time
            return False

    def poll(self) -> list[str]:
        """A line per cell completed since the last poll: ``[k/N cells] label · elapsed · ETA``."""
        lines = []
        for cell in self.cells:
            if cell.out in self.seen or not self._complete(cell):
                continue
            self.seen.add(cell.out)
            lines.append(f"[{len(self.seen)}/{len(self.cells)} cells] {cell.label} · elapsed "
                         f"{duration_text(time.perf_counter() - self.started)} · ETA "
                         f"{self.eta()}")
        return lines

    def eta(self) -> str:
        timed = sum(self.cost[o] for o in self.seen - self.before)
        left = sum(self.cost[c.out] for c in self.cells if c.out not in self.seen)
        if not left:
            return "0m00s"
        if timed <= 0:
            return "–"
        return duration_text((time.perf_counter() - self.started) / timed * left)


@dataclass(frozen=True)
class GroupResult:
    """What a worker sends back: its cells' outcomes (without their tables) and its notes."""

    model: str
    outcomes: tuple[CellOutcome, ...]
    notes: tuple[str, ...]
    pid: int


def check_ray_address(address: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse (UsageError, before anything loads) Ray missing here or an address that does not
    answer: ``auto`` (the cluster this node belongs to), ``local:N`` (start one with N CPUs)
    or ``HOST:PORT`` / ``ray://HOST:PORT``."""
    if not RAY_PACKAGE.installed():
        raise UsageError(f"--ray needs the ray package, which is not installed "
                         f"({RAY_PACKAGE.install})")
    if address == "auto" or re.fullmatch(r"local:\d{1,4}", address):
        return
    found = re.fullmatch(r"(?:ray://)?([A-Za-z0-9.\-]+):(\d{1,5})", address)
    if found is None:
        raise UsageError(f"--ray {address}: expected auto, local:N or HOST:PORT")
    try:
        with socket.create_connection((found[1], int(found[2])), timeout=timeout_s):
            pass
    except OSError as exc:
        raise UsageError(f"--ray {address}: the cluster does not answer ({exc})") from exc


def _init(address: str, *, show_cells: bool) -> None:
    import ray

    if ray.is_initialized():
        return
    # The workers' per-cell progress lines reach the driver's console through Ray's log relay.
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": show_cells}
    if address.startswith("local:"):
        ray.init(num_cpus=int(address.split(":", 1)[1]), **options)
    else:
        ray.init(address=address, **options)


def _run_group(study: StudyFile, cells: Sequence[Cell], limit: int | None,
               out: Path | None) -> GroupResult:
    """In a worker: the group's cells, its model loaded once."""
    import os

    notes: list[str] = []
    model = cells[0].model
    outcome = run_study(study, limit=limit, out=out, note=notes.append, only=cells,
                        on_cell=lambda where: print(f"{model}: {where.line()}", flush=True))
    light = tuple(replace(o, summary=None) for o in outcome.outcomes)
    return GroupResult(model, light, tuple(notes), os.getpid())


def run_study_on_ray(
    study: StudyFile,
    address: str,
    *,
    limit: int | None = None,
    out: Path | None = None,
    note: Callable[[str], None] = print,
    cpus_per_group: float = 1.0,
    on_result: Callable[[GroupResult], None] | None = None,
    show_cells: bool = False,
) -> StudyOutcome:
    """Every model group as a Ray task (longest planned first); see the module docstring.

    ``note`` hears each group as it ends (i/N models, ETA from the measured rate over the
    planned cost); ``show_cells`` relays the workers' per-cell lines (cell i/N of the group,
    ETA) to this console."""
    import ray

    check_ray_address(address)
    _init(address, show_cells=show_cells)
    started = time.perf_counter()
    groups = model_groups(expand(study, limit=limit, out=out))
    costs = group_costs(groups)
    order = sorted(range(len(groups)), key=lambda i: (-costs[i], i))
    task = ray.remote(max_retries=ATTEMPTS - 1)(_run_group)
    pending: dict[Any, ModelGroup] = {}
    for i in order:
        group = groups[i]
        gpus = group_gpus(group, dtype=study.engine.dtype,
                          batch_tokens=study.engine.batch_tokens)
        on_gpu = study.engine.device.startswith("cuda")
        ref = task.options(num_cpus=cpus_per_group, num_gpus=gpus if on_gpu else 0).remote(
            study, list(group.cells), limit, out)
        pending[ref] = group
    outcomes: dict[str, tuple[CellOutcome, ...]] = {}
    total, done = len(groups), 0
    watch = CellWatch(study, groups, costs, started)
    note(f"{len(watch.cells)} cells in {total} model groups, {len(watch.before)} already "
         "complete")
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
        for line in watch.poll():
            note(line)
        if not ready:
            continue
        group = pending.pop(ready[0])
        done += 1
        try:
            result: GroupResult = ray.get(ready[0])
        except (ray.exceptions.RayError, *_CELL_ERRORS) as exc:
            message = (f"model group failed {ATTEMPTS} times: "
                       f"{' '.join(str(exc).split())[:300]}")
            outcomes[group.model] = tuple(CellOutcome(c, "failed", message) for c in group.cells)
            note(f"[{done}/{total} models] {group.model}: FAILED: {message}")
            continue
        outcomes[group.model] = result.outcomes
        if on_result is not None:
            on_result(result)
        counts = {s: sum(o.status == s for o in result.outcomes) for s in ("scored", "done")}
        elapsed = time.perf_counter() - started
        eta = _eta(costs, [groups.index(g) for g in pending.values()], elapsed,
                   sum(costs[groups.index(g)] for g in groups if g.model in outcomes))
        note(f"[{done}/{total} models] {group.model}: {len(result.outcomes)} cells "
             f"({counts['scored']} scored, {counts['done']} already complete) · ETA {eta}")
    ordered = tuple(o for g in groups for o in outcomes[g.model])
    run_dirs = tuple(o.cell.out for o in ordered if o.status in ("done", "scored"))
    return StudyOutcome(study, ordered, time.perf_counter() - started, run_dirs)


_CELL_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError)


def _eta(costs: Sequence[float], left: Sequence[int], elapsed: float, finished: float) -> str:
    """Remaining time from the measured rate over the planned cost of the groups finished."""
    if not left:
        return "0s"
    if finished <= 0:
        return "–"
    seconds = elapsed / finished * sum(costs[i] for i in left)
    return f"{seconds / 60:.0f}m" if seconds >= 60 else f"{seconds:.0f}s"
