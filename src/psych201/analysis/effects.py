"""Effects with uncertainty: paired differences, bootstrap intervals, mixed models, sign tests.

Two models that scored the same responses are a *paired* design: the response, the participant
and the study are shared, so most of the variation cancels in the per-response difference. The
paper's d (:mod:`psych201.analysis.paper`) treats the two score sets as independent samples; the
effects here keep the pairing and attach to every number an interval, a p-value and its n.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from psych201.analysis import bootstrap as bs
from psych201.analysis.tables import check_same_responses, common_studies, select
from psych201.results.schema import RESPONSE_KEY


@dataclass(frozen=True)
class Effect:
    """One reported effect: estimate, interval, p-value (H0: no effect) and sample sizes."""

    name: str
    estimate: float
    ci_low: float
    ci_high: float
    ci_level: float
    p_value: float
    n_studies: int
    n_participants: int
    n_responses: int
    method: str
    units: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_bootstrap(cls, name: str, result: bs.BootstrapResult, method: str,
                       units: str = "") -> Effect:
        return cls(
            name=name,
            estimate=result.estimate,
            ci_low=result.ci_low,
            ci_high=result.ci_high,
            ci_level=result.ci_level,
            p_value=result.p_value,
            n_studies=result.n_studies,
            n_participants=result.n_participants,
            n_responses=result.n_responses,
            method=method,
            units=units,
        )


def effects_frame(effects: Sequence[Effect]) -> pd.DataFrame:
    return pd.DataFrame([e.to_dict() for e in effects])


# -- paired differences -------------------------------------------------------------------------
def paired_differences(frame: pd.DataFrame, post: str, base: str, *, condition: str,
                       studies: Sequence[str] | None = None,
                       allow_missing: bool = False) -> pd.DataFrame:
    """One row per response scored by both models: ``nll_post``, ``nll_base``, ``diff``.

    ``diff = nll_post − nll_base`` (positive = the post-trained model finds the human response
    less likely). Responses scored by one model only are refused unless ``allow_missing``.
    """
    a = select(frame, model=post, condition=condition, studies=studies)
    b = select(frame, model=base, condition=condition, studies=studies)
    check_same_responses(a, b, (post, base), allow_missing=allow_missing)
    merged = a[[*RESPONSE_KEY, "nll"]].merge(
        b[[*RESPONSE_KEY, "nll"]], on=RESPONSE_KEY, suffixes=("_post", "_base"), how="inner"
    )
    merged["diff"] = merged["nll_post"] - merged["nll_base"]
    return merged


# -- bootstrap effects --------------------------------------------------------------------------
def bootstrap_effect(a: pd.DataFrame, b: pd.DataFrame | None, statistic: bs.Statistic, *,
                     name: str, value: str = "nll", levels: bs.Levels = "both",
                     n_boot: int = 2000, ci: float = 0.95, seed: int = 0,
                     sd: bs.SD = "sample", units: str = "") -> Effect:
    """Bootstrap ``statistic`` of arm ``a`` (minus arm ``b``) over studies and participants."""
    arrays = bs.participant_arrays(a, b, value=value)
    result = bs.bootstrap(arrays, statistic, levels=levels, n_boot=n_boot, ci=ci, seed=seed, sd=sd)
    method = f"bootstrap ({levels}; {n_boot} replicates; {result.interval_method})"
    return Effect.from_bootstrap(name, result, method, units)


# -- mixed model --------------------------------------------------------------------------------
def _unfitted(name: str, data: pd.DataFrame, ci: float, n_studies: int, n_participants: int,
              n_responses: int, level: str) -> Effect:
    """The mixed model's row where it cannot be fitted: the plain mean, no interval or p."""
    return Effect(name, float(data["diff"].mean()), math.nan, math.nan, ci, math.nan,
                  n_studies, n_participants, n_responses,
                  f"mixed model ({level} level) cannot be fitted: with one participant per study "
                  "(or too few) the study and participant variances cannot be told apart")


