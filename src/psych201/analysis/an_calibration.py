"""Calibration control: how much of the NLL and of a post-training gap a temperature explains.

An over-confident model puts too much probability on its favourite response; dividing its logits
by a temperature T > 1 flattens the distribution and may recover most of its loss. If a
post-trained model predicts people worse than its base *only* because it is sharper, one
temperature per study removes the gap; what remains is a change in *what* the model expects.

The engines record, per response, the NLL at every temperature of
:data:`~psych201.results.schema.TEMPERATURE_GRID` (``nll_temperature``). Per (model, study):

* **Cross-fitting over participants.** Participants are split into ``K`` folds (5, fewer with
  fewer participants; a study with < 2 participants is not fitted). For each fold, the
  temperature minimising the mean NLL of the *other* folds' responses is chosen and the fold's
  own responses are scored at it, so no response is ever evaluated at a temperature fitted on it.
  The reported temperature is the fit on all participants, with the range across folds.
* **Fitting.** The mean NLL curve is minimised over the grid, then refined by the vertex of the
  parabola through the best grid point and its two neighbours in log T (clamped to the grid:
  at an end point the end point is kept).
* **Scoring at a temperature between grid points.** Each response's NLL curve is interpolated
  quadratically in log T through the three grid points nearest T (the nearest and its two
  neighbours; Lagrange form, clipped at 0). The grid is 9.7 % wide in T and the curves are
  smooth (an NLL is convex in 1/T), so the error is far below sampling noise; the interpolated
  held-out mean is exactly the refining parabola's value when the folds agree.

Only responses with a complete ``nll_temperature`` enter; models without it are skipped with a
note. Pairs (post-trained vs base) are compared with :func:`~psych201.analysis.effects.compare_pair`
on the responses both models calibrated, once on the plain NLL and once on the calibrated NLL,
and the share of the mean gap a temperature removes (1 − after/before) gets its interval from the
same bootstrap replicates as the two differences.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from psych201.analysis import bootstrap as bs
from psych201.analysis.effects import (
    MEAN_DIFF,
    PAPER_D_POPULATION,
    PAPER_D_SAMPLE,
    Effect,
    bootstrap_effect,
    compare_pair,
)
from psych201.analysis.plugin import (
    AnalysisContext,
    Column,
    ColumnFormat,
    Section,
    SectionFigure,
    SectionTable,
)
from psych201.analysis.registry import TYPE_LABELS, ModelPair
from psych201.analysis.tables import select
from psych201.results.schema import RESPONSE_KEY, TEMPERATURE_GRID

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLUMN = "nll_temperature"
_ONE = TEMPERATURE_GRID.index(1.0)  # the column that must equal the plain NLL
#: Default number of participant folds of the cross-fit.
N_FOLDS = 5


# -- one curve ----------------------------------------------------------------------------------
def fit_temperature(curve: Sequence[float] | np.ndarray,
                    grid: Sequence[float] = TEMPERATURE_GRID) -> float:
    """The temperature minimising a mean-NLL ``curve`` given at ``grid`` (grid min + parabola).

    The best grid point is refined by the vertex of the parabola through it and its neighbours
    in log T, clamped to their span; a minimum at either end of the grid stays there.
    """
    y = np.asarray(curve, dtype=float)
    x = np.log(np.asarray(grid, dtype=float))
    if y.shape != x.shape or not np.isfinite(y).all():
        raise ValueError(f"need {len(x)} finite NLL values, one per grid temperature")
    i = int(np.argmin(y))
    if i == 0 or i == len(x) - 1:
        return float(grid[i])
    x0, x1, x2 = x[i - 1: i + 2]
    y0, y1, y2 = y[i - 1: i + 2]
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    if den == 0:  # flat around the minimum: the grid point is as good as any
        return float(grid[i])
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    vertex = float(np.clip(x1 - 0.5 * num / den, x0, x2))
    return math.exp(vertex)


def nll_at(matrix: np.ndarray, temperature: float,
           grid: Sequence[float] = TEMPERATURE_GRID) -> np.ndarray:
    """Each row's NLL at ``temperature``: quadratic interpolation in log T (see module notes).

    ``matrix`` has one row per response and one column per grid temperature; ``temperature``
    is clamped to the grid's range. At a grid point this is exactly that column.
    """
    x = np.log(np.asarray(grid, dtype=float))
    rows = np.atleast_2d(np.asarray(matrix, dtype=float))
    t = float(np.clip(math.log(temperature), x[0], x[-1]))
    j = int(np.clip(np.argmin(np.abs(x - t)), 1, len(x) - 2))
    hit = np.flatnonzero(x == t)
    if hit.size:
        return rows[:, int(hit[0])].copy()
    x0, x1, x2 = x[j - 1: j + 2]
    weights = np.array([
        (t - x1) * (t - x2) / ((x0 - x1) * (x0 - x2)),
        (t - x0) * (t - x2) / ((x1 - x0) * (x1 - x2)),
        (t - x0) * (t - x1) / ((x2 - x0) * (x2 - x1)),
    ])
    return np.maximum(rows[:, j - 1: j + 2] @ weights, 0.0)


# -- cross-fitting ------------------------------------------------------------------------------
def participant_folds(n_participants: int, *, n_folds: int = N_FOLDS, seed: int = 0,
                      salt: str = "") -> np.ndarray:
    """Fold (0 … k−1) of each participant: a seeded permutation dealt round-robin.

    ``k = min(n_folds, n_participants)``; ``salt`` (the study) varies the split between studies
    while keeping it the same for every model of a study, so pairs see the same folds.
    """
    k = min(n_folds, n_participants)
    if k < 2:
        raise ValueError("cross-fitting needs at least 2 participants")
    rng = np.random.default_rng([seed, zlib.crc32(salt.encode())])
    folds = np.empty(n_participants, dtype=np.intp)
    folds[rng.permutation(n_participants)] = np.arange(n_participants) % k
    return folds


@dataclass(frozen=True, eq=False)
class CrossFit:
    """One (model, study): the all-participant fit and each response's held-out calibration."""

    temperature: float  # fitted on every participant (reported; never used for scoring)
    fold_temperatures: np.ndarray  # per fold, fitted on the other folds
    fold: np.ndarray  # per response
    row_temperature: np.ndarray  # per response: the temperature it was scored at
    calibrated: np.ndarray  # per response: NLL at its fold's temperature


