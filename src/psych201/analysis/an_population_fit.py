"""Population-level fit: does the model capture the crowd even where it misses the individual?

For every trial that several participants saw in the same form — the same stimulus once option
letters are normalised (:func:`psych201.analysis.baselines.trial_responses`), shown by at least
:data:`MIN_PARTICIPANTS` participants — the model's predicted distribution over the offered
options (softmax of ``offered_logprobs`` renormalised over the offered options, mapped to the
normalised labels, averaged over the participants who saw the trial) is compared with the human
choice frequencies:

* **Jensen–Shannon divergence** in bits (``scipy.spatial.distance.jensenshannon(q, f, base=2)``
  squared; 0 = the same distribution, 1 = disjoint), averaged over the trials of a study;
* **Wasserstein-1** between the two distributions on the option values, for trials whose
  options are numbers (a rating scale), in the scale's units;
* a **finite-sample floor**: the JSD expected from sampling noise alone — each participant's
  choice redrawn from the model's own prediction for that response (Monte Carlo, seeded), the
  frequencies recomputed, the JSD to the model's average taken; a model that is right about
  every participant sits at the floor, whatever the number of participants;
* per study and model, participant-bootstrap intervals (participants resampled within the
  study; frequencies, the model average and the floor recomputed per replicate; percentile
  intervals shifted by the bootstrap bias, since resampling inflates divergences) for the JSD,
  W1 and the excess ``JSD − floor``; ``above_floor`` says whether the excess interval excludes
  0.

It needs the transcripts: ``context.inputs.trials``, the table of
:func:`~psych201.analysis.baselines.trial_responses` (keyed by the response key, with ``trial``,
``n_options`` and ``labels``), built by :func:`psych201.report.make.data_baselines`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from psych201.analysis.effects import fdr_q_values
from psych201.analysis.plugin import (
    AnalysisContext,
    Column,
    Section,
    SectionFigure,
    SectionTable,
)
from psych201.analysis.population_fit import (
    _COLUMNS,
    ABOVE,
    AT,
    BELOW,
    FLOOR_DRAWS,
    MIN_PARTICIPANTS,
    SharedTrials,
    population_fit,
    shared_trials,
)
from psych201.prompts.records import ConditionRole
from psych201.results.schema import RESPONSE_KEY

if TYPE_CHECKING:
    from matplotlib.figure import Figure


#: Power of the floor test at level 0.05, 40 participants per trial, as measured by seeded
#: simulation (quoted in the section's text): the slow test in tests/
#: test_analysis_population_fit.py (40 logistic trials: 51 % at T = 1.4, 54 % at T = 0.7, size
#: 5.6 %) and simulated risky choice (30 shared trials, 80 datasets: 51 %, 28 %, size 5.0 %).
POWER_T14, POWER_T07 = "about half", "28–54 %"
#: The verdicts of the floor test (see :class:`PopulationFitResult`).


# -- the analysis -------------------------------------------------------------------------------
_TABLE_COLUMNS = (
    Column("model", "Model", "text"), Column("study", "Study", "text"),
    Column("n_trials", "Shared trials", "int"), Column("n_participants", "Participants", "int"),
    Column("jsd", "JSD (bits)", "num4"), Column("jsd_floor", "Floor", "num4"),
    Column("excess", "JSD − floor", "num4"), Column("excess_ci_low", "range", "interval"),
    Column("p_value", "p (two-sided)", "p"), Column("q_value", "q (BH over studies)", "p"),
    Column("verdict", "Crowd vs model", "text"),
    Column("w1", "W1 (scale units)", "num3", optional=True),
    Column("w1_p_value", "W1 p", "p", optional=True),
)


class PopulationFit:
    """The ``population-fit`` section (see the module docstring)."""

    name = "population-fit"
    requires: Sequence[str] = ()
    result_type: type | None = None
    columns: Sequence[str] = _COLUMNS

    def skip(self, context: AnalysisContext) -> str | None:
        if context.inputs.trials is None:
            return ("population-level fit skipped: it needs the transcripts to find shared trials "
                    "(pass the scored dataset: compare/report --data)")
        if _scored_rows(context) is None:
            return ("no model recorded offered_logprobs in the main condition or a discrete "
                    "variant (one-token responses and options, an engine that reports candidates)")
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        trials = context.inputs.trials
        found = _scored_rows(context)
        assert found is not None and trials is not None  # what skip checked
        rows, condition = found
        options = context.options
        out, notes = [], []
        crowdless: set[str] = set()
        left_out: dict[str, str] = {}
        if condition != context.condition:
            notes.append(f"option log-probabilities from condition {condition}: the main "
                         f"condition ({context.condition}) records none (only a condition that "
                         "states the offered options does; the discrete variant keeps the "
                         "transcript's text at one-letter choices)")
        for (model, study), group in rows.groupby(["model", "study"], observed=True, sort=True):
            study_trials = trials[trials["study"] == study]
            data, dropped = shared_trials(group, study_trials)
            left_out.setdefault(str(study), _left_out(group, study_trials, data))
            if dropped:
                notes.append(f"{model} / {study}: {dropped} responses left out: the options "
                             "scored are not the options the transcript offers")
            if data is None:
                crowdless.add(str(study))
                continue
            fit = population_fit(data, n_boot=options.n_boot, ci=options.ci, seed=options.seed)
            out.append({
                "model": model, "study": study, "n_trials": fit.n_trials,
                "n_participants": fit.n_participants, "n_responses": fit.n_responses,
                "jsd": fit.jsd, "jsd_ci_low": fit.jsd_ci[0], "jsd_ci_high": fit.jsd_ci[1],
                "jsd_floor": fit.floor, "excess": fit.excess,
                "excess_ci_low": fit.excess_ci[0], "excess_ci_high": fit.excess_ci[1],
                "p_value": fit.p_value, "verdict": fit.verdict, "above_floor": fit.above_floor,
                "w1": fit.w1, "w1_ci_low": fit.w1_ci[0], "w1_ci_high": fit.w1_ci[1],
                "w1_floor": fit.w1_test.floor if fit.w1_test else math.nan,
                "w1_p_value": fit.w1_test.p_value() if fit.w1_test else math.nan,
                "w1_verdict": fit.w1_test.verdict(options.ci) if fit.w1_test else ""})
        notes.extend(f"{study}: not pooled: no trial seen in the same form by "
                     f"≥ {MIN_PARTICIPANTS} scored participants (with the options' "
                     "log-probabilities recorded), so there is no crowd to fit"
                     for study in sorted(crowdless))
        notes.extend(f"{study}: {text}" for study, text in sorted(left_out.items()) if text)
        if not out:
            return Section(self.name, "Population-level fit", text=(
                f"No trial was shared by at least {MIN_PARTICIPANTS} scored participants with "
                "the model's option log-probabilities recorded, so there is no crowd to compare "
                "with."), notes=tuple(notes))
        table = with_study_q_values(pd.DataFrame(out))
        columns = _TABLE_COLUMNS if table["w1"].notna().any() else _TABLE_COLUMNS[:-1]
        return Section(
            anchor=self.name, title="Population-level fit", text=_reading(table),
            tables=(SectionTable(
                "per_study", table, columns,
                caption=f"Trials seen in the same form by ≥ {MIN_PARTICIPANTS} participants: "
                        "Jensen–Shannon divergence (bits) between the model's average predicted "
                        "distribution and the human choice frequencies; the floor, the mean "
                        f"JSD of {FLOOR_DRAWS} crowds of the same size drawn from the model "
                        "itself; the excess JSD − floor with the range those crowds span "
                        f"({options.ci:.0%}); the two-sided p of the observed JSD among them "
                        "and the verdict at that level; q, the p adjusted by Benjamini–Hochberg "
                        "over each model's studies (W1, where the options are numbers, "
                        "tested the same way)."),),
            figures=(SectionFigure("fig_population_fit",
                                   "Excess JSD over the finite-sample floor, per study and model",
                                   lambda: _draw(table)),),
            notes=tuple(notes))


def _left_out(rows: pd.DataFrame, trials: pd.DataFrame, data: SharedTrials | None) -> str:
    """What of a study's scored responses the fit cannot use, counted (empty: nothing)."""
    keyed = rows[[*RESPONSE_KEY]].merge(trials[[*RESPONSE_KEY, "trial"]], on=RESPONSE_KEY,
                                       how="left")
    free = int(keyed["trial"].isna().sum())
    shared = 0 if data is None else len(data.cell)
    rare = len(keyed) - free - shared
    parts = []
    if free:
        parts.append(f"{free} of {len(keyed)} scored responses are not choices among offered "
                     "options (free text, or options the transcript does not state)")
    if rare > 0 and data is not None:
        parts.append(f"{rare} are at trials fewer than {MIN_PARTICIPANTS} participants saw or "
                     "without usable option log-probabilities")
    return "; ".join(parts) + ("; not in the population fit" if parts else "")


