"""From run directories to the HTML report in one call (used by ``report`` and ``run``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from psych201.analysis.baselines import (
    PopulationBaseline,
    letters_only,
    option_counts,
    population_baseline,
    trial_responses,
)
from psych201.analysis.plugin import AnalysisOptions
from psych201.analysis.registry import ModelRegistry, load_registry
from psych201.analysis.summary import Summary, summarize
from psych201.analysis.tables import Results, read_results
from psych201.data.hub import resolve_data
from psych201.data.readers import discover_studies
from psych201.data.split import iter_split
from psych201.errors import UsageError
from psych201.report.figures import render_figures, save_figures
from psych201.report.html import write_report


class ReportDataError(UsageError):
    """The runs cannot be matched to the data given for the baselines."""


@dataclass(frozen=True)
class DataBaselines:
    """What the transcripts add to a report: option counts, the population baseline and the
    trial table (:func:`trial_responses` with numeric scales and a context snippet) that the
    population-fit, item-level and diagnostics analyses read as ``inputs.trials``."""

    option_counts: pd.DataFrame
    population: PopulationBaseline
    trials: pd.DataFrame | None = None


#: Characters of the text before a response shown beside it (diagnostics' largest losses).
SNIPPET_CHARS = 160


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
    # An ``hf:`` source (as `score --data` takes) is read from its local copy.
    sources = [s for path in data for s in discover_studies(resolve_data(path))
               if s.name in scored]
    missing = scored - {s.name for s in sources}
    if missing:
        raise ReportDataError(
            f"studies {', '.join(sorted(missing))} of the runs are not in "
            f"{', '.join(map(str, data))}"
        )
    everyone = [s for src in sources for s in iter_split(src, "all", seed=seed)]
    train = [s for src in sources for s in iter_split(src, "train", seed=seed)]
    # One parse for both: the analyses also key rating scales; the baseline keeps letters only.
    keyed = trial_responses(everyone, numeric=True, snippet=SNIPPET_CHARS)
    trials = letters_only(keyed)
    train_keys = pd.DataFrame(
        [(s.study, s.experiment, s.participant, s.line) for s in train],
        columns=["study", "experiment", "participant", "line"],
    )
    train_trials = trials.merge(train_keys, on=list(train_keys.columns))
    return DataBaselines(option_counts(everyone), population_baseline(train_trials, trials),
                         keyed)


def summarize_runs(
    results: Results,
    registry: ModelRegistry,
    options: AnalysisOptions,
    *,
    data: Sequence[Path] = (),
    split_seed: int | None = None,
    extras: Mapping[str, object] | None = None,
) -> Summary:
    """Every analysis the runs support, with the data baselines when ``data`` is given.

    Simulated studies (the demo) also get the oracle's mean NLL per response in the per-study
    table, from ``data`` or else from the data folders the run manifests name.
    """
    if not data:
        summary = summarize(results, registry, options, extras=extras)
    else:
        baselines = data_baselines(data, results, split_seed=split_seed)
        summary = summarize(
            results,
            registry,
            options,
            option_counts=baselines.option_counts,
            population=baselines.population,
            trials=baselines.trials,
            extras=extras,
        )
    oracle = oracle_means(results, data or _manifest_data(results), condition=summary.condition)
    if oracle.empty:
        return summary
    means = summary.study_means.copy()
    means[ORACLE_COLUMN] = oracle.reindex(means.index)
    return replace(summary, study_means=means)


#: The per-study table's column with the generating model's NLL (simulated studies only).
ORACLE_COLUMN = "oracle (generating model)"


def oracle_means(results: Results, data: Sequence[Path], *,
                 condition: str | None = None) -> pd.Series:
    """Per simulated study: the generating model's mean NLL over the responses scored (under
    ``condition``, when given: the per-study table's).

    Only studies whose sessions store the generating log-likelihood count, and only where it
    covers every scored response (as ``psych201 demo`` prints it); empty when there are none.
    """
    from psych201.scoring.oracle import oracle_nll

    table = results.responses
    if condition is not None:
        table = table[table["condition"] == condition]
    scored = set(table["study"].unique())
    keys = table.drop_duplicates(["study", "line", "response_index"])
    out: dict[str, float] = {}
    for path in data:
        try:
            sources = [s for s in discover_studies(path) if s.name in scored]
        except (OSError, ValueError):
            continue  # a folder that moved since the run: no oracle, not a failed report
        for source in sources:
            if source.name in out or not _stores_oracle(source.path):
                continue
            nll = oracle_nll(source.path)
            rows = keys[keys["study"] == source.name]
            values = [nll.get((source.name, int(line), int(index)))
                      for line, index in zip(rows["line"], rows["response_index"], strict=True)]
            if values and all(v is not None for v in values):
                out[source.name] = float(np.mean([v for v in values if v is not None]))
    return pd.Series(out, dtype=float)


def _stores_oracle(path: Path) -> bool:
    from psych201.data.readers import iter_sessions
    from psych201.scoring.oracle import OracleScorer

    try:
        first = next(iter(iter_sessions(path)), None)
    except (OSError, ValueError):
        return False
    return first is not None and OracleScorer.field in first.metadata


def _manifest_data(results: Results) -> list[Path]:
    paths = {str(((s.manifest or {}).get("data") or {}).get("path") or "")
             for s in results.sources}
    return [Path(p) for p in sorted(paths) if p and Path(p).exists()]


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
    notes: Sequence[str] = (),
) -> Path:
    """Read ``runs``, analyse them and write one self-contained HTML page to ``output``.

    ``notes`` are shown with the analyses' own (e.g. the study cells that were skipped, empty
    or failed and so are not in the page).
    """
    registry = registry if registry is not None else load_registry()
    options = options if options is not None else AnalysisOptions(allow_missing=True)
    results = read_results(list(runs))
    summary = summarize_runs(results, registry, options, data=data, split_seed=split_seed)
    if notes:
        summary = replace(summary, notes=(*summary.notes, *notes))
    path = write_report(output, summary, results, registry, title=title)
    if figures_dir is not None:
        save_figures(render_figures(summary), figures_dir)
    return path
