"""Every analysis that the given results support, in one object (what compare and report show).

:func:`summarize` looks at which models and conditions the tables hold and runs each analysis
that applies: the leaderboard, the paper's pair/type d with paired intervals, generation trend,
size scaling, domains, accuracy, chat-template and persona controls, random and population
baselines. Whatever cannot run says why in :attr:`Summary.notes` instead of failing the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from psych201.analysis import baselines as bl
from psych201.analysis import bootstrap as bs
from psych201.analysis import paper
from psych201.analysis.aggregate import Weighting, leaderboard, study_matrix
from psych201.analysis.conditions import (
    conditions_with_role,
    main_condition,
    persona_reference,
)
from psych201.analysis.domains import PAPER_DOMAINS, load_categories
from psych201.analysis.effects import (
    Effect,
    PairComparison,
    bootstrap_effect,
    compare_pair,
    per_study_table,
    sign_test,
)
from psych201.analysis.registry import ModelPair, ModelRegistry
from psych201.analysis.tables import Results, common_studies, select
from psych201.results.schema import RESPONSE_KEY

#: Columns any analysis reads (the rest of a response table is carried by reports only).
ANALYSIS_COLUMNS = ("model", "condition", "study", "experiment", "participant", "line",
                    "response_index", "nll", "top1_correct", "n_options", "offered_correct",
                    "n_offered")


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


@dataclass(frozen=True, eq=False)
class PersonaResult:
    """Per model and study: persona benefit d (and the shuffled-persona control where scored).

    ``paired`` is the individual-level analysis: per study, the mean NLL benefit in nats
    (reference − persona, positive = the persona helps) over the very same responses of the
    same participants, with a participant-bootstrap interval; ``per_model`` adds the pooled
    benefit over studies and participants (``benefit``, ``benefit_ci_low``/``high``).
    """

    per_study: pd.DataFrame  # model, study, d, comparison
    per_model: pd.DataFrame  # model, comparison, d, ci_low, ci_high, n_studies, benefit, ...
    paired: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True, eq=False)
class Summary:
    condition: str
    options: AnalysisOptions
    studies: tuple[str, ...]
    leaderboard: pd.DataFrame
    study_means: pd.DataFrame
    scaling_points: pd.DataFrame
    scaling_fits: pd.DataFrame
    pairs: pd.DataFrame
    type_d: pd.DataFrame
    pair_sign_test: Effect | None
    pair_details: tuple[PairComparison, ...]
    generation: paper.GenerationTrend | None
    domains: pd.DataFrame | None
    accuracy_per_study: pd.DataFrame | None
    accuracy_points: pd.DataFrame | None
    chat_template: pd.DataFrame | None
    persona: PersonaResult | None
    pseudo_r2: pd.DataFrame | None
    population: pd.DataFrame | None
    notes: tuple[str, ...] = field(default=())


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
    lows, highs, ps, n_parts = [], [], [], []
    replicates: dict[tuple[str, str], np.ndarray] = {}
    for pair in pairs:
        studies = common_studies(frame, [pair.post, pair.base], condition,
                                 allow_missing=options.allow_missing)
        a = select(by_model[pair.post], studies=studies)
        b = select(by_model[pair.base], studies=studies)
        arrays = bs.participant_arrays(a, b)
        reps = bs.resample(arrays, "d", levels=options.levels, n_boot=options.n_boot,
                           seed=options.seed, sd=options.sd)
        n_units, df = bs.units(arrays, options.levels)
        low, high = bs.interval(reps, options.ci, n_units, df)
        lows.append(low)
        highs.append(high)
        ps.append(bs.p_value(reps, n_units, df))
        n_parts.append(arrays.n_participants)
        replicates[(pair.post, pair.base)] = reps
    table["ci_low"] = lows
    table["ci_high"] = highs
    table["p_value"] = ps
    table["n_participants"] = n_parts
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
                     replicates: dict[tuple[str, str], np.ndarray], options: AnalysisOptions,
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
            low, high = bs.interval(mean, options.ci, units, df)
            lows.append(low)
            highs.append(high)
            ps.append(bs.p_value(mean, units, df))
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
    low, high = bs.interval(shares, options.ci, units, df)
    p = bs.p_value(shares - 0.5, units, df)
    return Effect(PAIR_SHARE, estimate, low, high, options.ci, p, n, n_parts, n_responses,
                  method, "share positive")


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


def _persona(frame: pd.DataFrame, reference: str, options: AnalysisOptions,
             ) -> PersonaResult | None:
    conditions = list(frame["condition"].unique())
    persona = conditions_with_role(conditions, "persona")
    shuffled = conditions_with_role(conditions, "persona-shuffled")
    if not persona:
        return None
    rows, summary, paired = [], [], []
    for p_cond in persona:
        own_reference = persona_reference(conditions, p_cond, reference)
        for model in sorted(select(frame, condition=p_cond)["model"].unique()):
            comparisons = [(f"{p_cond} vs {own_reference}", own_reference,
                            options.persona_same_participants)]
            comparisons += [(f"{p_cond} vs {s}", s, True) for s in shuffled]
            for label, ref, same in comparisons:
                if select(frame, model=model, condition=ref).empty:
                    continue
                per = paper.persona_benefit(frame, model, persona_condition=p_cond,
                                            reference_condition=ref, same_participants=same,
                                            sd="population")
                for study, d in per["d"].items():
                    rows.append({"model": model, "study": study, "d": float(d),
                                 "comparison": label})
                values = per["d"].to_numpy(float)
                test = sign_test(values, name=label, ci=options.ci, unit="studies")
                n = int(np.isfinite(values).sum())
                mean = float(np.nanmean(values)) if n else math.nan
                sem = float(np.nanstd(values, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
                # studies as the units: a t interval over the per-study d values
                half = float(sps.t.ppf(0.5 + options.ci / 2, n - 1)) * sem if n > 1 else math.nan
                benefit = _paired_benefit(frame, model, ref, p_cond, options)
                if benefit is not None:
                    per_study_paired, pooled = benefit
                    paired.append(per_study_paired.assign(model=model, comparison=label))
                else:
                    pooled = {}
                summary.append({"model": model, "comparison": label, "d": mean,
                                "ci_low": mean - half, "ci_high": mean + half, "sem": sem,
                                "n_studies": n, "sign_p": test.p_value, **pooled})
    paired_table = pd.concat(paired, ignore_index=True) if paired else pd.DataFrame()
    if not paired_table.empty:
        first = ["model", "comparison", "study"]
        paired_table = paired_table[first + [c for c in paired_table if c not in first]]
    return PersonaResult(pd.DataFrame(rows), pd.DataFrame(summary), paired_table)


def _paired_benefit(frame: pd.DataFrame, model: str, reference: str, persona: str,
                    options: AnalysisOptions) -> tuple[pd.DataFrame, dict[str, float]] | None:
    """Benefit in nats on the responses scored under both conditions, per study and pooled."""
    with_persona = select(frame, model=model, condition=persona)
    without = select(frame, model=model, condition=reference)
    keys = with_persona[RESPONSE_KEY].merge(without[RESPONSE_KEY], on=RESPONSE_KEY)
    if keys.empty:
        return None
    a = without.merge(keys, on=RESPONSE_KEY)
    b = with_persona.merge(keys, on=RESPONSE_KEY)
    per_study = per_study_table(a, b, n_boot=max(200, options.n_boot // 2), ci=options.ci,
                                seed=options.seed)
    per_study = per_study.rename(columns={"mean_post": "mean_reference",
                                          "mean_base": "mean_persona", "mean_diff": "benefit"})
    per_study = per_study.drop(columns=["d_sample", "d_population"])
    pooled = bootstrap_effect(a, b, "mean_diff", name="persona benefit", levels=options.levels,
                              n_boot=options.n_boot, ci=options.ci, seed=options.seed,
                              units="nats")
    return per_study, {"benefit": pooled.estimate, "benefit_ci_low": pooled.ci_low,
                       "benefit_ci_high": pooled.ci_high,
                       "n_participants": int(per_study["n_participants"].sum()),
                       "n_responses": int(per_study["n_responses"].sum())}


def summarize(results: Results, registry: ModelRegistry,
              options: AnalysisOptions | None = None, *,
              option_counts: pd.DataFrame | None = None,
              population: bl.PopulationBaseline | None = None) -> Summary:
    """Run every applicable analysis on ``results`` (see the module docstring)."""
    options = options or AnalysisOptions()
    full = results.responses
    notes: list[str] = []
    condition = main_condition(full["condition"].unique(), options.condition)
    # Analyses select rows many times over: keep only the columns they read, and give the
    # pair analyses a table of the main condition alone.
    frame = full[[c for c in ANALYSIS_COLUMNS if c in full.columns]]
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
    points, fits = paper.size_scaling(select(main, studies=studies), registry,
                                      condition=condition)

    # pairs: registry pairs present + any the user named
    pairs = paper.pairs_present(main, registry, condition=condition, extra=options.extra_pairs)
    pair_df = pd.DataFrame()
    types = pd.DataFrame()
    pair_sign: Effect | None = None
    details: list[PairComparison] = []
    if pairs:
        pair_df, replicates = _pair_rows(main, pairs, registry, options, condition)
        notes.extend(_single_study_pairs(pair_df, main, condition, options))
        types = _group_intervals(paper.type_d(pair_df), pair_df, "post_training", replicates,
                                 options)
        if len(pair_df) >= 2:
            pair_sign = pair_share_positive(pair_df, replicates, options,
                                            n_responses=int(board["n_responses"].max()))
        for pair in pairs[: options.detail_pairs]:
            details.append(compare_pair(main, pair.post, pair.base, condition=condition,
                                        allow_missing=options.allow_missing,
                                        n_boot=options.n_boot, ci=options.ci,
                                        seed=options.seed, levels=options.levels))
    else:
        notes.append("no base/post-trained pair among the scored models: pair, type, domain "
                     "and generation analyses skipped (name one with --pair POST=BASE)")

    trend = paper.generation_trend(main, registry, condition=condition, sd=options.sd)
    generation = None if trend.base_scores.empty and trend.pair_d.empty else trend
    if generation is not None and not generation.mean_d.empty and not pair_df.empty:
        members = pair_df[pair_df["post"].isin(generation.pair_d["post"])]
        generation = paper.GenerationTrend(
            generation.base_scores, generation.pair_d,
            _group_intervals(generation.mean_d, members, "family", replicates, options))

    categories = load_categories(options.categories)
    domains = None
    if pairs:
        domains = paper.domain_d(main, pairs, categories, condition=condition,
                                 domains=PAPER_DOMAINS)
        if domains.empty:
            domains = None
            notes.append("no scored study is in categories.csv: domain analysis skipped")

    # accuracy on the discrete variant (or on the main condition's single-token responses)
    acc_study = acc_points = None
    discrete = conditions_with_role(frame["condition"].unique(), "discrete")
    acc_condition = discrete[0] if discrete else None
    if acc_condition is None and main["top1_correct"].notna().any():
        acc_condition = condition
    if acc_condition is not None:
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
        acc_points = acc_model.merge(info, on="model")
        acc_points["condition"] = acc_condition
    else:
        notes.append("no top-1 hits recorded: accuracy skipped")

    chat = None
    templates = conditions_with_role(frame["condition"].unique(), "chat-template")
    if templates:
        chat = paper.chat_template_control(frame, template_condition=templates[0],
                                           reference_condition=condition)
        info = registry.describe(list(chat["model"])).reset_index()
        chat = chat.merge(info, on="model")

    persona = _persona(frame, condition, options)

    r2 = None
    main_rows = select(main, studies=studies)
    if option_counts is not None or ("n_options" in frame.columns and
                                     main_rows["n_options"].notna().any()):
        _, r2 = bl.pseudo_r2(main_rows, condition=condition, counts=option_counts)
    else:
        notes.append("no option counts (n_options): random baseline and pseudo-R² skipped")

    pop = None
    if population is not None:
        pop = bl.against_population(main, population, condition=condition)

    return Summary(
        condition=condition, options=options, studies=tuple(studies), leaderboard=board,
        study_means=means, scaling_points=points, scaling_fits=fits, pairs=pair_df,
        type_d=types, pair_sign_test=pair_sign, pair_details=tuple(details),
        generation=generation, domains=domains, accuracy_per_study=acc_study,
        accuracy_points=acc_points, chat_template=chat, persona=persona, pseudo_r2=r2,
        population=pop, notes=tuple(notes),
    )
