"""The consoles the commands print to: wide enough that tables are not cut when stdout is a
file or a pipe (rich assumes 80 columns there), plain (no colour, no live bars) when it is not a
terminal."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from psych201.errors import EXIT_USAGE

#: Columns assumed when stdout is not a terminal and COLUMNS is not set.
PLAIN_WIDTH = 200


def out_console(*, stderr: bool = False) -> Console:
    """A console for results: the terminal's width, or :data:`PLAIN_WIDTH` when not a TTY."""
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, width=PLAIN_WIDTH)
    return console


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``error: MESSAGE`` as one line on stderr; the exit to raise (default: bad usage, 2).
    The one way a command refuses its input (the root group does the same for raised errors)."""
    out_console(stderr=True).print(f"[bold red]error:[/bold red] {escape(message)}",
                                   highlight=False, soft_wrap=True)
    return typer.Exit(code)


def check_file_output(path: Path, flag: str, *, example: str = "report.html") -> None:
    """Refuse, before any work, an output file that is a directory or sits under a file."""
    if path.is_dir():
        raise fail(f"{flag} {path} is a directory; name the file to write "
                   f"(e.g. {path / example})")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise fail(f"{flag} {path}: {parent} is a file, not a directory")
