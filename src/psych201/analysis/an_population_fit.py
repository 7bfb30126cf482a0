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

It needs the transcripts: ``context.extras["trials"]`` (:data:`EXTRAS_KEY`), the table of
:func:`~psych201.analysis.baselines.trial_responses` (keyed by the response key, with ``trial``,
``n_options`` and ``labels``), built by :func:`psych201.report.make.data_baselines`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

from psych201.analysis.conditions import conditions_with_role
from psych201.analysis.effects import fdr_q_values
from psych201.analysis.plugin import (
    AnalysisContext,
    Column,
    Section,
    SectionFigure,
    SectionTable,
)
from psych201.results.schema import RESPONSE_KEY

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: ``AnalysisContext.extras`` key of the trial table (see the module docstring).
EXTRAS_KEY = "trials"
#: A trial counts when at least this many participants saw it in the same form.
MIN_PARTICIPANTS = 5
#: Crowds drawn from the model for the floor and its test (p ≥ 2 / (draws + 1)).
FLOOR_DRAWS = 400
_COLUMNS = ("offered_options", "offered_logprobs")
_BLOCK_CELLS = 4_000_000  # replicates × cells computed at once


@dataclass(frozen=True)
class SharedTrials:
    """The shared-trial responses of one model in one study, as arrays.

    ``cell[r] = trial[r] * width + label index of the human choice``; ``probs[r]`` is the
    model's distribution over the trial's labels (zero-padded to ``width``); ``values[t]`` the
    numeric label values of trial ``t`` (NaN-padded; all NaN where the labels are not numbers).
    """

    participant: np.ndarray  # (R,) participant index
    trial: np.ndarray  # (R,) trial index
    cell: np.ndarray  # (R,)
    probs: np.ndarray  # (R, width)
    values: np.ndarray  # (T, width)
    n_participants: int

    @property
    def n_trials(self) -> int:
        return int(self.values.shape[0])

    @property
    def width(self) -> int:
        return int(self.values.shape[1])


def _label_order(labels: set[str]) -> list[str]:
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def shared_trials(rows: pd.DataFrame, trials: pd.DataFrame, *,
                  min_participants: int = MIN_PARTICIPANTS) -> tuple[SharedTrials | None, int]:
    """The responses of ``rows`` (one model, one study) at trials shared by ≥ ``min_participants``
    participants, and how many keyed responses were dropped because the options the model was
    asked about are not the options the transcript offered (or their log-probs are unusable)."""
    keyed = trials.dropna(subset=["trial"])[[*RESPONSE_KEY, "trial", "choice", "n_options",
                                             "labels"]]
    data = rows.dropna(subset=["offered_logprobs"])[[*RESPONSE_KEY, *_COLUMNS]]
    data = data.merge(keyed, on=RESPONSE_KEY, how="inner")
    dists: list[dict[str, float] | None] = []
    for options, logprobs, labels in zip(data["offered_options"], data["offered_logprobs"],
                                         data["labels"], strict=True):
        options = list(options) if options is not None else []
        lp = np.asarray(logprobs, dtype=float)
        if (sorted(options) != sorted(labels) or len(options) != len(lp)
                or not np.isfinite(lp.max(initial=-np.inf)) or np.isnan(lp).any()):
            dists.append(None)
            continue
        p = np.exp(lp - lp.max())
        p /= p.sum()
        dists.append({labels[o]: float(x) for o, x in zip(options, p, strict=True)})
    data = data.assign(dist=dists)
    dropped = int(data["dist"].isna().sum())
    data = data[data["dist"].notna()]
    group = ["trial", "n_options"]
    # participant ids are unique within an experiment only
    data = data.assign(person=data["experiment"].astype(str) + "\x00"
                       + data["participant"].astype(str))
    seen = data.groupby(group, observed=True)["person"].transform("nunique")
    data = data[seen >= min_participants]
    if data.empty:
        return None, dropped
    t_index = data.groupby(group, observed=True, sort=True).ngroup().to_numpy()
    label_sets: dict[int, set[str]] = {}
    for t, dist in zip(t_index, data["dist"], strict=True):
        label_sets.setdefault(int(t), set()).update(dist)
    orders = [_label_order(label_sets[t]) for t in range(len(label_sets))]
    width = max(len(o) for o in orders)
    values = np.full((len(orders), width), np.nan)
    for t, order in enumerate(orders):
        with contextlib.suppress(ValueError):  # labels that are not numbers: no values
            values[t, : len(order)] = [float(x) for x in order]
    position = [{label: k for k, label in enumerate(o)} for o in orders]
    probs = np.zeros((len(data), width))
    cell = np.empty(len(data), dtype=np.int64)
    for r, (t, dist, choice) in enumerate(zip(t_index, data["dist"], data["choice"],
                                              strict=True)):
        where = position[t]
        for label, x in dist.items():
            probs[r, where[label]] = x
        cell[r] = t * width + where[choice]
    participants = pd.factorize(data["person"])[0]
    return SharedTrials(participant=participants, trial=t_index.astype(np.int64), cell=cell,
                        probs=probs, values=values,
                        n_participants=int(participants.max()) + 1), dropped


