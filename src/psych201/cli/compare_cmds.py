"""``psych201 compare``: a leaderboard or a pair in full, printed as tables or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.table import Table

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
    _f,
    _load,
    _options,
    _p,
    _pairs,
    _paper_tables,
    _registry,
    _summarize_runs,
    _write_json,
    console,
    distinct_notes,
    err_console,
    strict_json,
)
from psych201.cli.console import fail

if TYPE_CHECKING:
    from psych201.analysis.bootstrap import Levels

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
        _warn_unpaired(unpaired)
    if paper:
        tables = _paper_tables(loaded, reg, condition)
        if json_out is not None:
            _write_json(json_out, tables.to_json())
        if fmt == "json":
            typer.echo(strict_json(tables.to_json()))
        else:
            _print_paper(tables)
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
        _print_leaderboard(summary)
        _print_readable(summary.section_data("readable", "table"))
        pairs = summary.section_data("post-training", "pairs")
        if pairs is not None and not pairs.empty:
            _print_pairs(summary)
        _print_controls(summary)
        _print_other_sections(summary)
        for note in distinct_notes(summary.notes):
            console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
        _print_next(results, data)
        return
    frame = loaded.responses
    try:
        cond = main_condition(frame["condition"].unique(), condition)
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
        _print_comparison(c)



def _print_paper(tables: Any) -> None:
    """Each paper-mode table, with the line saying how psych201's default differs."""
    from psych201.analysis.paper_mode import DEFAULT_DIFFERS

    for name, frame in tables.tables.items():
        columns = {c: c for c in frame.columns}
        _print_frame(f"paper mode · {name}", frame, columns)
        if name in DEFAULT_DIFFERS:
            console.print(f"[dim]{DEFAULT_DIFFERS[name]}[/dim]", highlight=False)
    for note in tables.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


def _print_leaderboard(summary: Any) -> None:
    board = summary.leaderboard
    level = int(summary.options.ci * 100)
    table = Table(title=f"Leaderboard · condition {summary.condition} · {len(summary.studies)} "
                        f"studies · {summary.options.weighting}-weighted NLL (lower = better)")
    for column in ("#", "model", "type", "params (B)", "NLL", f"{level}% interval", "studies",
                   "participants", "responses"):
        table.add_column(column, justify="left" if column in ("model", "type") else "right")
    for _, r in board.iterrows():
        table.add_row(str(r["rank"]), str(r["display"]), str(r["type"] or ""),
                      _f(r["params_b"], 2), _f(r["score"]),
                      f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]", str(r["n_studies"]),
                      str(r["n_participants"]), str(r["n_responses"]))
    console.print(table)


def _print_readable(readable: Any) -> None:
    from psych201.analysis.readable import READABLE_TEXT

    _print_frame("Readable numbers (studies weighted equally)", readable,
                 {"model": "model", "nll_response": "NLL/response",
                  "p_response": "P(response)", "nll_token": "NLL/token", "p_token": "P(token)",
                  "dominant": "dominating studies",
                  "nll_response_without": "NLL/response without"})
    console.print(f"[dim]{READABLE_TEXT}[/dim]", highlight=False)


def _records(frame: Any) -> list[dict[str, Any]]:
    return [] if frame is None else list(frame.to_dict(orient="records"))


def _summary_json(summary: Any) -> dict[str, Any]:
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


#: Sections the table output prints with their own layout (the others: generically).
_PRINTED = frozenset({"readable", "post-training", "generations", "domains", "scaling",
                      "accuracy", "chat-template", "persona", "baselines", "population"})


def _print_other_sections(summary: Any) -> None:
    """Each section of an analysis added later: its tables (shown columns) and text."""
    for section in summary.sections:
        if section.anchor in _PRINTED:
            continue
        for table in section.tables:
            columns = {c.name: c.header for c in table.columns} or {
                str(c): str(c) for c in table.frame.columns}
            optional = [c.name for c in table.columns if c.optional]
            frame = table.frame.reset_index(names=table.index) if table.index else table.frame
            _print_frame(f"{section.title} · {table.caption or table.name}", frame, columns,
                         optional)
        if section.text:
            console.print(f"[dim]{section.text}[/dim]", highlight=False)


