"""The maths of the calibration control: fitting a softmax temperature on NLL curves.

The engines record, per response, the NLL at every temperature of
:data:`~psych201.scoring.engine.TEMPERATURE_GRID` (``nll_temperature``). This module fits
temperatures on those curves; :mod:`.an_calibration` turns the fits into tables and text.

* **Fitting.** The mean NLL curve is minimised over the grid, then refined by the vertex of the
  parabola through the best grid point and its two neighbours in log T. A minimum at either end
  of the grid is kept there and *flagged* (:func:`edge`): the curve only says the best
  temperature is at least (or at most) that end, and the tables print it as "≥ 8".
* **Scoring at a temperature between grid points.** Each response's NLL curve is interpolated
  quadratically in log T through the three grid points nearest T (Lagrange form, clipped at 0).
  The grid is 9 % wide in T and the curves are smooth (an NLL is convex in 1/T), so the error is
  far below sampling noise.
* **Cross-fitting over participants.** Participants are split into ``K`` folds of at least
  :data:`MIN_PER_FOLD` participants (5 folds, fewer with fewer participants). For each fold,
  the temperature minimising the mean NLL of the *other* folds' responses is chosen and the
  fold's own responses are scored at it, so no response is evaluated at a temperature fitted on
  it. A study with fewer than ``2 × MIN_PER_FOLD`` participants is not fitted: a temperature
  fitted on one or two people is mostly their noise, and a calibrated model would "gain" or
  lose by it (issue 25, row 5).
* **The fit inside the bootstrap.** :func:`replicate` resamples participants (one weight per
  participant and replicate) and *refits* every fold's temperature and the all-participant
  temperature on each replicate, so intervals on T, on the gain and on a pair's calibrated gap
  carry the uncertainty of the fit itself.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from psych201.scoring.engine import TEMPERATURE_GRID

#: Default number of participant folds of the cross-fit.
N_FOLDS = 5
#: Fewest participants a fold may hold; a study needs two such folds to be calibrated.
MIN_PER_FOLD = 5
#: Replicates handled at once by :func:`replicate` (bounds memory on large studies).
_CHUNK = 256

Edge = Literal["low", "high"]


# -- one curve ----------------------------------------------------------------------------------
def fit_temperatures(curves: np.ndarray, grid: Sequence[float] = TEMPERATURE_GRID) -> np.ndarray:
    """Row by row, the temperature minimising a mean-NLL curve given at ``grid``.

    The best grid point is refined by the vertex of the parabola through it and its neighbours
    in log T, clamped to their span; a minimum at either end of the grid stays there (see
    :func:`edge`). ``curves`` is (rows × grid); the result has one temperature per row.
    """
    y = np.atleast_2d(np.asarray(curves, dtype=float))
    x = np.log(np.asarray(grid, dtype=float))
    if y.shape[1] != len(x) or not np.isfinite(y).all():
        raise ValueError(f"need {len(x)} finite NLL values, one per grid temperature")
    i = np.argmin(y, axis=1)
    inner = np.clip(i, 1, len(x) - 2)
    rows = np.arange(len(y))
    x0, x1, x2 = x[inner - 1], x[inner], x[inner + 1]
    y0, y1, y2 = y[rows, inner - 1], y[rows, inner], y[rows, inner + 1]
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = np.clip(x1 - 0.5 * num / den, x0, x2)
    # at an end of the grid, or flat around the minimum: the grid point is as good as any
    keep = (i == 0) | (i == len(x) - 1) | (den == 0)
    return np.where(keep, np.asarray(grid, dtype=float)[i], np.exp(np.where(keep, 0.0, vertex)))


def fit_temperature(curve: Sequence[float] | np.ndarray,
                    grid: Sequence[float] = TEMPERATURE_GRID) -> float:
    """The temperature minimising one mean-NLL ``curve`` (:func:`fit_temperatures`)."""
    y = np.asarray(curve, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"need {len(grid)} finite NLL values, one per grid temperature")
    return float(fit_temperatures(y[None, :], grid)[0])


def edge(temperature: float, grid: Sequence[float] = TEMPERATURE_GRID) -> Edge | None:
    """``"high"`` / ``"low"`` where a fitted temperature sits at the grid's top / bottom end.

    There the curve was still falling at the end: the best temperature is at least (at most)
    that end, not equal to it.
    """
    if not math.isfinite(temperature):
        return None
    if temperature >= grid[-1] * (1 - 1e-9):
        return "high"
    if temperature <= grid[0] * (1 + 1e-9):
        return "low"
    return None


def temperature_label(temperature: float, grid: Sequence[float] = TEMPERATURE_GRID) -> str:
    """A fitted temperature as printed: ``"≥ 8"`` / ``"≤ 0.125"`` at the grid's ends."""
    if not math.isfinite(temperature):
        return ""
    side = edge(temperature, grid)
    if side == "high":
        return f"≥ {grid[-1]:g}"
    if side == "low":
        return f"≤ {grid[0]:g}"
    return f"{temperature:.2f}"


