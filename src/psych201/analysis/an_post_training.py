"""The paper's post-training effect: pair d with paired intervals, type d, share of pairs with
d > 0, and the first pairs in full (effects, per-study table, forest plot)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from psych201.analysis import bootstrap as bs
from psych201.analysis import paper
from psych201.analysis.effects import (
    Effect,
    PairComparison,
    compare_pair,
    effects_frame,
    fdr_q_values,
)
from psych201.analysis.plots import fig_forest
from psych201.analysis.plugin import (
    AnalysisContext,
    Column,
    Section,
    SectionFigure,
    SectionTable,
)
from psych201.analysis.registry import ModelPair, ModelRegistry
from psych201.analysis.tables import common_studies, select

if TYPE_CHECKING:
    from psych201.analysis.plugin import AnalysisOptions


def pair_arrays(frame: pd.DataFrame, by_model: Mapping[str, pd.DataFrame], pair: ModelPair,
                condition: str, allow_missing: bool) -> bs.StudyArrays:
    """Per-participant sums of a pair (post = arm a, base = arm b) on the studies both have."""
    studies = common_studies(frame, [pair.post, pair.base], condition,
                             allow_missing=allow_missing)
    return bs.participant_arrays(select(by_model[pair.post], studies=studies),
                                 select(by_model[pair.base], studies=studies))


def _pair_rows(frame: pd.DataFrame, pairs: list[ModelPair], registry: ModelRegistry,
               options: AnalysisOptions, condition: str,
               ) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """Paper pair d (chosen SD) with a paired bootstrap interval, per pair.

    ``frame`` holds the main condition only. The point estimate is the paper's (all studies each
    model has); the interval resamples the shared studies' participants and studies. Every pair
    is resampled with the same seed: pairs scored on the same human data then see the *same*
    resampled studies and participants in each replicate, so averages over pairs (type d,
    generation d) get intervals that respect that the pairs share their data. Returns the table
    and each pair's replicates (keyed by (post, base): one post-trained model may be paired
    with several bases).
    """
    table = paper.pair_table(frame, pairs, registry, condition=condition, sd=options.sd)
    by_model = {str(m): g for m, g in frame.groupby("model", observed=True)}
    rows: list[dict[str, object]] = []
    replicates: dict[tuple[str, str], np.ndarray] = {}
    for i, pair in enumerate(pairs):
        arrays = pair_arrays(frame, by_model, pair, condition, options.allow_missing)
        # one shared study: the study's participants are the only units there are
        levels = "participants" if arrays.n_studies < 2 else options.levels
        reps = bs.resample(arrays, "d", levels=levels, n_boot=options.n_boot,
                           seed=options.seed, sd=options.sd)
        n_units, df = bs.units(arrays, levels)
        point = bs.estimate(arrays, "d", sd=options.sd)
        paper_d = float(table["d"].iat[i])
        got = bs.infer(reps, options.ci, n_units, df,
                       point=paper_d if math.isfinite(paper_d) else point,
                       unit_values=bs.study_level_values(arrays, "d", levels, sd=options.sd),
                       unit="participants" if levels == "participants" else "studies")
        rows.append({"diff_nats": bs.estimate(arrays, "mean_diff"), "ci_low": got.ci_low,
                     "ci_high": got.ci_high, "p_value": got.p_value,
                     "n_participants": arrays.n_participants,
                     "interval_method": f"{levels}: {got.method}"})
        replicates[(pair.post, pair.base)] = reps
    extra = pd.DataFrame(rows, index=table.index,
                         columns=["diff_nats", "ci_low", "ci_high", "p_value", "n_participants",
                                  "interval_method"])
    for column in extra.columns:
        table[column] = extra[column]
    table["q_value"] = fdr_q_values(table["p_value"])
    return table, replicates


def _single_study_pairs(pairs: pd.DataFrame, frame: pd.DataFrame, condition: str,
                        options: AnalysisOptions) -> list[str]:
    """Fill ``d_one_study`` for pairs sharing one study; a note for each.

    The paper's pair d needs two shared studies (its d is then undefined and the pair is left
    out of type d), yet the detail tables show that one study's d: reports print it beside the
    undefined pair d, in parentheses, so the two tables agree.
    """
    single = pairs["d"].isna() & (pairs["n_studies"] == 1)
    pairs["d_one_study"] = np.nan
    notes = []
    for i in pairs.index[single]:
        post, base = str(pairs.at[i, "post"]), str(pairs.at[i, "base"])
        d = paper.pair_d(frame, post, base, condition=condition, sd=options.sd,
                         min_studies=1).d
        pairs.at[i, "d_one_study"] = d
        notes.append(f"{post} vs {base} share one study: the paper's pair d needs two, so it is "
                     f"undefined and the pair is left out of type d; that study's d is "
                     f"{d:.3f} (in parentheses)")
    return notes


def _group_intervals(groups: pd.DataFrame, pairs: pd.DataFrame, by: str,
                     replicates: Mapping[tuple[str, str], np.ndarray],
                     options: AnalysisOptions,
                     ) -> pd.DataFrame:
    """Intervals for means of pair d over groups of pairs (type d, generation d).

    A replicate of the group mean is the mean of its pairs' replicates (coupled resampling, see
    :func:`_pair_rows`); units and degrees of freedom are those of the studies.
    """
    lows, highs, ps, n_studies = [], [], [], []
    valid = pairs[pairs["d"].notna()]
    for key in groups[by]:
        members = valid[valid[by] == key]
        keys = zip(members["post"], members["base"], strict=True)
        reps = [replicates[k] for k in keys if k in replicates]
        n = int(members["n_studies"].max()) if len(members) else 0
        if not reps or n < 2:
            lows.append(np.nan)
            highs.append(np.nan)
            ps.append(np.nan)
        else:
            mean = np.mean(np.vstack(reps), axis=0)
            units, df = (n, n - 1) if options.levels != "participants" else (
                int(members["n_participants"].max()), int(members["n_participants"].max()) - n)
            got = bs.infer(mean, options.ci, units, df, point=float(members["d"].mean()))
            lows.append(got.ci_low)
            highs.append(got.ci_high)
            ps.append(got.p_value)
        n_studies.append(n)
    return groups.assign(ci_low=lows, ci_high=highs, p_value=ps, n_studies=n_studies)


#: Name of the effect that replaced the sign test across pairs.
PAIR_SHARE = "share of pairs with d > 0"


def pair_share_positive(pairs: pd.DataFrame, replicates: dict[tuple[str, str], np.ndarray],
                        options: AnalysisOptions, *, n_responses: int = 0) -> Effect:
    """Share of pairs whose d is positive, with a bootstrap interval over studies and participants.

    A sign test over pairs would treat them as independent, but pairs share bases and all score
    the same human responses. The pairs' replicates are coupled (same resampled studies and
    participants in each replicate, see :func:`_pair_rows`), so the share computed within each
    replicate carries that dependence into the interval. The p-value is for H0: share = 0.5.
    """
    valid = pairs[pairs["d"].notna()]
    keys = [k for k in zip(valid["post"], valid["base"], strict=True) if k in replicates]
    n = int(valid["n_studies"].max()) if len(valid) else 0
    n_parts = int(valid["n_participants"].max()) if len(valid) else 0
    estimate = float((valid["d"] > 0).mean()) if len(valid) else math.nan
    method = (f"share of {len(valid)} pairs, coupled bootstrap ({options.levels}; "
              f"{options.n_boot} replicates; p for share = 0.5)")
    if not keys or n < 2:
        return Effect(PAIR_SHARE, estimate, math.nan, math.nan, options.ci, math.nan, n, n_parts,
                      n_responses, method, "share positive")
    reps = np.vstack([replicates[k] for k in keys])
    with np.errstate(invalid="ignore"):
        shares = np.where(np.isfinite(reps).all(axis=0), (reps > 0).mean(axis=0), np.nan)
    units, df = (n, n - 1) if options.levels != "participants" else (n_parts, n_parts - n)
    # a share is bounded: where the percentile tail is out of reach, no t interval stands in
    inference = bs.infer(shares, options.ci, units, df, null=0.5, fallback=False)
    if inference.method != "expanded percentile":
        method += f"; {inference.method}"
    return Effect(PAIR_SHARE, estimate, inference.ci_low, inference.ci_high, options.ci,
                  inference.p_value, n, n_parts, n_responses, method, "share positive")


def pair_d_text(row: pd.Series) -> str:
    """A pair's d; where it is undefined (one shared study) that study's d in parentheses."""
    d, single = row.get("d"), row.get("d_one_study")
    if (d is None or not math.isfinite(float(d))) and single is not None \
            and math.isfinite(float(single)):
        return f"({float(single):.3f})"
    return "–" if d is None or not math.isfinite(float(d)) else f"{float(d):.3f}"


def effect_columns(ci: float) -> tuple[Column, ...]:
    """How a table of :class:`~psych201.analysis.effects.Effect` rows is shown."""
    return (Column("name", "effect", "text"), Column("estimate", "estimate"),
            Column("ci_low", f"{int(ci * 100)}% interval", "interval"),
            Column("p_value", "p", "p"), Column("units", "units", "text"),
            Column("n_studies", "studies", "int"), Column("n_participants", "participants", "int"),
            Column("n_responses", "responses", "int"), Column("method", "method", "text"))


FOREST_CAPTION = ("Per-study mean paired NLL difference (post-trained − base) with participant-"
                  "bootstrap intervals; diamond: all studies (hierarchical bootstrap).")

PAIR_COLUMNS = (
    Column("post", "post-trained", "text"), Column("base", "base", "text"),
    Column("type", "type", "text"), Column("d_shown", "pair d"),
    Column("ci_low", "interval", "interval"), Column("p_value", "p", "p"),
    Column("q_value", "q (BH)", "p", optional=True),
    Column("diff_nats", "difference (nats)", optional=True),
    Column("n_studies", "studies", "int"), Column("n_participants", "participants", "int"))

#: "Less human-like", defined once for every section that says it.
LESS_HUMAN_LIKE = ("\"Less human-like\" means a higher NLL on the human responses: the model "
                   "gives the responses people actually made lower probability.")

#: Why the report prints nats beside every d and does not label d's size.
COHEN_NOTE = ("The paper's d divides by the response-level SD, which is large (responses differ "
              "far more than models do), so a d of 0.1 can be a distortion that makes most "
              "participants fit worse; read d next to the difference in nats and the paired "
              "per-participant results, not against Cohen's 0.2/0.5/0.8 labels, which were "
              "never meant for this scale.")

MULTIPLICITY_NOTE = ("p is per pair; q (Benjamini–Hochberg over the pairs shown) keeps the "
                     "expected share of false discoveries among pairs with q < 0.05 at 5 %.")

TYPE_COLUMNS = (
    Column("type", "type", "text"), Column("d", "type d"), Column("ci_low", "interval", "interval"),
    Column("p_value", "p", "p"), Column("n_pairs", "pairs", "int"),
    Column("n_studies", "studies", "int"))

DETAIL_COLUMNS = (
    Column("study", "study", "text"), Column("n_participants", "participants", "int"),
    Column("n_responses", "responses", "int"), Column("mean_post", "NLL post"),
    Column("mean_base", "NLL base"), Column("mean_diff", "difference"),
    Column("ci_low", "interval", "interval"), Column("d_sample", "d (sample SD)"),
    Column("d_population", "d (population SD)"))


@dataclass(frozen=True)
class PostTrainingResult:
    """Per-pair and per-type d with the bootstrap replicates later analyses couple to."""

    pairs: pd.DataFrame  # one row per post/base pair
    type_d: pd.DataFrame  # per post-training type
    sign_test: Effect | None  # share of pairs with positive d (two pairs or more)
    details: tuple[PairComparison, ...]  # full comparisons of the first pairs
    replicates: Mapping[tuple[str, str], np.ndarray]  # bootstrap d per (post, base)


class PostTraining:
    """Pairs of a post-trained model and its base (registry pairs present, plus ``--pair``)."""

    name = "post-training"
    requires: Sequence[str] = ()
    result_type: type | None = PostTrainingResult
    columns: Sequence[str] = ("nll",)

    def skip(self, context: AnalysisContext) -> str | None:
        if not context.pairs:
            return ("no base/post-trained pair among the scored models: pair, type, domain "
                    "and generation analyses skipped (name one with --pair POST=BASE)")
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        options, main, condition = context.options, context.main, context.condition
        pairs = list(context.pairs)
        pair_df, replicates = _pair_rows(main, pairs, context.registry, options, condition)
        notes = _single_study_pairs(pair_df, main, condition, options)
        types = _group_intervals(paper.type_d(pair_df), pair_df, "post_training", replicates,
                                 options)
        sign: Effect | None = None
        if len(pair_df) >= 2:
            board = context.leaderboard
            assert board is not None  # summarize always builds it
            sign = pair_share_positive(pair_df, replicates, options,
                                       n_responses=int(board["n_responses"].max()))
        details = tuple(
            compare_pair(main, pair.post, pair.base, condition=condition,
                         allow_missing=options.allow_missing, n_boot=options.n_boot,
                         ci=options.ci, seed=options.seed, levels=options.levels)
            for pair in pairs[: options.detail_pairs])
        tables = [SectionTable("pairs", pair_df.assign(d_shown=pair_df.apply(pair_d_text, axis=1)),
                               PAIR_COLUMNS),
                  SectionTable("type_d", types, TYPE_COLUMNS, caption="By post-training type")]
        if sign is not None:
            tables.append(SectionTable("pair_sign_test", effects_frame([sign]),
                                       effect_columns(options.ci), caption="Across pairs"))
        figures = []
        for i, detail in enumerate(details):
            title = f"{detail.post} vs {detail.base}"
            tables.append(SectionTable(f"detail_{i + 1}_effects", detail.effects_frame(),
                                       effect_columns(options.ci), caption=title))
            tables.append(SectionTable(f"detail_{i + 1}_per_study", detail.per_study,
                                       DETAIL_COLUMNS, caption=f"{title}: per study"))
            figures.append(SectionFigure(f"forest_{i + 1}", FOREST_CAPTION,
                                         partial(fig_forest, detail)))
        if any(len(d.studies) < 2 for d in details):
            notes.append("Pairs sharing one study: the headline is the paired per-participant "
                         "difference (nats and paired d) with a participant bootstrap (see "
                         "the pair's effects); statistics across studies need at least 2.")
        notes.extend(note for d in details for note in d.notes)
        return Section(
            anchor=self.name, title="Post-training effects",
            text=("Per pair the paper's d (mean over studies of the per-study Cohen's d, "
                  f"post-trained − base, {options.sd} SD; positive = post-training made the model "
                  "less human-like) with the mean paired difference in nats beside it, and a "
                  "paired bootstrap interval over studies and participants (a t interval over "
                  "studies where too few studies exist for the bootstrap's tail; p always "
                  f"from the same procedure). {LESS_HUMAN_LIKE} {COHEN_NOTE} "
                  f"{MULTIPLICITY_NOTE}"),
            tables=tuple(tables), figures=tuple(figures), notes=tuple(notes),
            result=PostTrainingResult(pair_df, types, sign, details, replicates))


ANALYSIS = PostTraining()
