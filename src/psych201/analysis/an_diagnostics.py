"""Per-response diagnostics: which responses drive a post-training loss, and is it over-confidence?

Three views, for the report:

* **Largest losses** — per base/post-trained pair present: the :data:`TOP_N` responses with the
  largest paired difference ``nll_post − nll_base`` (the post-trained model finds the human
  response much less likely than its base did), with study, participant, the response and, when
  the transcripts are given (``context.inputs.trials`` with a ``snippet`` column, built by
  :func:`psych201.report.make.data_baselines`), the end of the text the response answered.
* **NLL vs entropy** — per model: mean NLL per token of the human responses and the model's own
  mean predictive entropy at them (the ``entropy`` column), mean per study then over studies.
  Under a calibrated model a response drawn from its own distribution costs, on average, exactly
  its entropy, but *any* misfit raises NLL above entropy (right confidence on the wrong favourite:
  +0.34 nats at p = .7 vs q = .3), and the entropy is over the whole vocabulary; so this is a
  misfit index, not an over-confidence measure.
* **Over-confidence over the offered options** — per model and study where the options' log-probs
  are recorded: the calibration slope β (over-confident when its interval lies in (0, 1), a wrong
  favourite when β ≤ 0), expected against observed accuracy of the model's favourite, and the
  probability left on tokens that are not options (:mod:`.offered`); participant-bootstrap
  intervals with the slope refitted per replicate.
* **Participants** — per pair: each participant's mean paired difference, the share of
  participants the post-trained model fits worse with a participant-bootstrap interval, and the
  share a *pure temperature distortion* of the base with the same mean loss would give (from the
  base's ``nll_temperature``): even a model worse for every participant in expectation is worse
  for only part of them in a finite sample, so the share is read against that, not against 100 %.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from psych201.analysis import bootstrap as bs
from psych201.analysis.an_population_fit import offered_rows as offered_rows_of
from psych201.analysis.calibration_fit import participant_weights, temperature_matrix
from psych201.analysis.diagnostics_figures import histogram_drawer, scatter_drawer
from psych201.analysis.effects import paired_differences
from psych201.analysis.offered import offered_choices, overconfidence
from psych201.analysis.plugin import (
    AnalysisContext,
    Column,
    Section,
    SectionFigure,
    SectionTable,
)
from psych201.analysis.registry import ModelPair
from psych201.analysis.tables import response_tokens
from psych201.results.schema import RESPONSE_KEY
from psych201.scoring.engine import TEMPERATURE_GRID

#: Largest losses listed per pair.
TOP_N = 10
_COLUMNS = ("nll", "entropy", "n_tokens", "response_text", "offered_options",
            "offered_logprobs", "nll_temperature")


def top_losses(diffs: pd.DataFrame, rows: pd.DataFrame, n: int = TOP_N,
               trials: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``n`` responses of ``diffs`` (:func:`~psych201.analysis.effects.paired_differences`)
    with the largest ``diff``, with their text (from ``rows``) and, where ``trials`` has a
    ``snippet`` column, the context they answered."""
    top = diffs.nlargest(n, "diff").reset_index(drop=True)
    top.insert(0, "rank", np.arange(1, len(top) + 1))
    if "response_text" in rows.columns:
        text = rows[[*RESPONSE_KEY, "response_text"]].drop_duplicates(RESPONSE_KEY)
        top = top.merge(text, on=RESPONSE_KEY, how="left")
    if trials is not None and "snippet" in trials.columns:
        snippets = trials[[*RESPONSE_KEY, "snippet"]].drop_duplicates(RESPONSE_KEY)
        top = top.merge(snippets.rename(columns={"snippet": "context"}), on=RESPONSE_KEY,
                        how="left")
    return top


