"""The analysis contract: one analysis = one file that turns the response table into a section.

An :class:`Analysis` says which columns it reads, which earlier analyses' results it needs
(``requires``, by anchor), whether it applies to the results at hand (and if not, why), and
returns a :class:`Section`: typed tables, figures drawn on demand, a one-paragraph reading and its
result as a typed record (``Section.result``, of a class the analysis module declares) that later
analyses and the CLI read back with :meth:`AnalysisContext.required` and
:meth:`~psych201.analysis.summary.Summary.result`. The run order is derived from ``requires``
(:func:`run_order`); the display order is the order of registration.
:func:`~psych201.analysis.summary.summarize`, the HTML report, the figure export and
``compare --json`` all iterate :data:`psych201.analysis.sections.ANALYSES`, so a new analysis is
one new module plus one line in that list, and every output shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, runtime_checkable

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from psych201.analysis import bootstrap as bs
    from psych201.analysis.aggregate import Weighting
    from psych201.analysis.baselines import PopulationBaseline
    from psych201.analysis.registry import ModelPair, ModelRegistry
    from psych201.analysis.tables import Results
    from psych201.prompts.records import ConditionRole

#: How a report prints a column: text, integer, a float with N decimals ("num1" … "num4"),
#: a p-value, a probability, or an interval: a column named ``…low`` (e.g. ``ci_low``) is shown
#: as ``[low, high]`` with its ``…high`` partner; any other interval column as the text it holds.
ResultT = TypeVar("ResultT")

ColumnFormat = Literal["text", "int", "num1", "num2", "num3", "num4", "p", "probability",
                       "interval"]


@dataclass(frozen=True)
class Column:
    """One displayed column of a :class:`SectionTable`."""

    name: str  # column of the frame
    header: str
    format: ColumnFormat = "num3"
    optional: bool = False  # left out (not an error) where the frame lacks it


@dataclass(frozen=True)
class SectionTable:
    """A tidy table of a section. ``columns`` picks and labels what the report shows; the JSON
    output always carries every column of ``frame``."""

    name: str  # JSON key inside the section, e.g. "per_model"
    frame: pd.DataFrame
    columns: tuple[Column, ...] = ()  # empty: every column, formatted by dtype
    caption: str = ""
    index: str | None = None  # show (and export) the frame's index under this name


@dataclass(frozen=True)
class SectionFigure:
    """A figure drawn only when a report or ``figures`` asks for it (matplotlib is slow)."""

    name: str  # file stem, e.g. "fig_calibration"
    caption: str
    draw: Callable[[], Figure | None]


@dataclass(frozen=True)
class Section:
    """What one analysis contributes to summary, report, figures and JSON."""

    anchor: str  # stable id: HTML anchor and JSON key, e.g. "calibration"
    title: str
    text: str  # the one-paragraph reading of the numbers
    tables: tuple[SectionTable, ...] = ()
    figures: tuple[SectionFigure, ...] = ()
    notes: tuple[str, ...] = ()  # caveats worth printing beside the section
    result: object = None  # the analysis' typed record, for later analyses and the CLI

    def result_as(self, kind: type[ResultT]) -> ResultT:
        """:attr:`result`, checked to be a ``kind`` (``TypeError`` naming both otherwise)."""
        if not isinstance(self.result, kind):
            raise TypeError(f"section {self.anchor!r} holds a {type(self.result).__name__}, "
                            f"not a {kind.__name__}")
        return self.result

    def table(self, name: str) -> pd.DataFrame:
        """The frame of table ``name`` (``KeyError`` naming the tables there are)."""
        for t in self.tables:
            if t.name == name:
                return t.frame
        raise KeyError(f"section {self.anchor!r} has no table {name!r} "
                       f"(it has {', '.join(t.name for t in self.tables) or 'none'})")


@dataclass(frozen=True)
class AnalysisOptions:
    """Choices that change numbers; all recorded in the report."""

    condition: str | None = None
    weighting: Weighting = "study"
    sd: bs.SD = "sample"
    allow_missing: bool = False
    n_boot: int = 2000
    ci: float = 0.95
    seed: int = 0
    levels: bs.Levels = "both"
    extra_pairs: tuple[ModelPair, ...] = ()
    detail_pairs: int = 3  # full per-pair comparisons (forest plots) for this many pairs
    categories: str | None = None  # a categories.csv other than the packaged one
    persona_same_participants: bool = True
    # display only: panels of the per-family figures (None: every scored family)
    families: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AnalysisInputs:
    """What a caller gives the analyses besides the response tables (each one that needs an
    input it lacks does not apply)."""

    option_counts: pd.DataFrame | None = None  # options offered per response (transcripts)
    population: PopulationBaseline | None = None  # training participants' choice frequencies
    # the trial table of the transcripts (baselines.trial_responses with numeric scales and a
    # context snippet): population fit, item level and diagnostics read it
    trials: pd.DataFrame | None = None
    # anything else, by name: closed-loop play data, plug-ins' own inputs
    other: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class AnalysisContext:
    """Everything an analysis may read; built once per summary."""

    results: Results  # every loaded table (all columns, all conditions)
    frame: pd.DataFrame  # the response rows (all conditions; the core columns plus every
    #                      column some registered analysis declares in ``columns``)
    main: pd.DataFrame  # rows of the main condition only
    condition: str  # the main condition
    studies: tuple[str, ...]  # studies every model has (or all, with allow_missing)
    models: tuple[str, ...]
    registry: ModelRegistry
    options: AnalysisOptions
    pairs: tuple[ModelPair, ...]  # post/base pairs present among the scored models
    leaderboard: pd.DataFrame | None = None  # the core leaderboard of the main condition
    inputs: AnalysisInputs = field(default_factory=lambda: AnalysisInputs())
    # the sections of the analyses this one ``requires`` that applied (set per analysis)
    earlier: Mapping[str, Section] = field(default_factory=dict)
    requires: tuple[str, ...] = ()  # what the running analysis declared
    # each condition's role where the runs recorded it (Results.condition_roles)
    roles: Mapping[str, ConditionRole] = field(default_factory=dict)

    def conditions_of(self, role: ConditionRole) -> list[str]:
        """The conditions of the response table that play ``role`` (recorded, else by name)."""
        from psych201.analysis.conditions import conditions_with_role

        return conditions_with_role(self.frame["condition"].unique(), role, self.roles)

    def required(self, anchor: str, kind: type[ResultT]) -> ResultT | None:
        """The result of the analysis ``anchor`` this one declared in ``requires`` (``None``
        where that analysis did not apply); reading an undeclared one is a ``KeyError``."""
        if anchor not in self.requires:
            raise KeyError(f"analysis result {anchor!r} read without declaring it in requires "
                           f"(declared: {', '.join(self.requires) or 'none'})")
        section = self.earlier.get(anchor)
        return None if section is None else section.result_as(kind)

    def main_rows(self, columns: Sequence[str]) -> pd.DataFrame:
        """Rows of the main condition, common studies and scored models, with ``columns`` (taken
        from the full table where the analysis frame left them out)."""
        return self.condition_rows(self.condition, columns)

    def condition_rows(self, condition: str, columns: Sequence[str]) -> pd.DataFrame:
        """:meth:`main_rows` of another ``condition``."""
        frame = self.main if condition == self.condition else self.frame
        if any(c not in frame.columns for c in columns):
            frame = self.results.responses
        frame = frame[frame["condition"] == condition]
        return frame[frame["study"].isin(self.studies) & frame["model"].isin(self.models)]


@runtime_checkable
class Analysis(Protocol):
    """One analysis. ``skip`` returns why it does not apply (``None``: it does); ``run`` is only
    called when it applies, and its failure to find data is a note, never an exception."""

    name: str  # the section anchor it produces
    columns: Sequence[str]  # response-table columns it reads (missing ones: it is skipped)
    requires: Sequence[str]  # anchors of earlier analyses whose results it reads
    # An analysis may also declare ``result_type``, the class of its ``Section.result`` (None:
    # it gives later analyses nothing); summarize checks it (checked_result).

    def skip(self, context: AnalysisContext) -> str | None: ...

    def run(self, context: AnalysisContext) -> Section | None: ...


def requirements(analysis: Analysis) -> tuple[str, ...]:
    """The anchors ``analysis`` requires (a plug-in written before ``requires`` existed reads no
    other analysis' result: it requires none)."""
    return tuple(getattr(analysis, "requires", ()))


def checked_result(analysis: Analysis, section: Section) -> Section:
    """``section`` once its result is of the type ``analysis`` declares (``result_type``, where
    it declares one); ``TypeError`` naming the analysis and both types otherwise."""
    declared = getattr(analysis, "result_type", object)
    if declared is None:
        declared = type(None)
    if not isinstance(section.result, declared):
        raise TypeError(f"analysis {analysis.name!r} declares results of type "
                        f"{declared.__name__}, its section holds a {type(section.result).__name__}")
    return section


class AnalysisOrderError(ValueError):
    """Analyses whose declared requirements cannot be met (a cycle, or one not registered)."""


def run_order(analyses: Sequence[Analysis]) -> list[Analysis]:
    """``analyses`` with each after the analyses it ``requires`` (registration order where
    free); :class:`AnalysisOrderError` names a cycle or a requirement nobody provides."""
    from graphlib import CycleError, TopologicalSorter

    by_name = {a.name: a for a in analyses}
    for analysis in analyses:
        missing = [r for r in requirements(analysis) if r not in by_name]
        if missing:
            raise AnalysisOrderError(
                f"analysis {analysis.name!r} requires {', '.join(map(repr, missing))}, which "
                "no registered analysis produces")
    sorter = TopologicalSorter({a.name: requirements(a) for a in analyses})
    try:
        sorter.prepare()
    except CycleError as exc:
        cycle = " -> ".join(map(repr, exc.args[1]))
        raise AnalysisOrderError(f"analyses require each other in a cycle: {cycle}") from exc
    position = {a.name: i for i, a in enumerate(analyses)}
    order: list[Analysis] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(by_name[name] for name in ready)
        sorter.done(*ready)
    return order