def cross_fit(matrix: np.ndarray, participant: np.ndarray, *, n_folds: int = N_FOLDS,
              seed: int = 0, salt: str = "", folds: np.ndarray | None = None,
              grid: Sequence[float] = TEMPERATURE_GRID) -> CrossFit:
    """Cross-fit one temperature over participants (module notes).

    ``participant`` holds each row's participant code (0 … P−1); ``folds`` (one fold per
    participant) overrides the seeded split.
    """
    matrix = np.asarray(matrix, dtype=float)
    codes = np.asarray(participant, dtype=np.intp)
    n_participants = int(codes.max()) + 1 if codes.size else 0
    if folds is None:
        folds = participant_folds(n_participants, n_folds=n_folds, seed=seed, salt=salt)
    row_fold = np.asarray(folds)[codes]
    fold_ids = np.unique(row_fold)
    if len(fold_ids) < 2:
        raise ValueError("cross-fitting needs at least 2 folds")
    fold_t = np.empty(len(fold_ids))
    row_t = np.empty(len(matrix))
    calibrated = np.empty(len(matrix))
    for n, k in enumerate(fold_ids):
        held = row_fold == k
        fold_t[n] = fit_temperature(matrix[~held].mean(axis=0), grid)
        row_t[held] = fold_t[n]
        calibrated[held] = nll_at(matrix[held], fold_t[n], grid)
    full = fit_temperature(matrix.mean(axis=0), grid)
    return CrossFit(full, fold_t, row_fold, row_t, calibrated)


def _usable(value: Any, n: int) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) and len(value) == n


