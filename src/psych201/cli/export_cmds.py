"""``psych201 export``: runs as one long CSV or Feather table for R or pandas."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from psych201.cli.console import out_console
from psych201.errors import Psych201Error


def export(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (or response tables).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The file to write.")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="csv or feather.")
    ] = "csv",
    data: Annotated[
        Path | None,
        typer.Option("--data", help="The studies' data (default: the folder each run names)."),
    ] = None,
) -> None:
    """One long table: a row per scored response with trial, participant and metadata columns.

    The columns are described in OUT.columns.json (and in the README): nll and chance_nll in
    nats, participant_id for random effects, trial_* per-trial and participant_* per-person
    metadata from the data.
    """
    from psych201.results.export import FORMATS, long_table, write_export
    from psych201.simulate.demo import demo_or

    if fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r}: use one of {', '.join(FORMATS)}", param_hint="--format")
    for run in runs:
        if not run.exists():
            raise Psych201Error(f"{run}: no such run directory")
    try:
        table = long_table(runs, demo_or(data) if data is not None else None)
        path, docs = write_export(table, out, fmt)
    except (ValueError, KeyError) as exc:
        raise Psych201Error(str(exc)) from exc
    reader = "read.csv" if fmt == "csv" else "arrow::read_feather"
    chance = table["chance_nll"].notna().mean() if "chance_nll" in table else 0.0
    out_console().print(
        f"wrote {path}: {len(table):,} rows (one per response and model) × {table.shape[1]} "
        f"columns; nll and chance_nll (guessing) in nats, chance known for {chance:.0%} of "
        f"the responses; columns described in {docs}\n"
        f"next (R): d <- {reader}(\"{path}\"); "
        "lme4::lmer(nll ~ model + (1 | participant_id) + (1 | study), data = d)",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``export`` to ``app``."""
    app.command("export")(export)
