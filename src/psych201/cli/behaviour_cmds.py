"""`psych201 behaviour`: behavioural signatures of people and of models that played the task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from psych201.analysis.an_closed_loop import (
    FAMILIES,
    FAMILY_OF_TASK,
    BehaviourGroup,
    ClosedLoopData,
    closed_loop_section,
    group_from_sessions,
)
from psych201.analysis.plugin import Section
from psych201.analysis.registry import load_registry
from psych201.cli.console import check_file_output
from psych201.data.choices import study_choices
from psych201.data.readers import discover_studies, iter_sessions
from psych201.data.records import Session
from psych201.errors import UsageError
from psych201.strict_json import dumps

_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add ``behaviour`` to ``app``."""
    app.command("behaviour", no_args_is_help=True)(behaviour)


def _people(path: Path, family: str, limit: int | None) -> BehaviourGroup:
    sources = discover_studies(path)
    if len(sources) != 1:
        raise UsageError(f"--people {path}: one study per --people, found {len(sources)}")
    sessions = list(iter_sessions(sources[0]))[:limit]
    parsed = study_choices(sources[0].name, sessions)
    if not parsed.parseable:
        raise UsageError(f"--people {path}: {parsed.reason}")
    return _group(f"--people {path}", f"people ({sources[0].name})", "people", family, sessions)


def _group(flag: str, name: str, role: str, family: str, sessions: list[Session]
           ) -> BehaviourGroup:
    """:func:`group_from_sessions`, its refusal of transcripts not of ``family`` one line
    naming the option and path."""
    try:
        return group_from_sessions(name, role, family, sessions)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc} (--family {family})") from exc


def _played(run: Path, family: str) -> BehaviourGroup:
    manifest_path = run / "manifest.json"
    if not manifest_path.is_file():
        raise UsageError(f"--play {run}: no manifest.json (not a psych201 play run)")
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
        spec, transcripts = manifest["spec"], run / manifest["files"]["transcripts"]
        task, model = str(spec["task"]), str(spec["model"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{manifest_path}: not a play manifest ({exc})") from exc
    # a manifest names its transcripts inside its run: never a file elsewhere on the machine
    if not transcripts.resolve().is_relative_to(run.resolve()):
        raise UsageError(f"{manifest_path}: its transcripts {transcripts} lie outside the run")
    if manifest.get("status") != "complete":
        raise UsageError(f"--play {run}: the run is not complete (rerun psych201 play to resume)")
    played = FAMILY_OF_TASK.get(task)
    if played != family:
        raise UsageError(f"--play {run}: played the {task} task, which "
                         + ("has no behavioural signatures" if played is None
                            else f"is of the {played} family, not --family {family}"))
    sessions = list(iter_sessions(transcripts))
    flag = f"--play {run}"
    if model == "cognitive":
        return _group(flag, f"cognitive model ({task})", "cognitive model", family,
                      sessions)
    name = Path(model).name
    # base vs post-trained, where the model registry knows the model
    info = load_registry().get(name)
    role = "language model" if info is None else f"language model ({info.type_label})"
    return _group(flag, name, role, family, sessions)


def play_task(run: Path) -> str:
    """The task a play run played (from its manifest), for the signature family."""
    try:
        manifest = json.loads((run / "manifest.json").read_text("utf-8"))
        return str(manifest["spec"]["task"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--play {run}: not a psych201 play run ({exc})") from exc


def closed_loop_data(play: list[Path], people: list[Path], *, family: str | None = None,
                     max_people: int | None = None) -> ClosedLoopData:
    """People's studies and play runs as one :class:`ClosedLoopData` (the family from the runs'
    task where not given; runs of tasks of different families are refused)."""
    if family is None:
        tasks = {run: play_task(run) for run in play}
        families = {FAMILY_OF_TASK.get(task, "") for task in tasks.values()}
        if len(families) != 1 or "" in families:
            played = "; ".join(
                f"{run} played {task} ({FAMILY_OF_TASK.get(task, 'no behavioural signatures')})"
                for run, task in tasks.items())
            raise UsageError("--play runs must be of one signature family "
                             f"({', '.join(FAMILIES)}): {played}")
        family = families.pop()
    if family not in FAMILIES:
        raise UsageError(f"--family {family}: choose one of {', '.join(FAMILIES)}")
    groups = [_people(p, family, max_people) for p in people]
    groups += [_played(r, family) for r in play]
    return ClosedLoopData(family, tuple(groups))


def behaviour(
    family: Annotated[str, typer.Option(help=f"Signature family: {', '.join(FAMILIES)}.")],
    play: Annotated[list[Path] | None, typer.Option(
        "--play", help="A psych201 play run folder (repeat for several models).")] = None,
    people: Annotated[list[Path] | None, typer.Option(
        "--people", help="A human study (folder or file) of the same kind of task.")] = None,
    max_people: Annotated[int | None, typer.Option(
        min=2, help="Read at most this many sessions of each human study.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the section here.")] = None,
    html_out: Annotated[Path | None, typer.Option(
        "--html", help="Write the section as an HTML page here.")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Bootstrap seed.")] = 0,
) -> None:
    """Behavioural signatures (win-stay/lose-shift, switching, fitted learning rate and inverse temperature, two-step stay probabilities, loss aversion) of people and of models that played the task, side by side with bootstrap intervals, spread and W1 distance to people."""  # noqa: E501
    if family not in FAMILIES:
        raise typer.BadParameter(f"choose one of {', '.join(FAMILIES)}", param_hint="--family")
    if not play and not people:
        raise typer.BadParameter("give at least one --play run or --people study",
                                 param_hint="--play")
    for path, flag, example in ((json_out, "--json", "behaviour.json"),
                                (html_out, "--html", "behaviour.html")):
        if path is not None:
            check_file_output(path, flag, example=example)
    data = closed_loop_data(list(play or []), list(people or []), family=family,
                            max_people=max_people)
    section = closed_loop_section(data, seed=seed)
    frame = section.table("signatures")
    table = Table(title=section.title)
    for col in ("group", "signature", "n", "mean", "95% CI", "SD", "W1 to people"):
        table.add_column(col)
    for r in frame.itertuples(index=False):
        table.add_row(r.group, r.signature, str(r.n), f"{r.mean:.3f}",
                      f"[{r.ci_low:.3f}, {r.ci_high:.3f}]", f"{r.spread:.3f}",
                      "" if r.w1_to_people != r.w1_to_people else f"{r.w1_to_people:.3f}")
    Console().print(table)
    Console().print(section.text)
    if json_out is not None:
        payload = {"anchor": section.anchor, "title": section.title, "text": section.text,
                   "tables": {t.name: t.frame.reset_index() if t.index else t.frame
                              for t in section.tables}}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(dumps(payload) + "\n", encoding="utf-8")
        _console.print(f"wrote {json_out}")
    if html_out is not None:
        html_out.parent.mkdir(parents=True, exist_ok=True)
        html_out.write_text(_page(section), encoding="utf-8")
        _console.print(f"wrote {html_out}")


def _page(section: Section) -> str:
    """A standalone page of the section: its reading, then each table with its caption."""
    from markupsafe import escape

    from psych201.report.html import section_table

    parts = [f"<h1>{escape(section.title)}</h1>", f"<p>{escape(section.text)}</p>"]
    for table in section.tables:
        parts += [f"<p><em>{escape(table.caption)}</em></p>", str(section_table(table))]
    return ("<!doctype html><html><head><meta charset='utf-8'><title>"
            f"{escape(section.title)}</title></head><body>" + "\n".join(parts)
            + "</body></html>\n")