# -- statistics ---------------------------------------------------------------------------------
def _by_participant(data: SharedTrials, cell: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per participant: choice counts per (trial, label) cell, summed model probabilities per
    cell, and responses per trial (dense; participants × cells)."""
    n_p, n_t, w = data.n_participants, data.n_trials, data.width
    counts = np.zeros((n_p, n_t * w))
    np.add.at(counts, (data.participant, cell), 1.0)
    probsum = np.zeros((n_p, n_t, w))
    np.add.at(probsum, (data.participant, data.trial), data.probs)
    n_resp = np.zeros((n_p, n_t))
    np.add.at(n_resp, (data.participant, data.trial), 1.0)
    return counts, probsum.reshape(n_p, n_t * w), n_resp


def _divergences(weights: np.ndarray, counts: np.ndarray, probsum: np.ndarray,
                 n_resp: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean JSD (bits) and mean W1 over trials, for each row of participant ``weights``."""
    # replicates × cells arrays: a block of replicates at a time bounds the memory
    block = max(1, _BLOCK_CELLS // max(counts.shape[1], 1))
    if weights.shape[0] > block:
        parts = [_divergences(weights[i: i + block], counts, probsum, n_resp, values)
                 for i in range(0, weights.shape[0], block)]
        return (np.concatenate([j for j, _ in parts]), np.concatenate([w for _, w in parts]))
    return _crowd_divergences(weights @ counts, weights @ probsum, weights @ n_resp, values)


def _crowd_divergences(counts: np.ndarray, probsum: np.ndarray, n: np.ndarray,
                       values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean JSD and W1 over trials of crowds given as rows of choice ``counts`` per cell,
    summed model probabilities per cell and responses per trial ``n`` (rows broadcast)."""
    n_t, w = values.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        f = counts.reshape(-1, n_t, w) / n[..., None]
        q = probsum.reshape(-1, n_t, w) / n[..., None]
        jsd = jensenshannon(q, f, axis=-1, base=2) ** 2
    seen = np.broadcast_to(n > 0, jsd.shape)
    numeric = ~np.isnan(values[:, 0])
    w1 = np.full(jsd.shape[0], np.nan)
    if numeric.any():
        gaps = np.nan_to_num(np.diff(values[numeric], axis=1))  # (Tn, w-1); 0 past the last
        cdf = np.abs(np.cumsum(q[:, numeric] - f[:, numeric], axis=-1))[..., :-1]
        w1 = _mean_seen((cdf * gaps).sum(axis=-1), seen[:, numeric])
    return _mean_seen(jsd, seen), w1


def _mean_seen(x: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Row means of ``x`` over the trials a replicate has responses at (NaN: none)."""
    count = seen.sum(axis=1)
    total = np.where(seen, x, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _floor_divergences(data: SharedTrials, rng: np.random.Generator,
                       draws: int) -> tuple[np.ndarray, np.ndarray]:
    """JSD and W1 of ``draws`` crowds with every response's choice redrawn from the model's
    prediction for it (the same participants, trials and numbers of responses)."""
    cdf = np.cumsum(data.probs, axis=1)
    cdf[cdf >= 1 - 1e-12] = np.inf  # rounding below 1 must not reach a padded label
    cells = data.n_trials * data.width
    probsum = _summed(data)
    n = np.bincount(data.trial, minlength=data.n_trials)[None, :].astype(float)
    block = max(1, _BLOCK_CELLS // max(len(data.cell) * data.width, cells, 1))
    jsd, w1 = [], []
    for start in range(0, draws, block):
        d = min(block, draws - start)
        picks = (rng.random((d, len(data.cell)))[..., None] >= cdf).sum(axis=-1)
        offset = np.arange(d)[:, None] * cells
        counts = np.bincount((offset + data.trial * data.width + picks).ravel(),
                             minlength=d * cells).reshape(d, cells).astype(float)
        j, w = _crowd_divergences(counts, probsum, n, data.values)
        jsd.append(j)
        w1.append(w)
    return np.concatenate(jsd), np.concatenate(w1)


def _summed(data: SharedTrials) -> np.ndarray:
    """The model's probabilities summed per (trial, label) cell, as one row."""
    out = np.zeros((data.n_trials, data.width))
    np.add.at(out, data.trial, data.probs)
    return out.reshape(1, -1)


#: Power of the floor test at level 0.05, 40 participants per trial, as measured by seeded
#: simulation (quoted in the section's text): the slow test in tests/
#: test_analysis_population_fit.py (40 logistic trials: 51 % at T = 1.4, 54 % at T = 0.7, size
#: 5.6 %) and simulated risky choice (30 shared trials, 80 datasets: 51 %, 28 %, size 5.0 %).
POWER_T14, POWER_T07 = "about half", "28–54 %"
#: The verdicts of the floor test (see :class:`PopulationFitResult`).
ABOVE, AT, BELOW = "above floor", "at floor", "below floor (under-dispersed crowd)"


@dataclass(frozen=True)
class FloorTest:
    """Observed divergence against the model's own simulated divergences (parametric
    bootstrap: every response redrawn from the model's prediction for it, at the humans' n)."""

    observed: float
    simulated: np.ndarray  # (draws,)

    @property
    def floor(self) -> float:
        """The divergence expected from sampling a finite crowd from the model."""
        return float(np.nanmean(self.simulated)) if np.isfinite(self.simulated).any() \
            else math.nan

    def p_value(self) -> float:
        """Two-sided: twice the smaller tail of the simulated divergences at the observed one
        (each tail counts the observation itself, so p ≥ 2 / (draws + 1))."""
        sim = self.simulated[np.isfinite(self.simulated)]
        if not len(sim) or not math.isfinite(self.observed):
            return math.nan
        upper = (1 + np.sum(sim >= self.observed)) / (1 + len(sim))
        lower = (1 + np.sum(sim <= self.observed)) / (1 + len(sim))
        return float(min(1.0, 2 * min(upper, lower)))

    def excess_range(self, ci: float) -> tuple[float, float]:
        """``observed − floor`` ± the floor's sampling spread: the excess values the model's own
        crowds do not reject at ``1 − ci`` (excludes 0 exactly when the test rejects)."""
        sim = self.simulated[np.isfinite(self.simulated)]
        if not len(sim) or not math.isfinite(self.observed):
            return (math.nan, math.nan)
        tail = 100 * (1 - ci) / 2
        lo, hi = np.percentile(sim, [tail, 100 - tail], method="inverted_cdf")
        return (float(self.observed - hi), float(self.observed - lo))

    def verdict(self, ci: float) -> str:
        """:data:`ABOVE`, :data:`AT` or :data:`BELOW` at level ``1 − ci``."""
        p = self.p_value()
        if not math.isfinite(p) or p >= 1 - ci:
            return AT
        return ABOVE if self.observed > self.floor else BELOW


@dataclass(frozen=True)
class PopulationFitResult:
    """One model in one study: the divergences, their participant-bootstrap intervals, and the
    floor test of each (``w1_test`` is ``None`` where the options are not numbers)."""

    n_trials: int
    n_participants: int
    n_responses: int
    ci: float
    jsd: float
    jsd_ci: tuple[float, float]
    w1: float
    w1_ci: tuple[float, float]
    jsd_test: FloorTest
    w1_test: FloorTest | None

    @property
    def floor(self) -> float:
        return self.jsd_test.floor

    @property
    def excess(self) -> float:
        return self.jsd - self.floor

    @property
    def excess_ci(self) -> tuple[float, float]:
        return self.jsd_test.excess_range(self.ci)

    @property
    def p_value(self) -> float:
        return self.jsd_test.p_value()

    @property
    def verdict(self) -> str:
        return self.jsd_test.verdict(self.ci)

    @property
    def above_floor(self) -> bool:
        return self.verdict == ABOVE


def population_fit(data: SharedTrials, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0,
                   floor_draws: int = FLOOR_DRAWS) -> PopulationFitResult:
    """JSD and W1 of one model in one study, with participant-bootstrap intervals (``n_boot``
    replicates; 0: none), and the floor test of each against ``floor_draws`` crowds drawn from
    the model itself."""
    rng = np.random.default_rng(seed)
    counts, probsum, n_resp = _by_participant(data, data.cell)
    ones = np.ones((1, data.n_participants))
    jsd, w1 = (float(x[0]) for x in _divergences(ones, counts, probsum, n_resp, data.values))
    # The floor: the same participants and trials, every choice redrawn from the model.
    sim_jsd, sim_w1 = _floor_divergences(data, rng, max(floor_draws, 1))
    tail = 100 * (1 - ci) / 2

    def interval(point: float, x: np.ndarray) -> tuple[float, float]:
        # Resampling participants adds sampling noise, which biases every resampled divergence
        # upwards (by about the floor): the percentile interval is shifted by that bias, so it
        # is centred where the estimate is.
        x = x[np.isfinite(x)]
        if not len(x) or not math.isfinite(point):
            return (math.nan, math.nan)
        bias = float(x.mean()) - point
        lo, hi = np.percentile(x, [tail, 100 - tail])
        return (float(lo - bias), float(hi - bias))

    jsd_ci = w1_ci = (math.nan, math.nan)
    if n_boot > 0:
        weights = rng.multinomial(data.n_participants,
                                  np.full(data.n_participants, 1 / data.n_participants),
                                  size=n_boot).astype(float)
        jsd_b, w1_b = _divergences(weights, counts, probsum, n_resp, data.values)
        jsd_ci, w1_ci = interval(jsd, jsd_b), interval(w1, w1_b)
    return PopulationFitResult(
        n_trials=data.n_trials, n_participants=data.n_participants,
        n_responses=len(data.cell), ci=ci, jsd=jsd, jsd_ci=jsd_ci, w1=w1, w1_ci=w1_ci,
        jsd_test=FloorTest(jsd, sim_jsd),
        w1_test=FloorTest(w1, sim_w1) if math.isfinite(w1) else None)


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
    columns: Sequence[str] = _COLUMNS

    def skip(self, context: AnalysisContext) -> str | None:
        if EXTRAS_KEY not in context.extras:
            return ("population-level fit skipped: it needs the transcripts to find shared trials "
                    "(pass the scored dataset: compare/report --data)")
        if _scored_rows(context) is None:
            return ("no model recorded offered_logprobs in the main condition or a discrete "
                    "variant (one-token responses and options, an engine that reports candidates)")
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        trials: pd.DataFrame = context.extras[EXTRAS_KEY]
        found = _scored_rows(context)
        assert found is not None
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


def _scored_rows(context: AnalysisContext) -> tuple[pd.DataFrame, str] | None:
    """The rows to fit and their condition: the main condition's where it recorded the offered
    options' log-probs, else the first discrete variant's that did (``None``: neither did)."""
    main = context.main_rows(_COLUMNS)
    if _has_logprobs(main):
        return main, context.condition
    for condition in conditions_with_role(context.frame["condition"].unique(), "discrete"):
        rows = context.condition_rows(condition, _COLUMNS)
        if _has_logprobs(rows):
            return rows, condition
    return None


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
