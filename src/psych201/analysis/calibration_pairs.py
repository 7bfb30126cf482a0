"""Calibrated pair comparisons: a post-trained model and its base, before and after a temperature.

Both models' temperatures are refitted on every bootstrap replicate (the same participants for
both), so the calibrated gap and the share of the gap a temperature removes have intervals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from psych201.analysis import bootstrap as bs
from psych201.analysis.calibration_tables import (
    COLUMN,
    _interval,
    _participant_codes,
    _study_replicates,
    across_studies,
)
from psych201.analysis.effects import (
    MEAN_DIFF,
    PAPER_D_POPULATION,
    PAPER_D_SAMPLE,
    Effect,
    compare_pair,
)
from psych201.analysis.registry import TYPE_LABELS, ModelPair
from psych201.analysis.tables import select
from psych201.results.schema import RESPONSE_KEY


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
    diff_after: Effect  # estimate of compare_pair; interval with the fits inside the bootstrap
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

def pair_frames(responses: pd.DataFrame, post: str, base: str,
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of both models on the responses both calibrated: plain NLL, and calibrated NLL."""
    a = select(responses, model=post)
    b = select(responses, model=base)
    keys = a[RESPONSE_KEY].merge(b[RESPONSE_KEY], on=RESPONSE_KEY)
    both = pd.concat([a.merge(keys, on=RESPONSE_KEY), b.merge(keys, on=RESPONSE_KEY)],
                     ignore_index=True)
    return both, both.assign(nll=both["nll_calibrated"])

def _pair_replicates(before: pd.DataFrame, pair: ModelPair, n_boot: int, seed: int,
                     ) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """Per study (S × B): replicates of the plain and of the calibrated mean paired difference,
    both models refitted on the same resampled participants; and the participants counted."""
    names, plain, calibrated, n_participants = [], [], [], 0
    for study, rows in before.groupby("study", observed=True, sort=True):
        post = select(rows, model=pair.post).sort_values(RESPONSE_KEY)
        base = select(rows, model=pair.base).sort_values(RESPONSE_KEY)
        arms = [_study_replicates(arm, np.stack(arm[COLUMN].to_numpy()), n_boot, seed,
                                  str(study)) for arm in (post, base)]
        names.append(str(study))
        plain.append(arms[0].plain - arms[1].plain)
        calibrated.append(arms[0].calibrated - arms[1].calibrated)
        n_participants += len(_participant_codes(post)[1])
    return names, np.array(plain), np.array(calibrated), n_participants

def compare_calibrated(responses: pd.DataFrame, pair: ModelPair, *, condition: str,
                       n_boot: int = 2000, ci: float = 0.95, seed: int = 0,
                       levels: bs.Levels = "both", sd: bs.SD = "sample") -> CalibratedPair:
    """Paper d and mean paired difference of ``pair`` before and after calibration.

    Both come from :func:`~psych201.analysis.effects.compare_pair` on the responses both models
    calibrated (plain ``nll``, then ``nll`` replaced by ``nll_calibrated``). The calibrated gap's
    interval and the share ``1 − diff_after / diff_before`` come from one bootstrap that
    resamples the same participants for both models and refits both models' temperatures in
    every replicate (:func:`~.calibration_fit.replicate`).
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
    diff_before, diff_after = cmp_before.effect(MEAN_DIFF), cmp_after.effect(MEAN_DIFF)
    _, plain_reps, cal_reps, n_participants = _pair_replicates(before, pair, n_boot, seed)
    observed = [(before, plain_reps), (after, cal_reps)]
    combined = []
    for frame, reps in observed:
        per_study = (select(frame, model=pair.post).groupby("study", observed=True, sort=True)
                     ["nll"].mean()
                     - select(frame, model=pair.base).groupby("study", observed=True, sort=True)
                     ["nll"].mean()).to_numpy(float)
        combined.append(across_studies(reps, per_study, n_participants, levels, seed))
    (before_reps, n_units, df), (after_reps, _, _) = combined
    after_low, after_high = bs.interval(after_reps, ci, n_units, df)
    diff_after = Effect(**{**diff_after.to_dict(), "ci_low": after_low, "ci_high": after_high,
                           "p_value": bs.p_value(after_reps, n_units, df),
                           "method": diff_after.method + "; temperatures refitted per replicate"})
    with np.errstate(divide="ignore", invalid="ignore"):
        share = 1.0 - diff_after.estimate / diff_before.estimate
        share_reps = 1.0 - after_reps / before_reps
    low, high = bs.interval(share_reps, ci, n_units, df)
    return CalibratedPair(pair.post, pair.base, pair.post_training, cmp_before.effect(d_name),
                          cmp_after.effect(d_name), diff_before, diff_after, float(share),
                          low, high, unmatched)