def interpolation_weights(temperature: np.ndarray | float,
                          grid: Sequence[float] = TEMPERATURE_GRID) -> np.ndarray:
    """(temperatures × grid) weights: a curve's value at each temperature is ``weights @ curve``.

    Quadratic Lagrange interpolation in log T through the grid point nearest each temperature
    and its two neighbours; a temperature on the grid gets weight 1 there (exact), one outside
    the grid is clamped to its end.
    """
    x = np.log(np.asarray(grid, dtype=float))
    t = np.clip(np.log(np.atleast_1d(np.asarray(temperature, dtype=float))), x[0], x[-1])
    nearest = np.argmin(np.abs(x[None, :] - t[:, None]), axis=1)
    j = np.clip(nearest, 1, len(x) - 2)
    x0, x1, x2 = x[j - 1], x[j], x[j + 1]
    out = np.zeros((len(t), len(x)))
    rows = np.arange(len(t))
    out[rows, j - 1] = (t - x1) * (t - x2) / ((x0 - x1) * (x0 - x2))
    out[rows, j] = (t - x0) * (t - x2) / ((x1 - x0) * (x1 - x2))
    out[rows, j + 1] = (t - x0) * (t - x1) / ((x2 - x0) * (x2 - x1))
    exact = x[nearest] == t
    out[exact] = 0.0
    out[rows[exact], nearest[exact]] = 1.0
    return out


def nll_at(matrix: np.ndarray, temperature: float,
           grid: Sequence[float] = TEMPERATURE_GRID) -> np.ndarray:
    """Each row's NLL at ``temperature`` (quadratic in log T, clipped at 0; module notes).

    ``matrix`` has one row per response and one column per grid temperature; ``temperature``
    is clamped to the grid's range. At a grid point this is exactly that column.
    """
    rows = np.atleast_2d(np.asarray(matrix, dtype=float))
    weights = interpolation_weights(temperature, grid)[0]
    hit = np.flatnonzero(weights == 1.0)
    if hit.size:
        return rows[:, int(hit[0])].copy()
    interpolated: np.ndarray = np.maximum(rows @ weights, 0.0)
    return interpolated


# -- cross-fitting ------------------------------------------------------------------------------
def fold_count(n_participants: int, *, n_folds: int = N_FOLDS,
               min_per_fold: int = MIN_PER_FOLD) -> int:
    """Folds a study of ``n_participants`` is cut into (< 2: the study cannot be cross-fitted)."""
    return min(n_folds, n_participants // max(1, min_per_fold))


def participant_folds(n_participants: int, *, n_folds: int = N_FOLDS, seed: int = 0,
                      salt: str = "", min_per_fold: int = 1) -> np.ndarray:
    """Fold (0 … k−1) of each participant: a seeded permutation dealt round-robin.

    ``k`` is :func:`fold_count` (``n_folds``, fewer so that each fold holds ``min_per_fold``
    participants); ``salt`` (the study) varies the split between studies while keeping it the
    same for every model of a study, so pairs see the same folds.
    """
    k = fold_count(n_participants, n_folds=n_folds, min_per_fold=min_per_fold)
    if k < 2:
        raise ValueError(f"cross-fitting needs at least {2 * max(1, min_per_fold)} participants")
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
              min_per_fold: int = 1, grid: Sequence[float] = TEMPERATURE_GRID) -> CrossFit:
    """Cross-fit one temperature over participants (module notes).

    ``participant`` holds each row's participant code (0 … P−1); ``folds`` (one fold per
    participant) overrides the seeded split.
    """
    matrix = np.asarray(matrix, dtype=float)
    codes = np.asarray(participant, dtype=np.intp)
    n_participants = int(codes.max()) + 1 if codes.size else 0
    if folds is None:
        folds = participant_folds(n_participants, n_folds=n_folds, seed=seed, salt=salt,
                                  min_per_fold=min_per_fold)
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


# -- the fit inside the bootstrap ---------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class StudyCurves:
    """One (model, study) summed per participant: what a participant bootstrap re-weights."""

    sums: np.ndarray  # (P, grid): each participant's summed NLL curve
    counts: np.ndarray  # (P,): responses per participant
    plain: np.ndarray  # (P,): summed plain NLL
    folds: np.ndarray  # (P,): cross-fit fold of each participant

    @classmethod
    def of(cls, matrix: np.ndarray, participant: np.ndarray, plain: np.ndarray,
           folds: np.ndarray) -> StudyCurves:
        codes = np.asarray(participant, dtype=np.intp)
        n = len(folds)
        sums = np.zeros((n, np.asarray(matrix).shape[1]))
        np.add.at(sums, codes, matrix)
        return cls(sums, np.bincount(codes, minlength=n).astype(float),
                   np.bincount(codes, weights=plain, minlength=n), np.asarray(folds))


