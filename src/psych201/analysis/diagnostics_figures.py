"""The figures of the diagnostics section: per-response NLL of a post-trained model against its
base (a seeded sample of points) and the histogram of per-participant differences."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from psych201.analysis.registry import ModelPair
from psych201.analysis.tables import response_tokens

if TYPE_CHECKING:
    from matplotlib.figure import Figure


#: Points per model drawn in a scatter (a random subsample beyond this).
SCATTER_POINTS = 2000


def scatter_drawer(rows: pd.DataFrame, pair: ModelPair, seed: int) -> Callable[[], Figure | None]:
    def draw() -> Figure | None:
        from psych201.analysis.plots import new_figure

        fig = new_figure(9, 4)
        axes = fig.subplots(1, 2, sharex=True, sharey=True)
        rng = np.random.default_rng(seed)
        for ax, model in zip(axes, (pair.base, pair.post), strict=True):
            data = rows[rows["model"] == model]
            if len(data) > SCATTER_POINTS:
                data = data.iloc[np.sort(rng.choice(len(data), SCATTER_POINTS, replace=False))]
            nll = data["nll"] / response_tokens(data)
            ax.scatter(data["entropy"], nll, s=4, alpha=0.4)
            top = float(max(np.nanmax(nll, initial=0), np.nanmax(data["entropy"], initial=0)))
            ax.plot([0, top], [0, top], color="grey", lw=1)  # calibrated: NLL ≈ entropy
            ax.set_title(model)
            ax.set_xlabel("entropy (nats/token)")
        axes[0].set_ylabel("NLL (nats/token)")
        return fig

    return draw


def histogram_drawer(per: pd.DataFrame, pair: ModelPair) -> Callable[[], Figure | None]:
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
