"""Calibration control: how much of the NLL and of a post-training gap a temperature explains.

An over-confident model puts too much probability on its favourite response; dividing its logits
by a temperature T > 1 flattens the distribution and may recover most of its loss. If a
post-trained model predicts people worse than its base *only* because it is sharper, one
temperature per study removes the gap; what remains is a change in *what* the model expects.

The fitting maths (grid, refinement, interpolation, cross-fitting over participants, the fit
inside the bootstrap) is :mod:`.calibration_fit`; this module makes the tables. Per (model,
study): the temperature fitted on all participants with a participant-bootstrap interval (the
fit redone in every replicate; a fit at an end of the grid is printed "≥ 8" / "≤ 0.125"), the
plain and the cross-fitted NLL. A study with too few participants for two folds of
:data:`~.calibration_fit.MIN_PER_FOLD` is named and left out.

Only responses with a complete ``nll_temperature`` enter; models without it are skipped with a
note. Pairs (post-trained vs base) are compared with :func:`~psych201.analysis.effects.compare_pair`
on the responses both models calibrated, once on the plain NLL and once on the calibrated NLL.
The calibrated gap and the share of the gap a temperature removes (1 − after/before) take their
intervals from one bootstrap in which both models' temperatures are refitted on every replicate
(same participants for both models).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from psych201.analysis import bootstrap as bs
from psych201.analysis.calibration_fit import (
    MIN_PER_FOLD,
    N_FOLDS,
    Replicates,
    StudyCurves,
    cross_fit,
    edge,
    fit_temperature,
    fold_count,
    nll_at,
    other_grid_lengths,
    participant_folds,
    participant_weights,
    replicate,
    temperature_label,
    temperature_matrix,
)
from psych201.analysis.effects import (
    MEAN_DIFF,
    PAPER_D_POPULATION,
    PAPER_D_SAMPLE,
    Effect,
    compare_pair,
)
from psych201.analysis.offered import fit_slopes, offered_choices
from psych201.analysis.plugin import (
    AnalysisContext,
    Column,
    Section,
    SectionFigure,
    SectionTable,
)
from psych201.analysis.registry import TYPE_LABELS, ModelPair
from psych201.analysis.tables import select
from psych201.results.schema import RESPONSE_KEY
from psych201.scoring.engine import TEMPERATURE_GRID

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["N_FOLDS", "CalibrationAnalysis", "calibrate", "compare_calibrated", "cross_fit",
           "fit_temperature", "nll_at", "participant_folds"]

COLUMN = "nll_temperature"
_OFFERED = ("nll", "response_text", "offered_options", "offered_logprobs")
_ONE = TEMPERATURE_GRID.index(1.0)  # the column that must equal the plain NLL


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
              "temperature_label", "at_edge", "temperature_ci_low", "temperature_ci_high",
              "temperature_interval", "fold_t_min", "fold_t_max", "nll", "nll_calibrated",
              "gain", "gain_ci_low", "gain_ci_high"]
_PER_MODEL = ["model", "n_studies", "n_responses", "temperature", "temperature_label",
              "studies_at_edge", "temperature_ci_low", "temperature_ci_high",
              "temperature_interval", "nll", "nll_calibrated", "gain", "gain_ci_low",
              "gain_ci_high", "gain_interval"]


def _interval(low: float, high: float, digits: int = 3) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return ""
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def _t_interval(low: float, high: float) -> str:
    """A temperature interval, its ends flagged where they reach the grid's ends."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return ""
    return f"[{temperature_label(low)}, {temperature_label(high)}]"


