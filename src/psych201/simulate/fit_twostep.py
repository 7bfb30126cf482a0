"""The two-step task's hybrid model-based/model-free learner, fitted by pooled maximum likelihood.

The likelihood is :class:`psych201.simulate.twostep.HybridAgent`'s (Daw et al. 2011 with
``lambda = 1``): second-stage values ``Q2``, model-free first-stage values ``Q1`` learning from
the coin directly, model-based values from the known transition probabilities, first-stage
choice ``softmax(beta * (w Q_MB + (1 - w) Q1) + pers * [same ship as last trial])``, second
``softmax(beta * Q2[planet])``. It runs across participants at once, one numpy step per trial.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import log_expit

from psych201.simulate.fit import ALPHA_BOUNDS, KAPPA_BOUNDS, fit_pooled
from psych201.simulate.twostep import P_COMMON

FloatArray = npt.NDArray[np.float64]
HYBRID_PARAMS = ("alpha", "beta", "w", "pers")
BETA_BOUNDS, W_BOUNDS = (1e-2, 30.0), (0.0, 1.0)
_STARTS = ((0.5, 4.0, 0.5, 0.3), (0.2, 2.0, 0.2, 0.0), (0.8, 8.0, 0.8, 0.6))


@dataclass(frozen=True)
class TwoStepTrials:
    """Participants' two-step trials, padded to the longest (``mask`` marks the real ones).

    Per trial: the spaceship boarded (0/1; ship ``k`` flies commonly to planet ``k``), the
    planet reached, the alien asked (0/1 on that planet) and the coin (0/1).
    """

    ships: FloatArray  # (participants, trials)
    planets: FloatArray
    aliens: FloatArray
    rewards: FloatArray
    mask: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, participants: Sequence[Sequence[tuple[int, int, int, float]]]) -> TwoStepTrials:
        """From each participant's ``(ship, planet, alien, reward)`` per trial."""
        n, length = len(participants), max((len(p) for p in participants), default=0)
        arrays = np.zeros((4, n, length))
        mask = np.zeros((n, length), dtype=bool)
        for i, trials in enumerate(participants):
            if trials:
                arrays[:, i, : len(trials)] = np.asarray(trials, dtype=np.float64).T
                mask[i, : len(trials)] = True
        return cls(arrays[0], arrays[1], arrays[2], arrays[3], mask)


def hybrid_logits(alpha: float, beta: float, w: float, pers: float, data: TwoStepTrials
                  ) -> FloatArray:
    """``(participants, trials, 2)``: the logit of the first- and of the second-stage choice
    against the other option (``log P = log_expit(logit)``); padding gets 0."""
    n, length = data.ships.shape
    rows = np.arange(n)
    q1, q2 = np.full((n, 2), 0.5), np.full((n, 2, 2), 0.5)
    previous = np.zeros(n)  # +1: ship 1 boarded last trial, -1: ship 0, 0: none yet
    out = np.zeros((n, length, 2))
    for t in range(length):
        real = data.mask[:, t]
        ship, planet = data.ships[:, t].astype(int), data.planets[:, t].astype(int)
        alien = data.aliens[:, t].astype(int)
        best = q2.max(axis=2)  # (n, planet)
        model_based = P_COMMON * best + (1 - P_COMMON) * best[:, ::-1]
        net = w * model_based + (1 - w) * q1
        x1 = beta * (net[:, 1] - net[:, 0]) + pers * previous
        on_planet = q2[rows, planet]
        x2 = beta * (on_planet[:, 1] - on_planet[:, 0])
        out[:, t, 0] = np.where(real, np.where(ship == 1, x1, -x1), 0.0)
        out[:, t, 1] = np.where(real, np.where(alien == 1, x2, -x2), 0.0)
        r = np.nan_to_num(data.rewards[:, t])  # no coin reported: nothing won, as the agent reads
        learn = rows[real]
        q2[learn, planet[real], alien[real]] += alpha * (
            r[real] - q2[learn, planet[real], alien[real]])
        q1[learn, ship[real]] += alpha * (r[real] - q1[learn, ship[real]])
        previous = np.where(real, np.where(ship == 1, 1.0, -1.0), previous)
    return out


def fit_hybrid_pooled(data: TwoStepTrials) -> tuple[float, float, float, float]:
    """One ``(alpha, beta, w, pers)`` for all participants of ``data`` (pooled ML)."""

    def nll(params: FloatArray) -> float:
        logits = hybrid_logits(float(params[0]), float(params[1]), float(params[2]),
                               float(params[3]), data)
        return -float(log_expit(logits)[data.mask].sum())

    alpha, beta, w, pers = fit_pooled(nll, _STARTS,
                                      (ALPHA_BOUNDS, BETA_BOUNDS, W_BOUNDS, KAPPA_BOUNDS))
    return alpha, beta, w, pers
