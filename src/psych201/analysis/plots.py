"""Drawing the analyses' figures (matplotlib, object-oriented API: no pyplot state, no GUI).

Each ``fig_*`` function takes analysis tables and returns a :class:`Figure` (or ``None`` when its
data is absent). They live in the analysis layer so an analysis can hand its figures to
:class:`~psych201.analysis.plugin.SectionFigure` without importing the report; the report only
embeds or saves what they draw. Use :func:`style` and :func:`new_figure` in new figures so they
match the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, cast

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from psych201.analysis.effects import MEAN_DIFF, PairComparison
from psych201.analysis.paper import GenerationTrend

#: Panels of the paper's Fig. 2 / accuracy / chat-template figures, when these families are scored.
PAPER_PANELS: tuple[str, ...] = ("Qwen3", "OLMo 3", "Llama 3")

#: Colour per post-training type (as the paper: base blue, instruct orange, reasoning green …).
TYPE_COLORS: dict[str, str] = {
    "Base": "C0", "Instruction-tuned": "C1", "Reasoning": "C2", "Vision": "C3", "Code": "C5",
    "Math": "C6", "Human fine-tuned": "C7",
}
_LINESTYLES = ("-", "--", ":", "-.")

STYLE: dict[str, Any] = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "legend.fontsize": 6.5, "lines.linewidth": 1.2, "lines.markersize": 4,
    "axes.linewidth": 0.6, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
    "figure.dpi": 100, "text.usetex": False,
}

NLL_LABEL = "Negative log-likelihood (↓)"


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def _panels(points: pd.DataFrame, families: Sequence[str] | None) -> list[str]:
    """``families`` that have points; by default the paper's panels first, then the others."""
    present = list(dict.fromkeys(points["family"].dropna()))
    if families is not None:
        return [f for f in families if f in present]
    return [f for f in PAPER_PANELS if f in present] + [
        f for f in present if f not in PAPER_PANELS]


def fig_lines_by_family(points: pd.DataFrame, *, value: str = "score", ylabel: str = NLL_LABEL,
                        families: Sequence[str] | None = None, title: str = "",
                        legend_loc: str = "best") -> Figure | None:
    """One panel per family: ``value`` against parameters (log axis), one line per model line.

    ``points`` needs ``family``, ``line``, ``type``, ``params_b`` and ``value`` columns (Fig. 2,
    accuracy). Lines are coloured by post-training type; variant lines of a type are dashed.
    """
    pts = points.dropna(subset=["params_b", value, "family"])
    panels = _panels(pts, families)
    if not panels:
        return None
    with style():
        ncols = min(len(panels), 4)
        nrows = math.ceil(len(panels) / ncols)
        fig = new_figure(2.4 * ncols + 0.4, 2.1 * nrows + 0.3)
        axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
        for ax, family in zip(axes, panels, strict=False):
            sub = pts[pts["family"] == family]
            styles: dict[str, int] = {}
            # legend order: base first, then the paper's order of post-training types
            rank = {t: i for i, t in enumerate(TYPE_COLORS)}
            lines = sorted(sub.groupby("line", sort=False),
                           key=lambda item: (rank.get(str(item[1]["type"].iloc[0]), 99),
                                             str(item[0])))
            for line, group in lines:
                kind = str(group["type"].iloc[0])
                n = styles.get(kind, 0)
                styles[kind] = n + 1
                curve = group.groupby("params_b")[value].mean().sort_index()
                ax.plot(curve.index, curve.to_numpy(), marker="o", label=str(line),
                        color=TYPE_COLORS.get(kind, "C7"),
                        linestyle=_LINESTYLES[n % len(_LINESTYLES)])
            ax.set_xscale("log")
            ax.set_title(family)
            ax.set_xlabel("Parameters (billions)")
            ax.legend(frameon=False, loc=legend_loc)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        for row in range(nrows):
            axes[row * ncols].set_ylabel(ylabel)
        if title:
            fig.suptitle(title)
    return fig


def fig_size(points: pd.DataFrame, families: Sequence[str] | None = None) -> Figure | None:
    """Paper Fig. 2: NLL vs parameters per family, one line per model type."""
    return fig_lines_by_family(points, families=families)


def fig_accuracy(points: pd.DataFrame | None,
                 families: Sequence[str] | None = None) -> Figure | None:
    """Paper accuracy figure: top-1 accuracy vs parameters per family."""
    if points is None:
        return None
    pts = points.rename(columns={"line_label": "line"})
    return fig_lines_by_family(pts, value="accuracy", ylabel="Accuracy (↑)", families=families,
                               legend_loc="lower right")


