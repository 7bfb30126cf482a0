"""`psych201 run STUDY.yaml`: every (model, condition, data) cell of a study, then the report.

Also the study on a cluster without a scheduler of psych201's own: ``--cells i/N`` runs task
i's share of the model groups, ``--emit slurm`` writes a Slurm array over those shares, and
``--report`` alone writes the report from whatever cells are complete.
"""

from __future__ import annotations

import shlex
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from psych201.bounds import low_high
from psych201.cli.console import fail, out_console
from psych201.cli.score_progress import RichProgress
from psych201.errors import EXIT_FAILED_SESSIONS, UsageError

if TYPE_CHECKING:
    from psych201.study import Cell, StudyFile, StudyOutcome

console = out_console()
err_console = out_console(stderr=True)

#: ``--limit`` bounds, from the table every option shares (psych201.bounds).
LIMIT_BOUNDS = low_high("limit")
EMIT_CHOICES = ("slurm",)


def run(
    study_file: Annotated[Path, typer.Argument(help="The study file (see studies/*.yaml).")],
    limit: Annotated[
        int | None, typer.Option(help="At most this many participants per study (all cells).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Root of the run directories (default: the file's `out`).")
    ] = None,
    report: Annotated[
        bool | None, typer.Option(
            "--report/--no-report",
            help="--report alone: only write the report from the complete cells (listing the "
                 "missing ones); --no-report: score without writing it. Default: both.")
    ] = None,
    cells: Annotated[str | None, typer.Option(
        help="i/N: run task i's share of the model groups (balanced by planned hours).")] = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", help="Run the model groups as Ray tasks on a cluster: auto, local:N (N CPUs "
                      "here) or HOST:PORT.")] = None,
    emit: Annotated[str | None, typer.Option(
        help="Print a job script instead of running: slurm (an array over --cells).")] = None,
    tasks: Annotated[int | None, typer.Option(
        help="--emit: array tasks (default: one per model group, at most 16).")] = None,
    gpu: Annotated[str, typer.Option(
        help="--emit: the GPU kind the memory estimate sizes each task for.")] = "H100",
    time: Annotated[str, typer.Option(help="--emit: each task's time limit.")] = "24:00:00",
    partition: Annotated[str | None, typer.Option(help="--emit: the Slurm partition.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run a whole study: score every unfinished cell (resumable), then write the report.

    Rerunning a finished study scores nothing: finished cells are recognised from their
    manifests without loading any model.
    """
    from psych201.study import (
        StudyFileError,
        check_adapters_current,
        check_engines_installed,
        expand,
        load_study,
        run_study,
    )
    from psych201.study.cells import model_groups
    from psych201.study.share import Share, share_groups

    # Everything the command line alone can refuse, before the study file is read.
    if limit is not None and not LIMIT_BOUNDS[0] <= limit <= LIMIT_BOUNDS[1]:
        raise fail(f"--limit {limit}: must be between {LIMIT_BOUNDS[0]} and "
                    f"{LIMIT_BOUNDS[1]:,}")
    if emit is not None and emit not in EMIT_CHOICES:
        raise fail(f"--emit {emit}: choose one of {', '.join(EMIT_CHOICES)}")
    if report and (cells is not None or ray is not None):
        raise fail("--report writes the report alone; run the cells without it")
    if ray is not None and cells is not None:
        raise fail("--ray schedules every model group itself: leave out --cells")
    try:
        share = Share.parse(cells) if cells is not None else None
        if tasks is not None:
            Share.parse(f"1/{tasks}", what="--tasks")
    except UsageError as exc:
        raise fail(str(exc)) from exc
    try:
        study = load_study(study_file)
        check_adapters_current(study, out)
    except StudyFileError as exc:
        raise fail(str(exc)) from exc
    every = expand(study, limit=limit, out=out)
    if emit is not None:
        _emit_slurm(study_file, study, every, tasks=tasks, gpu=gpu, time=time,
                    partition=partition, limit=limit, out=out)
        return
    if report:
        _report_only(study, every, out)
        return
    try:
        check_engines_installed(study)  # before any model loads
        if ray is not None:
            from psych201.study.ray_run import check_ray_address

            check_ray_address(ray)
    except UsageError as exc:
        raise fail(str(exc)) from exc
    only = None
    if share is not None:
        mine = share_groups(model_groups(every), share)
        only = [c for g in mine for c in g.cells]
        console.print(f"task {share.index}/{share.count}: {len(mine)} models, {len(only)} cells "
                      f"({', '.join(g.model for g in mine) or 'none'})", highlight=False)
    else:
        console.print(
            f"study [bold]{study.name}[/bold]: {len(every)} cells "
            f"({len(study.models)} models × {len(study.conditions)} conditions × "
            f"{len(study.data)} datasets)"
        )
    outcome = _on_ray(study, ray, limit, out, quiet) if ray is not None else run_study(
        study,
        limit=limit,
        out=out,
        progress=lambda cell: RichProgress(err_console, enabled=not quiet),
        note=lambda message: console.print(f"[dim]{message}[/dim]", highlight=False),
        argv=sys.argv,
        on_cell=lambda where: console.print(where.line(), highlight=False),
        loading=lambda model: (
            err_console.status(f"loading {model}…") if not quiet else nullcontext()),
        only=only,
    )
    table = Table(title=f"{study.name}: {outcome.wall_s:.0f} s", title_justify="left")
    for column in ("data", "model", "condition", "status", "detail"):
        table.add_column(column)
    for o in outcome.outcomes:
        table.add_row(o.cell.data.name, o.cell.model, o.cell.condition.label, o.status, o.message,
                      style="red" if o.status == "failed" else None)
    console.print(table)
    if share is not None and report is None and study.report:
        console.print(f"one task of {share.count}: once all are done, write the report with "
                      f"psych201 run {shlex.quote(str(study_file))} --report", highlight=False)
    elif report is None and study.report and outcome.run_dirs:
        _write_report(study, out, outcome.run_dirs, outcome.report_notes())
    elif report is None and study.report:
        console.print("no report: no cell has responses to report")
    if outcome.failed:
        for o in outcome.failed:
            err_console.print(f"[red]failed:[/red] {o.cell.label}: {o.message}",
                              highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED_SESSIONS)


def _on_ray(study: StudyFile, address: str, limit: int | None, out: Path | None,
            quiet: bool) -> StudyOutcome:
    from psych201.study.ray_run import run_study_on_ray

    return run_study_on_ray(study, address, limit=limit, out=out, show_cells=not quiet,
                            note=lambda m: console.print(m, highlight=False))


def _report_only(study: StudyFile, every: list[Cell], out: Path | None) -> None:
    """The report from the cells that are complete; the others are listed (and noted in it)."""
    from psych201.study import is_complete, score_config, skipped_before, table_rows

    if not study.report:
        raise fail("the study file sets report: null")
    done, missing, notes = [], [], []
    for cell in every:
        if is_complete(cell, score_config(cell, study)) and (table_rows(cell.out) or 0) > 0:
            done.append(cell.out)
        elif (reason := skipped_before(cell)) is not None:
            notes.append(f"cell {cell.label} skipped: {reason}")
        elif not is_complete(cell, score_config(cell, study)):
            missing.append(cell.label)
    if missing:
        shown = "; ".join(missing[:20]) + ("; …" if len(missing) > 20 else "")
        notes.insert(0, f"{len(missing)} of {len(every)} cells missing (not complete): {shown}")
        err_console.print(f"{len(missing)} of {len(every)} cells missing:", highlight=False)
        for label in missing:
            err_console.print(f"  missing: {label}", highlight=False, soft_wrap=True)
    if not done:
        raise fail("no report: no complete cell has responses to report")
    _write_report(study, out, tuple(done), tuple(notes))


def _write_report(study: StudyFile, out: Path | None, run_dirs: tuple[Path, ...],
                  notes: tuple[str, ...]) -> None:
    from psych201.analysis.conditions import ConditionError
    from psych201.analysis.registry import RegistryError, load_registry
    from psych201.analysis.tables import StudySetError, TableError
    from psych201.report.make import ReportDataError, report_from_runs
    from psych201.study import adapter_registries, data_path

    assert study.report is not None
    root = out if out is not None else Path(study.out)
    try:
        # The study's adapters pair with their bases through their registry fragments.
        registry = load_registry(*adapter_registries(study, out))
        path = report_from_runs(
            run_dirs,
            root / study.report,
            title=f"psych201 study: {study.name}",
            data=[data_path(d) for d in study.data],
            notes=notes,
            registry=registry,
        )
    except (StudySetError, ConditionError, ReportDataError, TableError, RegistryError) as exc:
        # The scored cells are kept; `psych201 report RUN…` can be retried on them.
        raise fail(f"report not written: {exc}") from exc
    console.print(f"wrote {path}")
    fragments = adapter_registries(study, out)
    if fragments:
        # The adapters pair with their bases only through their registry fragments.
        runs = " ".join(shlex.quote(str(root / d.name)) + "/*/*" for d in study.data)
        data = " ".join(f"--data {shlex.quote(d.path)}" for d in study.data)
        registries = " ".join(f"--registry {shlex.quote(str(f))}" for f in fragments)
        console.print(f"to analyse these runs again: psych201 report {runs} {data} "
                      f"{registries} -o REPORT.html", highlight=False, soft_wrap=True)


def _emit_slurm(study_file: Path, study: StudyFile, every: list[Cell],
                *, tasks: int | None, gpu: str, time: str, partition: str | None,
                limit: int | None, out: Path | None) -> None:
    from psych201.analysis.registry import load_registry
    from psych201.plan_cluster import GPU_KINDS
    from psych201.study.cells import model_groups
    from psych201.study.share import group_gpus, shares
    from psych201.study.slurm import SlurmOptions, slurm_script

    if gpu.lower() not in GPU_KINDS:
        raise fail(f"--gpu {gpu}: choose one of {', '.join(g.name for g in GPU_KINDS.values())}")
    groups = model_groups(every)
    n = tasks if tasks is not None else max(1, min(len(groups), 16))
    registry = load_registry()
    gpus = max((group_gpus(g, dtype=study.engine.dtype, batch_tokens=study.engine.batch_tokens,
                           kind=gpu, registry=registry) for g in groups), default=0)
    extra = [*(["--limit", str(limit)] if limit is not None else []),
             *(["--out", str(out)] if out is not None else [])]
    options = SlurmOptions(tasks=n, gpus=gpus, time=time, partition=partition)
    sys.stdout.write(slurm_script(study_file, shares(groups, n), options, extra_args=extra))


def register(app: typer.Typer) -> None:
    """Add ``run`` to ``app``."""
    app.command("run")(run)
