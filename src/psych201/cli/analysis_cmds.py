"""``psych201 models``, ``compare``, ``report`` and ``figures``: parse arguments, call the analyses.

Exit codes: 0 success, 2 bad input (unreadable table, unknown model, mismatched study sets).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from psych201.analysis.aggregate import Weighting
    from psych201.analysis.bootstrap import SD, Levels

EXIT_BAD_INPUT = 2

console = Console()
err_console = Console(stderr=True)

RegistryOpt = Annotated[
    list[Path] | None,
    typer.Option("--registry", help="Extra model registry YAML (repeatable); overrides by id.",
                 exists=True, dir_okay=False),
]
ResultsArg = Annotated[
    list[Path], typer.Argument(help="Run directories or response Parquet files.")
]
PairOpt = Annotated[
    list[str] | None,
    typer.Option("--pair", metavar="POST=BASE",
                 help="Compare a post-trained model with a base (repeatable; names as in the "
                      "results). Registry pairs are found automatically."),
]
ConditionOpt = Annotated[
    str | None, typer.Option(help="Main condition (default: the only one, else raw, else paper).")
]
WeightingOpt = Annotated[
    str, typer.Option(help="study (paper: studies equal) | participant | response.")
]
SDOpt = Annotated[str, typer.Option("--sd", help="SD convention of d: sample | population.")]
LevelsOpt = Annotated[
    str, typer.Option(help="Bootstrap resampling: both (studies and participants) | studies | "
                      "participants.")
]
NBootOpt = Annotated[int, typer.Option(min=100, help="Bootstrap replicates.")]
SeedOpt = Annotated[int, typer.Option(help="Bootstrap seed.")]
AllowMissingOpt = Annotated[
    bool, typer.Option("--allow-missing", help="Compare on shared studies when sets differ.")
]
PaperOpt = Annotated[
    bool, typer.Option("--paper", help="Also compute every figure exactly as the paper's "
                       "plotting scripts do.")
]


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _registry(paths: list[Path] | None) -> Any:
    from psych201.analysis.registry import RegistryError, load_registry

    try:
        return load_registry(*(paths or []))
    except RegistryError as exc:
        raise _fail(str(exc)) from exc


def _pairs(specs: list[str] | None, registry: Any) -> tuple[Any, ...]:
    from psych201.analysis.registry import ModelPair

    out = []
    for spec in specs or []:
        post, sep, base = spec.partition("=")
        if not sep or not post or not base:
            raise _fail(f"--pair {spec!r}: expected POST=BASE")
        info = registry.get(post)
        out.append(ModelPair(post, base, info.post_training if info else "unknown"))
    return tuple(out)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _fail(f"--{name} must be one of {', '.join(allowed)} (got {value!r})")
    return value


def _options(*, condition: str | None, weighting: str, sd: str, levels: str, n_boot: int,
             seed: int, allow_missing: bool, pairs: tuple[Any, ...], detail: int) -> Any:
    from psych201.analysis.summary import AnalysisOptions

    return AnalysisOptions(
        condition=condition,
        weighting=cast("Weighting", _choice("weighting", weighting,
                                          ("study", "participant", "response"))),
        sd=cast("SD", _choice("sd", sd, ("sample", "population"))),
        levels=cast("Levels", _choice("levels", levels, ("both", "studies", "participants"))),
        n_boot=n_boot, seed=seed, allow_missing=allow_missing, extra_pairs=pairs,
        detail_pairs=detail,
    )


def _load(paths: list[Path]) -> Any:
    from psych201.analysis.tables import TableError, read_results

    try:
        return read_results(paths)
    except TableError as exc:
        raise _fail(str(exc)) from exc


DataOpt = Annotated[
    Path | None, typer.Option(help="The scored dataset (transcripts): adds option counts (random "
                              "baseline, pseudo-R²), the population baseline from its training "
                              "participants, the population-level fit and the context of the "
                              "largest losses.", exists=True)]
SplitSeedOpt = Annotated[int | None, typer.Option(help="Seed of the test/train split (default: "
                                                  "the runs' seed).")]


def _summarize_runs(results: Any, registry: Any, options: Any, data: Path | None,
                    split_seed: int | None) -> Any:
    """Every analysis, with what the transcripts at ``data`` add (compare and report alike)."""
    from psych201.analysis.conditions import ConditionError
    from psych201.analysis.tables import StudySetError
    from psych201.report.make import ReportDataError, summarize_runs

    try:
        return summarize_runs(results, registry, options, data=[data] if data else [],
                              split_seed=split_seed)
    except (StudySetError, ConditionError, ReportDataError) as exc:
        raise _fail(str(exc)) from exc
    except ValueError as exc:  # a data error in the transcripts named by --data
        raise _fail(f"{data}: {exc}") from exc


def _summarize(results: Any, registry: Any, options: Any, **kw: Any) -> Any:
    from psych201.analysis.conditions import ConditionError
    from psych201.analysis.summary import summarize
    from psych201.analysis.tables import StudySetError

    try:
        return summarize(results, registry, options, **kw)
    except (StudySetError, ConditionError) as exc:
        raise _fail(str(exc)) from exc


def strict_json(value: Any) -> str:
    from psych201.strict_json import dumps

    return dumps(value)


def _f(value: Any, digits: int = 3) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "–" if not math.isfinite(v) else f"{v:.{digits}f}"


def _p(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if not math.isfinite(v) else ("<0.001" if v < 0.001 else f"{v:.3f}")


# -- models ---------------------------------------------------------------------------------------
def models(
    registry: RegistryOpt = None,
    family: Annotated[str | None, typer.Option(help="Only this family (e.g. Qwen3).")] = None,
    post_training: Annotated[
        str | None, typer.Option("--type", help="Only this post-training type (base, instruct, "
                                 "reasoning, vision, code, math, human).")] = None,
    local: Annotated[bool, typer.Option("--local", help="Only models psych201 can load "
                                        "offline.")] = False,
    output_format: Annotated[str, typer.Option("--format", help="table | csv | json.")] = "table",
) -> None:
    """List the model registry: family, size, post-training and paired base of each checkpoint."""
    import pandas as pd

    reg = _registry(registry)
    frame = reg.to_frame()
    if family is not None:
        frame = frame[frame["family"].str.lower() == family.lower()]
    if post_training is not None:
        kinds = sorted(set(frame["post_training"].dropna().astype(str)))
        if post_training not in kinds:  # an empty table with exit 0 would look like an answer
            raise _fail(f"--type must be one of {', '.join(kinds)} (got {post_training!r})")
        frame = frame[frame["post_training"] == post_training]
    if local:
        frame = frame[frame["local"]]
    fmt = _choice("format", output_format, ("table", "csv", "json"))
    if fmt == "csv":
        typer.echo(frame.to_csv(index=False), nl=False)
        return
    if fmt == "json":
        typer.echo(strict_json(frame))
        return
    table = Table(title=f"psych201 model registry ({len(frame)} of {len(reg)} models)")
    for column in ("id", "family", "params (B)", "type", "paired base", "flags"):
        table.add_column(column, justify="right" if column == "params (B)" else "left")
    for _, row in frame.iterrows():
        flags = ", ".join(f for f, on in (("paper", row["paper"]), ("local", row["local"])) if on)
        size = "" if pd.isna(row["params_b"]) else f"{row['params_b']:g}"
        kind = row["type"] if row["line"] == "main" else f"{row['type']} ({row['line']})"
        base = "" if pd.isna(row["base"]) else str(row["base"])
        table.add_row(str(row["id"]), str(row["family"]), size, str(kind), base, flags)
    console.print(table)


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
) -> None:
    """Compare models: a leaderboard, or (with --pair) a post-trained vs base pair in full.

    Every model must have been scored on the same studies; otherwise the command names the
    studies that differ and stops, unless --allow-missing. With --paper, the figures' numbers
    as the paper computes them (each model on its own studies; no study-set check).
    """
    from psych201.analysis.conditions import ConditionError, main_condition
    from psych201.analysis.effects import compare_pair
    from psych201.analysis.readable import PSEUDO_R2_TEXT, READABLE_TEXT
    from psych201.analysis.summary import ANALYSIS_COLUMNS
    from psych201.analysis.tables import StudySetError, select

    fmt = _choice("format", output_format, ("table", "json"))
    reg = _registry(registry)
    loaded = _load(results)
    pairs = _pairs(pair, reg)
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
        summary = _summarize_runs(loaded, reg, opts, data, split_seed)
        readable = summary.readable
        payload = {**_summary_json(summary), "readable": _records(readable),
                   "readable_text": READABLE_TEXT, "pseudo_r2_text": PSEUDO_R2_TEXT}
        if json_out is not None:
            _write_json(json_out, payload)
        if fmt == "json":
            typer.echo(strict_json(payload))
            return
        _print_leaderboard(summary)
        _print_readable(readable)
        if not summary.pairs.empty:
            _print_pairs(summary)
        _print_controls(summary)
        _print_other_sections(summary)
        for note in summary.notes:
            console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
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
                    raise _fail(f"model {name!r} has no rows under condition {cond!r} "
                                f"(models: {', '.join(sorted(main['model'].unique()))})")
            comparisons.append(compare_pair(
                main, p.post, p.base, condition=cond, allow_missing=allow_missing,
                n_boot=n_boot, seed=seed,
                levels=cast("Levels", _choice("levels", levels,
                                            ("both", "studies", "participants"))),
            ))
    except (StudySetError, ConditionError) as exc:
        raise _fail(str(exc)) from exc
    if fmt == "json":
        typer.echo(strict_json([
            {"post": c.post, "base": c.base, "condition": c.condition, "studies": list(c.studies),
             "effects": [e.to_dict() for e in c.effects],
             "per_study": c.per_study.to_dict(orient="records"),
             "unmatched_responses": c.unmatched_responses}
            for c in comparisons]))
        return
    for c in comparisons:
        _print_comparison(c)


def _paper_tables(loaded: Any, registry: Any, condition: str | None) -> Any:
    from psych201.analysis.conditions import ConditionError
    from psych201.analysis.paper_mode import paper_tables

    try:
        return paper_tables(loaded.responses, registry, condition=condition)
    except ConditionError as exc:
        raise _fail(str(exc)) from exc


def _paper_summary(summary: Any, loaded: Any, registry: Any, tables: Any) -> Any:
    from psych201.analysis.paper_mode import paper_summary

    return paper_summary(summary, loaded.responses, registry, tables)


def _write_json(path: Path, payload: Any) -> None:
    text = strict_json(payload)
    try:
        path.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise _fail(f"{path}: cannot write ({exc.strerror or exc})") from exc
    console.print(f"wrote {path}")


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
    """Every table of the summary, machine-readable."""
    generation = summary.generation
    return {
        "condition": summary.condition,
        "studies": list(summary.studies),
        "options": {k: v for k, v in summary.options.__dict__.items() if k != "extra_pairs"},
        "leaderboard": _records(summary.leaderboard),
        "pairs": _records(summary.pairs),
        "type_d": _records(summary.type_d),
        "pair_sign_test": summary.pair_sign_test.to_dict() if summary.pair_sign_test else None,
        "generations": _records(generation.mean_d) if generation is not None else [],
        "domains": _records(summary.domains.reset_index(names="pair"))
        if summary.domains is not None else [],
        "size_scaling": _records(summary.scaling_fits),
        "accuracy": _records(summary.accuracy_points),
        "chat_template": _records(summary.chat_template),
        "persona": _records(summary.persona.per_model) if summary.persona else [],
        "persona_per_study": _records(summary.persona.paired) if summary.persona else [],
        "pseudo_r2": _records(summary.pseudo_r2),
        "population": _records(summary.population),
        "notes": list(summary.notes),
        # every section under its anchor, as the HTML report shows them (tables as records)
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
    if summary.generation is not None:
        _print_frame("Generations (mean pair d)", summary.generation.mean_d,
                     {"family": "generation", "d": "d", "ci_low": "low", "ci_high": "high",
                      "n_pairs": "pairs"})
    if summary.domains is not None:
        _print_frame("Domains (mean d over pairs)", summary.domains.loc[["Average"]].T
                     .reset_index(names="domain"), {"domain": "domain", "Average": "d"})
    _print_frame("Size scaling (Δ NLL per tenfold parameters)", summary.scaling_fits,
                 {"family": "family", "line": "line", "slope_per_decade": "slope",
                  "n_sizes": "sizes"})
    if summary.accuracy_points is not None:
        _print_frame(f"Accuracy ({summary.accuracy_points['condition'].iloc[0]})",
                     summary.accuracy_points, {"display": "model", "accuracy": "accuracy",
                                               "ci_low": "low", "ci_high": "high",
                                               "n_studies": "studies",
                                               "accuracy_offered": "offered",
                                               "offered_ci_low": "low",
                                               "offered_ci_high": "high",
                                               "chance_offered": "chance"},
                     optional=("accuracy_offered", "offered_ci_low", "offered_ci_high",
                               "chance_offered"))
    _print_frame("Chat-template control", summary.chat_template,
                 {"model": "model", "no_template": "NLL raw", "template": "NLL template",
                  "n_studies": "studies"})
    if summary.persona is not None:
        _print_frame("Persona benefit (d > 0: persona helps)", summary.persona.per_model,
                     {"model": "model", "comparison": "comparison", "d": "d", "ci_low": "low",
                      "ci_high": "high", "n_studies": "studies", "benefit": "nats",
                      "benefit_ci_low": "low", "benefit_ci_high": "high"},
                     optional=("benefit", "benefit_ci_low", "benefit_ci_high"))
        _print_frame("Persona benefit per study (nats, paired; > 0: persona helps)",
                     summary.persona.paired,
                     {"model": "model", "comparison": "comparison", "study": "study",
                      "n_participants": "participants", "benefit": "nats", "ci_low": "low",
                      "ci_high": "high"})
    _print_frame("Random baseline", summary.pseudo_r2,
                 {"model": "model", "pseudo_r2": "pseudo-R²", "pseudo_r2_pooled": "pooled",
                  "n_responses": "responses"})
    if summary.pseudo_r2 is not None and len(summary.pseudo_r2):
        from psych201.analysis.readable import PSEUDO_R2_TEXT

        console.print(f"[dim]{PSEUDO_R2_TEXT}[/dim]", highlight=False)


def _short(name: Any) -> str:
    return str(name).rsplit("/", 1)[-1]


def _print_pairs(summary: Any) -> None:
    from psych201.analysis.an_post_training import pair_d_text

    table = Table(title=f"Post-training effects (paper pair d, {summary.options.sd} SD; "
                        "> 0 = less human-like after post-training)")
    for column in ("post-trained", "base", "type", "d", "interval", "p", "studies"):
        table.add_column(column, justify="left" if column in ("post-trained", "base", "type")
                         else "right")
    for _, r in summary.pairs.iterrows():
        table.add_row(_short(r["post"]), _short(r["base"]), str(r["type"]), pair_d_text(r),
                      f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]", _p(r["p_value"]),
                      str(r["n_studies"]))
    console.print(table)
    if not summary.type_d.empty:
        types = Table(title="Type d (mean pair d per post-training type)")
        for column in ("type", "d", "interval", "pairs"):
            types.add_column(column, justify="left" if column == "type" else "right")
        for _, r in summary.type_d.iterrows():
            types.add_row(str(r["type"]), _f(r["d"]), f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]",
                          str(r["n_pairs"]))
        console.print(types)
    if summary.pair_sign_test is not None:
        e = summary.pair_sign_test
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


# -- report ---------------------------------------------------------------------------------------
def _check_file_output(path: Path, flag: str) -> None:
    """Refuse, before any work, an output file that is a directory or sits under a file."""
    if path.is_dir():
        raise _fail(f"{flag} {path} is a directory; name the HTML file to write "
                    f"(e.g. {path / 'report.html'})")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise _fail(f"{flag} {path}: {parent} is a file, not a directory")


def _check_dir_output(path: Path, flag: str) -> None:
    """Refuse, before any work, an output directory that is a file or sits under a file."""
    if path.exists() and not path.is_dir():
        raise _fail(f"{flag} {path} is a file; name a directory for the figures")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise _fail(f"{flag} {path}: {parent} is a file, not a directory")



def report(
    results: ResultsArg,
    output: Annotated[Path, typer.Option("-o", "--out", "--output", help="HTML file to write.")],
    title: Annotated[str, typer.Option(help="Page title.")] = "psych201 report",
    pair: PairOpt = None,
    condition: ConditionOpt = None,
    weighting: WeightingOpt = "study",
    sd: SDOpt = "sample",
    levels: LevelsOpt = "both",
    n_boot: NBootOpt = 2000,
    seed: SeedOpt = 0,
    allow_missing: AllowMissingOpt = False,
    registry: RegistryOpt = None,
    data: DataOpt = None,
    split_seed: SplitSeedOpt = None,
    figures_dir: Annotated[
        Path | None, typer.Option(help="Also write each figure as PNG and PDF here.")] = None,
    detail: Annotated[int, typer.Option(help="Pairs shown in full (effects, forest plot).")] = 3,
    paper: PaperOpt = False,
) -> None:
    """Write ONE self-contained HTML page: leaderboard, effects, figures, tables, manifests.

    With --paper the figures are drawn as the paper computes them and a section lists every
    paper-mode table (as `compare --paper`).
    """
    from psych201.report.figures import render_figures, save_figures
    from psych201.report.html import write_report

    _check_file_output(output, "-o/--output")
    if figures_dir is not None:
        _check_dir_output(figures_dir, "--figures-dir")
    reg = _registry(registry)
    loaded = _load(results)
    opts = _options(condition=condition, weighting=weighting, sd=sd, levels=levels,
                    n_boot=n_boot, seed=seed, allow_missing=allow_missing,
                    pairs=_pairs(pair, reg), detail=detail)
    summary = _summarize_runs(loaded, reg, opts, data, split_seed)
    tables = _paper_tables(loaded, reg, condition) if paper else None
    path = write_report(output, summary, loaded, reg, title=title, paper=tables)
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if figures_dir is not None:
        drawn = summary if tables is None else _paper_summary(summary, loaded, reg, tables)
        written = save_figures(render_figures(drawn), figures_dir)
        console.print(f"wrote {len(written)} figure files to {figures_dir}")
    for note in summary.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


# -- figures --------------------------------------------------------------------------------------
def figures(
    results: Annotated[list[Path] | None, typer.Argument(help="Run directories or Parquet "
                                                         "files (or --synthetic).")] = None,
    output: Annotated[Path | None, typer.Option(
        "-o", "--out", "--output", help="Directory for the files (default: ./figures, or "
        "./figures-synthetic with --synthetic).")] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Draw from the built-in "
                                            "synthetic table with known structure (the docs "
                                            "figures).")] = False,
    seed: SeedOpt = 0,
    n_boot: NBootOpt = 1000,
    registry: RegistryOpt = None,
    formats: Annotated[str, typer.Option(help="Comma-separated: png,pdf.")] = "png,pdf",
    paper: PaperOpt = False,
) -> None:
    """Render every figure (PNG + PDF). `psych201 figures --synthetic` regenerates docs/figures.

    With --paper each figure is drawn from the paper-mode numbers (psych201.analysis.paper_mode).
    """
    from psych201.analysis.plots import PAPER_PANELS
    from psych201.analysis.registry import ModelPair
    from psych201.analysis.summary import AnalysisOptions
    from psych201.analysis.synthetic import demo_table
    from psych201.analysis.tables import results_from_frame
    from psych201.report.figures import render_figures, save_figures

    if synthetic == bool(results):
        raise _fail("give either RESULTS or --synthetic")
    # Never the repository's docs/figures by default: those are regenerated on purpose (-o).
    if output is None:
        output = Path("figures-synthetic" if synthetic else "figures")
    _check_dir_output(output, "-o/--output")
    reg = _registry(registry)
    if synthetic:
        loaded = results_from_frame(demo_table(reg, seed=seed), "synthetic (psych201 figures)")
        # the docs show Qwen3-8B's pair in full: a mid-sized hybrid reasoning model
        # the docs show the paper's panels; real results show every scored family
        opts = AnalysisOptions(n_boot=n_boot, seed=seed, detail_pairs=1, extra_pairs=(
            ModelPair("Qwen/Qwen3-8B", "Qwen/Qwen3-8B-Base", "reasoning"),),
            families=PAPER_PANELS)
    else:
        loaded = _load(results or [])
        # paper mode averages each model over its own studies: differing study sets are fine
        opts = AnalysisOptions(n_boot=n_boot, seed=seed, allow_missing=paper)
    summary = _summarize(loaded, reg, opts)
    if paper:
        summary = _paper_summary(summary, loaded, reg, _paper_tables(loaded, reg, None))
    fmts = [f.strip() for f in formats.split(",") if f.strip()]
    for f in fmts:
        _choice("formats", f, ("png", "pdf", "svg"))
    written = save_figures(render_figures(summary), output, formats=fmts)
    console.print(f"wrote {len(written)} files to {output}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("models")(models)
    app.command("compare")(compare)
    app.command("report")(report)
    app.command("figures")(figures)