def temperature_matrix(frame: pd.DataFrame, grid: Sequence[float] = TEMPERATURE_GRID,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a complete, finite, non-negative ``nll_temperature`` and their matrix."""
    n = len(grid)
    if COLUMN not in frame.columns:
        return np.zeros(len(frame), dtype=bool), np.empty((0, n))
    values = frame[COLUMN].to_numpy(dtype=object)
    ok = np.fromiter((_usable(v, n) for v in values), dtype=bool, count=len(values))
    matrix = (np.array([np.asarray(v, dtype=float) for v in values[ok]]) if ok.any()
              else np.empty((0, n)))
    good = np.isfinite(matrix).all(axis=1) & (matrix >= 0).all(axis=1)
    ok[np.flatnonzero(ok)[~good]] = False
    return ok, matrix[good]


# -- the whole table ----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Calibration:
    """Calibration of every model and study of one condition."""

    responses: pd.DataFrame  # model, RESPONSE_KEY, nll, nll_calibrated, temperature, fold
    per_study: pd.DataFrame
    per_model: pd.DataFrame
    curves: pd.DataFrame  # model, temperature, nll: study-weighted mean NLL at each grid point
    skipped: dict[str, str]  # model → why it was not calibrated
    notes: tuple[str, ...]


_PER_STUDY = ["model", "study", "n_participants", "n_responses", "n_folds", "temperature",
              "temperature_low", "temperature_high", "nll", "nll_calibrated", "gain"]
_PER_MODEL = ["model", "n_studies", "n_responses", "temperature", "temperature_low",
              "temperature_high", "nll", "nll_calibrated", "gain"]


def calibrate(frame: pd.DataFrame, *, condition: str | None = None,
              studies: Sequence[str] | None = None, n_folds: int = N_FOLDS,
              seed: int = 0) -> Calibration:
    """Cross-fitted temperatures and calibrated NLLs of every model (module notes).

    ``frame`` holds response rows (``nll`` and ``nll_temperature``); ``condition`` and
    ``studies`` restrict them. Per model, study-weighted means (mean per study, then over
    studies); the model's temperature is the geometric mean of its per-study fits.
    """
    rows = select(frame, condition=condition, studies=studies)
    ok, matrix = temperature_matrix(rows)
    rows = rows.assign(_ok=ok)
    position = np.full(len(rows), -1)
    position[ok] = np.arange(int(ok.sum()))
    rows = rows.assign(_pos=position)
    skipped: dict[str, str] = {}
    notes: list[str] = []
    kept: list[pd.DataFrame] = []
    per_study: list[dict[str, Any]] = []
    curves: dict[str, list[np.ndarray]] = {}
    for model, group in rows.groupby("model", observed=True, sort=True):
        model = str(model)
        usable = group[group["_ok"].to_numpy()]
        if usable.empty:
            skipped[model] = ("no response carries nll_temperature (its engine could not record "
                              "the NLL at other temperatures, or the table predates the column)")
            continue
        if len(usable) < len(group):
            notes.append(f"{model}: {len(group) - len(usable)} of {len(group)} responses lack "
                         f"nll_temperature and are left out of the calibration control")
        at_one = matrix[usable["_pos"].to_numpy(), _ONE]
        plain = usable["nll"].to_numpy(dtype=float)
        off = int((np.abs(at_one - plain) > 1e-3 * np.maximum(1.0, plain)).sum())
        if off:
            notes.append(f"{model}: for {off} of {len(usable)} responses nll_temperature at "
                         "T = 1 differs from nll by more than 0.1 % (an engine inconsistency: "
                         "calibrated and plain NLL are not on the same footing)")
        for study, one in usable.groupby("study", observed=True, sort=True):
            study = str(study)
            pid = (one["experiment"].astype(str) + "\x1f" + one["participant"].astype(str))
            codes, uniques = pd.factorize(pid, sort=True)
            if len(uniques) < 2:
                notes.append(f"{model}, {study}: {len(uniques)} participant, so no temperature "
                             "can be fitted on other participants; study left out")
                continue
            sub = matrix[one["_pos"].to_numpy()]
            curves.setdefault(model, []).append(sub.mean(axis=0))
            fit = cross_fit(sub, codes, n_folds=n_folds, seed=seed, salt=study)
            out = one[["model", "condition", *RESPONSE_KEY, "nll"]].copy()
            out["nll_calibrated"] = fit.calibrated
            out["temperature"] = fit.row_temperature
            out["fold"] = fit.fold
            kept.append(out)
            per_study.append({
                "model": model, "study": study, "n_participants": len(uniques),
                "n_responses": len(one), "n_folds": len(fit.fold_temperatures),
                "temperature": fit.temperature,
                "temperature_low": float(fit.fold_temperatures.min()),
                "temperature_high": float(fit.fold_temperatures.max()),
                "nll": float(out["nll"].mean()),
                "nll_calibrated": float(fit.calibrated.mean()),
            })
    studies_table = pd.DataFrame(per_study, columns=[c for c in _PER_STUDY if c != "gain"])
    studies_table["gain"] = studies_table["nll"] - studies_table["nll_calibrated"]
    studies_table = studies_table[_PER_STUDY]
    per_model = []
    for model, g in studies_table.groupby("model", sort=True):
        per_model.append({
            "model": model, "n_studies": len(g), "n_responses": int(g["n_responses"].sum()),
            "temperature": float(np.exp(np.log(g["temperature"]).mean())),
            "temperature_low": float(g["temperature"].min()),
            "temperature_high": float(g["temperature"].max()),
            "nll": float(g["nll"].mean()), "nll_calibrated": float(g["nll_calibrated"].mean()),
            "gain": float(g["gain"].mean()),
        })
    curve_rows = [
        {"model": m, "temperature": t, "nll": v}
        for m, parts in curves.items()
        for t, v in zip(TEMPERATURE_GRID, np.mean(parts, axis=0), strict=True)
    ]
    responses = (pd.concat(kept, ignore_index=True) if kept else
                 pd.DataFrame(columns=["model", "condition", *RESPONSE_KEY, "nll",
                                       "nll_calibrated", "temperature", "fold"]))
    return Calibration(
        responses=responses,
        per_study=studies_table.reset_index(drop=True),
        per_model=pd.DataFrame(per_model, columns=_PER_MODEL),
        curves=pd.DataFrame(curve_rows, columns=["model", "temperature", "nll"]),
        skipped=skipped,
        notes=tuple(notes),
    )


def calibration_gain(responses: pd.DataFrame, model: str, *, levels: bs.Levels = "both",
                     n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> Effect:
    """Study-weighted mean NLL the cross-fitted temperature saves (plain − calibrated), with CI."""
    rows = select(responses, model=model)
    return bootstrap_effect(rows, rows.assign(nll=rows["nll_calibrated"]), "mean_diff",
                            name="calibration gain", levels=levels, n_boot=n_boot, ci=ci,
                            seed=seed, units="nats")


# -- pairs --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CalibratedPair:
    """A post-training effect before and after calibration, and the share a temperature removes."""

    post: str
    base: str
    post_training: str
    d_before: Effect
    d_after: Effect
    diff_before: Effect
    diff_after: Effect
    share: float
    share_ci_low: float
    share_ci_high: float
    unmatched: int = 0  # calibrated responses of one model only (left out of the pairing)

    def row(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "post": self.post, "base": self.base, "post_training": self.post_training,
            "type": TYPE_LABELS.get(self.post_training, self.post_training),
            "n_studies": self.diff_before.n_studies,
            "n_participants": self.diff_before.n_participants,
            "n_responses": self.diff_before.n_responses,
        }
        for name, effect in (("d_before", self.d_before), ("d_after", self.d_after),
                             ("diff_before", self.diff_before), ("diff_after", self.diff_after)):
            out[name] = effect.estimate
            out[f"{name}_ci_low"] = effect.ci_low
            out[f"{name}_ci_high"] = effect.ci_high
            out[f"{name}_interval"] = _interval(effect.ci_low, effect.ci_high)
        out["share"] = self.share
        out["share_ci_low"] = self.share_ci_low
        out["share_ci_high"] = self.share_ci_high
        out["share_interval"] = _interval(self.share_ci_low, self.share_ci_high)
        return out


def _interval(low: float, high: float, digits: int = 3) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return ""
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def pair_frames(responses: pd.DataFrame, post: str, base: str,
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of both models on the responses both calibrated: plain NLL, and calibrated NLL."""
    a = select(responses, model=post)
    b = select(responses, model=base)
    keys = a[RESPONSE_KEY].merge(b[RESPONSE_KEY], on=RESPONSE_KEY)
    both = pd.concat([a.merge(keys, on=RESPONSE_KEY), b.merge(keys, on=RESPONSE_KEY)],
                     ignore_index=True)
    return both, both.assign(nll=both["nll_calibrated"])


def compare_calibrated(responses: pd.DataFrame, pair: ModelPair, *, condition: str,
                       n_boot: int = 2000, ci: float = 0.95, seed: int = 0,
                       levels: bs.Levels = "both", sd: bs.SD = "sample") -> CalibratedPair:
    """Paper d and mean paired difference of ``pair`` before and after calibration.

    Both come from :func:`~psych201.analysis.effects.compare_pair` on the responses both models
    calibrated (plain ``nll``, then ``nll`` replaced by ``nll_calibrated``). The share
    ``1 − diff_after / diff_before`` takes its interval from the *same* bootstrap replicates
    (same seed, same participants: each replicate resamples the same units for both).
    """
    before, after = pair_frames(responses, pair.post, pair.base)
    unmatched = (len(select(responses, model=pair.post)) + len(select(responses, model=pair.base))
                 - len(before))
    if before.empty:
        raise ValueError(f"{pair.post} and {pair.base} share no calibrated response")
    kw: dict[str, Any] = {"condition": condition, "n_boot": n_boot, "ci": ci, "seed": seed,
                          "levels": levels, "mixed_level": None}
    cmp_before = compare_pair(before, pair.post, pair.base, **kw)
    cmp_after = compare_pair(after, pair.post, pair.base, **kw)
    d_name = PAPER_D_SAMPLE if sd == "sample" else PAPER_D_POPULATION
    replicates = []
    for frame in (before, after):
        arrays = bs.participant_arrays(select(frame, model=pair.post),
                                       select(frame, model=pair.base))
        replicates.append(bs.resample(arrays, "mean_diff", levels=levels, n_boot=n_boot,
                                      seed=seed))
    diff_before, diff_after = cmp_before.effect(MEAN_DIFF), cmp_after.effect(MEAN_DIFF)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = 1.0 - diff_after.estimate / diff_before.estimate
        share_reps = 1.0 - replicates[1] / replicates[0]
    n_units, df = bs.units(arrays, levels)
    low, high = bs.interval(share_reps, ci, n_units, df)
    return CalibratedPair(pair.post, pair.base, pair.post_training, cmp_before.effect(d_name),
                          cmp_after.effect(d_name), diff_before, diff_after, float(share),
                          low, high, unmatched)


# -- the section --------------------------------------------------------------------------------
def _reading(per_model: pd.DataFrame, pairs: Sequence[CalibratedPair], ci: float) -> str:
    """The one-paragraph reading of the numbers."""
    parts: list[str] = []
    if len(per_model):
        ordered = per_model.sort_values("temperature")
        low, high = ordered.iloc[0], ordered.iloc[-1]
        if len(ordered) == 1:
            parts.append(f"The fitted temperature of {low['model']} is {low['temperature']:.2f}")
        else:
            parts.append(f"Fitted temperatures range from {low['temperature']:.2f} "
                         f"({low['model']}) to {high['temperature']:.2f} ({high['model']})")
        parts[-1] += (" (geometric mean over studies; T > 1: the model is over-confident, "
                      "T < 1: under-confident). ")
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
    ticks = [0.25, 0.5, 1.0, 2.0, 4.0]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xticks([], minor=True)
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("Softmax temperature (log scale)")
    ax.set_ylabel("Mean NLL (study-weighted, ↓)")
    ax.legend(fontsize=6.5)
    return fig


_T: ColumnFormat = "num2"
PER_MODEL_COLUMNS = (
    Column("model", "Model", "text"), Column("n_studies", "Studies", "int"),
    Column("n_responses", "Responses", "int"), Column("temperature", "Fitted T", _T),
    Column("temperature_low", "T min (studies)", _T),
    Column("temperature_high", "T max (studies)", _T),
    Column("nll", "NLL", "num3"), Column("nll_calibrated", "Calibrated NLL", "num3"),
    Column("gain", "Gain (nats)", "num3"), Column("gain_interval", "Gain CI", "interval"),
)
PER_STUDY_COLUMNS = (
    Column("model", "Model", "text"), Column("study", "Study", "text"),
    Column("n_participants", "Participants", "int"), Column("n_responses", "Responses", "int"),
    Column("temperature", "Fitted T", _T), Column("temperature_low", "T min (folds)", _T),
    Column("temperature_high", "T max (folds)", _T), Column("nll", "NLL", "num3"),
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


class CalibrationAnalysis:
    """The calibration control as a section (anchor ``calibration``)."""

    name: str = "calibration"
    columns: Sequence[str] = ("nll", COLUMN)

    def __init__(self, n_folds: int = N_FOLDS) -> None:
        self.n_folds = n_folds

    def skip(self, context: AnalysisContext) -> str | None:
        if COLUMN not in context.main.columns:
            return "calibration skipped: the response tables have no nll_temperature column"
        n = len(TEMPERATURE_GRID)
        if not any(_usable(v, n) for v in context.main[COLUMN].to_numpy(dtype=object)):
            return ("calibration skipped: no scored response carries nll_temperature (the "
                    "engines could not record the NLL at other temperatures, or the tables "
                    "predate the column)")
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        options = context.options
        cal = calibrate(context.main, condition=context.condition,
                        studies=context.studies or None, n_folds=self.n_folds,
                        seed=options.seed)
        notes = list(cal.notes)
        if cal.skipped:
            notes.append("not calibrated: " + "; ".join(
                f"{m} ({why})" for m, why in cal.skipped.items()))
        per_model = cal.per_model.copy()
        lows, highs = [], []
        for model in per_model["model"]:
            gain = calibration_gain(cal.responses, model, levels=options.levels,
                                    n_boot=options.n_boot, ci=options.ci, seed=options.seed)
            lows.append(gain.ci_low)
            highs.append(gain.ci_high)
        per_model["gain_ci_low"] = lows
        per_model["gain_ci_high"] = highs
        per_model["gain_interval"] = [_interval(lo, hi) for lo, hi in zip(lows, highs,
                                                                            strict=True)]
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
                         "Per model: temperature fitted per study (geometric mean over studies), "
                         "mean NLL before and after calibration (mean per study, then over "
                         "studies) and the gain with its bootstrap interval."),
            SectionTable("per_study", cal.per_study, PER_STUDY_COLUMNS,
                         f"Per model and study: temperature fitted on all participants (range "
                         f"over the {self.n_folds}-fold cross-fit), plain and cross-fitted NLL."),
            SectionTable("pairs", pair_table, PAIR_COLUMNS,
                         "Post-training effect before and after calibration, on the responses "
                         "both models calibrated, and the share of the mean NLL gap a "
                         "temperature explains (1 − after/before; interval from the same "
                         "bootstrap replicates)."),
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
            # plain values only: whatever serialises sections must not meet a frame here
            data={"grid": list(TEMPERATURE_GRID),
                  "temperatures": {str(m): float(t) for m, t in
                                   zip(per_model["model"], per_model["temperature"],
                                       strict=True)}},
        )


ANALYSIS = CalibrationAnalysis()
