"""Every analysis that the given results support, in one object (what compare and report show).

:func:`summarize` computes the core tables (leaderboard, per-study means), builds one
:class:`~psych201.analysis.plugin.AnalysisContext` and runs each analysis of
:data:`psych201.analysis.sections.ANALYSES` that applies, each after those whose results it
``requires`` (:func:`~psych201.analysis.plugin.run_order`), shown in the order of registration: the
paper's pair/type d with
paired intervals, generation trend, domains, size scaling, accuracy, chat-template and persona
controls, random and population baselines, readable numbers, and whatever else is registered.
Whatever cannot run says why in :attr:`Summary.notes` instead of failing the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import pandas as pd

from psych201.analysis import baselines as bl
from psych201.analysis import paper, sections
from psych201.analysis.aggregate import leaderboard, study_matrix
from psych201.analysis.an_post_training import (  # noqa: F401 (re-exported for callers)
    PAIR_SHARE,
    _group_intervals,
    _pair_rows,
    pair_share_positive,
)
from psych201.analysis.conditions import main_condition
from psych201.analysis.plugin import (
    AnalysisContext,
    AnalysisInputs,
    AnalysisOptions,
    Section,
    checked_result,
    requirements,
    run_order,
)
from psych201.analysis.registry import ModelRegistry
from psych201.analysis.tables import Results, common_studies, select
from psych201.strict_json import jsonable

ResultT = TypeVar("ResultT")

#: Columns any analysis reads (the rest of a response table is carried by reports only).
ANALYSIS_COLUMNS = ("model", "condition", "study", "experiment", "participant", "line",
                    "response_index", "nll", "top1_correct", "n_options", "offered_correct",
                    "n_offered")


@dataclass(frozen=True, eq=False)
class Summary:
    """The core tables, every analysis section in display order, and the notes."""

    condition: str
    options: AnalysisOptions
    studies: tuple[str, ...]
    leaderboard: pd.DataFrame
    study_means: pd.DataFrame
    sections: tuple[Section, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def section(self, anchor: str) -> Section | None:
        """The section ``anchor`` (``None`` where its analysis did not apply)."""
        return next((s for s in self.sections if s.anchor == anchor), None)

    def with_sections(self, sections: Sequence[Section], *, drop: Sequence[str] = ()
                      ) -> Summary:
        """A copy where ``sections`` replace those of the same anchor (or are appended) and the
        sections ``drop`` names are left out (paper mode redraws some analyses)."""
        new = {s.anchor: s for s in sections}
        kept = [new.pop(s.anchor, s) for s in self.sections if s.anchor not in drop]
        return replace(self, sections=(*kept, *new.values()))

    def result(self, anchor: str, kind: type[ResultT]) -> ResultT | None:
        """The typed result of the analysis ``anchor`` (``None`` where it did not apply)."""
        section = self.section(anchor)
        return None if section is None else section.result_as(kind)

    def sections_json(self) -> dict[str, dict[str, Any]]:
        """Every section under its anchor: title, text, notes and each table as records."""
        return {s.anchor: section_json(s) for s in self.sections}


def section_json(section: Section) -> dict[str, Any]:
    """One section, JSON-ready (every column of each table; figures by name and caption)."""
    tables = {}
    for t in section.tables:
        frame = t.frame.reset_index(names=t.index) if t.index is not None else t.frame
        tables[t.name] = jsonable(frame)
    return {"title": section.title, "text": section.text, "notes": list(section.notes),
            "tables": tables,
            "figures": [{"name": f.name, "caption": f.caption} for f in section.figures]}


def summarize(results: Results, registry: ModelRegistry,
              options: AnalysisOptions | None = None, *,
              option_counts: pd.DataFrame | None = None,
              population: bl.PopulationBaseline | None = None,
              trials: pd.DataFrame | None = None,
              extras: Mapping[str, object] | None = None) -> Summary:
    """Run every applicable analysis on ``results`` (see the module docstring).

    The analyses find ``option_counts``, ``population`` and ``trials`` (what the transcripts
    add) in :attr:`AnalysisContext.inputs <psych201.analysis.plugin.AnalysisContext.inputs>`,
    with whatever else ``extras`` names (closed-loop data, plug-ins' inputs) in its ``other``.
    """
    options = options or AnalysisOptions()
    full = results.responses
    notes: list[str] = []
    roles = results.condition_roles()
    condition = main_condition(full["condition"].unique(), options.condition, roles)
    analyses = list(sections.ANALYSES)
    order = run_order(analyses)  # checks the declared requirements before any work
    # Analyses select rows many times over: keep only the columns some analysis reads, and
    # give the pair analyses a table of the main condition alone.
    wanted = dict.fromkeys([*ANALYSIS_COLUMNS, *(c for a in analyses for c in a.columns)])
    frame = full[[c for c in wanted if c in full.columns]]
    main = select(frame, condition=condition)
    models = sorted(main["model"].unique())
    studies = common_studies(main, models, condition, allow_missing=options.allow_missing)
    unknown = [m for m in models if registry.get(m) is None]
    if unknown:
        notes.append(f"not in the model registry (no family/size/type): {', '.join(unknown)}")
    board = leaderboard(main, registry, condition=condition, weighting=options.weighting,
                        allow_missing=options.allow_missing, n_boot=options.n_boot,
                        ci=options.ci, seed=options.seed, levels=options.levels)
    means = study_matrix(select(main, studies=studies), condition=condition)
    pairs = paper.pairs_present(main, registry, condition=condition, extra=options.extra_pairs)
    inputs = AnalysisInputs(option_counts=option_counts, population=population, trials=trials,
                            other=dict(extras or {}))
    shared = AnalysisContext(results=results, frame=frame, main=main, condition=condition,
                             studies=tuple(studies), models=tuple(models), registry=registry,
                             options=options, pairs=tuple(pairs), leaderboard=board,
                             inputs=inputs, roles=roles)
    done: dict[str, Section] = {}
    reasons: dict[str, str] = {}
    for analysis in order:
        requires = requirements(analysis)
        # an analysis sees the results it declared, nothing else: its numbers cannot depend on
        # which other analyses happened to run before it
        context = replace(shared, requires=requires,
                          earlier={r: done[r] for r in requires if r in done})
        missing = [c for c in analysis.columns if c not in full.columns]
        reason = (f"{analysis.name} skipped: the response tables lack "
                  f"{', '.join(missing)}" if missing else analysis.skip(context))
        if reason is not None:
            reasons[analysis.name] = reason
            continue
        section = analysis.run(context)
        if section is not None:
            done[analysis.name] = checked_result(analysis, section)
    shown: list[Section] = []
    for analysis in analyses:  # notes and sections in the order of registration
        if analysis.name in reasons:
            notes.append(reasons[analysis.name])
        elif analysis.name in done:
            shown.append(done[analysis.name])
            notes.extend(done[analysis.name].notes)
    return Summary(condition=condition, options=options, studies=tuple(studies),
                   leaderboard=board, study_means=means, sections=tuple(shown),
                   notes=tuple(notes))
