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

from psych201.analysis import baselines as bl
from psych201.analysis import bootstrap as bs
from psych201.analysis import paper
from psych201.analysis.aggregate import Weighting, leaderboard, study_matrix
from psych201.analysis.conditions import condition_role, conditions_with_role, main_condition
from psych201.analysis.domains import PAPER_DOMAINS, load_categories
from psych201.analysis.effects import Effect, PairComparison, compare_pair, sign_test
from psych201.analysis.registry import ModelPair, ModelRegistry
from psych201.analysis.tables import Results, common_studies, select

#: Columns any analysis reads (the rest of a response table is carried by reports only).
ANALYSIS_COLUMNS = ("model", "condition", "study", "experiment", "participant", "line",
                    "response_index", "nll", "top1_correct", "n_options")


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
    """Per model and study: persona benefit d (and the shuffled-persona control where scored)."""

    per_study: pd.DataFrame  # model, study, d, comparison
    per_model: pd.DataFrame  # model, comparison, d, ci_low, ci_high, n_studies


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
               options: AnalysisOptions, condition: str) -> pd.DataFrame:
    """Paper pair d (chosen SD) with a paired bootstrap interval, per pair.

    ``frame`` holds the main condition only. The point estimate is the paper's (all studies each
    model has); the interval resamples the shared studies' participants and studies.
    """
    table = paper.pair_table(frame, pairs, registry, condition=condition, sd=options.sd)
    by_model = {str(m): g for m, g in frame.groupby("model", observed=True)}
    lows, highs, ps, n_parts = [], [], [], []
    for i, pair in enumerate(pairs):
        studies = common_studies(frame, [pair.post, pair.base], condition,
                                 allow_missing=options.allow_missing)
        a = select(by_model[pair.post], studies=studies)
        b = select(by_model[pair.base], studies=studies)
        arrays = bs.participant_arrays(a, b)
        result = bs.bootstrap(arrays, "d", levels=options.levels, n_boot=options.n_boot,
                              ci=options.ci, seed=options.seed + i, sd=options.sd)
        lows.append(result.ci_low)
        highs.append(result.ci_high)
        ps.append(result.p_value)
        n_parts.append(result.n_participants)
    table["ci_low"] = lows
    table["ci_high"] = highs
    table["p_value"] = ps
    table["n_participants"] = n_parts
    return table


def _persona(frame: pd.DataFrame, reference: str, options: AnalysisOptions,
             ) -> PersonaResult | None:
    conditions = list(frame["condition"].unique())
    persona = conditions_with_role(conditions, "persona")
    shuffled = conditions_with_role(conditions, "persona-shuffled")
    if not persona:
        return None
    rows, summary = [], []
    for p_cond in persona:
        for model in sorted(select(frame, condition=p_cond)["model"].unique()):
            comparisons = [(f"{p_cond} vs {reference}", reference,
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
                sem = float(np.nanstd(values, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
                summary.append({"model": model, "comparison": label,
                                "d": float(np.nanmean(values)) if n else math.nan,
                                "sem": sem, "n_studies": n, "sign_p": test.p_value})
    return PersonaResult(pd.DataFrame(rows), pd.DataFrame(summary))


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
        pair_df = _pair_rows(main, pairs, registry, options, condition)
        types = paper.type_d(pair_df)
        if len(pair_df) >= 2:
            pair_sign = sign_test(pair_df["d"], name="sign test across pairs", ci=options.ci,
                                  unit="pairs", n_studies=int(pair_df["n_studies"].max()),
                                  n_participants=int(pair_df["n_participants"].max()),
                                  n_responses=int(board["n_responses"].max()))
        for pair in pairs[: options.detail_pairs]:
            details.append(compare_pair(main, pair.post, pair.base, condition=condition,
                                        allow_missing=options.allow_missing,
                                        n_boot=options.n_boot, ci=options.ci,
                                        seed=options.seed, levels=options.levels))
    else:
        notes.append("no base/post-trained pair among the scored models: pair, type, domain "
                     "and generation analyses skipped (name one with --pair POST BASE)")

    trend = paper.generation_trend(main, registry, condition=condition)
    generation = None if trend.base_scores.empty and trend.pair_d.empty else trend

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


def control_conditions(conditions: list[str]) -> dict[str, list[str]]:
    """Conditions grouped by role (for display)."""
    out: dict[str, list[str]] = {}
    for c in sorted(conditions):
        out.setdefault(condition_role(c), []).append(c)
    return out
