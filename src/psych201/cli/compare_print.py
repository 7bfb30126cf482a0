"""The tables ``psych201 compare`` prints: leaderboard, readable numbers, pairs, the controls,
every other section generically, paper mode and a named pair's effects."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from psych201.cli.analysis_opts import (
    _f,
    _p,
    console,
    err_console,
)

if TYPE_CHECKING:
    import pandas as pd

    from psych201.analysis.effects import PairComparison
    from psych201.analysis.paper_mode import PaperTables
    from psych201.analysis.summary import Summary


def print_paper(tables: PaperTables) -> None:
    """Each paper-mode table, with the line saying how psych201's default differs."""
    from psych201.analysis.paper_mode import DEFAULT_DIFFERS

    for name, frame in tables.tables.items():
        columns = {c: c for c in frame.columns}
        print_frame(f"paper mode · {name}", frame, columns)
        if name in DEFAULT_DIFFERS:
            console.print(f"[dim]{DEFAULT_DIFFERS[name]}[/dim]", highlight=False)
    for note in tables.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


def print_leaderboard(summary: Summary) -> None:
    board = summary.leaderboard
    level = int(summary.options.ci * 100)
    table = Table(title=f"Leaderboard · condition {summary.condition} · {len(summary.studies)} "
                        f"studies · {summary.options.weighting}-weighted NLL (lower = better)")
    for column in ("#", "model", "type", "params (B)", "NLL", f"{level}% interval", "studies",
                   "participants", "responses"):
        table.add_column(column, justify="left" if column in ("model", "type") else "right")
    for _, r in board.iterrows():
        kind = r["type"] if isinstance(r["type"], str) else ""  # NaN: not in the registry
        table.add_row(str(r["rank"]), str(r["display"]), kind,
                      _f(r["params_b"], 2), _f(r["score"]),
                      f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]", str(r["n_studies"]),
                      str(r["n_participants"]), str(r["n_responses"]))
    console.print(table)


def print_readable(readable: pd.DataFrame | None) -> None:
    from psych201.analysis.readable import READABLE_TEXT

    print_frame("Readable numbers (studies weighted equally)", readable,
                 {"model": "model", "nll_response": "NLL/response",
                  "p_response": "P(response)", "nll_token": "NLL/token", "p_token": "P(token)",
                  "dominant": "dominating studies",
                  "nll_response_without": "NLL/response without"})
    console.print(f"[dim]{READABLE_TEXT}[/dim]", highlight=False)


#: Sections the table output prints with their own layout (the others: generically).
_PRINTED = frozenset({"readable", "post-training", "generations", "domains", "scaling",
                      "accuracy", "chat-template", "persona", "baselines", "population"})


def print_other_sections(summary: Summary) -> None:
    """Each section of an analysis added later: its tables (shown columns) and text."""
    for section in summary.sections:
        if section.anchor in _PRINTED:
            continue
        for table in section.tables:
            columns = {c.name: c.header for c in table.columns} or {
                str(c): str(c) for c in table.frame.columns}
            optional = [c.name for c in table.columns if c.optional]
            frame = table.frame.reset_index(names=table.index) if table.index else table.frame
            print_frame(f"{section.title} · {table.caption or table.name}", frame, columns,
                         optional)
        if section.text:
            console.print(f"[dim]{section.text}[/dim]", highlight=False)


