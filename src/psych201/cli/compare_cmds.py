"""``psych201 compare``: a leaderboard or a pair in full, printed as tables or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from psych201.cli.analysis_opts import (
    AllowMissingOpt,
    ConditionOpt,
    DataOpt,
    LevelsOpt,
    NBootOpt,
    PairOpt,
    PaperOpt,
    PeopleOpt,
    PlayOpt,
    RegistryOpt,
    ResultsArg,
    SDOpt,
    SeedOpt,
    SplitSeedOpt,
    WeightingOpt,
    _choice,
    _closed_loop,
    _data_paths,
    _load,
    _options,
    _pairs,
    _paper_tables,
    _registry,
    _summarize_runs,
    _write_json,
    console,
    distinct_notes,
    strict_json,
)
from psych201.cli.compare_print import (
    print_comparison,
    print_controls,
    print_leaderboard,
    print_next,
    print_other_sections,
    print_pairs,
    print_paper,
    print_readable,
    warn_unpaired,
)
from psych201.cli.console import fail

if TYPE_CHECKING:
    import pandas as pd

    from psych201.analysis.bootstrap import Levels
    from psych201.analysis.registry import ModelPair, ModelRegistry
    from psych201.analysis.summary import Summary
    from psych201.analysis.tables import Results

# -- compare --------------------------------------------------------------------------------------
def compare(
    results: ResultsArg,
    pair: PairOpt = None,
    condition: ConditionOpt = None,
    weighting: WeightingOpt = "study",
    sd: SDOpt = "sample",
    levels: LevelsOpt = "both",
    n_boot: NBootOpt = 2000,
    seed: SeedOpt = 0,
    allow_missing: AllowMissingOpt = False,
    registry: RegistryOpt = None,
    output_format: Annotated[str, typer.Option("--format", help="table | json.")] = "table",
    paper: PaperOpt = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the tables as JSON to this file (with "
                                  "--paper: one table per figure, paper mode).",
                                  dir_okay=False)] = None,
    data: DataOpt = None,
    split_seed: SplitSeedOpt = None,
    play: PlayOpt = None,
    people: PeopleOpt = None,
) -> None:
    """Compare models: a leaderboard, or (with --pair) a post-trained vs base pair in full.

    Every model must have been scored on the same studies; otherwise the command names the
    studies that differ and stops, unless --allow-missing. With --paper, the figures' numbers
    as the paper computes them (each model on its own studies; no study-set check).
    """
    from psych201.analysis.conditions import ConditionError, main_condition
    from psych201.analysis.effects import compare_pair
    from psych201.analysis.summary import ANALYSIS_COLUMNS
    from psych201.analysis.tables import StudySetError, select

    fmt = _choice("format", output_format, ("table", "json"))
    data_paths = _data_paths(data)
    if pair and (data or split_seed is not None):
        # a pair's effects use the scores alone; the transcripts add nothing to them
        flag = "--data" if data else "--split-seed"
        raise fail(f"{flag} has no effect with --pair (a pair's effects use the scored "
                    "responses only); drop it, or run compare without --pair for the "
                    "analyses that read transcripts")
    if pair and (play or people):
        raise fail("--play/--people have no effect with --pair (a pair's effects use the "
                    "scored responses only); run compare without --pair for that section")
    closed_loop = _closed_loop(play, people)
    reg = _registry(registry)
    loaded = _load(results)
    pairs = _pairs(pair, reg)
    unpaired = _unpaired(pairs, reg, loaded)
    if fmt == "table":
        warn_unpaired(unpaired)
    if paper:
        tables = _paper_tables(loaded, reg, condition)
        if json_out is not None:
            _write_json(json_out, tables.to_json())
        if fmt == "json":
            typer.echo(strict_json(tables.to_json()))
        else:
            print_paper(tables)
        return
    if not pairs:
        opts = _options(condition=condition, weighting=weighting, sd=sd, levels=levels,
                        n_boot=n_boot, seed=seed, allow_missing=allow_missing, pairs=(),
                        detail=0)
        summary = _summarize_runs(loaded, reg, opts, data_paths, split_seed, closed_loop)
        payload = _summary_json(summary)
        if json_out is not None:
            _write_json(json_out, payload)
        if fmt == "json":
            typer.echo(strict_json(payload))
            return
        print_leaderboard(summary)
        from psych201.analysis.an_post_training import PostTrainingResult
        from psych201.analysis.an_readable import ReadableResult

        readable = summary.result("readable", ReadableResult)
        print_readable(None if readable is None else readable.table)
        post_training = summary.result("post-training", PostTrainingResult)
        if post_training is not None and not post_training.pairs.empty:
            print_pairs(summary)
        print_controls(summary)
        print_other_sections(summary)
        for note in distinct_notes(summary.notes):
            console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
        print_next(results, data)
        return
    frame = loaded.responses
    try:
        cond = main_condition(frame["condition"].unique(), condition, loaded.condition_roles())
        main = select(frame[[c for c in ANALYSIS_COLUMNS if c in frame.columns]],
                      condition=cond)
        comparisons = []
        for p in pairs:
            for name in (p.post, p.base):
                if name not in set(main["model"].unique()):
                    raise fail(f"model {name!r} has no rows under condition {cond!r} "
                                f"(models: {', '.join(sorted(main['model'].unique()))})")
            comparisons.append(compare_pair(
                main, p.post, p.base, condition=cond, allow_missing=allow_missing,
                n_boot=n_boot, seed=seed,
                levels=cast("Levels", _choice("levels", levels,
                                            ("both", "studies", "participants"))),
            ))
    except (StudySetError, ConditionError) as exc:
        raise fail(str(exc)) from exc
    pair_payload = [
        {"post": c.post, "base": c.base, "condition": c.condition, "studies": list(c.studies),
         "effects": [e.to_dict() for e in c.effects],
         "per_study": c.per_study.to_dict(orient="records"),
         "unmatched_responses": c.unmatched_responses, "notes": list(c.notes),
         "not_a_pair": unpaired.get((c.post, c.base), [])}
        for c in comparisons]
    if json_out is not None:
        _write_json(json_out, pair_payload)
    if fmt == "json":
        typer.echo(strict_json(pair_payload))
        return
    for c in comparisons:
        print_comparison(c)


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    return [] if frame is None else list(frame.to_dict(orient="records"))


def _summary_json(summary: Summary) -> dict[str, Any]:
    """The summary, machine-readable: the core tables and every section under its anchor, as
    the HTML report shows them (tables as records). Its shape is ``report/compare.schema.json``."""
    from psych201.report.compare_schema import COMPARE_JSON_VERSION

    return {
        "schema_version": COMPARE_JSON_VERSION,
        "condition": summary.condition,
        "studies": list(summary.studies),
        "options": {k: v for k, v in summary.options.__dict__.items() if k != "extra_pairs"},
        "leaderboard": _records(summary.leaderboard),
        "notes": list(summary.notes),
        "sections": summary.sections_json(),
    }


def _unpaired(pairs: Sequence[ModelPair], registry: ModelRegistry, loaded: Results,
              ) -> dict[tuple[str, str], list[str]]:
    """Per --pair (post, base) that does not look like a base and its post-trained
    checkpoint: why not (:func:`~psych201.analysis.registry.pair_problems`)."""
    from psych201.analysis.registry import pair_problems

    sizes: dict[str, int] = {}
    for source in loaded.sources:
        manifest = source.manifest or {}
        model = (manifest.get("spec") or {}).get("model")
        size = (manifest.get("tokenizer") or {}).get("vocab_size")
        if isinstance(model, str) and isinstance(size, int):
            sizes[model] = size
    found = {(p.post, p.base): pair_problems(registry, p.post, p.base, sizes) for p in pairs}
    return {pair: problems for pair, problems in found.items() if problems}


