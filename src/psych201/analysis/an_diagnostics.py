"""Per-response diagnostics: which responses drive a post-training loss, and is it over-confidence?

Three views, for the report:

* **Largest losses** — per base/post-trained pair present: the :data:`TOP_N` responses with the
  largest paired difference ``nll_post − nll_base`` (the post-trained model finds the human
  response much less likely than its base did), with study, participant, the response and, when
  the transcripts are given (``context.extras["trials"]`` with a ``snippet`` column, built by
  :func:`psych201.report.make.data_baselines`), the end of the text the response answered.
* **NLL vs entropy** — per model: mean NLL per token of the human responses and the model's own
  mean predictive entropy at them (the ``entropy`` column). Under a calibrated model a response
  drawn from its own distribution costs, on average, exactly its entropy; NLL well above entropy
  is the over-confidence signature (the model is sure, and wrong about people). Reported as the
  difference, the ratio and the per-response Pearson correlation; a scatter figure per pair.
* **Participants** — per pair: each participant's mean paired difference, the share of
  participants the post-trained model fits worse, and a histogram.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from psych201.analysis.an_population_fit import EXTRAS_KEY
from psych201.analysis.effects import paired_differences
from psych201.analysis.plugin import (
    AnalysisContext,
    Column,
    Section,
    SectionFigure,
    SectionTable,
)
from psych201.analysis.registry import ModelPair
from psych201.results.schema import RESPONSE_KEY

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Largest losses listed per pair.
TOP_N = 10
#: Points per model drawn in a scatter (a random subsample beyond this).
SCATTER_POINTS = 2000
_COLUMNS = ("nll", "entropy", "n_tokens", "response_text")


def top_losses(diffs: pd.DataFrame, rows: pd.DataFrame, n: int = TOP_N,
               trials: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``n`` responses of ``diffs`` (:func:`~psych201.analysis.effects.paired_differences`)
    with the largest ``diff``, with their text (from ``rows``) and, where ``trials`` has a
    ``snippet`` column, the context they answered."""
    top = diffs.nlargest(n, "diff").reset_index(drop=True)
    top.insert(0, "rank", np.arange(1, len(top) + 1))
    if "response_text" in rows.columns:
        text = rows[[*RESPONSE_KEY, "response_text"]].drop_duplicates(RESPONSE_KEY)
        top = top.merge(text, on=RESPONSE_KEY, how="left")
    if trials is not None and "snippet" in trials.columns:
        snippets = trials[[*RESPONSE_KEY, "snippet"]].drop_duplicates(RESPONSE_KEY)
        top = top.merge(snippets.rename(columns={"snippet": "context"}), on=RESPONSE_KEY,
                        how="left")
    return top