def mixed_model_effect(diffs: pd.DataFrame, *, level: Literal["participant", "response"] =
                       "participant", ci: float = 0.95,
                       name: str = "mixed model: mean difference") -> Effect:
    """Mean paired difference from a linear mixed model with study and participant effects.

    ``level="response"`` fits ``diff ~ 1 + (1 | study) + (1 | participant)`` on every response
    (statsmodels MixedLM, participant as a variance component nested in study): exact but slow
    beyond ~10⁵ responses. ``level="participant"`` (default) fits ``mean diff ~ 1 + (1 | study)``
    on participant means: the participant effect and response noise merge into the residual, the
    usual two-stage equivalent, fast on any table. The intercept weights studies by precision
    (between the paper's equal weights and pooling).
    """
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    frame = diffs.copy()
    frame["pid"] = frame["experiment"].astype(str) + "\x1f" + frame["participant"].astype(str)
    n_studies = int(frame["study"].nunique())
    n_participants = int(frame.groupby("study", observed=True)["pid"].nunique().sum())
    n_responses = len(frame)
    if level == "participant":
        data = frame.groupby(["study", "pid"], as_index=False, observed=True)["diff"].mean()
        model = smf.mixedlm("diff ~ 1", data, groups=data["study"])
    elif level == "response":
        data = frame[["study", "pid", "diff"]]
        model = smf.mixedlm("diff ~ 1", data, groups=data["study"], re_formula="1",
                            vc_formula={"participant": "0 + C(pid)"})
    else:
        raise ValueError(f"level must be participant or response, not {level!r}")
    if n_studies < 2:
        return Effect(name, float(data["diff"].mean()), math.nan, math.nan, ci, math.nan,
                      n_studies, n_participants, n_responses,
                      f"mixed model ({level} level) needs ≥ 2 studies")
    if n_participants <= n_studies:  # one participant per study: its mean is the study's
        return _unfitted(name, data, ci, n_studies, n_participants, n_responses, level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            fit = model.fit(reml=True)
        except np.linalg.LinAlgError:  # a singular covariance: too few participants per study
            return _unfitted(name, data, ci, n_studies, n_participants, n_responses, level)
    est = float(fit.fe_params["Intercept"])
    # The intercept is a mean over studies: a Wald z would claim p < 0.001 from 2 studies.
    # Its reference distribution is t with (studies − 1) df (the between-study df).
    se = float(fit.bse_fe["Intercept"])
    df = n_studies - 1
    half = float(sps.t.ppf(1 - (1 - ci) / 2, df)) * se
    low, high = est - half, est + half
    p = float(2 * sps.t.sf(abs(est) / se, df)) if se > 0 else math.nan
    method = (f"linear mixed model, {level} level (statsmodels MixedLM, REML; t interval with "
              f"{df} df over studies)")
    return Effect(name, est, low, high, ci, p, n_studies, n_participants, n_responses, method,
                  "nats")


# -- sign test ----------------------------------------------------------------------------------
def sign_test(values: Sequence[float] | np.ndarray, *, name: str, ci: float = 0.95,
              unit: str = "pairs", n_studies: int = 0, n_participants: int = 0,
              n_responses: int = 0) -> Effect:
    """Two-sided sign test: do more of ``values`` lie above zero than chance allows?

    The estimate is the share of positive values among the non-zero ones, with its exact
    (Clopper–Pearson) interval; it makes no assumption about the values' scale or spread.
    """
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    positive = int((arr > 0).sum())
    nonzero = int((arr != 0).sum())
    if nonzero == 0:
        return Effect(name, math.nan, math.nan, math.nan, ci, math.nan, n_studies,
                      n_participants, n_responses, f"sign test over {len(arr)} {unit}", "share")
    test = sps.binomtest(positive, nonzero, 0.5)
    interval = test.proportion_ci(confidence_level=ci, method="exact")
    return Effect(
        name, positive / nonzero, float(interval.low), float(interval.high), ci,
        float(test.pvalue), n_studies, n_participants, n_responses,
        f"sign test over {nonzero} {unit} ({positive} positive)", "share positive",
    )


# -- multiplicity ---------------------------------------------------------------------------------
def fdr_q_values(p_values: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values over the finite ones (NaN stays NaN).

    Many tests at once (pairs, studies): a q-value below 0.05 keeps the expected share of false
    discoveries among those called significant at 5 % (statsmodels ``fdr_bh``).
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        out[finite] = multipletests(p[finite], method="fdr_bh")[1]
    return out


# -- a full pair comparison ---------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PairComparison:
    """Every effect of one post-trained model against its base, on their shared responses."""

    post: str
    base: str
    condition: str
    studies: tuple[str, ...]
    effects: tuple[Effect, ...]
    per_study: pd.DataFrame
    unmatched_responses: int
    notes: tuple[str, ...] = ()

    def effect(self, name: str) -> Effect:
        for e in self.effects:
            if e.name == name:
                return e
        raise KeyError(name)

    def effects_frame(self) -> pd.DataFrame:
        return effects_frame(self.effects)


#: Names of the effects :func:`compare_pair` reports (stable: the report and CLI refer to them).
PAPER_D_SAMPLE = "paper d (sample SD)"
PAPER_D_POPULATION = "paper d (population SD)"
MEAN_DIFF = "mean NLL difference"
MIXED = "mixed model: mean difference"
SIGN_STUDIES = "sign test across studies"
PAIRED_DIFF = "paired difference per participant"
PAIRED_D = "paired d (per-participant differences)"

#: Fewest studies a two-sided sign test over studies can reach p < 0.05 with (2 · 0.5⁶ = 0.031).
MIN_SIGN_STUDIES = 6


def paired_participant_effects(a: pd.DataFrame, b: pd.DataFrame, *, n_boot: int = 2000,
                               ci: float = 0.95, seed: int = 0) -> tuple[Effect, Effect]:
    """The one-study headline: per-participant mean differences, their mean and paired d.

    Each participant's mean NLL difference (post − base, over that participant's responses) is
    one paired observation; the estimate is their mean in nats and the paired d (mean / SD of
    the per-participant differences, Cohen's d_z). Participants are resampled (the study is
    fixed: it is the only one), and interval and p come from :func:`~psych201.analysis.
    bootstrap.infer` like every other interval.
    """
    arrays = bs.participant_arrays(a, b)
    col = bs.COLUMN_INDEX
    table = np.vstack(arrays.stats)
    both = (table[:, col["has_a"]] > 0) & (table[:, col["has_b"]] > 0)
    diffs = (table[both, col["m_a"]] - table[both, col["m_b"]])
    n = diffs.size
    rng = np.random.default_rng(seed)
    picks = diffs[rng.integers(0, max(n, 1), size=(n_boot, n))] if n else np.empty((n_boot, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_reps = picks.mean(axis=1)
        d_reps = mean_reps / picks.std(axis=1, ddof=1)
        mean = float(diffs.mean()) if n else math.nan
        d = mean / float(diffs.std(ddof=1)) if n > 1 else math.nan
    sizes = (arrays.n_studies, n, arrays.n_responses)
    out = []
    for name, point, reps, units in ((PAIRED_DIFF, mean, mean_reps, "nats"),
                                     (PAIRED_D, d, d_reps, "d_z")):
        got = bs.infer(reps, ci, n, n - 1, point=point, unit="participants")
        out.append(Effect(name, point, got.ci_low, got.ci_high, ci, got.p_value, *sizes,
                          f"participant bootstrap ({n_boot} replicates; {got.method})", units))
    return out[0], out[1]


def per_study_table(a: pd.DataFrame, b: pd.DataFrame, *, n_boot: int = 1000, ci: float = 0.95,
                    seed: int = 0) -> pd.DataFrame:
    """Per study: means, both paper d's, mean paired difference with a participant bootstrap CI."""
    arrays = bs.participant_arrays(a, b)
    d_sample = bs.per_study(arrays, "d", sd="sample")
    d_population = bs.per_study(arrays, "d", sd="population")
    diff = bs.per_study(arrays, "mean_diff")
    rows = []
    for i, study in enumerate(arrays.studies):
        one = bs.StudyArrays((study,), (arrays.stats[i],))
        reps = bs.resample(one, "mean_diff", levels="participants", n_boot=n_boot, seed=seed + i)
        n_units, df = len(arrays.stats[i]), len(arrays.stats[i]) - 1
        low, high = bs.interval(reps, ci, n_units, df, point=float(diff[i]))
        table = arrays.stats[i]
        col = bs.COLUMN_INDEX
        rows.append(
            {
                "study": study,
                "n_participants": len(table),
                "n_responses": int(table[:, col["n_a"]].sum()),
                "mean_post": float(table[:, col["s_a"]].sum() / table[:, col["n_a"]].sum()),
                "mean_base": float(table[:, col["s_b"]].sum() / table[:, col["n_b"]].sum()),
                "mean_diff": float(diff[i]),
                "ci_low": low,
                "ci_high": high,
                "d_sample": float(d_sample[i]),
                "d_population": float(d_population[i]),
            }
        )
    return pd.DataFrame(rows)


def compare_pair(frame: pd.DataFrame, post: str, base: str, *, condition: str,
                 allow_missing: bool = False, n_boot: int = 2000, ci: float = 0.95,
                 seed: int = 0, levels: bs.Levels = "both",
                 mixed_level: Literal["participant", "response"] | None = "participant",
                 ) -> PairComparison:
    """All effect sizes of ``post`` against ``base`` under ``condition``.

    Positive values mean the post-trained model fits the human responses worse. Reports the
    paper's d with both SD conventions (each with a bootstrap interval), the mean paired NLL
    difference in nats, a mixed model of the differences and a sign test over studies.
    """
    studies = common_studies(frame, [post, base], condition, allow_missing=allow_missing)
    diffs = paired_differences(frame, post, base, condition=condition, studies=studies,
                               allow_missing=allow_missing)
    a = select(frame, model=post, condition=condition, studies=studies)
    b = select(frame, model=base, condition=condition, studies=studies)
    unmatched = len(a) + len(b) - 2 * len(diffs)
    if allow_missing and unmatched:
        # pair on the common responses only, so both sides describe the same human data
        keys = diffs[RESPONSE_KEY]
        a = a.merge(keys, on=RESPONSE_KEY)
        b = b.merge(keys, on=RESPONSE_KEY)
    notes: list[str] = []
    if unmatched:
        notes.append(f"{unmatched} responses scored by only one of the two models are left out: "
                     "every effect compares the two models on the same human responses")
    if len(studies) < 2 and levels != "participants":
        # one study: its participants are the only units to resample
        levels = "participants"
        notes.append(f"one shared study ({studies[0] if studies else '–'}): the headline is the "
                     "paired per-participant difference with a participant bootstrap; effects "
                     "across studies (mixed model, sign test) need at least 2 studies")
    kw: dict[str, Any] = {"levels": levels, "n_boot": n_boot, "ci": ci, "seed": seed}
    effects: list[Effect] = []
    if len(studies) < 2:
        effects.extend(paired_participant_effects(a, b, n_boot=n_boot, ci=ci, seed=seed))
    effects += [
        bootstrap_effect(a, b, "d", name=PAPER_D_SAMPLE, sd="sample", units="d", **kw),
        bootstrap_effect(a, b, "d", name=PAPER_D_POPULATION, sd="population", units="d", **kw),
        bootstrap_effect(a, b, "mean_diff", name=MEAN_DIFF, units="nats", **kw),
    ]
    if mixed_level is not None and len(studies) >= 2:
        effects.append(mixed_model_effect(diffs, level=mixed_level, ci=ci, name=MIXED))
    per_study = per_study_table(a, b, n_boot=max(200, n_boot // 2), ci=ci, seed=seed)
    if len(per_study) >= MIN_SIGN_STUDIES:
        effects.append(
            sign_test(per_study["mean_diff"], name=SIGN_STUDIES, ci=ci, unit="studies",
                      n_studies=len(per_study),
                      n_participants=int(per_study["n_participants"].sum()),
                      n_responses=int(per_study["n_responses"].sum())))
    elif len(per_study) >= 2:
        notes.append(f"no sign test across studies: with {len(per_study)} studies it cannot "
                     f"reach p < 0.05 (needs at least {MIN_SIGN_STUDIES})")
    return PairComparison(post, base, condition, tuple(studies), tuple(effects), per_study,
                          unmatched, tuple(notes))
