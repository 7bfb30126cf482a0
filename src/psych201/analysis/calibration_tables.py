"""Calibration tables: per (model, study) and per model, the fitted temperature.

Each with a participant-bootstrap interval (the fit redone in every replicate), the plain and the
cross-fitted NLL; the fitting maths is :mod:`.calibration_fit`, the section
:mod:`.an_calibration`, pairs :mod:`.calibration_pairs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    fold_count,
    other_grid_lengths,
    participant_weights,
    replicate,
    temperature_label,
    temperature_matrix,
)
from psych201.analysis.offered import fit_slopes, offered_choices
from psych201.analysis.tables import select
from psych201.results.schema import RESPONSE_KEY
from psych201.scoring.engine import TEMPERATURE_GRID

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
