"""The per-study table the score command prints when a run finishes: mean NLL, chance level
(guessing among the options offered) and pseudo-R², with what the chance column rests on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from psych201.cli.console import out_console

if TYPE_CHECKING:
    from psych201.pipeline import RunSummary
    from psych201.results.summary import StudyLine

err_console = out_console(stderr=True)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def chance_cells(line: StudyLine) -> tuple[str, str]:
    """The chance NLL and the pseudo-R² against it, in numbers and words (inferred marked *)."""
    from psych201.results.summary import chance_words

    if line.chance_nll is None:
        return "-", "chance unknown"
    mark = "*" if line.inferred_responses else ""
    return f"{line.chance_nll:.3f}{mark}", f"{line.pseudo_r2:+.3f} ({chance_words(line.pseudo_r2)})"


def print_summary(
    summary: RunSummary, data: str | Path | None = None, split: str | None = None
) -> None:
    from psych201.results.summary import option_counts_of, summarise_run, write_summary

    console = out_console()
    counts = None
    if summary.table is not None and data is not None:
        try:
            counts = option_counts_of(summary.run_dir, data)
        except (OSError, ValueError) as exc:  # the data moved or broke since: no chance column
            err_console.print(f"chance level not computed: {exc}", highlight=False)
    lines = summarise_run(summary.run_dir, counts) if summary.table is not None else []
    if lines:
        table = Table(title="NLL per response (nats; lower = more human-like) per study",
                      title_justify="left")
        table.add_column("study", no_wrap=True)
        for name in ("participants", "responses", "per response (nats)", "per token (nats)",
                     "chance (guessing)", "pseudo-R² vs guessing"):
            table.add_column(name, justify="right")
        for line in lines:
            table.add_row(
                line.study,
                str(line.participants),
                str(line.responses),
                _fmt(line.nll_per_response),
                _fmt(line.nll_per_token),
                *chance_cells(line),
                style="bold" if line.study == "all" else None,
            )
        console.print(table)
        for sentence in _chance_notes(lines):
            console.print(sentence, highlight=False)
        path = write_summary(
            summary.run_dir,
            lines,
            {
                "run_dir": str(summary.run_dir),
                "config_hash": summary.config_hash,
                "sessions": summary.sessions,
                "failed_sessions": len(summary.failed),
            },
        )
        console.print(f"summary written to {path}", highlight=False)
    console.print(
        f"{summary.run_dir}: {summary.sessions} participants ({summary.already_done} already "
        f"done, {summary.scored_now} scored now), {summary.responses} responses, "
        f"config {summary.config_hash}, {summary.wall_s:.1f} s",
        highlight=False,
    )
    if summary.failed:
        err_console.print(
            f"[yellow]{len(summary.failed)} participants could not be scored (see above); "
            "the run is marked incomplete. Rerun to retry them.[/yellow]"
        )
    if split == "test":
        console.print("note: --split test scored only the held-out test participants (about a "
                      "tenth of a study without its own split); --split all scores everyone.",
                      highlight=False)
    if lines and data is not None:
        run, source = summary.run_dir, _data_argument(data)
        console.print(
            f"next: psych201 compare {run} --data {source}   (leaderboard, every analysis)\n"
            f"      psych201 report {run} --data {source} -o report.html   (one HTML page)\n"
            f"      psych201 export {run} --format csv -o responses.csv   (for R / pandas)",
            highlight=False,
        )


def _data_argument(data: str | Path) -> str:
    from psych201.simulate.demo import DEMO_DIR, DEMO_NAME

    return DEMO_NAME if Path(str(data)) == DEMO_DIR else str(data)


def _chance_notes(lines: Sequence[StudyLine]) -> list[str]:
    """How to read the chance columns, and where they are missing or inferred."""
    notes = [READING_CHANCE]
    inferred = sum(line.inferred_responses for line in lines if line.study != "all")
    if inferred:
        notes.append(f"* {inferred} responses: the wording did not state the options, so each "
                     "participant's distinct responses were taken as the option set (inferred).")
    unknown = [line.study for line in lines if line.study != "all" and line.chance_nll is None]
    if unknown:
        notes.append(f"chance unknown for {', '.join(unknown)}: no option set stated or "
                     "inferable (free-text or numeric responses).")
    return notes


#: One sentence on how to read NLL against chance (``score`` and ``demo``).
READING_CHANCE = (
    "How to read: guessing uniformly among k options scores log k nats per response (0.693 for "
    "two); a model below the chance column predicts people better than guessing, above it worse. "
    "Pseudo-R² = 1 − NLL/chance: 0 is guessing, 1 is perfect, below 0 worse than guessing."
)