def _print_frame(title: str, frame: Any, columns: dict[str, str],
                 optional: Sequence[str] = ()) -> None:
    """A rich table of ``frame``'s ``columns`` (name → header); floats with 3 decimals.

    ``optional`` columns are left out where the frame lacks them.
    """
    if frame is None or len(frame) == 0:
        return
    columns = {c: h for c, h in columns.items() if c in frame.columns or c not in optional}
    table = Table(title=title)
    for header in columns.values():
        table.add_column(header)
    for _, row in frame.iterrows():
        cells = []
        for column in columns:
            value = row[column]
            cells.append(_f(value) if isinstance(value, float) else str(value))
        table.add_row(*cells)
    console.print(table)


def _print_controls(summary: Any) -> None:
    generation = summary.section_data("generations", "trend")
    domains = summary.section_data("domains", "matrix")
    accuracy = summary.section_data("accuracy", "points")
    persona = summary.section_data("persona", "result")
    pseudo_r2 = summary.section_data("baselines", "table")
    if generation is not None:
        _print_frame("Generations (mean pair d)", generation.mean_d,
                     {"family": "generation", "d": "d", "ci_low": "low", "ci_high": "high",
                      "n_pairs": "pairs"})
    if domains is not None:
        _print_frame("Domains (mean d over pairs)", domains.loc[["Average"]].T
                     .reset_index(names="domain"), {"domain": "domain", "Average": "d"})
    _print_frame("Size scaling (Δ NLL per tenfold parameters)",
                 summary.section_data("scaling", "fits"),
                 {"family": "family", "line": "line", "slope_per_decade": "slope",
                  "n_sizes": "sizes"})
    if accuracy is not None:
        _print_frame(f"Accuracy ({accuracy['condition'].iloc[0]})",
                     accuracy, {"display": "model", "accuracy": "accuracy",
                                "ci_low": "low", "ci_high": "high", "n_studies": "studies",
                                "accuracy_offered": "offered", "offered_ci_low": "low",
                                "offered_ci_high": "high", "chance_offered": "chance"},
                     optional=("accuracy_offered", "offered_ci_low", "offered_ci_high",
                               "chance_offered"))
    _print_frame("Chat-template control", summary.section_data("chat-template", "table"),
                 {"model": "model", "no_template": "NLL raw", "template": "NLL template",
                  "n_studies": "studies"})
    if persona is not None:
        _print_frame("Persona benefit (d > 0: persona helps)", persona.per_model,
                     {"model": "model", "comparison": "comparison", "d": "d", "ci_low": "low",
                      "ci_high": "high", "n_studies": "studies", "benefit": "nats",
                      "benefit_ci_low": "low", "benefit_ci_high": "high"},
                     optional=("benefit", "benefit_ci_low", "benefit_ci_high"))
        _print_frame("Persona benefit per study (nats, paired; > 0: persona helps)",
                     persona.paired,
                     {"model": "model", "comparison": "comparison", "study": "study",
                      "n_participants": "participants", "benefit": "nats", "ci_low": "low",
                      "ci_high": "high"})
    _print_frame("Random baseline (guessing among the options offered)", pseudo_r2,
                 {"model": "model", "pseudo_r2": "pseudo-R²", "pseudo_r2_pooled": "pooled",
                  "chance_nll": "chance (nats/response)", "n_responses": "responses"},
                 optional=("chance_nll",))
    if pseudo_r2 is not None and len(pseudo_r2):
        from psych201.analysis.readable import PSEUDO_R2_TEXT

        console.print(f"[dim]{PSEUDO_R2_TEXT}[/dim]", highlight=False)
        frame = pseudo_r2
        inferred = int(frame["n_inferred"].max()) if "n_inferred" in frame.columns else 0
        if inferred:
            console.print(f"[dim]For {inferred} responses the wording did not state the "
                          "options; their sets were inferred from the distinct responses of "
                          "each participant.[/dim]", highlight=False)


def _print_next(results: Sequence[Path], data: Sequence[Path] | None) -> None:
    runs = " ".join(str(r) for r in results)
    given = " ".join(f"--data {d}" for d in data or ())
    chance = "" if data else (" (add --data PATH for the chance level: guessing scores log k "
                              "nats among k options)")
    console.print(f"NLL in nats per response{chance}.\nnext: psych201 report {runs} {given} "
                  "-o report.html   (one HTML page with the figures)", highlight=False,
                  soft_wrap=True)


