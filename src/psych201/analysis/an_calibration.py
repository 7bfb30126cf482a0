"""Calibration control: how much of the NLL and of a post-training gap a temperature explains.

An over-confident model puts too much probability on its favourite response; dividing its logits
by a temperature T > 1 flattens the distribution and may recover most of its loss. If a
post-trained model predicts people worse than its base *only* because it is sharper, one
temperature per study removes the gap; what remains is a change in *what* the model expects.

The fitting maths (grid, refinement, interpolation, cross-fitting over participants, the fit
inside the bootstrap) is :mod:`.calibration_fit`; :mod:`.calibration_tables` makes the tables and
:mod:`.calibration_pairs` the pair comparisons; this module the section. Per (model,
study): the temperature fitted on all participants with a participant-bootstrap interval (the
fit redone in every replicate; a fit at an end of the grid is printed "≥ 8" / "≤ 0.125"), the
plain and the cross-fitted NLL. A study with too few participants for two folds of
:data:`~.calibration_fit.MIN_PER_FOLD` is named and left out.

Only responses with a complete ``nll_temperature`` enter; models without it are skipped with a
note. Pairs (post-trained vs base) are compared with :func:`~psych201.analysis.effects.compare_pair`
on the responses both models calibrated, once on the plain NLL and once on the calibrated NLL.
The calibrated gap and the share of the gap a temperature removes (1 − after/before) take their
intervals from one bootstrap in which both models' temperatures are refitted on every replicate
(same participants for both models).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from psych201.analysis.calibration_fit import (
    MIN_PER_FOLD,
    N_FOLDS,
    cross_fit,
    fit_temperature,
    nll_at,
    other_grid_lengths,
    participant_folds,
    temperature_matrix,
)
from psych201.analysis.calibration_pairs import CalibratedPair, compare_calibrated
from psych201.analysis.calibration_tables import (
    _OFFERED,
    COLUMN,
    _interval,
    calibrate,
    with_offered_temperature,
)
from psych201.analysis.plugin import (
    AnalysisContext,
    Column,
    Section,
    SectionFigure,
    SectionTable,
)
from psych201.analysis.registry import TYPE_LABELS
from psych201.scoring.engine import TEMPERATURE_GRID

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["N_FOLDS", "CalibrationAnalysis", "calibrate", "compare_calibrated", "cross_fit",
           "fit_temperature", "nll_at", "participant_folds"]


# -- the section --------------------------------------------------------------------------------
def _reading(per_model: pd.DataFrame, pairs: Sequence[CalibratedPair], ci: float) -> str:
    """The one-paragraph reading of the numbers."""
    parts: list[str] = []
    if not len(per_model):
        return (f"No model and study has the {2 * MIN_PER_FOLD} or more participants a "
                "temperature fitted on other people needs, so nothing is calibrated (see the "
                "notes for the studies left out).")
    if len(per_model):
        ordered = per_model.sort_values("temperature")
        low, high = ordered.iloc[0], ordered.iloc[-1]
        if len(ordered) == 1:
            parts.append(f"The fitted temperature of {low['model']} is "
                         f"{low['temperature_label']} {low['temperature_interval']}")
        else:
            parts.append(f"Fitted temperatures range from {low['temperature_label']} "
                         f"({low['model']}) to {high['temperature_label']} ({high['model']})")
        parts[-1] += (" (geometric mean over studies; T > 1: the model's whole-vocabulary "
                      "distribution is too sharp for people, T < 1: too flat). ")
        edged = per_model[per_model["studies_at_edge"] > 0]
        if len(edged):
            parts.append("At the end of the temperature grid (1/8 … 8) the fit is only a bound, "
                         "shown as \"≥\" or \"≤\": " + ", ".join(
                             f"{r.model} in {r.studies_at_edge} of {r.n_studies} studies"
                             for r in edged.itertuples()) + ". ")
        best = per_model.sort_values("gain").iloc[-1]
        parts.append(f"Calibration lowers the mean NLL by at most {best['gain']:.3f} nats "
                     f"({best['model']}, from {best['nll']:.3f} to "
                     f"{best['nll_calibrated']:.3f}), each response scored at a temperature "
                     "fitted on other participants. ")
    level = f"{ci:.0%}"
    for p in pairs:
        gap = (f"For {p.post} against {p.base}, the mean NLL gap of "
               f"{p.diff_before.estimate:+.3f} nats "
               f"{_interval(p.diff_before.ci_low, p.diff_before.ci_high)} "
               f"becomes {p.diff_after.estimate:+.3f} "
               f"{_interval(p.diff_after.ci_low, p.diff_after.ci_high)} after calibration "
               f"(paper d {p.d_before.estimate:.2f} → {p.d_after.estimate:.2f})")
        label = TYPE_LABELS.get(p.post_training, p.post_training).lower()
        unsure = not np.isfinite(p.diff_before.ci_low)
        if not np.isfinite(p.share) or p.diff_before.estimate <= 0:
            gap += ("; the post-trained model is not worse before calibration, so there is no "
                    "gap for a temperature to explain. ")
        elif unsure or p.diff_before.ci_low > 0:
            interval = ("" if unsure or not np.isfinite(p.share_ci_low) else
                        f" [{p.share_ci_low:.0%}, {p.share_ci_high:.0%}] ({level} interval)")
            gap += f": a temperature removes {p.share:.0%}{interval} of the {label} gap"
            gap += (" (no interval: too few resampling units). " if unsure else ". ")
        else:
            gap += ("; the gap before calibration is not clearly positive, so the share a "
                    f"temperature explains ({p.share:.0%}) is not meaningful. ")
        parts.append(gap)
    if not pairs and len(per_model):
        parts.append("No base/post-trained pair with nll_temperature on both sides was scored, "
                     "so the post-training gap is not decomposed.")
    return "".join(parts).strip()


def _draw(curves: pd.DataFrame, per_model: pd.DataFrame) -> Figure | None:
    if curves.empty:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.2), layout="constrained")
    ax = fig.add_subplot()
    fitted = dict(zip(per_model["model"], per_model["temperature"], strict=True))
    for model, g in curves.groupby("model", sort=True):
        (line,) = ax.plot(g["temperature"], g["nll"], label=str(model))
        t = fitted.get(model)
        if t is not None and np.isfinite(t):
            y = float(nll_at(g["nll"].to_numpy()[None, :], t)[0])
            ax.plot([t], [y], marker="o", color=line.get_color())
    ax.set_xscale("log")
    ticks = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xticks([], minor=True)
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("Softmax temperature (log scale)")
    ax.set_ylabel("Mean NLL (study-weighted, ↓)")
    ax.legend(fontsize=6.5)
    return fig


PER_MODEL_COLUMNS = (
    Column("model", "Model", "text"), Column("n_studies", "Studies", "int"),
    Column("n_responses", "Responses", "int"), Column("temperature_label", "Fitted T", "text"),
    Column("temperature_interval", "T CI", "text"),
    Column("studies_at_edge", "Studies at grid end", "int"),
    Column("nll", "NLL", "num3"), Column("nll_calibrated", "Calibrated NLL", "num3"),
    Column("gain", "Gain (nats)", "num3"), Column("gain_interval", "Gain CI", "interval"),
)
PER_STUDY_COLUMNS = (
    Column("model", "Model", "text"), Column("study", "Study", "text"),
    Column("n_participants", "Participants", "int"), Column("n_responses", "Responses", "int"),
    Column("temperature_label", "Fitted T", "text"),
    Column("temperature_interval", "T CI", "text"),
    Column("temperature_offered", "T over options", "num2", optional=True),
    Column("offered_mass", "P(offered)", "probability", optional=True),
    Column("nll", "NLL", "num3"),
    Column("nll_calibrated", "Calibrated NLL", "num3"), Column("gain", "Gain (nats)", "num3"),
)
#: Every column of the ``pairs`` table (also when it is empty).
PAIR_TABLE_COLUMNS = [
    "post", "base", "post_training", "type", "n_studies", "n_participants", "n_responses",
    *(f"{name}{end}" for name in ("d_before", "d_after", "diff_before", "diff_after", "share")
      for end in ("", "_ci_low", "_ci_high", "_interval")),
]
PAIR_COLUMNS = (
    Column("post", "Post-trained", "text"), Column("base", "Base", "text"),
    Column("type", "Type", "text"), Column("n_responses", "Responses", "int"),
    Column("d_before", "d before", "num2"), Column("d_before_interval", "CI", "interval"),
    Column("d_after", "d after", "num2"), Column("d_after_interval", "CI", "interval"),
    Column("diff_before", "Δ NLL before", "num3"),
    Column("diff_before_interval", "CI", "interval"),
    Column("diff_after", "Δ NLL after", "num3"), Column("diff_after_interval", "CI", "interval"),
    Column("share", "Share explained", "probability"),
    Column("share_interval", "CI", "interval"),
)


@dataclass(frozen=True)
class CalibrationResult:
    """What the calibration section holds for later readers."""

    grid: tuple[float, ...]  # the temperatures scored
    temperatures: Mapping[str, float]  # each model's fitted temperature


class CalibrationAnalysis:
    """The calibration control as a section (anchor ``calibration``)."""

    name: str = "calibration"
    columns: Sequence[str] = ("nll", COLUMN)
    requires: Sequence[str] = ()
    result_type: type | None = CalibrationResult

    def __init__(self, n_folds: int = N_FOLDS) -> None:
        self.n_folds = n_folds

    def skip(self, context: AnalysisContext) -> str | None:
        if COLUMN not in context.main.columns:
            return "calibration skipped: the response tables have no nll_temperature column"
        if not temperature_matrix(context.main)[0].any():
            old = other_grid_lengths(context.main)
            if old:
                return ("calibration skipped: nll_temperature was recorded on a "
                        f"{'/'.join(map(str, old))}-point grid, not this version's "
                        f"{len(TEMPERATURE_GRID)}-point grid (1/8 … 8); rescore to calibrate")
            return ("calibration skipped: no scored response carries nll_temperature (the "
                    "engines could not record the NLL at other temperatures, or the tables "
                    "predate the column)")
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        options = context.options
        cal = calibrate(context.main, condition=context.condition,
                        studies=context.studies or None, n_folds=self.n_folds,
                        seed=options.seed, n_boot=options.n_boot, ci=options.ci,
                        levels=options.levels)
        notes = list(cal.notes)
        per_study = with_offered_temperature(cal.per_study, context.main_rows(_OFFERED))
        if cal.skipped:
            notes.append("not calibrated: " + "; ".join(
                f"{m} ({why})" for m, why in cal.skipped.items()))
        per_model = cal.per_model
        calibrated = set(per_model["model"])
        pairs: list[CalibratedPair] = []
        for pair in context.pairs:
            missing = [m for m in (pair.post, pair.base) if m not in calibrated]
            if missing:
                notes.append(f"{pair.post} vs {pair.base}: not compared after calibration "
                             f"({', '.join(missing)} not calibrated)")
                continue
            try:
                pairs.append(compare_calibrated(
                    cal.responses, pair, condition=context.condition, n_boot=options.n_boot,
                    ci=options.ci, seed=options.seed, levels=options.levels, sd=options.sd))
                if pairs[-1].unmatched:
                    notes.append(f"{pair.post} vs {pair.base}: paired on the responses both "
                                 f"calibrated; {pairs[-1].unmatched} calibrated by one only")
            except ValueError as exc:  # includes StudySetError: nothing shared to compare
                notes.append(f"{pair.post} vs {pair.base}: {exc}")
        pair_table = pd.DataFrame([p.row() for p in pairs], columns=PAIR_TABLE_COLUMNS)
        curves, fitted = cal.curves, cal.per_model
        tables = (
            SectionTable("per_model", per_model, PER_MODEL_COLUMNS,
                         "Per model: temperature fitted per study (geometric mean over studies; "
                         "\"≥ 8\": still improving at the end of the grid), mean NLL before and "
                         "after calibration (mean per study, then over studies) and the gain; "
                         "intervals from a bootstrap that refits every temperature."),
            SectionTable("per_study", per_study, PER_STUDY_COLUMNS,
                         "Per model and study: temperature fitted on all participants with its "
                         "participant-bootstrap interval (refitted in every replicate), plain "
                         f"and cross-fitted NLL ({self.n_folds} folds of at least "
                         f"{MIN_PER_FOLD} participants; smaller studies are left out). Where "
                         "the options' log-probs are recorded, the temperature over the offered "
                         "options only (1/β of the diagnostics' slope) and the probability on "
                         "the options at all: a whole-vocabulary T far from it means probability "
                         "spent on tokens that are not options, not over-confidence."),
            SectionTable("pairs", pair_table, PAIR_COLUMNS,
                         "Post-training effect before and after calibration, on the responses "
                         "both models calibrated, and the share of the mean NLL gap a "
                         "temperature explains (1 − after/before). The calibrated gap and the "
                         "share take their intervals from one bootstrap that refits both "
                         "models' temperatures on the same resampled participants; d after "
                         "holds the fitted temperatures fixed."),
        )
        figure = SectionFigure(
            "fig_calibration",
            "Mean NLL (study-weighted) against softmax temperature; dots mark each model's "
            "fitted temperature.",
            lambda: _draw(curves, fitted),
        )
        return Section(
            anchor=self.name,
            title="Calibration control: NLL after fitting a temperature",
            text=_reading(per_model, pairs, options.ci),
            tables=tables,
            figures=(figure,),
            notes=tuple(f"calibration: {n}" for n in notes),
            result=CalibrationResult(
                grid=tuple(TEMPERATURE_GRID),
                temperatures={str(m): float(t) for m, t in
                              zip(per_model["model"], per_model["temperature"], strict=True)}),
        )


ANALYSIS = CalibrationAnalysis()
