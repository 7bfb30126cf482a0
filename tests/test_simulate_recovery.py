"""Parameter recovery: the simulated behaviour carries the parameters it claims to.

Maximum-likelihood fits from the transcripts alone (choices and outcomes parsed from the text),
so a generator that ignored its parameters, or stored other values than it used, fails.
Only the bandit is checked this way: prospect theory's curvature and the diffusion model's
drift/bias are known to be weakly identified from choices alone (their stored log-likelihoods
are checked exactly in test_simulate_generators.py instead).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit
from scipy.stats import linregress, pearsonr

from psych201.data.markers import parse_responses
from psych201.simulate import simulate_study


def _bandit_data(record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    text = record["text"]
    first = re.search(r"labelled ([A-Z]) and", text).group(1)  # type: ignore[union-attr]
    trials = re.findall(r"<<([A-Z])>> and won (1 point|nothing)", text)
    assert len(trials) == len(parse_responses(text))
    choices = np.array([c != first for c, _ in trials], dtype=np.int64)
    rewards = np.array([o == "1 point" for _, o in trials], dtype=np.float64)
    return choices, rewards


def _bandit_nll(x: np.ndarray, choices: np.ndarray, rewards: np.ndarray) -> float:
    alpha, beta = expit(x[0]), np.exp(x[1])
    q = [0.5, 0.5]
    nll = 0.0
    for c, r in zip(choices.tolist(), rewards.tolist(), strict=True):
        d = beta * (q[c] - q[1 - c])
        nll -= log_expit(d)
        q[c] += alpha * (r - q[c])
    return float(nll)


def test_bandit_learning_rate_and_temperature_are_recovered_by_mle() -> None:
    records = simulate_study("bandit", n_participants=30, n_trials=300, seed=7)
    fitted = []
    for rec in records:
        choices, rewards = _bandit_data(rec)
        best = min(
            (
                minimize(_bandit_nll, x0, args=(choices, rewards), method="L-BFGS-B",
                         bounds=[(-6, 6), (-3, 4)])
                for x0 in (np.array([-0.5, 1.5]), np.array([1.0, 1.0]))
            ),
            key=lambda res: res.fun,
        )  # fmt: skip
        fitted.append((expit(best.x[0]), np.exp(best.x[1])))
    alpha_hat, beta_hat = np.array(fitted).T
    alpha = np.array([r["param_alpha"] for r in records])
    beta = np.array([r["param_beta"] for r in records])
    r_alpha = pearsonr(alpha, alpha_hat).statistic
    r_beta = pearsonr(np.log(beta), np.log(beta_hat)).statistic
    assert r_alpha > 0.7, r_alpha
    assert r_beta > 0.7, r_beta
    # No gross bias either: the median fitted value sits near the median true one.
    assert abs(np.median(alpha_hat) - np.median(alpha)) < 0.1


def test_planted_age_effect_on_bandit_inverse_temperature() -> None:
    # log(beta) = log 5 - 0.01 (age - 45) + noise: the slope is planted and must be there.
    records = simulate_study("bandit", n_participants=1500, n_trials=1, seed=4)
    ages = np.array([r["age"] for r in records], dtype=float)
    fit = linregress(ages, np.log([r["param_beta"] for r in records]))
    lo, hi = fit.slope - 2.58 * fit.stderr, fit.slope + 2.58 * fit.stderr
    assert lo < -0.01 < hi and hi < 0