def _unpaired(pairs: Sequence[Any], registry: Any, loaded: Any) -> dict[tuple[str, str],
                                                                          list[str]]:
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


def _warn_unpaired(unpaired: dict[tuple[str, str], list[str]]) -> None:
    for (post, base), problems in unpaired.items():
        err_console.print(
            f"[yellow]warning:[/yellow] --pair {post}={base} is not a base/post-trained "
            f"pair: {'; '.join(problems)}. Its effects compare two models, not the effect "
            "of post-training.", highlight=False, soft_wrap=True)


def _short(name: Any) -> str:
    return str(name).rsplit("/", 1)[-1]


def _print_pairs(summary: Any) -> None:
    from psych201.analysis.an_post_training import (
        COHEN_NOTE,
        LESS_HUMAN_LIKE,
        MULTIPLICITY_NOTE,
        pair_d_text,
    )

    table = Table(title=f"Post-training effects (paper pair d, {summary.options.sd} SD; "
                        "> 0 = less human-like after post-training)")
    for column in ("post-trained", "base", "type", "d", "nats", "interval", "p", "q (BH)",
                   "studies"):
        table.add_column(column, justify="left" if column in ("post-trained", "base", "type")
                         else "right")
    for _, r in summary.section_data("post-training", "pairs").iterrows():
        table.add_row(_short(r["post"]), _short(r["base"]), str(r["type"]), pair_d_text(r),
                      _f(r.get("diff_nats")), f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]",
                      _p(r["p_value"]), _p(r.get("q_value")), str(r["n_studies"]))
    console.print(table)
    console.print(f"[dim]{LESS_HUMAN_LIKE} {COHEN_NOTE} {MULTIPLICITY_NOTE}[/dim]",
                  highlight=False)
    type_d = summary.section_data("post-training", "type_d")
    if type_d is not None and not type_d.empty:
        types = Table(title="Type d (mean pair d per post-training type)")
        for column in ("type", "d", "interval", "pairs"):
            types.add_column(column, justify="left" if column == "type" else "right")
        for _, r in type_d.iterrows():
            types.add_row(str(r["type"]), _f(r["d"]), f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]",
                          str(r["n_pairs"]))
        console.print(types)
    e = summary.section_data("post-training", "sign_test")
    if e is not None:
        console.print(f"{e.name}: {_f(e.estimate)} "
                      f"[{_f(e.ci_low)}, {_f(e.ci_high)}], p = {_p(e.p_value)} ({e.method})")


def _print_comparison(c: Any) -> None:
    table = Table(title=f"{c.post} vs {c.base} · condition {c.condition} · {len(c.studies)} "
                        "studies (> 0 = post-trained model less human-like)")
    for column in ("effect", "estimate", "interval", "p", "units", "studies", "participants",
                   "responses"):
        table.add_column(column, justify="left" if column in ("effect", "units") else "right")
    for e in c.effects:
        table.add_row(e.name, _f(e.estimate), f"[{_f(e.ci_low)}, {_f(e.ci_high)}]",
                      _p(e.p_value), e.units, str(e.n_studies), str(e.n_participants),
                      str(e.n_responses))
    console.print(table)
    for note in c.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    per = Table(title="Per study")
    for column in ("study", "participants", "responses", "NLL post", "NLL base", "difference",
                   "interval", "d (sample)", "d (population)"):
        per.add_column(column, justify="left" if column == "study" else "right")
    for _, r in c.per_study.iterrows():
        per.add_row(str(r["study"]), str(r["n_participants"]), str(r["n_responses"]),
                    _f(r["mean_post"]), _f(r["mean_base"]), _f(r["mean_diff"]),
                    f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]", _f(r["d_sample"]),
                    _f(r["d_population"]))
    console.print(per)
    for e in c.effects:
        console.print(f"[dim]{e.name}: {e.method}[/dim]", highlight=False)
    if c.unmatched_responses:
        console.print(f"[yellow]note:[/yellow] {c.unmatched_responses} responses scored by one "
                      "model only were left out (--allow-missing)")


