"""``psych201 data validate|stats|build``: parse arguments, call psych201.data, print results.

Exit codes (psych201.errors): 0 = fine, 1 = the data has errors (validate, or a ``DataError``
under ``--on-error fail``), 2 = bad options, 3 = the OS refused (unreadable, unwritable). Errors are
printed as one line with file, line, column and reason — never as a traceback.
"""

from __future__ import annotations

import logging
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from psych201.bounds import check_bound, option_range
from psych201.cli.console import fail, out_console
from psych201.data.issues import ISSUE_CODES, DataError, IssueLog, OnError
from psych201.errors import EXIT_INVALID_DATA, EXIT_IO, os_error_line

if TYPE_CHECKING:
    from psych201.prompts.chance import StudyChance

app = typer.Typer(no_args_is_help=True)

EXIT_INVALID = EXIT_INVALID_DATA

console = out_console()
err_console = out_console(stderr=True)


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


#: Issues of one kind printed one by one; the rest of that kind is counted in one line.
PER_CODE = 3


def _print_issues(log: IssueLog, *, limit: int) -> None:
    shown: Counter[tuple[str, str]] = Counter()
    printed = 0
    for issue in log.issues:
        key = (issue.severity, issue.code)
        if printed >= limit or shown[key] >= PER_CODE:
            continue
        shown[key] += 1
        printed += 1
        style = "red" if issue.severity == "error" else "yellow"
        err_console.print(f"[{style}]{issue}[/{style}]", highlight=False, soft_wrap=True)
    for (severity, code), count in log.counts.items():
        more = count - shown[(severity, code)]
        if more > 0:
            meaning = ISSUE_CODES.get(code, code)
            err_console.print(f"... and {more:,} more {code} {severity}s ({meaning})",
                              highlight=False, soft_wrap=True)


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
    from psych201.simulate.demo import demo_or

    try:
        return resolve_data(demo_or(path))
    except DataError as error:
        raise fail(str(error)) from None


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
    local = _local(path)
    for chance in _chances(local).values():
        console.print(f"  {chance.study}: {chance.describe()}", highlight=False, soft_wrap=True)
    console.print(f"next: psych201 data stats {path}   (participants, responses, lengths)",
                  highlight=False, soft_wrap=True)


def _chances(path: Path) -> dict[str, StudyChance]:
    """What guessing scores per study of ``path`` (lines that do not parse are left out)."""
    from psych201.data.readers import iter_sessions
    from psych201.prompts.chance import chance_by_study

    return {c.study: c for c in chance_by_study(iter_sessions(path, on_error="skip"))}


@app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="The study's folder name, e.g. smith2024bandit.")],
    parent: Annotated[
        Path, typer.Option("--dir", help="Where to create the folder.")
    ] = Path("."),
) -> None:
    """Write a study folder to start from: README.md, generate_prompts.py, prompts.jsonl.zip."""
    from psych201.data.template import new_study
    from psych201.errors import UsageError

    try:
        folder = new_study(name, parent)
    except UsageError as error:
        raise fail(str(error)) from None
    console.print(
        f"wrote {folder}/: README.md (reference, format), generate_prompts.py (an example that "
        "writes the transcripts; replace its trial table by your data), prompts.jsonl.zip "
        "(1 example participant)\n"
        f"next: edit generate_prompts.py, run it (python {folder}/generate_prompts.py), then\n"
        f"  psych201 data validate {folder}\n"
        f"  psych201 data stats {folder}\n"
        f"  psych201 plan --data {folder} --model gemma-3-270m --split all\n"
        f"  psych201 score --data {folder} --split all --out runs/{name}\n"
        f"  psych201 report runs/{name} --data {folder} -o {name}.html",
        highlight=False,
        soft_wrap=True,
    )


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
        raise fail(str(error), error.exit_code) from None
    _print_issues(log, limit=show)
    table = Table(title=f"{path}", title_justify="left")
    headers = (
        "study",
        "participants",
        "responses",
        "chars median/p90/max",
        "single letter",
        "metadata",
        "longest session (chars)",
        "options/response",
        "chance (nats/response)",
    )
    chances = _chances(_local(path))
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
            *_chance_cells(chances.get(row.study)),
        )
    console.print(table)
    console.print(
        "chance: what guessing uniformly among the options scores (log k nats); * = option set "
        "inferred from each participant's distinct responses, not stated in the text.\n"
        f"next: psych201 plan --data {path} --model gemma-3-270m --split all   (time and "
        "memory), then "
        f"psych201 score --data {path} --split all --out runs/NAME   (--split all: every "
        "participant; the default --split test scores only the held-out tenth)",
        highlight=False,
        soft_wrap=True,
    )
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


def _chance_cells(chance: StudyChance | None) -> tuple[str, str]:
    if chance is None or chance.chance_nll is None or chance.mean_options is None:
        return "-", "unknown"
    mark = "*" if chance.inferred else ""
    return f"{chance.mean_options:.1f}{mark}", f"{chance.chance_nll:.3f}{mark}"


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
        raise fail(str(error), error.exit_code) from None
    except OSError as error:
        raise fail(f"cannot write {out}: {os_error_line(error)}", EXIT_IO) from None
    _print_issues(log, limit=show)
    _print_summary(log)
    console.print(
        f"wrote {summary.path}: {summary.sessions:,} sessions from "
        f"{len(summary.sessions_per_study)} studies, {summary.test_sessions:,} in the test split "
        f"(seed {summary.seed}); dropped {summary.dropped_without_responses} without responses",
        highlight=False,
        soft_wrap=True,
    )
