"""Intervals and p-values from one procedure, at any number of studies (issue 25, row 1).

With few studies the expanded percentile interval asks for a tail the bootstrap cannot reach;
:func:`psych201.analysis.bootstrap.infer` then says so and uses a t interval with the studies'
degrees of freedom, taking p from the same t. These tests check, on seeded simulated pairs with a
known true effect, that p < 0.05 exactly when the 95 % interval excludes 0 at every number of
studies from 2 to 20, that the pair d's interval covers the truth at its nominal rate with 2, 3,
5 and 19 studies, and that the report's pair table prints exactly these numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from psych201.analysis import bootstrap as bs

RESPONSES = 20
SD_LEVEL, SD_PARTICIPANT, SD_RESPONSE = 0.5, 0.2, 0.5
#: Response-level SD of each arm within a study (the base shares its noise with the post arm).
SD_BASE = math.sqrt(SD_LEVEL**2 + 1)
SD_POST = math.sqrt(SD_LEVEL**2 + 1 + SD_PARTICIPANT**2 + SD_RESPONSE**2)
POOLED_SD = math.sqrt((SD_BASE**2 + SD_POST**2) / 2)


def simulate_pair(rng: np.random.Generator, n_studies: int, *, mu: float, tau: float,
                  ) -> bs.StudyArrays:
    """Per-participant sums of a post-trained and a base model on ``n_studies`` studies.

    Study s has a mean NLL difference δ_s ~ N(mu, tau²), so its true paper d is δ_s / POOLED_SD
    and the pair's true d is mu / POOLED_SD; participants (10–40 per study) add their own level
    and their own difference; response noise is shared by both models (the pairing).
    """
    stats = []
    for delta in mu + tau * rng.standard_normal(n_studies):
        n = int(rng.integers(10, 41))
        level = 2 + SD_LEVEL * rng.standard_normal(n)
        base = level[:, None] + rng.standard_normal((n, RESPONSES))
        post = base + delta + SD_PARTICIPANT * rng.standard_normal(n)[:, None] + (
            SD_RESPONSE * rng.standard_normal((n, RESPONSES)))
        ones = np.ones(n)
        stats.append(np.column_stack([
            ones * RESPONSES, post.sum(1), (post**2).sum(1), ones * RESPONSES, base.sum(1),
            (base**2).sum(1), post.mean(1), base.mean(1), ones, ones]))
    return bs.StudyArrays(tuple(f"s{i}" for i in range(n_studies)), tuple(stats))


def excludes_zero(low: float, high: float) -> bool:
    return low > 0 or high < 0


@pytest.mark.parametrize("statistic", ["d", "mean_diff"])
def test_p_is_below_005_exactly_when_the_interval_excludes_0_for_2_to_20_studies(
        statistic: bs.Statistic) -> None:
    """Row 1: with 2 studies the interval was [min, max] of the replicates beside a t p-value
    (pair d 0.093 [0.038, 0.137] with p = 0.273). Now one procedure gives both, at every n."""
    rng = np.random.default_rng(251)
    disagreements = []
    for n_studies in range(2, 21):
        for rep in range(6):
            arrays = simulate_pair(rng, n_studies, mu=0.08, tau=0.05)
            r = bs.bootstrap(arrays, statistic, n_boot=1000, seed=rep)
            assert math.isfinite(r.ci_low) and math.isfinite(r.p_value), (n_studies, r)
            if excludes_zero(r.ci_low, r.ci_high) != (r.p_value < 0.05):
                disagreements.append((n_studies, r))
    assert not disagreements, disagreements


def test_with_few_studies_the_interval_says_the_percentile_tail_is_out_of_reach() -> None:
    arrays = simulate_pair(np.random.default_rng(3), 2, mu=0.1, tau=0.02)
    r = bs.bootstrap(arrays, "d", n_boot=2000)
    assert r.interval_method.startswith("t interval over the 2 studies (1 df")
    replicates = bs.resample(arrays, "d", n_boot=2000)
    # not the collapsed [smallest, largest replicate] of the old expanded percentile
    assert r.ci_low < replicates.min() and r.ci_high > replicates.max()
    many = bs.bootstrap(simulate_pair(np.random.default_rng(3), 19, mu=0.1, tau=0.02), "d",
                        n_boot=2000)
    assert many.interval_method == "expanded percentile"


def test_percentile_p_inverts_its_interval_exactly_at_every_level() -> None:
    """The percentile branch: p < 1 − level exactly when that level's interval excludes 0."""
    rng = np.random.default_rng(12)
    for _ in range(200):
        reps = rng.normal(rng.uniform(-0.3, 0.3), 0.1, size=4000)
        for ci in (0.8, 0.9, 0.95):
            got = bs.infer(reps, ci, 19, 18)
            assert got.method == "expanded percentile"
            assert excludes_zero(got.ci_low, got.ci_high) == (got.p_value < 1 - ci)


