"""`psych201 run STUDY.yaml`: every (model, condition, data) cell of a study, then the report."""

from __future__ import annotations

import shlex
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from psych201.cli.console import out_console
from psych201.cli.score_cmds import RichProgress
from psych201.errors import EXIT_FAILED_SESSIONS, EXIT_USAGE

console = out_console()
err_console = out_console(stderr=True)


def run(
    study_file: Annotated[Path, typer.Argument(help="The study file (see studies/*.yaml).")],
    limit: Annotated[
        int | None, typer.Option(help="At most this many participants per study (all cells).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Root of the run directories (default: the file's `out`).")
    ] = None,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Write the study's HTML report at the end.")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run a whole study: score every unfinished cell (resumable), then write the report.

    Rerunning a finished study scores nothing: finished cells are recognised from their
    manifests without loading any model.
    """
    from psych201.study import (
        StudyFileError,
        adapter_registries,
        check_adapters_current,
        expand,
        load_study,
        run_study,
    )

    try:
        study = load_study(study_file)
        check_adapters_current(study, out)
    except StudyFileError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from exc
    cells = expand(study, limit=limit, out=out)
    console.print(
        f"study [bold]{study.name}[/bold]: {len(cells)} cells "
        f"({len(study.models)} models × {len(study.conditions)} conditions × "
        f"{len(study.data)} datasets)"
    )
    outcome = run_study(
        study,
        limit=limit,
        out=out,
        progress=lambda cell: RichProgress(err_console, enabled=not quiet),
        note=lambda message: console.print(f"[dim]{message}[/dim]", highlight=False),
        argv=sys.argv,
        on_cell=lambda where: console.print(where.line(), highlight=False),
        loading=lambda model: (
            err_console.status(f"loading {model}…") if not quiet else nullcontext()),
    )
    table = Table(title=f"{study.name}: {outcome.wall_s:.0f} s", title_justify="left")
    for column in ("data", "model", "condition", "status", "detail"):
        table.add_column(column)
    for o in outcome.outcomes:
        table.add_row(o.cell.data.name, o.cell.model, o.cell.condition.label, o.status, o.message,
                      style="red" if o.status == "failed" else None)
    console.print(table)
    if report and study.report and outcome.run_dirs:
        from psych201.analysis.conditions import ConditionError
        from psych201.analysis.registry import RegistryError, load_registry
        from psych201.analysis.tables import StudySetError, TableError
        from psych201.report.make import ReportDataError, report_from_runs
        from psych201.study import data_path

        root = out if out is not None else Path(study.out)
        try:
            # The study's adapters pair with their bases through their registry fragments.
            registry = load_registry(*adapter_registries(study, out))
            path = report_from_runs(
                outcome.run_dirs,
                root / study.report,
                title=f"psych201 study: {study.name}",
                data=[data_path(d) for d in study.data],
                notes=outcome.report_notes(),
                registry=registry,
            )
        except (StudySetError, ConditionError, ReportDataError, TableError, RegistryError) as exc:
            # The scored cells are kept; `psych201 report RUN…` can be retried on them.
            err_console.print(f"[red]error:[/red] report not written: {exc}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from exc
        console.print(f"wrote {path}")
        fragments = adapter_registries(study, out)
        if fragments:
            # The adapters pair with their bases only through their registry fragments.
            runs = " ".join(shlex.quote(str(root / d.name)) + "/*/*" for d in study.data)
            data = " ".join(f"--data {shlex.quote(d.path)}" for d in study.data)
            registries = " ".join(f"--registry {shlex.quote(str(f))}" for f in fragments)
            console.print(f"to analyse these runs again: psych201 report {runs} {data} "
                          f"{registries} -o REPORT.html", highlight=False, soft_wrap=True)
    elif report and study.report:
        console.print("no report: no cell has responses to report")
    if outcome.failed:
        for o in outcome.failed:
            err_console.print(f"[red]failed:[/red] {o.cell.label}: {o.message}",
                              highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED_SESSIONS)


def register(app: typer.Typer) -> None:
    """Add ``run`` to ``app``."""
    app.command("run")(run)