def _participant_codes(rows: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    pid = rows["experiment"].astype(str) + "\x1f" + rows["participant"].astype(str)
    codes, uniques = pd.factorize(pid, sort=True)
    return np.asarray(codes), pd.Index(uniques)


def across_studies(per_study: np.ndarray, observed: np.ndarray, n_participants: int,
                   levels: bs.Levels, seed: int) -> tuple[np.ndarray, int, int]:
    """Study-weighted replicates from per-study participant replicates (S × B), and the units
    and degrees of freedom of :func:`~psych201.analysis.bootstrap.interval`.

    ``participants`` (and any level with one study): the mean over the studies; ``studies``:
    studies drawn with replacement (observed values); ``both``: studies drawn, each with its
    participant replicate, shrunk as in :func:`~psych201.analysis.bootstrap.resample`
    (Davison & Hinkley).
    """
    n_studies, n_boot = per_study.shape
    if levels == "participants" or n_studies == 1:  # one study: its participants are the units
        return per_study.mean(axis=0), n_participants, n_participants - n_studies
    rng = np.random.default_rng([seed, 2])
    draws = rng.integers(0, n_studies, size=(n_boot, n_studies))
    if levels == "studies":
        return observed[draws].mean(axis=1), n_studies, n_studies - 1
    nu = per_study[draws, np.arange(n_boot)[:, None]]
    if n_studies > 1:
        nu = bs._shrunk(nu, draws, observed)
    return nu.mean(axis=1), n_studies, n_studies - 1


def _study_replicates(rows: pd.DataFrame, matrix: np.ndarray, n_boot: int, seed: int,
                      study: str) -> Replicates:
    """The fit-inside bootstrap of one model's rows of one study (``fold`` per row)."""
    codes, uniques = _participant_codes(rows)
    folds = np.zeros(len(uniques), dtype=np.intp)
    folds[codes] = rows["fold"].to_numpy()
    curves = StudyCurves.of(matrix, codes, rows["nll"].to_numpy(float), folds)
    return replicate(curves, participant_weights(len(uniques), n_boot, seed=seed, salt=study))


def calibrate(frame: pd.DataFrame, *, condition: str | None = None,
              studies: Sequence[str] | None = None, n_folds: int = N_FOLDS,
              min_per_fold: int = MIN_PER_FOLD, seed: int = 0, n_boot: int = 2000,
              ci: float = 0.95, levels: bs.Levels = "both") -> Calibration:
    """Cross-fitted temperatures and calibrated NLLs of every model (module notes).

    ``frame`` holds response rows (``nll`` and ``nll_temperature``); ``condition`` and
    ``studies`` restrict them. Per model, study-weighted means (mean per study, then over
    studies); the model's temperature is the geometric mean of its per-study fits. Intervals
    come from ``n_boot`` replicates with the fits redone in each.
    """
    rows = select(frame, condition=condition, studies=studies)
    ok, matrix = temperature_matrix(rows)
    rows = rows.assign(_ok=ok)
    position = np.full(len(rows), -1)
    position[ok] = np.arange(int(ok.sum()))
    rows = rows.assign(_pos=position)
    skipped: dict[str, str] = {}
    notes: list[str] = []
    old = other_grid_lengths(rows)
    if old:
        notes.append("; ".join(f"{n} responses carry nll_temperature on a {length}-point grid "
                               for length, n in old.items())
                     + f"(this version's grid has {len(TEMPERATURE_GRID)} points, 1/8 … 8): "
                     "rescore them to calibrate")
    kept: list[pd.DataFrame] = []
    per_study: list[dict[str, Any]] = []
    replicates: dict[tuple[str, str], Replicates] = {}
    curves: dict[str, list[np.ndarray]] = {}
    too_few: list[str] = []
    for model, group in rows.groupby("model", observed=True, sort=True):
        model = str(model)
        usable = group[group["_ok"].to_numpy()]
        if usable.empty:
            skipped[model] = ("no response carries nll_temperature on this grid (its engine "
                              "could not record the NLL at other temperatures, or the table "
                              "predates the column or the grid)")
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
            codes, uniques = _participant_codes(one)
            if fold_count(len(uniques), n_folds=n_folds, min_per_fold=min_per_fold) < 2:
                too_few.append(f"{model}, {study} ({len(uniques)})")
                continue
            sub = matrix[one["_pos"].to_numpy()]
            curves.setdefault(model, []).append(sub.mean(axis=0))
            fit = cross_fit(sub, codes, n_folds=n_folds, seed=seed, salt=study,
                            min_per_fold=min_per_fold)
            out = one[["model", "condition", *RESPONSE_KEY, "nll"]].copy()
            out["nll_calibrated"] = fit.calibrated
            out["temperature"] = fit.row_temperature
            out["fold"] = fit.fold
            out[COLUMN] = list(sub)
            kept.append(out)
            reps = _study_replicates(out, sub, n_boot, seed, study)
            replicates[(model, study)] = reps
            t_low, t_high = bs.interval(np.log(reps.temperature), ci, len(uniques),
                                        len(uniques) - 1)
            gain_low, gain_high = bs.interval(reps.plain - reps.calibrated, ci, len(uniques),
                                              len(uniques) - 1)
            per_study.append({
                "model": model, "study": study, "n_participants": len(uniques),
                "n_responses": len(one), "n_folds": len(fit.fold_temperatures),
                "temperature": fit.temperature,
                "temperature_label": temperature_label(fit.temperature),
                "at_edge": edge(fit.temperature) or "",
                "temperature_ci_low": float(np.exp(t_low)),
                "temperature_ci_high": float(np.exp(t_high)),
                "temperature_interval": _t_interval(float(np.exp(t_low)), float(np.exp(t_high))),
                "fold_t_min": float(fit.fold_temperatures.min()),
                "fold_t_max": float(fit.fold_temperatures.max()),
                "nll": float(out["nll"].mean()),
                "nll_calibrated": float(fit.calibrated.mean()),
                "gain": float(out["nll"].mean() - fit.calibrated.mean()),
                "gain_ci_low": gain_low, "gain_ci_high": gain_high,
            })
    if too_few:
        notes.append(f"left out (fewer than {2 * min_per_fold} participants, so no two folds of "
                     f"{min_per_fold} to fit a temperature on other people): "
                     + ", ".join(too_few))
    studies_table = pd.DataFrame(per_study, columns=_PER_STUDY)
    per_model = [_model_row(str(model), g, replicates, ci, levels, seed)
                 for model, g in studies_table.groupby("model", sort=True)]
    curve_rows = [
        {"model": m, "temperature": t, "nll": v}
        for m, parts in curves.items()
        for t, v in zip(TEMPERATURE_GRID, np.mean(parts, axis=0), strict=True)
    ]
    responses = (pd.concat(kept, ignore_index=True) if kept else
                 pd.DataFrame(columns=["model", "condition", *RESPONSE_KEY, "nll",
                                       "nll_calibrated", "temperature", "fold", COLUMN]))
    return Calibration(
        responses=responses,
        per_study=studies_table.reset_index(drop=True),
        per_model=pd.DataFrame(per_model, columns=_PER_MODEL),
        curves=pd.DataFrame(curve_rows, columns=["model", "temperature", "nll"]),
        skipped=skipped,
        notes=tuple(notes),
    )


def _model_row(model: str, g: pd.DataFrame, replicates: dict[tuple[str, str], Replicates],
               ci: float, levels: bs.Levels, seed: int) -> dict[str, Any]:
    """One model over its studies: geometric-mean temperature, study-weighted NLLs and gain,
    intervals from the per-study fit-inside replicates combined over studies."""
    reps = [replicates[(model, str(s))] for s in g["study"]]
    n_participants = int(g["n_participants"].sum())
    log_t = np.log(g["temperature"].to_numpy(float))
    t_reps, n_units, df = across_studies(np.array([np.log(r.temperature) for r in reps]),
                                         log_t, n_participants, levels, seed)
    t_low, t_high = (float(np.exp(v)) for v in bs.interval(t_reps, ci, n_units, df))
    gains = g["gain"].to_numpy(float)
    gain_reps, n_units, df = across_studies(
        np.array([r.plain - r.calibrated for r in reps]), gains, n_participants, levels, seed)
    gain_low, gain_high = bs.interval(gain_reps, ci, n_units, df)
    temperature = float(np.exp(log_t.mean()))
    return {
        "model": model, "n_studies": len(g), "n_responses": int(g["n_responses"].sum()),
        "temperature": temperature, "temperature_label": temperature_label(temperature),
        "studies_at_edge": int((g["at_edge"] != "").sum()),
        "temperature_ci_low": t_low, "temperature_ci_high": t_high,
        "temperature_interval": _t_interval(t_low, t_high),
        "nll": float(g["nll"].mean()), "nll_calibrated": float(g["nll_calibrated"].mean()),
        "gain": float(gains.mean()), "gain_ci_low": gain_low, "gain_ci_high": gain_high,
        "gain_interval": _interval(gain_low, gain_high),
    }


def with_offered_temperature(per_study: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``per_study`` with the temperature fitted over the offered options only (1/β of
    :func:`~psych201.analysis.offered.fit_slopes`; NaN where β ≤ 0: no temperature fits a
    model that prefers other options) and the mean probability on the options, where the rows
    record the options' log-probs."""
    if "offered_logprobs" not in rows.columns or not rows["offered_logprobs"].notna().any():
        return per_study
    found = []
    for (model, study), group in rows.dropna(subset=["offered_logprobs"]).groupby(
            ["model", "study"], observed=True, sort=True):
        choices = offered_choices(group)
        if len(choices.chosen):
            beta = float(fit_slopes(choices.log_q, choices.chosen,
                                    np.ones((1, len(choices.chosen))))[0])
            found.append({"model": model, "study": study,
                          "temperature_offered": 1 / beta if beta > 0 else float("nan"),
                          "offered_mass": float(choices.mass.mean())})
    if not found:
        return per_study
    return per_study.merge(pd.DataFrame(found), on=["model", "study"], how="left")


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


# -- the section --------------------------------------------------------------------------------
def _reading(per_model: pd.DataFrame, pairs: Sequence[CalibratedPair], ci: float) -> str:
    """The one-paragraph reading of the numbers."""
    parts: list[str] = []
    if not len(per_model):
        return (f"No model and study has the {2 * MIN_PER_FOLD} or more participants a "
                "temperature fitted on other people needs, so nothing is calibrated (see the "
                "notes for the studies left out).")
    if len(per_model):
        ordered = per_model.sort_values("temperature")
        low, high = ordered.iloc[0], ordered.iloc[-1]
        if len(ordered) == 1:
            parts.append(f"The fitted temperature of {low['model']} is "
                         f"{low['temperature_label']} {low['temperature_interval']}")
        else:
            parts.append(f"Fitted temperatures range from {low['temperature_label']} "
                         f"({low['model']}) to {high['temperature_label']} ({high['model']})")
        parts[-1] += (" (geometric mean over studies; T > 1: the model's whole-vocabulary "
                      "distribution is too sharp for people, T < 1: too flat). ")
        edged = per_model[per_model["studies_at_edge"] > 0]
        if len(edged):
            parts.append("At the end of the temperature grid (1/8 … 8) the fit is only a bound, "
                         "shown as \"≥\" or \"≤\": " + ", ".join(
                             f"{r.model} in {r.studies_at_edge} of {r.n_studies} studies"
                             for r in edged.itertuples()) + ". ")
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
    ticks = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xticks([], minor=True)
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("Softmax temperature (log scale)")
    ax.set_ylabel("Mean NLL (study-weighted, ↓)")
    ax.legend(fontsize=6.5)
    return fig


PER_MODEL_COLUMNS = (
    Column("model", "Model", "text"), Column("n_studies", "Studies", "int"),
    Column("n_responses", "Responses", "int"), Column("temperature_label", "Fitted T", "text"),
    Column("temperature_interval", "T CI", "text"),
    Column("studies_at_edge", "Studies at grid end", "int"),
    Column("nll", "NLL", "num3"), Column("nll_calibrated", "Calibrated NLL", "num3"),
    Column("gain", "Gain (nats)", "num3"), Column("gain_interval", "Gain CI", "interval"),
)
PER_STUDY_COLUMNS = (
    Column("model", "Model", "text"), Column("study", "Study", "text"),
    Column("n_participants", "Participants", "int"), Column("n_responses", "Responses", "int"),
    Column("temperature_label", "Fitted T", "text"),
    Column("temperature_interval", "T CI", "text"),
    Column("temperature_offered", "T over options", "num2", optional=True),
    Column("offered_mass", "P(offered)", "probability", optional=True),
    Column("nll", "NLL", "num3"),
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
        if not temperature_matrix(context.main)[0].any():
            old = other_grid_lengths(context.main)
            if old:
                return ("calibration skipped: nll_temperature was recorded on a "
                        f"{'/'.join(map(str, old))}-point grid, not this version's "
                        f"{len(TEMPERATURE_GRID)}-point grid (1/8 … 8); rescore to calibrate")
            return ("calibration skipped: no scored response carries nll_temperature (the "
                    "engines could not record the NLL at other temperatures, or the tables "
                    "predate the column)")
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        options = context.options
        cal = calibrate(context.main, condition=context.condition,
                        studies=context.studies or None, n_folds=self.n_folds,
                        seed=options.seed, n_boot=options.n_boot, ci=options.ci,
                        levels=options.levels)
        notes = list(cal.notes)
        per_study = with_offered_temperature(cal.per_study, context.main_rows(_OFFERED))
        if cal.skipped:
            notes.append("not calibrated: " + "; ".join(
                f"{m} ({why})" for m, why in cal.skipped.items()))
        per_model = cal.per_model
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
                         "Per model: temperature fitted per study (geometric mean over studies; "
                         "\"≥ 8\": still improving at the end of the grid), mean NLL before and "
                         "after calibration (mean per study, then over studies) and the gain; "
                         "intervals from a bootstrap that refits every temperature."),
            SectionTable("per_study", per_study, PER_STUDY_COLUMNS,
                         "Per model and study: temperature fitted on all participants with its "
                         "participant-bootstrap interval (refitted in every replicate), plain "
                         f"and cross-fitted NLL ({self.n_folds} folds of at least "
                         f"{MIN_PER_FOLD} participants; smaller studies are left out). Where "
                         "the options' log-probs are recorded, the temperature over the offered "
                         "options only (1/β of the diagnostics' slope) and the probability on "
                         "the options at all: a whole-vocabulary T far from it means probability "
                         "spent on tokens that are not options, not over-confidence."),
            SectionTable("pairs", pair_table, PAIR_COLUMNS,
                         "Post-training effect before and after calibration, on the responses "
                         "both models calibrated, and the share of the mean NLL gap a "
                         "temperature explains (1 − after/before). The calibrated gap and the "
                         "share take their intervals from one bootstrap that refits both "
                         "models' temperatures on the same resampled participants; d after "
                         "holds the fitted temperatures fixed."),
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