def fig_chat_template(chat: pd.DataFrame | None,
                      families: Sequence[str] | None = None) -> Figure | None:
    """Chat-template control: post-trained models' NLL without and with their chat template."""
    if chat is None or chat.empty:
        return None
    long = pd.concat(
        [
            chat.assign(line="No template", type="Base", value=chat["no_template"]),
            chat.assign(line="Default template", type="Instruction-tuned",
                        value=chat["template"]),
        ],
        ignore_index=True,
    )
    if long["params_b"].notna().any():
        return fig_lines_by_family(long, value="value", families=families,
                                   legend_loc="center right")
    with style():  # models of unknown size: paired bars
        fig = new_figure(1.0 + 0.6 * len(chat), 2.4)
        ax = fig.subplots()
        x = np.arange(len(chat))
        ax.bar(x - 0.2, chat["no_template"], 0.4, label="No template", color="C0")
        ax.bar(x + 0.2, chat["template"], 0.4, label="Default template", color="C1")
        ax.set_xticks(x, chat["display"], rotation=45, ha="right")
        ax.set_ylabel(NLL_LABEL)
        ax.legend(frameon=False)
    return fig


def fig_generation(trend: GenerationTrend | None) -> Figure | None:
    """Paper Fig. 3a: base NLL vs size per generation (left), pair d per generation (right)."""
    if trend is None:
        return None
    with style():
        fig = new_figure(6.8, 2.4)
        ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.4, 1.1])
        families = list(dict.fromkeys([*trend.base_scores["family"], *trend.pair_d["family"]]))
        alphas = np.linspace(0.4, 1.0, max(1, len(families)))
        for i, family in enumerate(families):
            curve = trend.base_scores[trend.base_scores["family"] == family]
            if curve.empty:
                continue
            ax1.plot(curve["params_b"], curve["score"], marker="o", color="C0",
                     linestyle=_LINESTYLES[(len(families) - 1 - i) % len(_LINESTYLES)],
                     alpha=float(alphas[i]), label=family)
        ax1.set_xscale("log")
        ax1.set_xlabel("Parameters (billions)")
        ax1.set_ylabel(NLL_LABEL)
        ax1.set_title("Base models")
        ax1.legend(frameon=False)
        pair_d = trend.pair_d.dropna(subset=["d"])
        if not pair_d.empty:
            order = [f for f in families if f in set(pair_d["family"])]
            sns.boxplot(data=pair_d, x="family", y="d", order=order, ax=ax2, showfliers=False,
                        width=0.6, color="#9ecae1", linewidth=0.7, showmeans=True,
                        meanline=True, meanprops={"color": "#08306b", "linestyle": "-"},
                        medianprops={"visible": False})
            _strip(ax2, pair_d, "family", "d", order, size=9)
        ax2.axhline(0, color="black", linewidth=0.5)
        ax2.set_xlabel("")
        ax2.set_ylabel("Post-training effect (pair d)")
        ax2.set_title("Post-trained vs base")
    return fig


def fig_domains(matrix: pd.DataFrame | None) -> Figure | None:
    """Paper Fig. 4: pair × domain heatmap of d (average row at the bottom, annotated)."""
    if matrix is None or matrix.empty:
        return None
    values = matrix.to_numpy(float)
    body = values[:-1] if len(values) > 1 else values
    finite = np.abs(body[np.isfinite(body)])
    vmax = float(np.percentile(finite, 95)) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    with style():
        fig = new_figure(2.4 + 0.55 * matrix.shape[1], max(2.6, 1.2 + 0.17 * matrix.shape[0]))
        ax = fig.subplots()
        image = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.grid(False)
        ax.axhline(len(matrix) - 1.5, color="white", linewidth=2)
        for j, v in enumerate(values[-1]):
            if np.isfinite(v):
                ax.text(j, len(matrix) - 1, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        bbox={"boxstyle": "round,pad=0.2", "facecolor": "white",
                              "edgecolor": "black", "linewidth": 0.5})
        ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=60, ha="right")
        ax.set_yticks(range(len(matrix)), [_short(str(i)) for i in matrix.index])
        ax.set_title("Post-training effect by domain (d)")
        fig.colorbar(image, ax=ax, shrink=0.8, pad=0.02)
    return fig


