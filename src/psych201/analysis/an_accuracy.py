"""Accuracy control: top-1 hit rate (and among the options the transcript offered, with the
chance rate), per model with bootstrap intervals, on the discrete variant where it was scored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import pandas as pd

from psych201.analysis import bootstrap as bs
from psych201.analysis import paper
from psych201.analysis.plots import fig_accuracy
from psych201.analysis.plugin import AnalysisContext, Column, Section, SectionFigure, SectionTable
from psych201.analysis.tables import select
from psych201.prompts.records import ConditionRole

if TYPE_CHECKING:
    from psych201.analysis.plugin import AnalysisOptions


def _accuracy_intervals(frame: pd.DataFrame, per_model: pd.DataFrame, condition: str,
                        options: AnalysisOptions, column: str = "top1_correct") -> pd.DataFrame:
    """Bootstrap intervals (studies and participants) for each model's accuracy."""
    rows = select(frame, condition=condition)
    rows = rows[rows[column].notna()]
    rows = rows.assign(hit=rows[column].astype(float))
    lows, highs = [], []
    for model in per_model["model"]:
        arrays = bs.participant_arrays(select(rows, model=model), value="hit")
        # One study cannot be resampled over studies: its participants still can.
        levels = "participants" if len(arrays.studies) == 1 else options.levels
        result = bs.bootstrap(arrays, "mean", levels=levels, n_boot=options.n_boot,
                              ci=options.ci, seed=options.seed)
        lows.append(result.ci_low)
        highs.append(result.ci_high)
    return per_model.assign(ci_low=lows, ci_high=highs)


COLUMNS = (
    Column("display", "model", "text"), Column("accuracy", "accuracy"),
    Column("ci_low", "interval", "interval"), Column("n_studies", "studies", "int"),
    Column("n_responses", "responses", "int"),
    Column("accuracy_offered", "among offered options", optional=True),
    Column("offered_ci_low", "interval", "interval", optional=True),
    Column("chance_offered", "chance", optional=True),
    Column("n_offered_responses", "responses", "int", optional=True))


def caption(points: pd.DataFrame) -> str:
    """The figure's caption, naming the condition(s) the hits were scored under."""
    scored = sorted(map(str, points["condition"].unique())) if not points.empty else []
    what = ("the discrete variant" if scored == ["discrete"]
            else f"condition {', '.join(scored)}" if scored else "the scored condition")
    return (f"Top-1 accuracy on {what} against parameter count (paper accuracy figure, which "
            "uses the discrete variant).")


@dataclass(frozen=True)
class AccuracyResult:
    """The accuracy section's numbers."""

    points: pd.DataFrame  # per model (registry columns, condition)
    per_study: pd.DataFrame | None  # per model and study


def section(points: pd.DataFrame, per_study: pd.DataFrame | None = None,
            families: Sequence[str] | None = None) -> Section:
    """The section of per-model accuracy ``points`` (with registry columns and ``condition``)."""
    condition = points["condition"].iloc[0] if len(points) else ""
    return Section(
        anchor=Accuracy.name, title="Accuracy",
        text="Top-1 hit rate (argmax over the vocabulary equals the human's response) and, "
             "where the transcript states the options offered, the hit rate among those options "
             "(with guessing's chance rate); mean per study then over studies, condition "
             f"{condition}.",
        tables=(SectionTable("accuracy", points, COLUMNS),),
        figures=(SectionFigure("fig_accuracy", caption(points),
                               partial(fig_accuracy, points, families)),),
        result=AccuracyResult(points, per_study))


class Accuracy:
    name = "accuracy"
    requires: Sequence[str] = ()
    result_type: type | None = AccuracyResult
    columns: Sequence[str] = ("top1_correct",)

    def skip(self, context: AnalysisContext) -> str | None:
        if self._condition(context) is None:
            return "no top-1 hits recorded: accuracy skipped"
        return None

    @staticmethod
    def _condition(context: AnalysisContext) -> str | None:
        """The discrete variant where scored, else the main condition if it has hits."""
        discrete = context.conditions_of(ConditionRole.DISCRETE)
        if discrete:
            return discrete[0]
        return context.condition if context.main["top1_correct"].notna().any() else None

    def run(self, context: AnalysisContext) -> Section | None:
        frame, options, registry = context.frame, context.options, context.registry
        acc_condition = self._condition(context)
        assert acc_condition is not None
        acc_study, acc_model = paper.accuracy(frame, condition=acc_condition)
        acc_model = _accuracy_intervals(frame, acc_model, acc_condition, options)
        offered = select(frame, condition=acc_condition)
        if "offered_correct" in offered.columns and offered["offered_correct"].notna().any():
            # Accuracy among the options the transcript offered (the paper's accuracy control).
            off_study, off_model = paper.accuracy(frame, condition=acc_condition,
                                                  column="offered_correct")
            off_model = _accuracy_intervals(frame, off_model, acc_condition, options,
                                            column="offered_correct")
            acc_study = acc_study.merge(
                off_study.rename(columns={"accuracy": "accuracy_offered",
                                          "n_responses": "n_offered_responses",
                                          "chance": "chance_offered"}),
                on=["model", "study"], how="left")
            acc_model = acc_model.merge(
                off_model.rename(columns={"accuracy": "accuracy_offered",
                                          "ci_low": "offered_ci_low", "ci_high": "offered_ci_high",
                                          "n_responses": "n_offered_responses",
                                          "n_studies": "n_offered_studies",
                                          "chance": "chance_offered"}),
                on="model", how="left")
        info = registry.describe(list(acc_model["model"])).reset_index()
        points = acc_model.merge(info, on="model")
        points["condition"] = acc_condition
        return section(points, acc_study, options.families)


ANALYSIS = Accuracy()
