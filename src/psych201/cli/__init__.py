"""The ``psych201`` command line: typer commands that parse arguments and call the library."""

from __future__ import annotations

import typer

from psych201.cli import (
    analysis_cmds,
    data_cmds,
    lab_cmds,
    plan_cmds,
    run_cmds,
    score_cmds,
    simulate_cmds,
)

app = typer.Typer(
    name="psych201",
    help="Measure how human-like language models are on Psych-201 transcripts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_cmds.app, name="data", help="Read, validate, describe and build Psych-201 data.")
score_cmds.register(app)
analysis_cmds.register(app)
simulate_cmds.register(app)
run_cmds.register(app)
lab_cmds.register(app)
plan_cmds.register(app)


def main() -> None:
    app()