def confidence(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model: mean NLL per token, mean entropy (each a mean per study, then over studies),
    their difference and ratio, and the per-response correlation of the two (responses with a
    finite entropy only)."""
    data = rows.assign(nll_token=rows["nll"] / response_tokens(rows))
    data = data[np.isfinite(data["entropy"].astype(float)) & np.isfinite(data["nll_token"])]
    out = []
    for model, group in data.groupby("model", observed=True, sort=True):
        nll, ent = group["nll_token"].astype(float), group["entropy"].astype(float)
        corr = float(np.corrcoef(nll, ent)[0, 1]) if len(group) > 2 and nll.std() > 0 and \
            ent.std() > 0 else float("nan")
        by_study = group.groupby("study", observed=True)[["nll_token", "entropy"]].mean()
        mean_nll, mean_ent = (float(by_study[c].astype(float).mean())
                              for c in ("nll_token", "entropy"))
        out.append({"model": model, "n_studies": len(by_study), "n_responses": len(group),
                    "nll": mean_nll, "entropy": mean_ent, "difference": mean_nll - mean_ent,
                    "ratio": mean_nll / mean_ent if mean_ent > 0 else float("nan"),
                    "correlation": corr})
    return pd.DataFrame(out, columns=["model", "n_studies", "n_responses", "nll", "entropy",
                                      "difference", "ratio", "correlation"])


def offered_confidence(rows: pd.DataFrame, *, n_boot: int = 2000, ci: float = 0.95,
                       seed: int = 0) -> pd.DataFrame:
    """Per model and study: over-confidence over the offered options (:mod:`.offered`)."""
    out = []
    choices_rows = rows.dropna(subset=["offered_logprobs"]) if "offered_logprobs" in \
        rows.columns else rows.iloc[:0]
    for (model, study), group in choices_rows.groupby(["model", "study"], observed=True,
                                                      sort=True):
        choices = offered_choices(group)
        if len(choices.chosen) == 0:
            continue
        oc = overconfidence(choices, n_boot=n_boot, ci=ci, seed=seed, salt=str(study))
        out.append({
            "model": model, "study": study, "n_participants": oc.n_participants,
            "n_responses": oc.n_responses, "offered_mass": oc.offered_mass,
            "slope": oc.slope, "slope_ci_low": oc.slope_ci[0], "slope_ci_high": oc.slope_ci[1],
            "slope_interval": _interval(*oc.slope_ci, digits=2),
            "expected_accuracy": oc.expected_accuracy,
            "observed_accuracy": oc.observed_accuracy, "accuracy_gap": oc.accuracy_gap,
            "gap_ci_low": oc.gap_ci[0], "gap_ci_high": oc.gap_ci[1],
            "gap_interval": _interval(*oc.gap_ci), "verdict": oc.verdict,
        })
    return pd.DataFrame(out, columns=OFFERED_TABLE_COLUMNS)


OFFERED_TABLE_COLUMNS = [
    "model", "study", "n_participants", "n_responses", "offered_mass", "slope", "slope_ci_low",
    "slope_ci_high", "slope_interval", "expected_accuracy", "observed_accuracy", "accuracy_gap",
    "gap_ci_low", "gap_ci_high", "gap_interval", "verdict"]


def _interval(low: float, high: float, digits: int = 3) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return ""
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def share_worse(per: pd.DataFrame, *, n_boot: int = 2000, ci: float = 0.95,
                seed: int = 0) -> tuple[float, float, float]:
    """Share of participants with a positive mean paired difference and its interval
    (participants resampled within each study)."""
    worse = (per["mean_diff"] > 0).to_numpy(float)
    counts, total = np.zeros(n_boot), 0
    for study, idx in per.groupby("study", observed=True, sort=True).indices.items():
        weights = participant_weights(len(idx), n_boot, seed=seed, salt=str(study))
        counts += weights @ worse[idx]
        total += len(idx)
    low, high = bs.interval(counts / total, ci, total, total - per["study"].nunique())
    return float(worse.mean()), low, high


def temperature_share(diffs: pd.DataFrame, base_rows: pd.DataFrame,
                      ) -> tuple[float, float]:
    """The share of participants a pure temperature distortion of the base would fit worse.

    The base's own NLL at temperature t < 1 (``nll_temperature``) stands for a model that
    differs from it only by being sharper; t is the grid point whose mean per-participant loss
    comes closest to the observed one. Returns (share, t); NaN where the base has no complete
    ``nll_temperature`` on the paired responses or the post-trained model is not worse.
    """
    per = participant_differences(diffs)
    observed = float(per["mean_diff"].mean())
    ok, matrix = temperature_matrix(base_rows)
    curves = base_rows[ok][RESPONSE_KEY].assign(_row=np.arange(int(ok.sum())))
    keyed = diffs[RESPONSE_KEY].merge(curves, on=RESPONSE_KEY, how="left")
    if not observed > 0 or keyed["_row"].isna().any() or keyed.empty:
        return float("nan"), float("nan")
    sub = matrix[keyed["_row"].to_numpy(int)]
    one = TEMPERATURE_GRID.index(1.0)
    gap = pd.DataFrame(sub[:, :one] - sub[:, [one]])
    gap[["study", "experiment", "participant"]] = keyed[["study", "experiment",
                                                         "participant"]].to_numpy()
    by_person = gap.groupby(["study", "experiment", "participant"], observed=True).mean()
    best = int(np.argmin(np.abs(by_person.mean(axis=0).to_numpy(float) - observed)))
    return float((by_person.iloc[:, best] > 0).mean()), float(TEMPERATURE_GRID[best])


def participant_differences(diffs: pd.DataFrame) -> pd.DataFrame:
    """Per participant (within study): responses and mean paired difference."""
    return diffs.groupby(["study", "experiment", "participant"], observed=True,
                         as_index=False).agg(n_responses=("diff", "size"),
                                             mean_diff=("diff", "mean"))


_TOP_COLUMNS = (
    Column("post", "Post-trained", "text"), Column("rank", "#", "int"),
    Column("study", "Study", "text"), Column("participant", "Participant", "text"),
    Column("context", "Context", "text", optional=True),
    Column("response_text", "Response", "text", optional=True),
    Column("nll_post", "NLL post", "num2"), Column("nll_base", "NLL base", "num2"),
    Column("diff", "Difference", "num2"),
)
_CONFIDENCE_COLUMNS = (
    Column("model", "Model", "text"), Column("n_responses", "Responses", "int"),
    Column("nll", "NLL / token", "num3"), Column("entropy", "Entropy", "num3"),
    Column("difference", "NLL − entropy (misfit)", "num3"),
    Column("ratio", "NLL / entropy", "num2"), Column("correlation", "r", "num2"),
)
_OFFERED_COLUMNS = (
    Column("model", "Model", "text"), Column("study", "Study", "text"),
    Column("n_participants", "Participants", "int"), Column("n_responses", "Responses", "int"),
    Column("offered_mass", "P(offered)", "probability"),
    Column("slope", "Slope β", "num2"), Column("slope_interval", "CI", "text"),
    Column("expected_accuracy", "Expected acc.", "probability"),
    Column("observed_accuracy", "Observed acc.", "probability"),
    Column("accuracy_gap", "Expected − observed", "num3"), Column("gap_interval", "CI", "text"),
    Column("verdict", "Reading", "text"),
)
_PARTICIPANT_COLUMNS = (
    Column("post", "Post-trained", "text"), Column("base", "Base", "text"),
    Column("n_participants", "Participants", "int"),
    Column("share_worse", "Fit worse", "probability"),
    Column("share_interval", "CI", "text"),
    Column("share_temperature", "Expected if only a temperature", "probability",
           optional=True),
    Column("mean", "Mean difference", "num3"), Column("median", "Median", "num3"),
)


class Diagnostics:
    """The ``diagnostics`` section (see the module docstring)."""

    name = "diagnostics"
    requires: Sequence[str] = ()
    result_type: type | None = None
    columns: Sequence[str] = ("nll", "entropy")

    def skip(self, context: AnalysisContext) -> str | None:
        if context.pairs:
            return None
        # Without a pair, the per-model views still say something where their columns exist.
        rows = context.main_rows(("offered_logprobs", "entropy"))
        if any(c in rows.columns and rows[c].notna().any()
               for c in ("offered_logprobs", "entropy")):
            return None
        return ("no base/post-trained pair among the scored models, and no entropy or offered "
                "options' log-probs recorded")

    def run(self, context: AnalysisContext) -> Section | None:
        rows = context.main_rows(_COLUMNS)
        options = context.options
        trials = context.inputs.trials
        notes = []
        if not context.pairs:
            notes.append("no base/post-trained pair among the scored models: the largest "
                         "losses and the participants view are left out (name one with "
                         "--pair POST=BASE)")
        elif trials is None or "snippet" not in trials.columns:
            notes.append("no transcripts given: the largest losses are listed without context")
        tops, people, summary = [], [], []
        pairs: list[tuple[ModelPair, pd.DataFrame]] = []
        for pair in context.pairs:
            diffs = paired_differences(rows, pair.post, pair.base, condition=context.condition,
                                       studies=list(context.studies),
                                       allow_missing=context.options.allow_missing)
            if diffs.empty:
                notes.append(f"{pair.post} and {pair.base} share no scored response")
                continue
            pairs.append((pair, diffs))
            tops.append(top_losses(diffs, rows, TOP_N, trials).assign(post=pair.post,
                                                                     base=pair.base))
            per = participant_differences(diffs).assign(post=pair.post, base=pair.base)
            people.append(per)
            share, low, high = share_worse(per, n_boot=options.n_boot, ci=options.ci,
                                           seed=options.seed)
            expected, t_star = temperature_share(diffs, rows[rows["model"] == pair.base])
            summary.append({"post": pair.post, "base": pair.base, "n_participants": len(per),
                            "share_worse": share, "share_ci_low": low, "share_ci_high": high,
                            "share_interval": _percent_interval(low, high),
                            "share_temperature": expected, "temperature_matched": t_star,
                            "mean": float(per["mean_diff"].mean()),
                            "median": float(per["mean_diff"].median())})
        tables = []
        if tops:
            tables.append(SectionTable("largest_losses", pd.concat(tops, ignore_index=True),
                                       _TOP_COLUMNS, caption=(
                f"Per pair, the {TOP_N} responses the post-trained model finds least likely "
                "relative to its base (paired NLL difference, nats).")))
        has_entropy = "entropy" in rows.columns and rows["entropy"].notna().any()
        conf = confidence(rows) if has_entropy else pd.DataFrame()
        if not has_entropy:
            notes.append("no entropy recorded: the over-confidence view is left out")
        elif not conf.empty:
            tables.append(SectionTable("confidence", conf, _CONFIDENCE_COLUMNS, caption=(
                "Mean NLL per token of the human responses against the model's own mean "
                "predictive entropy at them (whole vocabulary; mean per study, then over "
                "studies). A calibrated model has NLL ≈ entropy, but any misfit raises NLL "
                "above entropy, so the difference is not an over-confidence measure: see the "
                "offered-options table.")))
        offered_rows, offered_condition = (offered_rows_of(context, _COLUMNS)
                                           or (rows, context.condition))
        offered = offered_confidence(offered_rows, n_boot=options.n_boot, ci=options.ci,
                                     seed=options.seed)
        if not offered.empty and offered_condition != context.condition:
            notes.append(f"over-confidence over the offered options from condition "
                         f"{offered_condition}: the main condition ({context.condition}) "
                         "records no option log-probs")
        if offered.empty:
            notes.append("no response carries the offered options' log-probs: over-confidence "
                         "is not identified (the NLL − entropy gap is a misfit index only)")
        else:
            tables.append(SectionTable("offered_confidence", offered, _OFFERED_COLUMNS,
                                       caption=(
                "Over the options each transcript offered (renormalised): calibration slope β "
                "of p ∝ q^β (1: calibrated, 0–1: over-confident, > 1: under-confident, ≤ 0: "
                "the model's favourite is not people's; an interval below 1 reaching 0: "
                "uninformative, no better than uniform over the options), how often the "
                "model expects its favourite to be chosen against how often it is, and "
                "P(offered), the whole-vocabulary probability on the options at all; "
                "participant-bootstrap intervals.")))
        if people:
            tables.append(SectionTable("participant_summary", pd.DataFrame(summary),
                                       _PARTICIPANT_COLUMNS, caption=(
                "Per pair: share of participants whose responses the post-trained model "
                "fits worse on average (mean paired difference > 0), its participant-"
                "bootstrap interval, and the share a model that differs from the base only by "
                "a temperature (t < 1) with the same mean loss would fit worse (from the "
                "base's nll_temperature): noise pulls both towards 50 %.")))
            tables.append(SectionTable("participants", pd.concat(people, ignore_index=True),
                                       caption="Mean paired difference per participant."))
        figures = []
        # Figures for the pairs shown in full (as the forest plots): the tables cover every pair.
        for rank, (pair, diffs) in enumerate(pairs[: context.options.detail_pairs], start=1):
            if has_entropy:
                figures.append(SectionFigure(
                    f"fig_nll_entropy_{rank}", f"NLL vs entropy: {pair.post} and {pair.base}",
                    scatter_drawer(rows, pair, context.options.seed)))
            figures.append(SectionFigure(
                f"fig_participant_diffs_{rank}",
                f"Per-participant mean paired difference: {pair.post} − {pair.base}",
                histogram_drawer(participant_differences(diffs), pair)))
        return Section(self.name, "Per-response diagnostics",
                       text=_reading(pd.DataFrame(summary), offered, context.pairs),
                       tables=tuple(tables), figures=tuple(figures), notes=tuple(notes))


def _percent_interval(low: float, high: float) -> str:
    return f"[{low:.0%}, {high:.0%}]" if np.isfinite(low) and np.isfinite(high) else ""


def _reading(summary: pd.DataFrame, offered: pd.DataFrame, pairs: Sequence[ModelPair]) -> str:
    parts = []
    for row in summary.itertuples():
        interval = f" {row.share_interval}" if row.share_interval else ""
        line = (f"{row.post} fits {row.share_worse:.0%}{interval} of {row.n_participants} "
                f"participants worse than {row.base} (mean per-participant difference "
                f"{row.mean:+.3f} nats)")
        if np.isfinite(row.share_temperature):
            line += (f"; a pure temperature distortion of {row.base} (t = "
                     f"{row.temperature_matched:.2f}) with the same mean loss would fit "
                     f"{row.share_temperature:.0%} worse")
        parts.append(line)
    if parts:
        text = ("Where does post-training lose, and is it over-confidence? " + "; ".join(parts)
                + ". Even a model that is worse for every participant in expectation is worse "
                  "for only part of them in a finite sample, so the share is read against the "
                  "temperature column, not against 100 %.")
    elif pairs:
        text = f"No pair of the {len(pairs)} present shares scored responses."
    else:
        text = "Is the model over-confident where people choose?"
    if not offered.empty:
        over = offered[offered["verdict"] == "over-confident"]
        wrong = offered[offered["verdict"].str.startswith("wrong favourite")]
        flat = offered[offered["verdict"].str.startswith("uninformative")]
        text += (f" Over the offered options, {len(over)} of {len(offered)} model × study "
                 f"cells are over-confident (slope β in (0, 1) with its interval), {len(wrong)} "
                 "prefer another option than people do (β ≤ 0), which no temperature fixes")
        text += (f", and {len(flat)} are no better than uniform over the options (β's "
                 "interval reaches 0)." if len(flat) else ".")
    return text


#: The instance :data:`psych201.analysis.sections.ANALYSES` lists.
ANALYSIS = Diagnostics()
