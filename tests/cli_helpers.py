"""The psych201 CLI run in-process, the way the CLI tests call it."""

from __future__ import annotations

from collections.abc import Sequence

from click.testing import Result
from typer.testing import CliRunner

from psych201.cli import app


def invoke(args: Sequence[str], *, env: dict[str, str] | None = None) -> Result:
    """``psych201 ARGS``: the result, whatever the exit code; an exception other than the CLI's
    own exit is raised again, so a crash shows its traceback instead of a bare exit code."""
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def cli_output(*args: str) -> tuple[int, str]:
    """``psych201 ARGS`` with a terminal 200 columns wide (tables unwrapped): exit code, output."""
    result = invoke(args, env={"COLUMNS": "200"})
    return result.exit_code, result.output
