"""Item-level human-likeness: does the model know *where* people disagree?

A model can match people's average loss and still be sure where people split and unsure where
they agree. Per trial that several participants saw in the same form (the trial key and shared
responses of :func:`~psych201.analysis.an_population_fit.shared_trials`: one function boundary,
so the trial keys can change without this section), with the model's distribution over the
offered options (``offered_options`` / ``offered_logprobs``):

* **Entropy agreement** — per (model, study): the Spearman correlation across trials between the
  humans' choice entropy (of the choice frequencies) and the model's predictive entropy over the
  options (mean over the participants who saw the trial), with a Fisher-z interval over trials
  (Fieller's standard error √(1.06 / (T − 3))): by simulation a percentile bootstrap over trials
  covered 96.5 % at 40 trials and 98 % at 15, this interval 94–95.5 % (``tests/
  test_analysis_items.py``).
* **Noise ceiling** — how well one half of the participants predicts the other: the split-half
  correlation of the human entropies (mean over :data:`SPLITS` random halvings), stepped up to
  the full sample by Spearman–Brown; the ceiling for the model's correlation is its square root
  (a model cannot correlate with noisy human entropies better than they correlate with the true
  ones). A correlation near the ceiling means the model tracks disagreement as well as the data
  can show.
* **Reliability curve** — every (trial, option): the model's mean predicted probability, binned,
  against the human choice frequency; beside it the same curve of one half of the people
  predicting the other, the best a predictor can look at these sample sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats as sps

from psych201.analysis.an_population_fit import offered_rows
from psych201.analysis.plugin import (
    AnalysisContext,
    Column,
    Section,
    SectionFigure,
    SectionTable,
)
from psych201.analysis.population_fit import MIN_PARTICIPANTS, SharedTrials, shared_trials

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Random halvings of the participants averaged in the split-half reliability.
SPLITS = 50
#: Bins of the reliability curve (equal width in predicted probability).
BINS = 10
#: Fewest shared trials for a correlation across trials.
MIN_TRIALS = 5
_COLUMNS = ("offered_options", "offered_logprobs")


def _entropy(p: np.ndarray) -> np.ndarray:
    """Row entropies (nats) of distributions (rows may be unnormalised counts)."""
    total = p.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(total > 0, p / total, 0.0)
        entropy: np.ndarray = -(np.where(q > 0, q * np.log(q), 0.0)).sum(axis=1)
    return entropy


def _counts(data: SharedTrials, keep: np.ndarray | None = None) -> np.ndarray:
    """(trials × labels) human choice counts, of the responses ``keep`` marks (all: None)."""
    cells = data.cell if keep is None else data.cell[keep]
    return np.bincount(cells, minlength=data.n_trials * data.width).reshape(data.n_trials,
                                                                           data.width)


@dataclass(frozen=True)
class ItemFit:
    """Item-level agreement of one (model, study)."""

    n_trials: int
    n_participants: int
    rho: float  # Spearman: human choice entropy vs model predictive entropy, across trials
    rho_ci: tuple[float, float]
    reliability: float  # split-half, Spearman–Brown stepped up
    ceiling: float  # sqrt(reliability)
    curve: pd.DataFrame  # bin, predicted, observed, n_cells, source ("model" / "split half")


def item_fit(data: SharedTrials, *, ci: float = 0.95, seed: int = 0,
             splits: int = SPLITS) -> ItemFit:
    """Entropy agreement, split-half noise ceiling and reliability curves (module notes)."""
    rng = np.random.default_rng(seed)
    counts = _counts(data)
    human = _entropy(counts.astype(float))
    q = data.probs
    with np.errstate(divide="ignore", invalid="ignore"):
        per_response = -(np.where(q > 0, q * np.log(q), 0.0)).sum(axis=1)
    model = (np.bincount(data.trial, weights=per_response, minlength=data.n_trials)
             / np.bincount(data.trial, minlength=data.n_trials))
    rho = _spearman(human, model)
    rho_ci = spearman_interval(rho, data.n_trials, ci)
    halves = []
    for _ in range(splits):
        half = rng.permutation(data.n_participants) < data.n_participants // 2
        first = half[data.participant]
        a, b = _counts(data, first), _counts(data, ~first)
        seen = (a.sum(axis=1) > 0) & (b.sum(axis=1) > 0)
        halves.append(_spearman(_entropy(a[seen].astype(float)), _entropy(b[seen].astype(float))))
    split = float(np.nanmean(halves)) if np.isfinite(halves).any() else float("nan")
    reliability = 2 * split / (1 + split) if np.isfinite(split) and split > -1 else float("nan")
    ceiling = float(np.sqrt(reliability)) if reliability > 0 else float("nan")
    return ItemFit(data.n_trials, data.n_participants, rho, rho_ci, reliability, ceiling,
                   _curves(data, counts, rng))


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(sps.spearmanr(x, y).statistic)


def spearman_interval(rho: float, n: int, ci: float = 0.95) -> tuple[float, float]:
    """Fisher-z interval of a Spearman correlation over ``n`` units with Fieller, Hartley and
    Pearson's (1957) standard error √(1.06 / (n − 3)); NaN below 4 units."""
    if n < 4 or not np.isfinite(rho):
        return float("nan"), float("nan")
    z = float(np.arctanh(np.clip(rho, -0.999999, 0.999999)))
    half = float(sps.norm.ppf(0.5 + ci / 2)) * float(np.sqrt(1.06 / (n - 3)))
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def _curves(data: SharedTrials, counts: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Binned reliability curves: the model's mean predicted probability of each (trial,
    option) against the human frequency, and one random half of the people against the other."""
    sums = np.zeros((data.n_trials, data.width))
    np.add.at(sums, data.trial, data.probs)
    n = counts.sum(axis=1, keepdims=True).astype(float)
    labelled = np.zeros((data.n_trials, data.width), dtype=bool)
    np.logical_or.at(labelled, data.trial, data.probs > 0)
    labelled |= counts > 0
    predicted = (sums / n)[labelled]
    observed = (counts / n)[labelled]
    half = rng.permutation(data.n_participants) < data.n_participants // 2
    first = half[data.participant]
    a, b = _counts(data, first).astype(float), _counts(data, ~first).astype(float)
    na, nb = a.sum(axis=1, keepdims=True), b.sum(axis=1, keepdims=True)
    both = labelled & (na > 0) & (nb > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        split_pred, split_obs = (a / na)[both], (b / nb)[both]
    frames = [_binned(predicted, observed, "model"), _binned(split_pred, split_obs, "split half")]
    return pd.concat(frames, ignore_index=True)


def _binned(predicted: np.ndarray, observed: np.ndarray, source: str) -> pd.DataFrame:
    bins = np.minimum((predicted * BINS).astype(int), BINS - 1)
    frame = pd.DataFrame({"bin": bins, "predicted": predicted, "observed": observed})
    out = frame.groupby("bin", as_index=False).agg(predicted=("predicted", "mean"),
                                                  observed=("observed", "mean"),
                                                  n_cells=("observed", "size"))
    return out.assign(source=source)


def _scored_rows(context: AnalysisContext) -> pd.DataFrame | None:
    """Rows with the options' log-probs: the main condition's, else a discrete variant's."""
    found = offered_rows(context, _COLUMNS)
    return None if found is None else found[0]


