"""`psych201 plan`: tokens, FLOPs, memory and hours of a study (or one run) before running it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.table import Table

from psych201.bounds import low_high
from psych201.cli.console import fail, out_console

if TYPE_CHECKING:
    from psych201.data.split import Split
    from psych201.plan import ModelPlan, TokenCount
    from psych201.plan_cluster import GpuPool
    from psych201.study import StudyFile

#: What --split takes (psych201.data.split.Split).
SPLITS = ("test", "train", "all", "seeded")

console = out_console()
err_console = out_console(stderr=True)

#: Bounds of plan's own numbers, from the one table every option shares (psych201.bounds).
PLAN_BOUNDS = {name: low_high(name) for name in ("limit", "batch_tokens")}


def plan(
    study_file: Annotated[
        Path | None, typer.Argument(help="A study file (studies/*.yaml); or use --data/--model.")
    ] = None,
    data: Annotated[Path | None, typer.Option(
        help="Data of a single run; with a study file, planned in place of its data.")] = None,
    model: Annotated[str | None, typer.Option(help="Model of a single run.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many participants.")] = None,
    split: Annotated[
        str, typer.Option(help="test (the held-out tenth), train or all (single run).")
    ] = "test",
    batch_tokens: Annotated[int, typer.Option(help="Tokens per batch (single run).")] = 8192,
    calibrate: Annotated[
        bool, typer.Option("--calibrate", help="Measure FLOP/s here: a probe of the model "
                                              "(at most 45 s, loading included).")
    ] = False,
    benchmark: Annotated[
        Path | None, typer.Option(help="Take FLOP/s from a benchmarks/packing.py JSON.")
    ] = None,
    gpus: Annotated[str | None, typer.Option(
        help="Plan for a cluster, e.g. 8xH100: GPUs per model (from its memory), hours and the "
             "makespan on that many GPUs.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the plan as JSON.")] = None,
) -> None:
    """Tokens forwarded per study, forward FLOPs, peak memory and hours per model."""
    from psych201.analysis.registry import load_registry
    from psych201.pipeline import PipelineError, ScoreConfig
    from psych201.plan import calibrate as measure
    from psych201.plan import (
        check_model_name,
        plan_model,
        shipped_throughput,
        throughput_from_benchmark,
    )
    from psych201.plan_cluster import GpuPool
    from psych201.prompts.conditions import ConditionUnavailableError
    from psych201.simulate.demo import demo_or
    from psych201.study import StudyFileError, expand, load_study, score_config

    for name, value in (("--limit", limit), ("--batch-tokens", batch_tokens)):
        low, high = PLAN_BOUNDS[name.strip("-").replace("-", "_")]
        if value is not None and not low <= value <= high:
            raise fail(f"{name} {value}: must be between {low} and {high:,}")
    try:
        pool = GpuPool.parse(gpus) if gpus is not None else None
    except ValueError as exc:
        raise fail(str(exc)) from exc
    study: StudyFile | None = None
    if study_file is not None:
        try:
            study = load_study(study_file)
        except StudyFileError as exc:
            raise fail(str(exc)) from exc
        if data is not None:  # e.g. the paper's study against a local copy of its data
            study = study.model_copy(update={"data": tuple(
                d.model_copy(update={"path": str(data)}) for d in study.data)})
        # One plan per (data, model, condition): conditions change the text, hence the tokens.
        # An adapter the study trains costs what its base costs (same tokenizer and shapes, the
        # LoRA merged), and may not exist yet: it is planned as its base, under its own name.
        bases = {a.name: a.base for a in study.adapters}
        cells = expand(study, limit=limit)
        configs = [replace(score_config(c, study), model=bases.get(c.model, c.model))
                   for c in cells]
        labels = [c.model for c in cells]
    elif data is not None and model is not None:
        if split not in SPLITS:
            err_console.print(f"[red]error:[/red] --split {split}: use one of "
                              f"{', '.join(SPLITS)}", highlight=False)
            raise typer.Exit(2)
        configs = [ScoreConfig(data=demo_or(data), out=Path("unused"), model=model,
                               limit=limit, batch_tokens=batch_tokens,
                               split=cast("Split", split))]
        labels = [model]
    else:
        raise fail("give STUDY_FILE, or both --data and --model")
    for name in dict.fromkeys(c.model for c in configs):
        try:
            check_model_name(name)  # as `score` would refuse it, before any data is read
        except ValueError as exc:
            raise fail(str(exc)) from exc
    flops_per_s = None
    first = configs[0]
    source = "measured here (--calibrate)"
    if benchmark is not None:
        flops_per_s = throughput_from_benchmark(benchmark)
        source = f"from {benchmark}"
    elif calibrate:
        flops_per_s = measure(first.model, device=first.device, dtype=first.dtype,
                              batch_tokens=first.batch_tokens)
    elif (shipped := shipped_throughput(first.device, first.dtype)) is not None:
        flops_per_s = shipped.flops_per_s
        source = (f"from the shipped table: {shipped.describe()}; --calibrate measures this "
                  "machine (at most 45 s)")
    else:
        source = (f"no shipped throughput for {first.device} ({first.dtype}): hours unknown; "
                  "--calibrate measures this machine (at most 45 s)")
    registry = load_registry()
    estimates: dict[str, list[TokenCount]] = {}
    plans = []
    for label, config in zip(labels, configs, strict=True):
        try:
            plans.append(replace(plan_model(config, flops_per_s=flops_per_s, registry=registry,
                                            estimates=estimates), model=label))
        except PipelineError as exc:
            # A condition this model or data cannot take (no chat template, no metadata):
            # `run` skips that cell, so the plan does too.
            if not isinstance(exc.__cause__, ConditionUnavailableError):
                raise
            console.print(f"[yellow]skipped:[/yellow] {label} · {config.condition}: "
                          f"{exc}", highlight=False)
    if not plans:
        raise fail("no cell of the study can be scored")
    if pool is None:
        _print_cells(plans, flops_per_s, source)
        cluster = None
    else:
        cluster = _print_cluster(plans, pool, study, flops_per_s)
    if out is not None:
        out.write_text(json.dumps({"flops_per_s": flops_per_s,
                                   "plans": [p.as_dict() for p in plans],
                                   **({"cluster": cluster} if cluster else {})}, indent=2) + "\n")
    if study_file is None and data is not None and model is not None:
        _print_next(data, model, split, configs[0].data)


def _print_cells(plans: list[ModelPlan], flops_per_s: float | None, source: str) -> None:
    table = Table(title="psych201 plan", title_justify="left")
    for column in ("model", "condition", "tokens", "exact", "TFLOPs", "peak GB", "hours"):
        table.add_column(column, justify="left" if column in ("model", "condition") else "right")
    for p in plans:
        table.add_row(
            p.model, p.condition, f"{p.tokens:,}", "yes" if p.exact else "est.",
            f"{p.flops / 1e12:,.1f}" if p.flops is not None else "?",
            f"{p.peak_memory_bytes / 1e9:,.1f}" if p.peak_memory_bytes is not None else "?",
            f"{p.hours:,.2f}" if p.hours is not None else "?",
        )
    console.print(table)
    total = sum(p.hours for p in plans if p.hours is not None)
    if flops_per_s:
        console.print(f"at {flops_per_s / 1e12:.3g} TFLOP/s achieved ({source}): "
                      f"{total:,.2f} hours in all", highlight=False, soft_wrap=True)
    else:
        console.print(source, highlight=False, soft_wrap=True)


def _print_cluster(plans: list[ModelPlan], pool: GpuPool, study: StudyFile | None,
                   flops_per_s: float | None) -> dict[str, object]:
    """Per model group: GPUs (the study file's, else from peak memory), memory, hours; then the
    makespan of all groups on the pool (longest first)."""
    from psych201.plan_cluster import PLANNED_MFU, cluster_plan

    given = {m.id: m.gpus for m in study.models if m.gpus} if study is not None else {}
    try:
        groups, span = cluster_plan(plans, pool, given, flops_per_s)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    rate = ("measured" if flops_per_s else
            f"planned at {PLANNED_MFU:.0%} of the {pool.kind.name}'s bf16 peak")
    table = Table(title=f"psych201 plan on {pool.count}x{pool.kind.name} ({rate})",
                  title_justify="left")
    for column in ("model", "cells", "peak GB", "GPUs", "from", "GPU-hours", "hours"):
        table.add_column(column, justify="left" if column in ("model", "from") else "right")
    for g in groups:
        table.add_row(g.model, str(g.cells), f"{g.peak_gb:,.1f}", str(g.gpus), g.gpus_from,
                      f"{g.gpus * g.hours:,.2f}", f"{g.hours:,.2f}")
    console.print(table)
    gpu_hours = sum(g.gpus * g.hours for g in groups)
    console.print(f"makespan on {pool.count}x{pool.kind.name}: {span:,.1f} hours "
                  f"({gpu_hours:,.1f} GPU-hours in all)", highlight=False)
    return {"gpus": pool.count, "kind": pool.kind.name, "makespan_hours": span,
            "groups": [g.__dict__ for g in groups]}


def _print_next(data: Path, model: str, split: str, folder: Path) -> None:
    """Units, what guessing scores on the data, and the command that scores it."""
    from psych201.data.readers import iter_sessions
    from psych201.prompts.chance import chance_by_study

    console.print("tokens forwarded; TFLOPs of the forward passes; peak GB of memory; hours of "
                  "scoring", highlight=False, soft_wrap=True)
    if split == "test":
        console.print("note: --split test plans only the held-out test participants (about a "
                      "tenth); --split all plans every participant", highlight=False,
                      soft_wrap=True)
    for chance in chance_by_study(iter_sessions(folder, on_error="skip")):
        console.print(f"  {chance.study}: {chance.describe()}", highlight=False, soft_wrap=True)
    console.print(f"next: psych201 score --data {data} --model {model} --split {split} "
                  f"--out runs/{folder.name}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
