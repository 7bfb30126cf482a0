"""``psych201 data validate|stats|build``: parse arguments, call psych201.data, print results.

Exit codes (psych201.errors): 0 = fine, 1 = the data has errors (validate, or a ``DataError``
under ``--on-error fail``), 2 = bad options, 3 = the OS refused (unreadable, unwritable). Errors are
printed as one line with file, line, column and reason — never as a traceback.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from psych201.bounds import check_bound, option_range
from psych201.data.issues import ISSUE_CODES, DataError, IssueLog, OnError
from psych201.errors import EXIT_INVALID_DATA, EXIT_IO, EXIT_USAGE, os_error_line

app = typer.Typer(no_args_is_help=True)

EXIT_INVALID = EXIT_INVALID_DATA
EXIT_BAD_INPUT = EXIT_USAGE

console = Console()
err_console = Console(stderr=True)


@app.callback()
def _quiet_library_log() -> None:
    # The commands print issues themselves (with a summary table); the library's logger would
    # print the first few twice.
    logging.getLogger("psych201.data").setLevel(logging.ERROR)


class OnErrorChoice(StrEnum):
    fail = "fail"
    skip = "skip"


OnErrorOption = Annotated[
    OnErrorChoice,
    typer.Option(
        "--on-error",
        help="fail: stop at the first bad line; skip: drop bad lines with a warning and a count.",
    ),
]
MaxLineOption = Annotated[
    float,
    typer.Option("--max-line-mb", **option_range("max_line_mb"),
                 help="Reject lines longer than this many MiB."),
]
ShowOption = Annotated[int, typer.Option("--show", min=0, help="Print at most this many issues.")]


def _policy(choice: OnErrorChoice) -> OnError:
    return "skip" if choice is OnErrorChoice.skip else "fail"


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err_console.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _print_issues(log: IssueLog, *, limit: int) -> None:
    for issue in log.issues[:limit]:
        style = "red" if issue.severity == "error" else "yellow"
        err_console.print(f"[{style}]{issue}[/{style}]", highlight=False, soft_wrap=True)
    shown = min(limit, len(log.issues))
    total = log.n_errors + log.n_warnings
    if total > shown:
        err_console.print(f"... {total - shown} more (counted below)", highlight=False)


def _print_summary(log: IssueLog) -> None:
    if not log.counts:
        return
    table = Table(title="issues", title_justify="left")
    for column in ("severity", "code", "count", "meaning"):
        table.add_column(column)
    for severity, code, count in log.summary():
        table.add_row(severity, code, str(count), ISSUE_CODES.get(code, ""))
    err_console.print(table)
    if log.skipped_lines:
        err_console.print(f"{log.skipped_lines} line(s) skipped", highlight=False)


def _local(path: Path) -> Path:
    """``path``, or the local folder of an ``hf:`` source (hub id or dataset folder)."""
    from psych201.data.hub import resolve_data

    try:
        return resolve_data(path)
    except DataError as error:
        raise _fail(str(error)) from None


def _max_bytes(max_line_mb: float) -> int:
    check_bound("max_line_mb", max_line_mb)  # click's range lets NaN through
    return int(max_line_mb * 1024 * 1024)


@app.command("validate")
def validate(
    path: Annotated[
        Path,
        typer.Argument(help="A study folder, data file, dataset directory or hf:OWNER/NAME."),
    ],
    strict: Annotated[
        bool, typer.Option("--strict", help="Warnings fail too; RT length mismatches are errors.")
    ] = False,
    show: ShowOption = 50,
    max_line_mb: MaxLineOption = 16.0,
) -> None:
    """Check a study against the Psych-201 contribution rules; exit 1 on any error."""
    from psych201.data.validate import validate_path

    report = validate_path(_local(path), strict=strict, max_line_bytes=_max_bytes(max_line_mb))
    _print_issues(report.log, limit=show)
    _print_summary(report.log)
    studies = ", ".join(report.studies) or "-"
    verdict = "[green]OK[/green]" if report.ok else "[bold red]FAILED[/bold red]"
    console.print(
        f"{verdict}  {report.path}: {len(report.studies)} study(ies) ({studies}), "
        f"{report.sessions:,} sessions, {report.responses:,} responses, "
        f"{report.log.n_errors} error(s), {report.log.n_warnings} warning(s)",
        highlight=False,
        soft_wrap=True,
    )
    if not report.ok:
        raise typer.Exit(EXIT_INVALID)


@app.command("stats")
def stats(
    path: Annotated[
        Path,
        typer.Argument(help="A study folder, data file, dataset directory or hf:OWNER/NAME."),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the table as Parquet here.")
    ] = None,
    on_error: OnErrorOption = OnErrorChoice.fail,
    max_line_mb: MaxLineOption = 16.0,
    show: ShowOption = 10,
) -> None:
    """Per study: participants, responses, response lengths, single-letter share, metadata."""
    from psych201.data.stats import study_stats, write_stats

    log = IssueLog()
    try:
        rows = study_stats(
            _local(path),
            on_error=_policy(on_error),
            log=log,
            max_line_bytes=_max_bytes(max_line_mb),
        )
    except DataError as error:
        raise _fail(str(error), error.exit_code) from None
    _print_issues(log, limit=show)
    table = Table(title=f"{path}", title_justify="left")
    headers = (
        "study",
        "participants",
        "responses",
        "chars median/p90/max",
        "single letter",
        "metadata",
        "longest session",
    )
    for header in headers:
        table.add_column(header, justify="left" if header == "study" else "right")
    for row in rows:
        covered = [f"{k} {v:.0%}" for k, v in row.field_coverage.items() if v > 0]
        table.add_row(
            row.study,
            f"{row.participants:,}",
            f"{row.responses:,}",
            f"{row.response_chars_median:g}/{row.response_chars_p90:g}/{row.response_chars_max}",
            f"{row.single_letter_share:.0%}",
            ", ".join(covered) or "-",
            f"{row.longest_session_chars:,}",
        )
    console.print(table)
    _print_summary(log)
    if log.unmapped.counts:
        unmapped = Table(title="metadata values that could not be mapped", title_justify="left")
        for column in ("study", "field", "raw value", "kind", "result", "count"):
            unmapped.add_column(column)
        for item in log.unmapped.rows()[:30]:
            unmapped.add_row(
                item["study"],
                item["field"],
                item["raw_value"],
                item["kind"],
                item["result"],
                str(item["count"]),
            )
        console.print(unmapped)
    if out is not None:
        written = write_stats(rows, out)
        console.print(f"wrote {written}", highlight=False)


@app.command("build")
def build(
    source: Annotated[
        Path,
        typer.Argument(help="A directory of study folders (or one study, or hf:OWNER/NAME)."),
    ],
    out: Annotated[Path, typer.Argument(help="The Parquet file to write.")],
    seed: Annotated[
        int, typer.Option("--seed", **option_range("seed"), help="Seed of the test split.")
    ] = 0,
    on_error: OnErrorOption = OnErrorChoice.fail,
    max_line_mb: MaxLineOption = 16.0,
    show: ShowOption = 10,
) -> None:
    """Write one harmonised Parquet dataset with the paper's test split (column in_eval)."""
    from psych201.data.build import build_dataset

    log = IssueLog()
    try:
        summary = build_dataset(
            _local(source),
            out,
            seed=seed,
            on_error=_policy(on_error),
            log=log,
            max_line_bytes=_max_bytes(max_line_mb),
        )
    except DataError as error:
        raise _fail(str(error), error.exit_code) from None
    except OSError as error:
        raise _fail(f"cannot write {out}: {os_error_line(error)}", EXIT_IO) from None
    _print_issues(log, limit=show)
    _print_summary(log)
    console.print(
        f"wrote {summary.path}: {summary.sessions:,} sessions from "
        f"{len(summary.sessions_per_study)} studies, {summary.test_sessions:,} in the test split "
        f"(seed {summary.seed}); dropped {summary.dropped_without_responses} without responses",
        highlight=False,
        soft_wrap=True,
    )
