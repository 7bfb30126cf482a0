"""Inference from bootstrap replicates: percentile intervals widened for few units (expanded
alpha), t intervals where the percentile tail cannot be reached, and the p-values that invert
them (the method in full: :mod:`psych201.analysis.bootstrap`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


def expansion(n_units: int, df: int) -> float:
    """Factor by which the expanded percentile interval widens a normal-theory interval."""
    return math.sqrt(n_units / df)


def expanded_alpha(ci: float, n_units: int, df: int) -> float:
    """Two-sided tail mass of the percentile interval that matches a t interval (Hesterberg)."""
    q = float(sps.t.ppf(1 - (1 - ci) / 2, df)) * expansion(n_units, df)
    return float(2 * sps.norm.sf(q))


#: Fewest replicates the requested tail of a percentile interval must hold to be estimated.
MIN_TAIL_REPLICATES = 10


@dataclass(frozen=True)
class Inference:
    """An interval and the p-value (H0: statistic = ``null``) from one procedure, named."""

    ci_low: float
    ci_high: float
    p_value: float
    method: str


def tail_reachable(ci: float, n_units: int, df: int, n_boot: int) -> bool:
    """Whether ``n_boot`` replicates put ≥ :data:`MIN_TAIL_REPLICATES` in each expanded tail."""
    if df < 1:
        return False
    return expanded_alpha(ci, n_units, df) / 2 * n_boot >= MIN_TAIL_REPLICATES


def _tail_beyond(sorted_values: np.ndarray) -> float:
    """Smallest tail mass at which the linear-interpolated percentile interval excludes 0.

    ``np.quantile`` (linear) is continuous and monotone in the level, so the level at which the
    lower (upper) bound crosses zero is found exactly between the two replicates around zero;
    the interval at tail mass ``a`` excludes zero exactly when ``a`` exceeds the returned value.
    """
    x = sorted_values
    last = x.size - 1

    def crossing(k: int) -> float:  # level between x[k-1] (below) and x[k] (at or above)
        level: float = ((k - 1) + (0.0 - x[k - 1]) / (x[k] - x[k - 1])) / last
        return level

    at_most = int(np.searchsorted(x, 0.0, side="right"))  # replicates ≤ 0
    below = int(np.searchsorted(x, 0.0, side="left"))  # replicates < 0
    lower = 0.0 if at_most == 0 else 1.0 if at_most == x.size else crossing(at_most)
    upper = 1.0 if below == 0 else 0.0 if below == x.size else 1.0 - crossing(below)
    return min(lower, upper)


def _percentile(finite: np.ndarray, ci: float, n_units: int, df: int, null: float,
                ) -> tuple[float, float, float]:
    """Expanded percentile interval and the p-value that inverts it exactly."""
    alpha = expanded_alpha(ci, n_units, df)
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    tail = _tail_beyond(np.sort(finite - null))
    # below half a replicate the tail is not resolved: p is bounded there, never 0
    z = float(sps.norm.isf(max(tail, 0.5 / finite.size)))
    p = float(min(1.0, 2 * sps.t.sf(z / expansion(n_units, df), df)))
    return float(low), float(high), p


def _t_interval(point: float, se: float, ci: float, df: int, null: float,
                ) -> tuple[float, float, float]:
    half = float(sps.t.ppf(1 - (1 - ci) / 2, df)) * se
    p = float(2 * sps.t.sf(abs(point - null) / se, df))
    return point - half, point + half, p


def infer(replicates: np.ndarray, ci: float, n_units: int, df: int, *,
          point: float | None = None, unit_values: np.ndarray | None = None,
          null: float = 0.0, fallback: bool = True, unit: str = "studies") -> Inference:
    """Interval and p-value (H0: ``null``) of a statistic from its bootstrap ``replicates``.

    The expanded percentile interval where its tail is within reach (see the module notes);
    otherwise, with ``fallback``, a t interval with ``df`` degrees of freedom centred on
    ``point`` (default: the replicates' mean): with ``unit_values`` (the statistic's value on each
    top-level unit, whose mean it is) the one-sample t over those values, else the bootstrap
    standard error expanded by √(n/df). Without ``fallback`` (bounded statistics such as
    shares, for which a t interval is no answer) no interval is given. Either way the p-value
    comes from the same procedure as the interval, so ``p < 1 − ci`` exactly when the interval
    excludes ``null``.
    """
    finite = replicates[np.isfinite(replicates)]
    n_boot = finite.size
    if df < 1 or n_boot == 0:
        return Inference(math.nan, math.nan, math.nan,
                         f"no interval: needs at least 2 {unit}")
    if tail_reachable(ci, n_units, df, n_boot):
        low, high, p = _percentile(finite, ci, n_units, df, null)
        return Inference(low, high, p, "expanded percentile")
    why = (f"{n_boot} replicates over {n_units} {unit} cannot reach the "
           f"{expanded_alpha(ci, n_units, df) / 2:.1e} tail of a percentile interval")
    if not fallback:
        return Inference(math.nan, math.nan, math.nan, f"no interval: {why}")
    values = None if unit_values is None else unit_values[np.isfinite(unit_values)]
    if values is not None and values.size >= 2:
        centre = float(values.mean()) if point is None else point
        se = float(values.std(ddof=1)) / math.sqrt(values.size)
        df = values.size - 1
        method = f"t interval over the {values.size} {unit} ({df} df; {why})"
    else:
        centre = float(finite.mean()) if point is None else point
        se = float(finite.std(ddof=1)) * expansion(n_units, df) if n_boot > 1 else math.nan
        method = f"t interval on the bootstrap SE ({df} df; {why})"
    if not (math.isfinite(se) and se > 0 and math.isfinite(centre)):
        return Inference(math.nan, math.nan, math.nan, f"no interval: {why}, and no spread")
    low, high, p = _t_interval(centre, se, ci, df, null)
    return Inference(low, high, p, method)


def interval(replicates: np.ndarray, ci: float, n_units: int, df: int, *,
             point: float | None = None, unit_values: np.ndarray | None = None,
             ) -> tuple[float, float]:
    """The interval of :func:`infer` (NaN when df < 1)."""
    got = infer(replicates, ci, n_units, df, point=point, unit_values=unit_values)
    return got.ci_low, got.ci_high


def p_value(replicates: np.ndarray, n_units: int, df: int, *, ci: float = 0.95,
            point: float | None = None, unit_values: np.ndarray | None = None) -> float:
    """Two-sided p for H0: statistic = 0, from the same procedure as :func:`interval`."""
    return infer(replicates, ci, n_units, df, point=point, unit_values=unit_values).p_value