_TABLE_COLUMNS = (
    Column("model", "Model", "text"), Column("study", "Study", "text"),
    Column("n_trials", "Trials", "int"), Column("n_participants", "Participants", "int"),
    Column("rho", "ρ entropy (human vs model)", "num2"), Column("rho_interval", "CI", "text"),
    Column("ceiling", "Noise ceiling", "num2"),
    Column("reliability", "Split-half reliability", "num2"),
)


class ItemLevel:
    """The ``items`` section (see the module docstring)."""

    name = "items"
    requires: Sequence[str] = ()
    result_type: type | None = None
    columns: Sequence[str] = _COLUMNS

    def skip(self, context: AnalysisContext) -> str | None:
        if context.inputs.trials is None:
            return ("item-level analysis skipped: it needs the transcripts to find shared "
                    "trials (pass the scored dataset: compare/report --data)")
        if _scored_rows(context) is None:
            return ("item-level analysis skipped: no model recorded offered_logprobs (one-token "
                    "options and an engine that reports candidates)")
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        trials = context.inputs.trials
        rows = _scored_rows(context)
        assert rows is not None and trials is not None  # what skip checked
        options = context.options
        out, curves, notes = [], [], []
        for (model, study), group in rows.groupby(["model", "study"], observed=True, sort=True):
            data, _ = shared_trials(group, trials[trials["study"] == study])
            if data is None or data.n_trials < MIN_TRIALS:
                notes.append(f"{model} / {study}: fewer than {MIN_TRIALS} trials seen in the "
                             f"same form by ≥ {MIN_PARTICIPANTS} participants; left out")
                continue
            fit = item_fit(data, ci=options.ci, seed=options.seed)
            low, high = fit.rho_ci
            out.append({"model": model, "study": study, "n_trials": fit.n_trials,
                        "n_participants": fit.n_participants, "rho": fit.rho,
                        "rho_ci_low": low, "rho_ci_high": high,
                        "rho_interval": (f"[{low:.2f}, {high:.2f}]" if np.isfinite(low)
                                         and np.isfinite(high) else ""),
                        "reliability": fit.reliability, "ceiling": fit.ceiling})
            curves.append(fit.curve.assign(model=model, study=study))
        title = "Item-level human-likeness: where do people disagree?"
        if not out:
            return Section(self.name, title, text=(
                f"No study has {MIN_TRIALS} or more trials seen in the same form by "
                f"{MIN_PARTICIPANTS} or more participants with the model's option "
                "probabilities recorded, so disagreement cannot be compared trial by trial."),
                notes=tuple(notes))
        table = pd.DataFrame(out)
        curve = pd.concat(curves, ignore_index=True)
        return Section(
            anchor=self.name, title=title, text=_reading(table),
            tables=(
                SectionTable("per_study", table, _TABLE_COLUMNS, caption=(
                    "Per model and study, over trials seen in the same form by ≥ "
                    f"{MIN_PARTICIPANTS} participants: Spearman correlation between the "
                    "humans' choice entropy and the model's predictive entropy over the offered "
                    "options (Fisher-z interval over trials), and the noise ceiling: the square "
                    "root of the split-half reliability of the human entropies "
                    "(Spearman–Brown).")),
                SectionTable("reliability_curve", curve, caption=(
                    "Reliability curves: mean predicted probability of each (trial, option), "
                    "binned, against the human choice frequency; 'split half' is one half of "
                    "the participants predicting the other."))),
            figures=(SectionFigure(
                "fig_item_reliability",
                "Reliability curves: model's predicted probability against human choice "
                "frequency per (trial, option); dashed: one half of the people predicting the "
                "other half.", lambda: _draw(curve)),),
            notes=tuple(notes))


