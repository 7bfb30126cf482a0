"""The figures of a :class:`~psych201.analysis.summary.Summary`: drawn, captioned, saved.

Every analysis section carries its own figures (drawn on demand by the analysis layer, see
:mod:`psych201.analysis.plots`); this module collects them with the core leaderboard figure,
makes every name in them plain text and writes them as PNG/PDF. It computes nothing.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.category import StrCategoryFormatter
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FixedFormatter, Formatter, FuncFormatter

from psych201.analysis.plots import fig_leaderboard
from psych201.analysis.summary import Summary


def render_figures(summary: Summary) -> dict[str, Figure]:
    """All figures the summary supports, by file stem (missing data → figure left out).

    The core leaderboard figure, then each section's figures in the order of
    :data:`~psych201.analysis.sections.ANALYSES`.
    """
    figures: dict[str, Figure | None] = {"leaderboard": fig_leaderboard(summary.leaderboard)}
    for section in summary.sections:
        for figure in section.figures:
            drawn_figure = figure.draw()
            if drawn_figure is not None and _data_points(drawn_figure) < 2:
                drawn_figure = None  # one dot (one model, one size) shows nothing
            figures[figure.name] = drawn_figure
    drawn = {name: fig for name, fig in figures.items() if fig is not None}
    for fig in drawn.values():
        _literal_text(fig)
    return drawn


def _data_points(fig: Figure) -> int:
    """Points a section figure plots: line vertices, scatter offsets and bars, over all axes."""
    total = 0
    for ax in fig.axes:
        total += sum(int(np.size(line.get_xdata())) for line in ax.get_lines())
        total += sum(int(np.shape(c.get_offsets())[0]) for c in ax.collections)
        total += len(ax.patches)
    return total


#: Captions of the core figures (each section's figures carry their own).
CAPTIONS: dict[str, str] = {
    "leaderboard": "Study-weighted mean NLL per model with bootstrap intervals (lower = more "
                   "human-like predictions). The intervals describe each score on its own and "
                   "include how much studies differ; differences between two models are far "
                   "more precise (paired, see the post-training effects).",
}


def caption(name: str, summary: Summary | None = None) -> str:
    """The caption of figure ``name``: the section figure's own, or a core figure's."""
    if summary is not None:
        for section in summary.sections:
            for figure in section.figures:
                if figure.name == name:
                    return figure.caption
    return CAPTIONS.get(name, "")


def _literal_text(fig: Figure) -> None:
    """Make every name in ``fig`` plain text: "m$\\foo{$x" prints as written, never as math.

    Model, study and family names are data; a pair of ``$`` in one would send it through
    mathtext (which fails on most names). Each ``$`` of a title, label, legend entry or
    annotation, and of the tick labels that name things (fixed, function or category
    formatters), is escaped; tick labels formatted from numbers (the log axes' ``10^k``) keep
    their math.
    """
    ticks: set[int] = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for major in (True, False):
                formatter = axis.get_major_formatter() if major else axis.get_minor_formatter()
                if isinstance(formatter, _NAMING_FORMATTERS):
                    wrapped = _LiteralFormatter(formatter)
                    if major:
                        axis.set_major_formatter(wrapped)
                    else:
                        axis.set_minor_formatter(wrapped)
            for tick in (*axis.get_major_ticks(), *axis.get_minor_ticks()):
                ticks.update((id(tick.label1), id(tick.label2)))
    for text in fig.findobj(Text):
        if id(text) not in ticks:  # tick labels are set again from the formatter when drawn
            text.set_text(_escape(text.get_text()))


def _escape(text: str) -> str:
    # matplotlib reads text with an even number of unescaped "$" as math and prints "\$" as "$"
    return text.replace("$", r"\$")


_NAMING_FORMATTERS = (FixedFormatter, FuncFormatter, StrCategoryFormatter)


class _LiteralFormatter(Formatter):
    """Another formatter's tick labels with every ``$`` escaped (see :func:`_literal_text`)."""

    def __init__(self, inner: Formatter) -> None:
        self.inner = inner

    def set_axis(self, axis: Any) -> None:
        super().set_axis(axis)
        self.inner.set_axis(axis)

    def __call__(self, x: Any, pos: int | None = None) -> str:
        return _escape(str(self.inner(x, pos)))

    def format_ticks(self, values: Any) -> list[str]:
        return [_escape(str(v)) for v in self.inner.format_ticks(values)]

    def get_offset(self) -> str:
        return str(self.inner.get_offset())


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None}, bbox_inches="tight")
    return buffer.getvalue()


def save_figures(figures: Mapping[str, Figure], directory: str | Path, *,
                 formats: Iterable[str] = ("png", "pdf"), dpi: int = 100) -> list[Path]:
    """Write each figure as ``<stem>.<format>``; metadata stripped so reruns are byte-stable."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures.items():
        for fmt in formats:
            path = out / f"{name}.{fmt}"
            meta: dict[str, None] = (
                {"CreationDate": None, "Producer": None, "Creator": None} if fmt == "pdf"
                else {"Software": None}
            )
            fig.savefig(path, format=fmt, dpi=dpi, metadata=meta, bbox_inches="tight")
            written.append(path)
    return written