def print_frame(title: str, frame: pd.DataFrame | None, columns: dict[str, str],
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


def print_controls(summary: Summary) -> None:
    from psych201.analysis.an_accuracy import AccuracyResult
    from psych201.analysis.an_chat_template import ChatTemplateResult
    from psych201.analysis.an_domains import DomainsResult
    from psych201.analysis.an_persona import PersonaResult
    from psych201.analysis.an_random_baseline import PseudoR2Result
    from psych201.analysis.an_scaling import ScalingResult
    from psych201.analysis.paper import GenerationTrend

    generation = summary.result("generations", GenerationTrend)
    domains_result = summary.result("domains", DomainsResult)
    domains = None if domains_result is None else domains_result.matrix
    accuracy_result = summary.result("accuracy", AccuracyResult)
    accuracy = None if accuracy_result is None else accuracy_result.points
    persona = summary.result("persona", PersonaResult)
    pseudo_r2_result = summary.result("baselines", PseudoR2Result)
    pseudo_r2 = None if pseudo_r2_result is None else pseudo_r2_result.table
    scaling = summary.result("scaling", ScalingResult)
    chat_template = summary.result("chat-template", ChatTemplateResult)
    if generation is not None:
        print_frame("Generations (mean pair d)", generation.mean_d,
                     {"family": "generation", "d": "d", "ci_low": "low", "ci_high": "high",
                      "n_pairs": "pairs"})
    if domains is not None:
        print_frame("Domains (mean d over pairs)", domains.loc[["Average"]].T
                     .reset_index(names="domain"), {"domain": "domain", "Average": "d"})
    print_frame("Size scaling (Δ NLL per tenfold parameters)",
                 None if scaling is None else scaling.fits,
                 {"family": "family", "line": "line", "slope_per_decade": "slope",
                  "n_sizes": "sizes"})
    if accuracy is not None:
        print_frame(f"Accuracy ({accuracy['condition'].iloc[0]})",
                     accuracy, {"display": "model", "accuracy": "accuracy",
                                "ci_low": "low", "ci_high": "high", "n_studies": "studies",
                                "accuracy_offered": "offered", "offered_ci_low": "low",
                                "offered_ci_high": "high", "chance_offered": "chance"},
                     optional=("accuracy_offered", "offered_ci_low", "offered_ci_high",
                               "chance_offered"))
    print_frame("Chat-template control", None if chat_template is None else chat_template.table,
                 {"model": "model", "no_template": "NLL raw", "template": "NLL template",
                  "n_studies": "studies"})
    if persona is not None:
        print_frame("Persona benefit (d > 0: persona helps)", persona.per_model,
                     {"model": "model", "comparison": "comparison", "d": "d", "ci_low": "low",
                      "ci_high": "high", "n_studies": "studies", "benefit": "nats",
                      "benefit_ci_low": "low", "benefit_ci_high": "high"},
                     optional=("benefit", "benefit_ci_low", "benefit_ci_high"))
        print_frame("Persona benefit per study (nats, paired; > 0: persona helps)",
                     persona.paired,
                     {"model": "model", "comparison": "comparison", "study": "study",
                      "n_participants": "participants", "benefit": "nats", "ci_low": "low",
                      "ci_high": "high"})
    print_frame("Random baseline (guessing among the options offered)", pseudo_r2,
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


def print_next(results: Sequence[Path], data: Sequence[Path] | None) -> None:
    runs = " ".join(str(r) for r in results)
    given = " ".join(f"--data {d}" for d in data or ())
    chance = "" if data else (" (add --data PATH for the chance level: guessing scores log k "
                              "nats among k options)")
    console.print(f"NLL in nats per response{chance}.\nnext: psych201 report {runs} {given} "
                  "-o report.html   (one HTML page with the figures)", highlight=False,
                  soft_wrap=True)


def warn_unpaired(unpaired: dict[tuple[str, str], list[str]]) -> None:
    for (post, base), problems in unpaired.items():
        err_console.print(
            f"[yellow]warning:[/yellow] --pair {post}={base} is not a base/post-trained "
            f"pair: {'; '.join(problems)}. Its effects compare two models, not the effect "
            "of post-training.", highlight=False, soft_wrap=True)


def _short(name: Any) -> str:
    return str(name).rsplit("/", 1)[-1]


def print_pairs(summary: Summary) -> None:
    from psych201.analysis.an_post_training import (
        COHEN_NOTE,
        LESS_HUMAN_LIKE,
        MULTIPLICITY_NOTE,
        PostTrainingResult,
        pair_d_text,
    )

    table = Table(title=f"Post-training effects (paper pair d, {summary.options.sd} SD; "
                        "> 0 = less human-like after post-training)")
    for column in ("post-trained", "base", "type", "d", "nats", "interval", "p", "q (BH)",
                   "studies"):
        table.add_column(column, justify="left" if column in ("post-trained", "base", "type")
                         else "right")
    result = summary.result("post-training", PostTrainingResult)
    assert result is not None  # the caller prints pairs only where the section ran
    for _, r in result.pairs.iterrows():
        table.add_row(_short(r["post"]), _short(r["base"]), str(r["type"]), pair_d_text(r),
                      _f(r.get("diff_nats")), f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]",
                      _p(r["p_value"]), _p(r.get("q_value")), str(r["n_studies"]))
    console.print(table)
    console.print(f"[dim]{LESS_HUMAN_LIKE} {COHEN_NOTE} {MULTIPLICITY_NOTE}[/dim]",
                  highlight=False)
    type_d = result.type_d
    if type_d is not None and not type_d.empty:
        types = Table(title="Type d (mean pair d per post-training type)")
        for column in ("type", "d", "interval", "pairs"):
            types.add_column(column, justify="left" if column == "type" else "right")
        for _, r in type_d.iterrows():
            types.add_row(str(r["type"]), _f(r["d"]), f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]",
                          str(r["n_pairs"]))
        console.print(types)
    e = result.sign_test
    if e is not None:
        console.print(f"{e.name}: {_f(e.estimate)} "
                      f"[{_f(e.ci_low)}, {_f(e.ci_high)}], p = {_p(e.p_value)} ({e.method})")


def print_comparison(c: PairComparison) -> None:
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
