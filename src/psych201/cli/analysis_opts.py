"""Shared option types and helpers of the analysis commands: load, check, summarize, fail.

Exit codes: 0 success, 2 bad input (unreadable table, unknown model, mismatched study sets).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from psych201.bounds import option_range
from psych201.cli.console import fail, out_console

if TYPE_CHECKING:
    from psych201.analysis.aggregate import Weighting
    from psych201.analysis.bootstrap import SD, Levels
    from psych201.analysis.paper_mode import PaperTables
    from psych201.analysis.plugin import AnalysisOptions
    from psych201.analysis.registry import ModelPair, ModelRegistry
    from psych201.analysis.summary import Summary
    from psych201.analysis.tables import Results

console = out_console()
err_console = out_console(stderr=True)

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
NBootOpt = Annotated[int, typer.Option(**option_range("n_boot"), help="Bootstrap replicates.")]
SeedOpt = Annotated[int, typer.Option(**option_range("seed"), help="Bootstrap seed.")]
AllowMissingOpt = Annotated[
    bool, typer.Option("--allow-missing", help="Compare on shared studies when sets differ.")
]
PaperOpt = Annotated[
    bool, typer.Option("--paper", help="Also compute every figure exactly as the paper's "
                       "plotting scripts do.")
]

def _registry(paths: list[Path] | None) -> ModelRegistry:
    from psych201.analysis.registry import RegistryError, load_registry

    try:
        return load_registry(*(paths or []))
    except RegistryError as exc:
        raise fail(str(exc)) from exc

def _pairs(specs: list[str] | None, registry: ModelRegistry) -> tuple[ModelPair, ...]:
    from psych201.analysis.registry import ModelPair

    out = []
    for spec in specs or []:
        post, sep, base = spec.partition("=")
        if not sep or not post or not base:
            raise fail(f"--pair {spec!r}: expected POST=BASE")
        info = registry.get(post)
        out.append(ModelPair(post, base, info.post_training if info else "unknown"))
    return tuple(out)

def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise fail(f"--{name} must be one of {', '.join(allowed)} (got {value!r})")
    return value

def _options(*, condition: str | None, weighting: str, sd: str, levels: str, n_boot: int,
             seed: int, allow_missing: bool, pairs: tuple[ModelPair, ...], detail: int,
             ) -> AnalysisOptions:
    from psych201.analysis.plugin import AnalysisOptions

    return AnalysisOptions(
        condition=condition,
        weighting=cast("Weighting", _choice("weighting", weighting,
                                          ("study", "participant", "response"))),
        sd=cast("SD", _choice("sd", sd, ("sample", "population"))),
        levels=cast("Levels", _choice("levels", levels, ("both", "studies", "participants"))),
        n_boot=n_boot, seed=seed, allow_missing=allow_missing, extra_pairs=pairs,
        detail_pairs=detail,
    )

#: What ``psych201 run`` leaves in a cell it skipped (a condition the model cannot take).
_SKIPPED_CELL = "skipped.json"
#: The card of an adapter folder (``psych201.lab.adapter.CARD_FILE``; a study keeps its
#: adapters beside its cells).
_ADAPTER_CARD = "psych201-adapter.json"

def _not_a_run(path: Path) -> str | None:
    """Why ``path``, output of ``psych201 run`` that a glob picks up, is no run (else None)."""
    if path.is_dir() and (path / _SKIPPED_CELL).is_file() and not (path / "manifest.json").exists():
        return f"a skipped study cell (see its {_SKIPPED_CELL})"
    if (path / _ADAPTER_CARD).is_file() or (path.parent / _ADAPTER_CARD).is_file():
        return "a study's adapter (or a file in it), not a run"
    return None

def _load(paths: list[Path]) -> Results:
    from psych201.analysis.tables import TableError, read_results

    # What a study writes beside its runs is left out with a word, so `runs/study/*/*/*` works.
    kept = []
    for path in paths:
        why = _not_a_run(path)
        if why is None:
            kept.append(path)
        else:
            err_console.print(f"[dim]left out {path}: {why}[/dim]", highlight=False,
                              soft_wrap=True)
    if not kept:
        raise fail("nothing to analyse: every path given was left out")
    try:
        return read_results(kept)
    except TableError as exc:
        raise fail(str(exc)) from exc

DataOpt = Annotated[
    list[Path] | None, typer.Option(
        help="The scored dataset (transcripts; repeatable, `demo` = the bundled simulated "
             "studies): adds option counts (random baseline, pseudo-R²), the population baseline "
             "from its training participants, the population-level fit and the context of the "
             "largest losses.")]

def _data_paths(data: list[Path] | None) -> list[Path]:
    """``--data`` values, checked; ``demo`` (when no such path exists) is the bundled studies,
    ``hf:…`` a hub dataset or local dataset folder (resolved when the transcripts are read)."""
    from psych201.data.hub import is_hub_spec
    from psych201.simulate.demo import demo_or

    out = []
    for given in data or []:
        path = demo_or(given)
        if not path.exists() and not is_hub_spec(path):
            raise fail(f"--data {path}: no such file or directory")
        out.append(path)
    return out
SplitSeedOpt = Annotated[int | None, typer.Option(**option_range("seed"),
                                                  help="Seed of the test/train split (default: "
                                                  "the runs' seed).")]

PlayOpt = Annotated[list[Path] | None, typer.Option(
    "--play", help="A `psych201 play` run folder (repeatable): adds the section 'Behaviour in "
                   "closed loop' (the models' signatures beside people's, see --people).")]
PeopleOpt = Annotated[list[Path] | None, typer.Option(
    "--people", help="With --play: a human study of the same task (folder or file; "
                     "repeatable), whose participants' signatures the models are compared with.")]

def _closed_loop(play: list[Path] | None, people: list[Path] | None) -> dict[str, object]:
    """``extras`` for the closed-loop section from ``--play``/``--people`` (checked up front)."""
    if not play:
        if people:
            raise fail("--people needs --play (the runs whose behaviour is compared)")
        return {}
    from psych201.cli.behaviour_cmds import closed_loop_data
    from psych201.errors import UsageError

    for path in [*play, *(people or [])]:
        if not path.exists():
            raise fail(f"{path}: no such file or directory")
    try:
        from psych201.analysis.an_closed_loop import INPUT_KEY

        return {INPUT_KEY: closed_loop_data(list(play), list(people or []))}
    except UsageError as exc:
        raise fail(str(exc)) from exc

def _summarize_runs(results: Results, registry: ModelRegistry, options: AnalysisOptions,
                    data: list[Path], split_seed: int | None,
                    extras: dict[str, object] | None = None) -> Summary:
    """Every analysis, with what the transcripts at ``data`` add (compare and report alike)."""
    from psych201.analysis.conditions import ConditionError
    from psych201.analysis.tables import StudySetError
    from psych201.report.make import ReportDataError, summarize_runs

    try:
        return summarize_runs(results, registry, options, data=data, split_seed=split_seed,
                              extras=extras)
    except (StudySetError, ConditionError, ReportDataError) as exc:
        raise fail(str(exc)) from exc
    except ValueError as exc:  # a data error in the transcripts named by --data
        named = any(str(d) in str(exc) for d in data)
        raise fail(str(exc) if named else f"{', '.join(map(str, data))}: {exc}") from exc

def _summarize(results: Results, registry: ModelRegistry, options: AnalysisOptions,
               **kw: Any) -> Summary:
    from psych201.analysis.conditions import ConditionError
    from psych201.analysis.summary import summarize
    from psych201.analysis.tables import StudySetError

    try:
        return summarize(results, registry, options, **kw)
    except (StudySetError, ConditionError) as exc:
        raise fail(str(exc)) from exc

def strict_json(value: object) -> str:
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

def _paper_tables(loaded: Results, registry: ModelRegistry, condition: str | None,
                  ) -> PaperTables:
    from psych201.analysis.conditions import ConditionError
    from psych201.analysis.paper_mode import paper_tables

    try:
        return paper_tables(loaded.responses, registry, condition=condition,
                            roles=loaded.condition_roles())
    except ConditionError as exc:
        raise fail(str(exc)) from exc

def _paper_summary(summary: Summary, loaded: Results, registry: ModelRegistry,
                   tables: PaperTables) -> Summary:
    from psych201.analysis.paper_summary import paper_summary

    return paper_summary(summary, loaded.responses, registry, tables)

def _write_json(path: Path, payload: object) -> None:
    text = strict_json(payload)
    try:
        path.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise fail(f"{path}: cannot write ({exc.strerror or exc})") from exc
    console.print(f"wrote {path}")

#: Column names some analyses' notes use, in the words of a reader who never saw the table.
_PLAIN_WORDS = {
    "nll_temperature": "the NLL at other softmax temperatures",
    "offered_logprobs": "the probabilities of the offered options",
    "n_options": "the number of options",
}

def distinct_notes(notes: Sequence[str]) -> list[str]:
    """Each note once, in plain words: a note that another one repeats word for word at its
    start is left out, and column names are said in words."""
    unique = list(dict.fromkeys(n.strip() for n in notes))
    kept = [n for n in unique if not any(o != n and o.startswith(n) for o in unique)]
    out = []
    for note in kept:
        for name, words in _PLAIN_WORDS.items():
            note = re.sub(rf"\b{name}\b", words, note)
        out.append(note)
    return out
