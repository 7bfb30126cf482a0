"""From run directories to the HTML report in one call (used by ``report`` and ``run``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from psych201.analysis.baselines import (
    PopulationBaseline,
    option_counts,
    population_baseline,
    session_responses,
)
from psych201.analysis.registry import ModelRegistry, load_registry
from psych201.analysis.summary import AnalysisOptions, Summary, summarize
from psych201.analysis.tables import Results, read_results
from psych201.data.readers import discover_studies
from psych201.data.split import iter_split
from psych201.report.figures import render_figures, save_figures
from psych201.report.html import write_report


class ReportDataError(ValueError):
    """The runs cannot be matched to the data given for the baselines."""


@dataclass(frozen=True)
class DataBaselines:
    """What the transcripts add to a report: option counts and the population baseline."""

    option_counts: pd.DataFrame
    population: PopulationBaseline


def split_seed_of(results: Results, split_seed: int | None = None) -> int:
    """The split seed the runs used (they must agree unless one is given)."""
    if split_seed is not None:
        return split_seed
    seeds = {
        int(s.manifest["seed"])
        for s in results.sources
        if s.manifest and s.manifest.get("seed") is not None
    }
    if len(seeds) > 1:
        raise ReportDataError(f"the runs used different split seeds {sorted(seeds)}; pass one")
    return seeds.pop() if seeds else 0


def data_baselines(
    data: Sequence[Path], results: Results, *, split_seed: int | None = None
) -> DataBaselines:
    """Option counts of the scored sessions and the population baseline of training participants.

    Only the studies present in the results are read; ``data`` may list several datasets (e.g.
    the shared studies and the bundled demo), each a study or a directory of studies.
    """
    seed = split_seed_of(results, split_seed)
    scored = set(results.responses["study"].unique())
    sources = [s for path in data for s in discover_studies(path) if s.name in scored]
    missing = scored - {s.name for s in sources}
    if missing:
        raise ReportDataError(
            f"studies {', '.join(sorted(missing))} of the runs are not in "
            f"{', '.join(map(str, data))}"
        )
    everyone = [s for src in sources for s in iter_split(src, "all", seed=seed)]
    train = [s for src in sources for s in iter_split(src, "train", seed=seed)]
    table = results.responses.drop_duplicates(
        ["study", "experiment", "participant", "line", "response_index"]
    )
    return DataBaselines(
        option_counts(everyone), population_baseline(session_responses(train), table)
    )


def summarize_runs(
    results: Results,
    registry: ModelRegistry,
    options: AnalysisOptions,
    *,
    data: Sequence[Path] = (),
    split_seed: int | None = None,
) -> Summary:
    """Every analysis the runs support, with the data baselines when ``data`` is given."""
    if not data:
        return summarize(results, registry, options)
    baselines = data_baselines(data, results, split_seed=split_seed)
    return summarize(
        results,
        registry,
        options,
        option_counts=baselines.option_counts,
        population=baselines.population,
    )


def report_from_runs(
    runs: Sequence[Path],
    output: Path,
    *,
    title: str = "psych201 report",
    data: Sequence[Path] = (),
    registry: ModelRegistry | None = None,
    options: AnalysisOptions | None = None,
    split_seed: int | None = None,
    figures_dir: Path | None = None,
) -> Path:
    """Read ``runs``, analyse them and write one self-contained HTML page to ``output``."""
    registry = registry if registry is not None else load_registry()
    options = options if options is not None else AnalysisOptions(allow_missing=True)
    results = read_results(list(runs))
    summary = summarize_runs(results, registry, options, data=data, split_seed=split_seed)
    path = write_report(output, summary, results, registry, title=title)
    if figures_dir is not None:
        is_base = {m: i.is_base for m in results.models if (i := registry.get(m)) is not None}
        save_figures(render_figures(summary, is_base), figures_dir)
    return path