def fig_persona(per_study: pd.DataFrame | None, is_base: Mapping[str, bool]) -> Figure | None:
    """Paper Fig. 5: persona benefit d per study (``PersonaResult.per_study``), base and
    post-trained models side by side."""
    if per_study is None or per_study.empty:
        return None
    data = per_study
    main = data[~data["comparison"].str.contains("shuffled")]
    if main.empty:
        main = data
    groups = [("Base models", [m for m in main["model"].unique() if is_base.get(m, False)]),
              ("Post-trained models",
               [m for m in main["model"].unique() if not is_base.get(m, False)])]
    groups = [(t, ms) for t, ms in groups if ms]
    with style():
        width = max(3.2, 0.35 * sum(len(ms) for _, ms in groups) + 1.5)
        fig = new_figure(width, 2.8)
        axes = np.atleast_1d(fig.subplots(1, len(groups), sharey=True, squeeze=False).ravel())
        for ax, (title, models) in zip(axes, groups, strict=True):
            sub = main[main["model"].isin(models)].assign(
                label=lambda t: t["model"].map(_short))
            order = [_short(m) for m in models]
            sns.boxplot(data=sub, x="label", y="d", order=order, ax=ax, showfliers=False,
                        color="#9ecae1", linewidth=0.7, showmeans=True, meanline=True,
                        meanprops={"color": "#08306b", "linestyle": "-"},
                        medianprops={"visible": False})
            _strip(ax, sub, "label", "d", order, size=4)
            ax.axhline(0, color="black", linewidth=0.5)
            ax.set_title(title)
            ax.set_xlabel("")
            ax.tick_params(axis="x", rotation=90)
        axes[0].set_ylabel("Persona benefit (d)")
    return fig


def fig_forest(comparison: PairComparison) -> Figure:
    """Per-study mean paired NLL difference with intervals, and the overall effect (diamond)."""
    per = comparison.per_study.sort_values("mean_diff")
    overall = comparison.effect(MEAN_DIFF)
    with style():
        fig = new_figure(5.0, 1.0 + 0.22 * (len(per) + 2))
        ax = fig.subplots()
        y = np.arange(len(per))[::-1] + 2
        err = np.vstack([per["mean_diff"] - per["ci_low"], per["ci_high"] - per["mean_diff"]])
        ax.errorbar(per["mean_diff"], y, xerr=np.nan_to_num(err), fmt="s", color="C0",
                    markersize=3, elinewidth=0.8, capsize=0)
        diamond_x = [overall.ci_low, overall.estimate, overall.ci_high, overall.estimate]
        ax.fill(diamond_x, [0.5, 0.8, 0.5, 0.2], color="C3")
        ax.axvline(0, color="black", linewidth=0.5)
        ax.set_yticks([*y, 0.5], [*per["study"], "All studies"])
        ax.set_xlabel(f"NLL difference, {_short(comparison.post)} − {_short(comparison.base)} "
                      "(nats; > 0 = post-training hurts)")
        ax.set_title(f"{_short(comparison.post)} vs {_short(comparison.base)}: per study, "
                     f"{int(overall.ci_level * 100)}% intervals")
        ax.grid(axis="y", visible=False)
    return fig


def fig_leaderboard(board: pd.DataFrame) -> Figure | None:
    """Model scores (study-weighted NLL) with bootstrap intervals, best at the top."""
    if board.empty:
        return None
    rows = board.sort_values("score", ascending=False)
    with style():
        fig = new_figure(5.0, 0.9 + 0.2 * len(rows))
        ax = fig.subplots()
        y = np.arange(len(rows))
        err = np.vstack([rows["score"] - rows["ci_low"], rows["ci_high"] - rows["score"]])
        colors = [TYPE_COLORS.get(str(t), "C7") for t in rows["type"]]
        ax.errorbar(rows["score"], y, xerr=np.nan_to_num(err), fmt="none", ecolor="0.5",
                    elinewidth=0.8)
        ax.scatter(rows["score"], y, c=colors, s=14, zorder=3)
        ax.set_yticks(y, rows["display"])
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_xlabel(NLL_LABEL)
        ax.grid(axis="y", visible=False)
    return fig


def _strip(ax: object, data: pd.DataFrame, x: str, y: str, order: Sequence[str], *,
           size: float) -> None:
    """Jittered points over a categorical axis (fixed jitter: figures are byte-reproducible)."""
    rng = np.random.default_rng(0)
    for i, level in enumerate(order):
        values = data.loc[data[x] == level, y].to_numpy(float)
        jitter = rng.uniform(-0.15, 0.15, len(values))
        ax.scatter(i + jitter, values, s=size, color="black", alpha=0.8, zorder=3,  # type: ignore[attr-defined]
                   linewidths=0)


def style() -> AbstractContextManager[None]:
    """Context manager applying :data:`STYLE` while a figure is built."""
    context: AbstractContextManager[None] = mpl.rc_context(cast(Any, STYLE))
    return context


def _short(name: str) -> str:
    """Display form of a model id: the part after the organisation."""
    return name.rsplit("/", 1)[-1]
