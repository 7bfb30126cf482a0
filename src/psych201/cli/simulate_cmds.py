"""`psych201 simulate`: write simulated-participant studies, or regenerate the bundled demo."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from psych201.bounds import option_range
from psych201.simulate import DEMO_DIR, DEMO_STUDIES, KINDS, TASKS, simulate_study, write_demo
from psych201.simulate import write_study as write_study_file

_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add ``simulate`` to ``app``."""
    app.command("simulate", no_args_is_help=True)(simulate)


def simulate(
    kind: Annotated[
        str | None,
        typer.Argument(
            help="Task to simulate: "
            + "; ".join(f"{k} ({t.description})" for k, t in TASKS.items()),
            show_default=False,
        ),
    ] = None,
    participants: Annotated[
        int, typer.Option("--participants", "-n", **option_range("participants"),
                     help="Number of participants.")
    ] = 20,
    trials: Annotated[
        int | None,
        typer.Option("--trials", "-t", **option_range("trials"),
                     help="Trials per participant (default: the task's)."),
    ] = None,
    seed: Annotated[
        int, typer.Option(**option_range("seed"), help="Random seed (same seed, same bytes).")
    ] = 0,
    shared_trials: Annotated[
        bool,
        typer.Option("--shared-trials", help="Every participant meets the same problems in the "
                     "same order (risky only), for population-level analyses."),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output file (.jsonl, or .zip holding one JSONL); with --demo, a directory "
            "(default: the bundled demo folder).",
        ),
    ] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Regenerate the bundled demo dataset.")
    ] = False,
    check: Annotated[
        bool,
        typer.Option("--check", help="With --demo: only verify the bundled files are up to date."),
    ] = False,
) -> None:
    """Simulate participants of a classic cognitive model as a Psych-201 study.

    Each record stores the true parameters (param_*) and the generating model's exact log-probability of every response (loglik), which the oracle scorer returns.
    """  # noqa: E501 - one line, so the help text wraps to the terminal, not to the source
    if demo:
        if kind is not None:
            raise typer.BadParameter("--demo takes no KIND", param_hint="KIND")
        _demo(out, check)
        return
    if check:
        raise typer.BadParameter("--check only applies with --demo", param_hint="--check")
    if kind is None:
        raise typer.BadParameter(f"choose one of {', '.join(KINDS)}", param_hint="KIND")
    if kind not in TASKS:
        raise typer.BadParameter(
            f"unknown task {kind!r}; choose one of {', '.join(KINDS)}", param_hint="KIND"
        )
    if out is None:
        raise typer.BadParameter("where to write the study", param_hint="--out")
    if out.suffix not in (".jsonl", ".zip"):
        # The study is JSONL (or zipped JSONL); under another suffix it would mislead its readers.
        raise typer.BadParameter(
            f"{out.name}: the study is written as .jsonl or .zip (holding prompts.jsonl)",
            param_hint="--out",
        )
    if shared_trials and TASKS[kind].shared is None:
        raise typer.BadParameter(f"task {kind!r} has no shared problem set",
                                 param_hint="--shared-trials")
    records = simulate_study(kind, n_participants=participants, n_trials=trials, seed=seed,
                             shared_trials=shared_trials)
    path = write_study_file(records, out)
    n_responses = sum(len(r["loglik"]) for r in records)
    _console.print(f"wrote {len(records)} participants, {n_responses} responses -> {path}")


def _demo(out: Path | None, check: bool) -> None:
    target = DEMO_DIR if out is None else out
    if not check:
        for path in write_demo(target):
            _console.print(f"wrote {path}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        fresh = write_demo(tmp)
        stale = [
            f"{target / p.name}"
            for p in fresh
            if not (target / p.name).is_file() or (target / p.name).read_bytes() != p.read_bytes()
        ]
    if stale:
        _console.print("[red]out of date:[/red] " + ", ".join(stale))
        raise typer.Exit(1)
    _console.print(f"all {len(DEMO_STUDIES)} demo studies in {target} are up to date")
