"""Population-level fit, the statistics: the crowd of people who met the same trial against the
model's distribution over the offered options (JSD and W1 over the response frequencies, with a
finite-sample floor). The section, and the method in full, is :mod:`.an_population_fit`."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

from psych201.results.schema import RESPONSE_KEY

_COLUMNS = ("offered_options", "offered_logprobs")
#: A trial counts when at least this many participants saw it in the same form.
MIN_PARTICIPANTS = 5
#: Crowds drawn from the model for the floor and its test (p ≥ 2 / (draws + 1)).
FLOOR_DRAWS = 400
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