@dataclass(frozen=True, eq=False)
class Replicates:
    """Bootstrap replicates of one (model, study), the fits redone in each."""

    temperature: np.ndarray  # (B,) all-participant fit
    plain: np.ndarray  # (B,) mean plain NLL
    calibrated: np.ndarray  # (B,) mean cross-fitted NLL


def participant_weights(n_participants: int, n_boot: int, *, seed: int = 0,
                        salt: str = "") -> np.ndarray:
    """(B × P) resampling counts: each replicate draws P participants with replacement.

    Seeded by ``seed`` and ``salt`` (the study) only, so every model of a study is resampled
    with the same participants (a pair's two models stay paired in every replicate).
    """
    rng = np.random.default_rng([seed, zlib.crc32(salt.encode()), 1])
    picks = rng.integers(0, n_participants, size=(n_boot, n_participants))
    offsets = (np.arange(n_boot) * n_participants)[:, None]
    flat = np.bincount((picks + offsets).ravel(), minlength=n_boot * n_participants)
    return flat.reshape(n_boot, n_participants).astype(float)


def replicate(curves: StudyCurves, weights: np.ndarray,
              grid: Sequence[float] = TEMPERATURE_GRID) -> Replicates:
    """Refit the cross-fit on each row of participant ``weights`` (B × P; module notes).

    A held-out participant's calibrated NLL is the interpolation of its *summed* curve (the
    per-response clip at 0 of :func:`nll_at` is left out; it only acts on near-zero NLLs).
    """
    b = len(weights)
    temperature, plain, calibrated = np.empty(b), np.empty(b), np.empty(b)
    fold_ids = np.unique(curves.folds)
    for start in range(0, b, _CHUNK):
        w = weights[start:start + _CHUNK]
        n = w @ curves.counts
        temperature[start:start + _CHUNK] = fit_temperatures((w @ curves.sums) / n[:, None],
                                                             grid)
        plain[start:start + _CHUNK] = (w @ curves.plain) / n
        total = np.zeros(len(w))
        for k in fold_ids:
            held = curves.folds == k
            w_train = w[:, ~held]
            with np.errstate(invalid="ignore", divide="ignore"):
                train = (w_train @ curves.sums[~held]) / (w_train @ curves.counts[~held])[:, None]
            fitted = np.full(len(w), 1.0)
            ok = np.isfinite(train).all(axis=1)
            fitted[ok] = fit_temperatures(train[ok], grid)
            at_t = interpolation_weights(fitted, grid) @ curves.sums[held].T  # (B, P_k)
            total += (w[:, held] * np.maximum(at_t, 0.0)).sum(axis=1)
        calibrated[start:start + _CHUNK] = total / n
    return Replicates(temperature, plain, calibrated)


# -- reading the column -------------------------------------------------------------------------
def _usable(value: Any, n: int) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) and len(value) == n


def temperature_matrix(frame: pd.DataFrame, grid: Sequence[float] = TEMPERATURE_GRID,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a complete, finite, non-negative ``nll_temperature`` and their matrix."""
    n = len(grid)
    if "nll_temperature" not in frame.columns:
        return np.zeros(len(frame), dtype=bool), np.empty((0, n))
    values = frame["nll_temperature"].to_numpy(dtype=object)
    ok = np.fromiter((_usable(v, n) for v in values), dtype=bool, count=len(values))
    matrix = (np.array([np.asarray(v, dtype=float) for v in values[ok]]) if ok.any()
              else np.empty((0, n)))
    good = np.isfinite(matrix).all(axis=1) & (matrix >= 0).all(axis=1)
    ok[np.flatnonzero(ok)[~good]] = False
    return ok, matrix[good]


def other_grid_lengths(frame: pd.DataFrame, grid: Sequence[float] = TEMPERATURE_GRID,
                       ) -> dict[int, int]:
    """Lengths of ``nll_temperature`` lists that are not this grid's (tables scored on an older
    grid), with how many rows have each: those rows cannot be calibrated on this grid."""
    if "nll_temperature" not in frame.columns:
        return {}
    lengths = [len(v) for v in frame["nll_temperature"].to_numpy(dtype=object)
               if isinstance(v, (list, tuple, np.ndarray)) and len(v) != len(grid)]
    return dict(pd.Series(lengths, dtype=int).value_counts().sort_index().items())
