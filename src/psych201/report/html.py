"""One self-contained HTML page: leaderboard, every analysis section, figures, manifests.

Images are embedded as ``data:`` URIs and a Content-Security-Policy forbids every other source,
so the page opens offline, from an e-mail attachment or a CI artefact, and cannot phone home.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from psych201.analysis.paper_mode import DEFAULT_DIFFERS, PaperTables, figure_note
from psych201.analysis.paper_summary import paper_summary
from psych201.analysis.plugin import Section, SectionTable
from psych201.analysis.registry import ModelRegistry
from psych201.analysis.summary import Summary
from psych201.analysis.tables import Results
from psych201.atomic import write_text_atomic
from psych201.report.figures import caption, png_bytes, render_figures
from psych201.strict_json import dumps as strict_json

Formatter = Callable[[Any], str]

_TEMPLATE_DIR = Path(__file__).parent
_WEIGHTING_TEXT = {
    "study": "responses pooled within each study and studies weighted equally (the paper's "
             "weighting)",
    "participant": "each participant's mean weighted equally",
    "response": "every response weighted equally",
}


def _num(digits: int) -> Formatter:
    def fmt(value: Any) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "–"
        if isinstance(value, (int,)) and not isinstance(value, bool):
            return f"{value:,}"
        try:
            return f"{float(value):.{digits}f}"
        except (TypeError, ValueError):
            return str(value)
    return fmt


def _int(value: Any) -> str:
    try:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "–"
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def _p(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "–"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def probability_text(value: Any) -> str:
    """A probability: three decimals, or three significant digits below 0.001."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "–"
    return f"{v:.3f}" if v >= 0.001 or v == 0 else f"{v:.2e}"


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def html_table(frame: pd.DataFrame, columns: Mapping[str, tuple[str, Formatter]] | None = None,
               *, index: str | None = None, optional: Sequence[str] = ()) -> Markup:
    """An escaped HTML table; ``columns`` maps column → (header, formatter), in display order.

    Columns named in ``optional`` are left out where the frame lacks them (analyses that only
    some runs support); any other missing column is an error.
    """
    if frame is None or frame.empty:
        return Markup("<p><i>no rows</i></p>")
    data = frame.reset_index() if index is not None else frame
    if columns is not None:
        columns = {c: spec for c, spec in columns.items()
                   if c in data.columns or c not in optional}
    if columns is None:
        columns = {
            c: (str(c), _num(3) if pd.api.types.is_float_dtype(data[c]) else _text)
            for c in data.columns
        }
    head = "".join(
        f'<th class="{"text" if fmt is _text else ""}">{escape(h)}</th>'
        for h, fmt in columns.values()
    )
    body = []
    for _, row in data.iterrows():
        cells = "".join(
            f'<td class="{"text" if fmt is _text else ""}">{escape(fmt(row[c]))}</td>'
            for c, (_, fmt) in columns.items()
        )
        body.append(f"<tr>{cells}</tr>")
    return Markup(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _ci(frame: pd.DataFrame, low: str = "ci_low", high: str = "ci_high",
        digits: int = 3) -> pd.Series:
    fmt = _num(digits)
    return frame.apply(lambda r: f"[{fmt(r[low])}, {fmt(r[high])}]", axis=1)


def _png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


#: How each :data:`~psych201.analysis.plugin.ColumnFormat` prints ("interval" is built first).
FORMATS: dict[str, Formatter] = {
    "text": _text, "int": _int, "num1": _num(1), "num2": _num(2), "num3": _num(3),
    "num4": _num(4), "p": _p, "probability": probability_text, "interval": _text,
}


def _interval_partner(frame: pd.DataFrame, name: str) -> str | None:
    """``x_high`` for an interval column ``x_low`` (``ci_low`` → ``ci_high``) if the frame has
    it."""
    if not name.endswith("low"):
        return None
    high = name[: -len("low")] + "high"
    return high if high in frame.columns else None


def section_table(table: SectionTable) -> Markup:
    """One table of a section, its columns printed by their :class:`Column` formats.

    A column of format ``interval`` named ``…low`` is shown as ``[low, high]`` with its
    ``…high`` partner; any other interval column is shown as the text it holds.
    """
    if not table.columns:
        return html_table(table.frame, index=table.index)
    frame = table.frame.reset_index(names=table.index) if table.index is not None \
        else table.frame
    shown: dict[str, Any] = {}
    columns: dict[str, tuple[str, Formatter]] = {}
    for column in table.columns:
        if column.name not in frame.columns:
            if column.optional:
                continue
            raise KeyError(f"table {table.name!r} has no column {column.name!r}")
        key = column.name
        high = _interval_partner(frame, column.name) if column.format == "interval" else None
        if high is not None and not frame.empty:
            key = f"{column.name} … {high}"
            shown[key] = _ci(frame, column.name, high)
        columns[key] = (column.header, FORMATS[column.format])
    return html_table(frame.assign(**shown) if shown else frame, columns)


def _section(section: Section, drawn: set[str]) -> dict[str, Any]:
    shown = [t for t in section.tables if not t.frame.empty]
    left_out = len(section.tables) - len(shown)
    notes = list(section.notes)
    if left_out and shown:
        notes.append(f"{left_out} table{'s' if left_out > 1 else ''} without rows for these "
                     "runs left out.")
    return {"anchor": section.anchor, "title": section.title, "text": section.text,
            "notes": notes,
            "figures": [f.name for f in section.figures if f.name in drawn],
            "tables": [{"caption": t.caption, "html": section_table(t)} for t in shown]}


def build_report(summary: Summary, results: Results, registry: ModelRegistry, *,
                 title: str = "psych201 report", dpi: int = 110,
                 generated: str | None = None, paper: PaperTables | None = None) -> str:
    """The report page as a string (see the module docstring).

    The leaderboard and per-study tables, then every analysis section of ``summary`` in order
    (drawn generically: text, tables, notes; its figures in the figure gallery).
    ``paper``: draw the figures in paper mode and add a section with every paper-mode table.
    """
    drawn = summary if paper is None else paper_summary(summary, results.responses, registry,
                                                        paper)
    figures: list[dict[str, Any]] = []
    for name, fig in render_figures(drawn).items():
        data = png_bytes(fig, dpi=dpi)
        width, height = _png_size(data)
        figures.append({"name": name, "caption": caption(name, drawn), "width": width,
                        "height": height, "data": base64.b64encode(data).decode("ascii"),
                        "paper_note": figure_note(name, paper_mode=paper is not None)})
    board = summary.leaderboard.copy()
    board["interval"] = _ci(board)
    leaderboard_html = html_table(board, {
        "rank": ("#", _int), "display": ("model", _text), "family": ("family", _text),
        "type": ("type", _text), "params_b": ("params (B)", _num(2)),
        "score": ("NLL", _num(3)),
        "interval": (f"{int(summary.options.ci * 100)}% interval", _text),
        "n_studies": ("studies", _int), "n_participants": ("participants", _int),
        "n_responses": ("responses", _int),
    })
    every = [_section(s, {str(f["name"]) for f in figures}) for s in summary.sections]
    # A section with no rows in any table and no figure is one line, not a heading of blanks.
    empty = {s.anchor for s in summary.sections
             if s.tables and all(t.frame.empty for t in s.tables)}
    analyses = [a for a in every if a["anchor"] not in empty or a["figures"]]
    collapsed = [{"title": a["title"], "why": " ".join(a["notes"]) or
                  "nothing to show for these runs (one model or one study, or the data the "
                  "analysis needs was not given)"}
                 for a in every if a not in analyses]
    extra = _paper_sections(paper) if paper is not None else []
    sources = pd.DataFrame([
        {"path": s.path, "rows": s.n_rows, "models": ", ".join(s.models),
         "conditions": ", ".join(s.conditions),
         "config": (s.manifest or {}).get("config_hash", ""),
         "status": (s.manifest or {}).get("status", "no manifest")}
        for s in results.sources
    ])
    manifests = [
        {"path": s.path, "json": strict_json(s.manifest, sort_keys=True)}
        for s in results.sources if s.manifest is not None
    ]
    sections = [("leaderboard", "Leaderboard"), ("studies", "Per study")]
    sections += [(s["anchor"], s["title"]) for s in analyses]
    if collapsed:
        sections.append(("not-shown", "Not shown"))
    sections.append(("figures", "Figures"))
    sections += [(s["anchor"], s["title"]) for s in extra]
    sections.append(("runs", "Runs"))
    in_sections = {n for s in summary.sections for n in s.notes}
    env = Environment(loader=FileSystemLoader(_TEMPLATE_DIR), autoescape=select_autoescape())
    template = env.get_template("template.html")
    study_means = summary.study_means.copy()
    study_means.columns = [str(c) for c in study_means.columns]
    return template.render(
        title=title,
        version=_version(),
        generated=generated or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        condition=summary.condition,
        n_models=len(summary.leaderboard),
        n_studies=len(summary.studies),
        options=asdict(summary.options),
        weighting_text=_WEIGHTING_TEXT[summary.options.weighting],
        sections=sections,
        notes=[n for n in summary.notes if n not in in_sections],
        leaderboard=leaderboard_html,
        analyses=analyses,
        collapsed=collapsed,
        figures=figures,
        study_means=html_table(study_means, index="study"),
        extra_sections=extra,
        sources=html_table(sources),
        manifests=manifests,
    )


def _paper_sections(paper: PaperTables) -> list[dict[str, Any]]:
    """One section per paper-mode table, with the line on how psych201's default differs."""
    out: list[dict[str, Any]] = []
    for name, table in paper.tables.items():
        text = DEFAULT_DIFFERS.get(name, "")
        out.append({"anchor": f"paper-{name.replace('_', '-')}",
                    "title": f"Paper mode: {name}", "text": text, "table": html_table(table)})
    return out


def write_report(path: str | Path, summary: Summary, results: Results,
                 registry: ModelRegistry, **kw: Any) -> Path:
    """Render and write the page atomically (a half-written report never replaces a good one)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = build_report(summary, results, registry, **kw)
    write_text_atomic(text, out)
    return out


def _version() -> str:
    try:
        return metadata.version("psych201")
    except metadata.PackageNotFoundError:
        return "unknown"