def _reading(table: pd.DataFrame) -> str:
    parts = []
    for r in table.itertuples():
        ceiling = (f" against a noise ceiling of {r.ceiling:.2f}" if np.isfinite(r.ceiling)
                   else " (no ceiling: the human entropies are not reliable across halves)")
        parts.append(f"{r.model} on {r.study}: ρ = {r.rho:.2f} {r.rho_interval}{ceiling} "
                     f"({r.n_trials} trials)")
    return ("Does the model know where people disagree? Across shared trials, the model's "
            "uncertainty over the options correlates with the spread of people's choices as "
            "follows: " + "; ".join(parts) + ". A correlation near its ceiling means the model "
            "tracks disagreement as well as these data can show; one well below it means the "
            "model is unsure in the wrong places, whatever its average loss.")


def _draw(curve: pd.DataFrame) -> Figure | None:
    from psych201.analysis.plots import new_figure

    fig = new_figure(5, 4)
    ax = fig.subplots()
    for (model, source), g in curve.groupby(["model", "source"], sort=True):
        pooled = g.groupby("bin").apply(
            lambda b: pd.Series({"predicted": np.average(b["predicted"], weights=b["n_cells"]),
                                 "observed": np.average(b["observed"], weights=b["n_cells"])}),
            include_groups=False)
        style = "--" if source == "split half" else "-"
        label = f"{model} (split half)" if source == "split half" else str(model)
        ax.plot(pooled["predicted"], pooled["observed"], style, marker="o", ms=3, label=label)
    ax.plot([0, 1], [0, 1], color="grey", lw=1)
    ax.set_xlabel("predicted probability of an option")
    ax.set_ylabel("human choice frequency")
    ax.legend(fontsize=6.5)
    return fig


#: The instance :data:`psych201.analysis.sections.ANALYSES` lists.
ANALYSIS = ItemLevel()
