"""The ``psych201`` command line: typer commands that parse arguments and call the library.

Every expected failure ends as one red line and a distinct exit code (:mod:`psych201.errors`):
invalid data 1, usage 2, the operating system refused 3, failed sessions 4, a bug 70, Ctrl-C 130.
The mapping lives in :class:`_Psych201Group` so it holds for ``main()`` and in-process runners
alike; tracebacks only appear under ``--debug``.
"""

from __future__ import annotations

import traceback
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup
from typer.exceptions import TyperException

from psych201.cli import (
    analysis_cmds,
    behaviour_cmds,
    data_cmds,
    export_cmds,
    lab_cmds,
    plan_cmds,
    play_cmds,
    run_cmds,
    runs_cmds,
    score_cmds,
    simulate_cmds,
)
from psych201.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_IO,
    Psych201Error,
    os_error_line,
)


def _debug_requested(ctx: Any) -> bool:
    return bool(ctx.params.get("debug")) or bool((ctx.obj or {}).get("debug"))


def _error_exit(message: str, code: int, *, debug: bool) -> NoReturn:
    console = Console(stderr=True)
    if debug:
        console.print(traceback.format_exc(), highlight=False, markup=False, end="")
    # One line: a multi-line message keeps its first line, the rest is noise for a terminal.
    console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class _Psych201Group(TyperGroup):
    """Turns whatever a command raises into one line and an exit code (see the module doc)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException) as exc:
            # typer's own exits and usage errors: already one line with their code
            raise _suggest_option(exc) from None
        except KeyboardInterrupt:
            _error_exit("interrupted; what finished is kept: rerun the same command to resume",
                        EXIT_INTERRUPTED, debug=_debug_requested(ctx))
        except Psych201Error as exc:
            _error_exit(_one_line(exc), exc.exit_code, debug=_debug_requested(ctx))
        except OSError as exc:
            _error_exit(os_error_line(exc), EXIT_IO, debug=_debug_requested(ctx))
        except Exception as exc:
            _error_exit(
                f"internal error ({type(exc).__name__}: {_one_line(exc)}); please report it "
                "(rerun with --debug for the traceback)",
                EXIT_INTERNAL,
                debug=_debug_requested(ctx),
            )


def _suggest_option(exc: Exception) -> Exception:
    """An unknown option's error, naming the command's option it most likely means (a synonym
    such as ``--n-participants`` for ``--limit``, or a close spelling); other errors as they are.

    typer vendors click, so its ``NoSuchOption`` is recognised by name and attributes.
    """
    from psych201.suggest import option_for

    name, ctx = getattr(exc, "option_name", None), getattr(exc, "ctx", None)
    if type(exc).__name__ != "NoSuchOption" or not isinstance(name, str) or ctx is None:
        return exc
    options = [o for p in ctx.command.params for o in getattr(p, "opts", [])]
    meant = option_for(name, options)
    if meant is None:
        return exc
    rebuilt: Any = type(exc)
    suggested: Exception = rebuilt(name, message=f"No such option: {name}; did you mean {meant}?",
                                   ctx=ctx)
    return suggested


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split("\n"))


def _package_version() -> str:
    try:
        return version("psych201")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"psych201 {_package_version()}")
        raise typer.Exit()


app = typer.Typer(
    name="psych201",
    cls=_Psych201Group,
    help="Measure how human-like language models are on Psych-201 transcripts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of any error (for bug reports).")
    ] = False,
    _version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_show_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    ctx.obj = {**(ctx.obj or {}), "debug": debug}


app.add_typer(data_cmds.app, name="data", help="Read, validate, describe and build Psych-201 data.")
score_cmds.register(app)
analysis_cmds.register(app)
simulate_cmds.register(app)
play_cmds.register(app)
behaviour_cmds.register(app)
run_cmds.register(app)
app.add_typer(runs_cmds.app, name="runs", help="Check and repair run directories.")
lab_cmds.register(app)
plan_cmds.register(app)
export_cmds.register(app)


def main() -> None:
    """Console entry point: the commands above, with the exit codes of :mod:`psych201.errors`."""
    try:
        app()
    except KeyboardInterrupt:  # raised outside a command (e.g. while importing)
        raise SystemExit(EXIT_INTERRUPTED) from None
