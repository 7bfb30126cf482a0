"""``psych201 runs verify DIR…``: check run directories, and with ``--repair`` rebuild them."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True)
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

#: Exit code of a run directory that is damaged (and, with --repair, could not be fully repaired).
EXIT_DAMAGED = 1


@app.command("verify")
def verify(
    ctx: typer.Context,
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories to check.")],
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Rebuild what can be rebuilt: the final table and a lost manifest from the "
            "parts, damaged parts rescored by the run's recorded score command; say why not "
            "for the rest.",
        ),
    ] = False,
) -> None:
    """Check run directories: every part against the SHA-256 recorded when it was written, no
    duplicate keys, counts and SHA-256 of the table and the manifest's own checksum. One line per
    problem; exit 0 when every directory is clean, 1 when one is damaged."""
    from psych201.errors import Psych201Error
    from psych201.results.verify import describe, verify_run
    from psych201.results.writer import ResultsError

    damaged = False
    for run_dir in run_dirs:
        try:
            if repair:
                report = _repair(run_dir, ctx.find_root().command)
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


def _repair(run_dir: Path, root: Any) -> Any:
    """``--repair`` of one directory: rebuild, rescore damaged parts, print, the check after."""
    from psych201.results.repair import ScoreCommand, recorded_score_command, repair_run
    from psych201.results.verify import verify_run

    command = recorded_score_command(run_dir) if run_dir.is_dir() else None
    rescorable = isinstance(command, ScoreCommand)
    outcome = repair_run(run_dir, rescore=rescorable,
                         cannot_rescore=command if isinstance(command, str) else None)
    for line in outcome.done:
        console.print(f"repaired: {line}")
    report = outcome.after
    if outcome.rescore and isinstance(command, ScoreCommand):
        code = _rerun_score(command, root)
        report = verify_run(run_dir)
        if code == 0 and report.ok:
            console.print(f"repaired: {run_dir}: damaged parts rescored by its score command "
                          f"(psych201 {' '.join(command.args)})")
        else:
            console.print(f"not repaired: {run_dir}: rescoring the damaged parts failed (exit "
                          f"{code}); rerun: psych201 {' '.join(command.args)}")
        for problem in report.problems:
            console.print(f"not repaired: {problem}")
    for line in outcome.not_done:
        console.print(f"not repaired: {line}")
    return report


def _rerun_score(command: Any, root: Any) -> int:
    """Run the recorded ``psych201 score …`` in this process, from the directory it ran in; its
    exit code (the score command takes the run's lock itself). ``root`` is the running CLI's
    root command (from the context: importing the CLI package here would be a cycle)."""
    with contextlib.chdir(command.cwd):
        try:
            result = root.main(args=[*command.args, "--quiet"], standalone_mode=False)
        except Exception as exc:  # click's usage errors; the group turned the rest into exits
            return int(getattr(exc, "exit_code", 2))
    return int(result or 0)
