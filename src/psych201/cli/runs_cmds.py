"""``psych201 runs verify DIR…``: check run directories, and with ``--repair`` rebuild them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True)
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

#: Exit code of a run directory that is damaged (and, with --repair, could not be fully repaired).
EXIT_DAMAGED = 1


@app.command("verify")
def verify(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories to check.")],
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Rebuild what can be rebuilt: the final table and a lost manifest from the "
            "parts; say why not for the rest.",
        ),
    ] = False,
) -> None:
    """Check run directories: parts readable, no duplicate keys, counts and SHA-256 match the
    manifest. One line per problem; exit 0 when every directory is clean, 1 when one is damaged."""
    from psych201.errors import Psych201Error
    from psych201.results.verify import describe, repair_run, verify_run
    from psych201.results.writer import ResultsError

    damaged = False
    for run_dir in run_dirs:
        try:
            if repair:
                outcome = repair_run(run_dir)
                for line in outcome.done:
                    console.print(f"repaired: {line}")
                for line in outcome.not_done:
                    console.print(f"not repaired: {line}")
                report = outcome.after
            else:
                report = verify_run(run_dir)
                for problem in report.problems:
                    console.print(f"damaged: {problem}")
        except (ResultsError, Psych201Error) as exc:
            err_console.print(f"[bold red]error:[/bold red] {exc}")
            raise typer.Exit(getattr(exc, "exit_code", 2)) from exc
        for note in report.notes:
            console.print(f"note: {note}")
        if report.ok:
            console.print(describe(report))
        damaged = damaged or not report.ok
    if damaged:
        raise typer.Exit(EXIT_DAMAGED)
