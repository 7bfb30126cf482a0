"""The consoles the commands print to: wide enough that tables are not cut when stdout is a
file or a pipe (rich assumes 80 columns there), plain (no colour, no live bars) when it is not a
terminal."""

from __future__ import annotations

import os

from rich.console import Console

#: Columns assumed when stdout is not a terminal and COLUMNS is not set.
PLAIN_WIDTH = 200


def out_console(*, stderr: bool = False) -> Console:
    """A console for results: the terminal's width, or :data:`PLAIN_WIDTH` when not a TTY."""
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, width=PLAIN_WIDTH)
    return console