def test_a_share_gets_no_t_interval_where_its_tail_is_out_of_reach() -> None:
    shares = np.ones(2000)  # two studies, every pair positive in every replicate
    got = bs.infer(shares, 0.95, 2, 1, null=0.5, fallback=False)
    assert math.isnan(got.ci_low) and math.isnan(got.p_value)
    assert got.method.startswith("no interval: 2000 replicates over 2 studies cannot reach")


#: Datasets and replicates per number of studies: ±1 % Monte Carlo error or better where it is
#: cheap; 19 studies use 1000 replicates, which still reach the percentile tail (15 per tail).
COVERAGE_RUNS = {2: (2000, 2000), 3: (2000, 2000), 5: (1000, 2000), 19: (600, 1000)}


@pytest.mark.slow  # 30–60 s each on the shared 2-core machine
@pytest.mark.parametrize("n_studies", sorted(COVERAGE_RUNS))
def test_pair_d_intervals_cover_the_true_effect_at_95_percent(n_studies: int) -> None:
    """Coverage of the pair d's 95 % interval over studies and participants, with p agreeing.

    2, 3 and 5 studies take the t interval over studies, 19 the expanded percentile interval.
    Measured (mu = 0.1 nats, tau = 0.1): see the README's section on the analyses.
    """
    rng = np.random.default_rng(1000 + n_studies)
    mu, tau = 0.1, 0.1
    n_sims, n_boot = COVERAGE_RUNS[n_studies]
    truth = mu / POOLED_SD
    covered = 0
    for i in range(n_sims):
        arrays = simulate_pair(rng, n_studies, mu=mu, tau=tau)
        r = bs.bootstrap(arrays, "d", n_boot=n_boot, seed=i)
        covered += r.ci_low <= truth <= r.ci_high
        assert excludes_zero(r.ci_low, r.ci_high) == (r.p_value < 0.05), r
    assert (r.interval_method == "expanded percentile") == (n_studies == 19)
    coverage = covered / n_sims
    print(f"coverage with {n_studies} studies: {coverage:.3f}")
    assert 0.93 <= coverage <= 0.97, coverage


def test_mixed_model_over_few_studies_uses_the_studies_degrees_of_freedom() -> None:
    """Row 1: beside the bootstrap, the mixed model gave Wald p < 0.001 from 2 studies.

    Its intercept is a mean over studies; with studies differing (tau) a Wald z interval over 3
    studies covers the true mean far below 95 %, a t interval with 2 df at about 95 %.
    """
    from psych201.analysis.effects import mixed_model_effect

    rng = np.random.default_rng(17)
    mu, tau, n_sims = 0.1, 0.1, 150
    covered = 0
    for _ in range(n_sims):
        rows = []
        for s, delta in enumerate(mu + tau * rng.standard_normal(3)):
            n = int(rng.integers(10, 41))
            diffs = delta + 0.2 * rng.standard_normal(n)
            rows += [{"study": f"s{s}", "experiment": "e", "participant": str(p), "diff": d}
                     for p, d in enumerate(diffs)]
        effect = mixed_model_effect(pd.DataFrame(rows))
        covered += effect.ci_low <= mu <= effect.ci_high
        assert excludes_zero(effect.ci_low, effect.ci_high) == (effect.p_value < 0.05)
    assert covered / n_sims >= 0.92, covered / n_sims
    assert "t interval with 2 df" in effect.method
