"""``psych201 report`` and ``figures``: the HTML page and the figure files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from psych201.cli import analysis_opts
from psych201.cli.analysis_opts import (
    _choice,
    _closed_loop,
    _data_paths,
    _load,
    _options,
    _pairs,
    _paper_summary,
    _paper_tables,
    _registry,
    _summarize,
    _summarize_runs,
    console,
    distinct_notes,
)
from psych201.cli.console import check_file_output, fail


# -- report ---------------------------------------------------------------------------------------
def _check_dir_output(path: Path, flag: str) -> None:
    """Refuse, before any work, an output directory that is a file or sits under a file."""
    if path.exists() and not path.is_dir():
        raise fail(f"{flag} {path} is a file; name a directory for the figures")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise fail(f"{flag} {path}: {parent} is a file, not a directory")



def report(
    results: analysis_opts.ResultsArg,
    output: Annotated[Path, typer.Option("-o", "--out", "--output", help="HTML file to write.")],
    title: Annotated[str, typer.Option(help="Page title.")] = "psych201 report",
    pair: analysis_opts.PairOpt = None,
    condition: analysis_opts.ConditionOpt = None,
    weighting: analysis_opts.WeightingOpt = "study",
    sd: analysis_opts.SDOpt = "sample",
    levels: analysis_opts.LevelsOpt = "both",
    n_boot: analysis_opts.NBootOpt = 2000,
    seed: analysis_opts.SeedOpt = 0,
    allow_missing: analysis_opts.AllowMissingOpt = False,
    registry: analysis_opts.RegistryOpt = None,
    data: analysis_opts.DataOpt = None,
    play: analysis_opts.PlayOpt = None,
    people: analysis_opts.PeopleOpt = None,
    split_seed: analysis_opts.SplitSeedOpt = None,
    figures_dir: Annotated[
        Path | None, typer.Option(help="Also write each figure as PNG and PDF here.")] = None,
    detail: Annotated[int, typer.Option(help="Pairs shown in full (effects, forest plot).")] = 3,
    paper: analysis_opts.PaperOpt = False,
) -> None:
    """Write ONE self-contained HTML page: leaderboard, effects, figures, tables, manifests.

    With --paper the figures are drawn as the paper computes them and a section lists every
    paper-mode table (as `compare --paper`).
    """
    from psych201.report.figures import render_figures, save_figures
    from psych201.report.html import write_report

    check_file_output(output, "-o/--output")
    if figures_dir is not None:
        _check_dir_output(figures_dir, "--figures-dir")
    data_paths = _data_paths(data)
    closed_loop = _closed_loop(play, people)
    reg = _registry(registry)
    loaded = _load(results)
    opts = _options(condition=condition, weighting=weighting, sd=sd, levels=levels,
                    n_boot=n_boot, seed=seed, allow_missing=allow_missing,
                    pairs=_pairs(pair, reg), detail=detail)
    summary = _summarize_runs(loaded, reg, opts, data_paths, split_seed, closed_loop)
    tables = _paper_tables(loaded, reg, condition) if paper else None
    path = write_report(output, summary, loaded, reg, title=title, paper=tables)
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if figures_dir is not None:
        drawn = summary if tables is None else _paper_summary(summary, loaded, reg, tables)
        written = save_figures(render_figures(drawn), figures_dir)
        console.print(f"wrote {len(written)} figure files to {figures_dir}")
    for note in distinct_notes(summary.notes):
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    runs = " ".join(str(r) for r in results)
    guessing = ("its Random baseline section compares each model with guessing (pseudo-R²)"
                if data_paths else "pass --data PATH for the chance level (guessing) and "
                "pseudo-R²")
    console.print(f"NLL in nats per response; {guessing}.\nnext: psych201 export {runs} "
                  "--format csv -o responses.csv   (one long table for R or pandas)",
                  highlight=False, soft_wrap=True)


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
    seed: analysis_opts.SeedOpt = 0,
    n_boot: analysis_opts.NBootOpt = 1000,
    registry: analysis_opts.RegistryOpt = None,
    formats: Annotated[str, typer.Option(help="Comma-separated: png,pdf.")] = "png,pdf",
    paper: analysis_opts.PaperOpt = False,
) -> None:
    """Render every figure (PNG + PDF). `psych201 figures --synthetic` regenerates docs/figures.

    With --paper each figure is drawn from the paper-mode numbers (psych201.analysis.paper_mode).
    """
    from psych201.analysis.plots import PAPER_PANELS
    from psych201.analysis.plugin import AnalysisOptions
    from psych201.analysis.registry import ModelPair
    from psych201.analysis.synthetic import demo_table
    from psych201.analysis.tables import results_from_frame
    from psych201.report.figures import render_figures, save_figures

    if synthetic == bool(results):
        raise fail("give either RESULTS or --synthetic")
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