def _has_logprobs(rows: pd.DataFrame) -> bool:
    return "offered_logprobs" in rows.columns and bool(rows["offered_logprobs"].notna().any())


def offered_rows(context: AnalysisContext,
                 columns: Sequence[str]) -> tuple[pd.DataFrame, str] | None:
    """Rows (of ``columns``) that carry the offered options' log-probs, and their condition: the
    main condition's where it recorded them, else the first discrete variant's that did
    (``None``: neither did). The population fit, item level and diagnostics all read these."""
    for condition in [context.condition, *context.conditions_of(ConditionRole.DISCRETE)]:
        rows = context.condition_rows(condition, columns)
        if _has_logprobs(rows):
            return rows, condition
    return None


def _scored_rows(context: AnalysisContext) -> tuple[pd.DataFrame, str] | None:
    return offered_rows(context, _COLUMNS)


def with_study_q_values(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``q_value``: each model's per-study p adjusted by Benjamini–Hochberg, so
    "above floor in k of N studies" can be read with the multiplicity of N tests controlled."""
    q = pd.Series(np.nan, index=table.index)
    for _, rows in table.groupby("model", sort=False):
        q.loc[rows.index] = fdr_q_values(rows["p_value"].to_numpy())
    return table.assign(q_value=q)


def _reading(table: pd.DataFrame) -> str:
    parts = []
    alpha = 0.05
    for model, rows in table.groupby("model", sort=True):
        verdicts = rows["verdict"].value_counts()
        counts = ", ".join(f"{verdicts.get(v, 0)} {v.split(' (')[0]}" for v in (ABOVE, AT, BELOW))
        studies = "1 study" if len(rows) == 1 else f"{len(rows)} studies"
        text = (f"{model}: mean JSD {rows['jsd'].mean():.4f} bits against a floor of "
                f"{rows['jsd_floor'].mean():.4f}; of {studies}: {counts}")
        if len(rows) > 1 and "q_value" in rows:
            kept = int((rows["q_value"] < alpha).sum())
            text += (f" ({kept} of {len(rows)} differ from the floor at q < {alpha:g} after "
                     "Benjamini–Hochberg over the studies)")
        parts.append(text)
    return ("Does the model capture the crowd even where it misses the individual? If people "
            "chose as the model predicts for each of them, their choice frequencies would "
            "still differ from the model's average by sampling noise: the floor, found by "
            "drawing crowds of the same size from the model itself. " + "; ".join(parts)
            + ". Above floor: the crowd's choices differ from the model's more than chance "
            "allows. At floor: no detectable difference (with few participants per trial "
            "the test has little power: on simulated data with 40 participants at each of 30–40 "
            f"trials it flags a model at temperature 1.4 in {POWER_T14} of cases, at 0.7 in "
            f"{POWER_T07}). Below floor: the crowd agrees with the model's average more "
            "closely than the model's own spread of predictions allows (the crowd is "
            "under-dispersed relative to the model: the model is more uncertain about "
            "individuals than they are, or responses are not independent). p is per "
            "study and model; q corrects it for the number of studies.")


def _draw(table: pd.DataFrame) -> Figure | None:
    from psych201.analysis.plots import new_figure

    fig = new_figure(7, 0.4 * len(table) + 1.5)
    ax = fig.subplots()
    labels = [f"{m} / {s}" for m, s in zip(table["model"], table["study"], strict=True)]
    y = np.arange(len(table))
    err = np.vstack([table["excess"] - table["excess_ci_low"],
                     table["excess_ci_high"] - table["excess"]])
    ax.errorbar(table["excess"], y, xerr=np.clip(err, 0, None), fmt="o")
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(y, labels)
    ax.set_xlabel("JSD − finite-sample floor (bits)")
    return fig


#: The instance :data:`psych201.analysis.sections.ANALYSES` lists.
ANALYSIS = PopulationFit()