def confidence(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model: mean NLL per token, mean entropy, their difference and ratio, and the
    per-response correlation of the two (responses with a finite entropy only)."""
    data = rows.assign(nll_token=rows["nll"] / _tokens(rows))
    data = data[np.isfinite(data["entropy"].astype(float)) & np.isfinite(data["nll_token"])]
    out = []
    for model, group in data.groupby("model", observed=True, sort=True):
        nll, ent = group["nll_token"].astype(float), group["entropy"].astype(float)
        corr = float(np.corrcoef(nll, ent)[0, 1]) if len(group) > 2 and nll.std() > 0 and \
            ent.std() > 0 else float("nan")
        out.append({"model": model, "n_responses": len(group), "nll": float(nll.mean()),
                    "entropy": float(ent.mean()), "difference": float(nll.mean() - ent.mean()),
                    "ratio": float(nll.mean() / ent.mean()) if ent.mean() > 0 else float("nan"),
                    "correlation": corr})
    return pd.DataFrame(out, columns=["model", "n_responses", "nll", "entropy", "difference",
                                      "ratio", "correlation"])


def _tokens(rows: pd.DataFrame) -> pd.Series | float:
    """Tokens per response (1 where the table does not say: a one-token response)."""
    if "n_tokens" not in rows.columns:
        return 1.0
    return pd.to_numeric(rows["n_tokens"], errors="coerce").fillna(1).clip(lower=1)


def participant_differences(diffs: pd.DataFrame) -> pd.DataFrame:
    """Per participant (within study): responses and mean paired difference."""
    return diffs.groupby(["study", "experiment", "participant"], observed=True,
                         as_index=False).agg(n_responses=("diff", "size"),
                                             mean_diff=("diff", "mean"))


_TOP_COLUMNS = (
    Column("post", "Post-trained", "text"), Column("rank", "#", "int"),
    Column("study", "Study", "text"), Column("participant", "Participant", "text"),
    Column("context", "Context", "text", optional=True),
    Column("response_text", "Response", "text", optional=True),
    Column("nll_post", "NLL post", "num2"), Column("nll_base", "NLL base", "num2"),
    Column("diff", "Difference", "num2"),
)
_CONFIDENCE_COLUMNS = (
    Column("model", "Model", "text"), Column("n_responses", "Responses", "int"),
    Column("nll", "NLL / token", "num3"), Column("entropy", "Entropy", "num3"),
    Column("difference", "NLL − entropy", "num3"), Column("ratio", "NLL / entropy", "num2"),
    Column("correlation", "r", "num2"),
)
_PARTICIPANT_COLUMNS = (
    Column("post", "Post-trained", "text"), Column("base", "Base", "text"),
    Column("n_participants", "Participants", "int"),
    Column("share_worse", "Fit worse", "probability"),
    Column("mean", "Mean difference", "num3"), Column("median", "Median", "num3"),
)


class Diagnostics:
    """The ``diagnostics`` section (see the module docstring)."""

    name = "diagnostics"
    columns: Sequence[str] = ("nll", "entropy")

    def skip(self, context: AnalysisContext) -> str | None:
        if not context.pairs:
            return "no base/post-trained pair among the scored models"
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        rows = context.main_rows(_COLUMNS)
        trials = context.extras.get(EXTRAS_KEY)
        notes = []
        if trials is None or "snippet" not in trials.columns:
            notes.append("no transcripts given: the largest losses are listed without context")
        tops, people, summary = [], [], []
        pairs: list[tuple[ModelPair, pd.DataFrame]] = []
        for pair in context.pairs:
            diffs = paired_differences(rows, pair.post, pair.base, condition=context.condition,
                                       studies=list(context.studies),
                                       allow_missing=context.options.allow_missing)
            if diffs.empty:
                notes.append(f"{pair.post} and {pair.base} share no scored response")
                continue
            pairs.append((pair, diffs))
            tops.append(top_losses(diffs, rows, TOP_N, trials).assign(post=pair.post,
                                                                     base=pair.base))
            per = participant_differences(diffs).assign(post=pair.post, base=pair.base)
            people.append(per)
            summary.append({"post": pair.post, "base": pair.base, "n_participants": len(per),
                            "share_worse": float((per["mean_diff"] > 0).mean()),
                            "mean": float(per["mean_diff"].mean()),
                            "median": float(per["mean_diff"].median())})
        tables = []
        if tops:
            tables.append(SectionTable("largest_losses", pd.concat(tops, ignore_index=True),
                                       _TOP_COLUMNS, caption=(
                f"Per pair, the {TOP_N} responses the post-trained model finds least likely "
                "relative to its base (paired NLL difference, nats).")))
        has_entropy = "entropy" in rows.columns and rows["entropy"].notna().any()
        conf = confidence(rows) if has_entropy else pd.DataFrame()
        if not has_entropy:
            notes.append("no entropy recorded: the over-confidence view is left out")
        elif not conf.empty:
            tables.append(SectionTable("confidence", conf, _CONFIDENCE_COLUMNS, caption=(
                "Mean NLL per token of the human responses against the model's own mean "
                "predictive entropy at them; a calibrated model has NLL ≈ entropy.")))
        if people:
            tables.append(SectionTable("participant_summary", pd.DataFrame(summary),
                                       _PARTICIPANT_COLUMNS, caption=(
                "Per pair: share of participants whose responses the post-trained model "
                "fits worse on average (mean paired difference > 0).")))
            tables.append(SectionTable("participants", pd.concat(people, ignore_index=True),
                                       caption="Mean paired difference per participant."))
        figures = []
        # Figures for the pairs shown in full (as the forest plots): the tables cover every pair.
        for rank, (pair, diffs) in enumerate(pairs[: context.options.detail_pairs], start=1):
            if has_entropy:
                figures.append(SectionFigure(
                    f"fig_nll_entropy_{rank}", f"NLL vs entropy: {pair.post} and {pair.base}",
                    _scatter_drawer(rows, pair, context.options.seed)))
            figures.append(SectionFigure(
                f"fig_participant_diffs_{rank}",
                f"Per-participant mean paired difference: {pair.post} − {pair.base}",
                _histogram_drawer(participant_differences(diffs), pair)))
        return Section(self.name, "Per-response diagnostics",
                       text=_reading(pd.DataFrame(summary), conf, context.pairs),
                       tables=tuple(tables), figures=tuple(figures), notes=tuple(notes))


def _reading(summary: pd.DataFrame, conf: pd.DataFrame, pairs: Sequence[ModelPair]) -> str:
    parts = []
    by_model = conf.set_index("model") if not conf.empty else None
    for row in summary.itertuples():
        line = (f"{row.post} fits {row.share_worse:.0%} of {row.n_participants} participants "
                f"worse than {row.base} (mean per-participant difference {row.mean:+.3f} nats)")
        if by_model is not None and {row.post, row.base} <= set(by_model.index):
            post, base = by_model.loc[row.post], by_model.loc[row.base]
            line += (f"; its NLL exceeds its own entropy by {post['difference']:.3f} nats per "
                     f"token against {base['difference']:.3f} for the base")
        parts.append(line)
    if not parts:
        return f"No pair of the {len(pairs)} present shares scored responses."
    return ("Where does post-training lose, and is it over-confidence? " + "; ".join(parts)
            + ". A gap of NLL over entropy that grows with post-training means the model became "
              "surer than its accuracy about people warrants; a loss spread over most "
              "participants is a general shift, one carried by a few is a local failure (see "
              "the largest losses).")


def _scatter_drawer(rows: pd.DataFrame, pair: ModelPair, seed: int) -> Callable[[], Figure | None]:
    def draw() -> Figure | None:
        from psych201.analysis.plots import new_figure

        fig = new_figure(9, 4)
        axes = fig.subplots(1, 2, sharex=True, sharey=True)
        rng = np.random.default_rng(seed)
        for ax, model in zip(axes, (pair.base, pair.post), strict=True):
            data = rows[rows["model"] == model]
            if len(data) > SCATTER_POINTS:
                data = data.iloc[np.sort(rng.choice(len(data), SCATTER_POINTS, replace=False))]
            nll = data["nll"] / _tokens(data)
            ax.scatter(data["entropy"], nll, s=4, alpha=0.4)
            top = float(max(np.nanmax(nll, initial=0), np.nanmax(data["entropy"], initial=0)))
            ax.plot([0, top], [0, top], color="grey", lw=1)  # calibrated: NLL ≈ entropy
            ax.set_title(model)
            ax.set_xlabel("entropy (nats/token)")
        axes[0].set_ylabel("NLL (nats/token)")
        return fig

    return draw


def _histogram_drawer(per: pd.DataFrame, pair: ModelPair) -> Callable[[], Figure | None]:
    def draw() -> Figure | None:
        from psych201.analysis.plots import new_figure

        fig = new_figure(6, 3.5)
        ax = fig.subplots()
        ax.hist(per["mean_diff"], bins=min(40, max(5, len(per) // 3)))
        ax.axvline(0, color="grey", lw=1)
        ax.set_xlabel(f"mean NLL difference per participant ({pair.post} − {pair.base}, nats)")
        ax.set_ylabel("participants")
        return fig

    return draw


#: The instance :data:`psych201.analysis.sections.ANALYSES` lists.
ANALYSIS = Diagnostics()
