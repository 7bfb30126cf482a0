"""``psych201 score``, ``merge`` and ``demo``: parse arguments, call the pipeline, show progress.

Heavy libraries (torch, transformers) are imported inside the commands so that ``--help`` and
the other commands stay fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from psych201.cli.console import fail, out_console
from psych201.cli.score_preflight import engine_loader
from psych201.cli.score_progress import RichProgress, with_spinner
from psych201.cli.score_summary import READING_CHANCE, chance_cells, print_summary
from psych201.errors import (
    EXIT_FAILED_SESSIONS,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_USAGE,
    Psych201Error,
    os_error_line,
)
from psych201.results.writer import part_paths
from psych201.scoring.models import DEFAULT_MODEL  # light: no torch until a model is loaded

if TYPE_CHECKING:
    from psych201.pipeline import RunSummary, ScoreConfig, ScoringSetup, SetupLoader

DEFAULT_DEMO_OUT = Path("psych201-demo")

#: Exit codes (psych201.errors): 1 bad data, 2 bad options, 3 the OS refused, 4 some sessions
#: failed (skipped), 130 Ctrl-C.

err_console = out_console(stderr=True)


def _split_list(text: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in (text or "").split(",") if s.strip())


def run_scoring(
    config: ScoreConfig, *, quiet: bool = False, setup: ScoringSetup | SetupLoader | None = None
) -> RunSummary:
    """Run the pipeline with a progress bar; turn known errors into a clean exit."""
    from psych201.pipeline import ScoringSetup, score_run

    console = Console(stderr=True)
    progress = RichProgress(console, enabled=not quiet)
    if not isinstance(setup, ScoringSetup):
        setup = with_spinner(config, setup, console, enabled=not quiet)
    try:
        return score_run(config, setup=setup, progress=progress, argv=sys.argv)
    except KeyboardInterrupt:
        progress.stop()
        raise fail(
            f"interrupted: {_kept(config.out)} participants kept in {config.out}; rerun the "
            "same command to resume (only the missing participants are scored)",
            EXIT_INTERRUPTED,
        ) from None
    except (Psych201Error, OSError) as exc:
        progress.stop()
        from psych201.errors import RunLockedError

        # Another process's parts are not ours to mention.
        locked = isinstance(exc, RunLockedError)
        try:
            saved = part_paths(config.out) if config.out.is_dir() and not locked else []
        except OSError:
            saved = []
        note = f" (finished participants are saved in {config.out})" if saved else ""
        if isinstance(exc, Psych201Error):
            raise fail(f"{exc}{note}", exc.exit_code) from exc
        raise fail(f"{os_error_line(exc)}{note}", EXIT_IO) from exc
    finally:
        progress.stop()


def _kept(run_dir: Path) -> int:
    """Participants the finished parts of ``run_dir`` hold (0 when unreadable)."""
    from psych201.results.writer import ResultsError, part_sessions

    try:
        return sum(len(part_sessions(path)) for path in part_paths(run_dir))
    except (ResultsError, OSError):
        return 0


def score(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            "-d",
            help="Study folder/zip/JSONL/Parquet, a directory of studies, or a multi-study "
            "table: hf:OWNER/NAME[@revision] or hf:FOLDER (Parquet shards or save_to_disk); "
            "`demo`: the bundled simulated studies.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Run directory (created, or resumed if it holds this same configuration).",
        ),
    ],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="Built-in name (gemma-3-270m, smollm2-135m-instruct), HF folder, .gguf file "
            "or hub id ORG/NAME[@revision] (HF cache; HF_HUB_OFFLINE=1 never downloads).",
        ),
    ] = DEFAULT_MODEL,
    model_args: Annotated[
        str | None, typer.Option(help="Extra loader arguments, k=v,k2=v2 (lm-eval style).")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            help="At most this many participants per study (first ones of the split, file order)."
        ),
    ] = None,
    studies: Annotated[
        str | None, typer.Option(help="Comma-separated study ids (default: all).")
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            help="test (paper's held-out participants: the data's own in_eval split where it "
            "has one, else seeded), train, all, or seeded (re-split with --seed)."
        ),
    ] = "test",
    seed: Annotated[
        int, typer.Option(help="Seed of the test split (and of seeded conditions).")
    ] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    dtype: Annotated[
        str,
        typer.Option(
            help="float32 (reference), bfloat16 (the paper's) or float16 (GPU memory; "
            "overflows in some models, check against float32)."
        ),
    ] = "float32",
    batch_tokens: Annotated[int, typer.Option(help="Token budget of one forward batch.")] = 8192,
    condition: Annotated[
        str,
        typer.Option(
            help="Prompt condition: raw, paper, discrete, chat-template, persona, "
            "persona-shuffled, no-persona."
        ),
    ] = "raw",
    condition_args: Annotated[
        str | None, typer.Option(help="Condition parameters, k=v,... (e.g. mode=qa).")
    ] = None,
    alignment: Annotated[
        str, typer.Option(help="offsets (exact, default), pieces, or paper (marker tokens).")
    ] = "offsets",
    max_tokens: Annotated[
        int | None, typer.Option(help="Window length in tokens (default: the model's context).")
    ] = None,
    window_overlap: Annotated[
        int | None, typer.Option(help="Tokens of context a new window keeps from the previous one.")
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(help="Score shard i of N (i/N), by a stable hash of each participant."),
    ] = None,
    part_size: Annotated[
        int, typer.Option(help="Participants per saved part (crash safety granularity).")
    ] = 16,
    on_error: Annotated[
        str, typer.Option(help="fail: stop at the first bad line/session; skip: log it and go on.")
    ] = "fail",
    engine: Annotated[
        str,
        typer.Option(
            help="A registered engine: hf (reference), vllm, llamacpp, openai, oracle (simulated "
            "data), cognitive (--model qlearning, reversal, cpt or twostep; --engine-args "
            "train=STUDY), ray, or one an installed package adds (psych201.engines entry point)."
        ),
    ] = "hf",
    engine_args: Annotated[
        str | None, typer.Option(help="Engine settings, k=v,... (e.g. tensor_parallel_size=4).")
    ] = None,
    ray_args: Annotated[
        str | None, typer.Option(help="With --engine ray: engine=vllm,num_workers=8,...")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Score every human response of the data with a model: one row per response, resumable."""
    from psych201.cli.kv import parse_kv
    from psych201.pipeline import PipelineError, ScoreConfig, validate_run
    from psych201.results.shards import Shard
    from psych201.simulate.demo import demo_or

    data = demo_or(data)  # as study files and compare/report take it
    try:
        config = ScoreConfig(
            data=data,
            out=out,
            model=model,
            model_args=parse_kv(model_args),
            split=split,  # type: ignore[arg-type]  # checked by ScoreConfig
            studies=_split_list(studies),
            limit=limit,
            seed=seed,
            device=device,
            dtype=dtype,
            batch_tokens=batch_tokens,
            condition=condition,
            condition_args=parse_kv(condition_args, what="--condition-args"),
            alignment=alignment,
            max_tokens=max_tokens,
            window_overlap=window_overlap,
            shard=Shard.parse(shard) if shard else None,
            part_size=part_size,
            on_error=on_error,  # type: ignore[arg-type]
        )
    except (PipelineError, ValueError) as exc:
        raise fail(str(exc)) from exc
    if not str(data).startswith("hf:") and not data.exists():
        raise fail(f"--data {data}: no such file or directory")
    validate_run(config)
    from psych201.results.lock import check_unlocked

    check_unlocked(out)  # refuse a busy --out before the pipeline (and any model) loads
    setup = engine_loader(
        config,
        engine,
        parse_kv(engine_args, what="--engine-args"),
        parse_kv(ray_args, what="--ray-args"),
    )
    summary = run_scoring(config, quiet=quiet, setup=setup)
    print_summary(summary, data, config.split)
    if summary.failed:
        raise typer.Exit(EXIT_FAILED_SESSIONS)


def merge(
    sources: Annotated[
        list[Path], typer.Argument(help="Run directories (shards of one run) to merge.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="New run directory, or a .parquet file.")
    ],
    allow_incomplete: Annotated[
        bool, typer.Option(help="Accept unfinished runs and missing shards.")
    ] = False,
    allow_mixed: Annotated[
        bool, typer.Option(help="Accept different configurations and bare tables.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing --out (a previous merge output).")
    ] = False,
) -> None:
    """Merge shards / run directories into one response table, checking that they agree.

    --out is never one of the sources or inside one; an existing --out is refused unless
    --force (the same merge, interrupted or repeated, is simply redone).
    """
    from psych201.errors import Psych201Error
    from psych201.results.merge import merge_runs
    from psych201.results.writer import ResultsError

    try:
        summary = merge_runs(
            sources, out, allow_incomplete=allow_incomplete, allow_mixed=allow_mixed, force=force
        )
    except (ResultsError, Psych201Error) as exc:
        raise fail(str(exc), getattr(exc, "exit_code", EXIT_USAGE)) from exc
    out_console().print(
        f"{summary.path}: {summary.rows} responses from {summary.sources} sources"
        + (f", config {summary.config_hash}" if summary.config_hash else "")
    )


#: What the demo asks of the transformers engine beyond its defaults (see ``demo``).
DEMO_ENGINE_ARGS: tuple[tuple[str, str], ...] = (("temperatures", "on"),)


def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run directory for the demo run.")
    ] = DEFAULT_DEMO_OUT,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model to score the demo with.")
    ] = DEFAULT_MODEL,
    limit: Annotated[
        int | None, typer.Option(help="At most this many participants per study.")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Score the bundled simulated studies with the default model and print a per-study table.

    Works offline; the first call converts the packaged GGUF model once (cached afterwards).
    Rerunning with the same options reuses the finished run in --out.
    """
    from psych201.pipeline import ScoreConfig
    from psych201.report.demo import demo_summary
    from psych201.simulate.demo import DEMO_DIR

    config = ScoreConfig(
        data=DEMO_DIR,
        out=out,
        model=model,
        split="all",
        limit=limit,
        device=device,
        dtype=dtype,
        # The offered options' log-probs and the NLL at other temperatures (about twice the
        # scoring time on a CPU for Gemma's 262k vocabulary, seconds here) give the report's
        # calibration, population-fit, item-level and over-confidence sections their content.
        condition_args={"offered": True},
    )
    summary = run_scoring(
        config, quiet=quiet, setup=engine_loader(config, "hf", dict(DEMO_ENGINE_ARGS), {})
    )
    rows = demo_summary(summary.run_dir, DEMO_DIR)
    table = Table(
        title=f"Mean NLL per response (nats; lower = more human-like) of {model}",
        title_justify="left",
    )
    table.add_column("study", no_wrap=True)
    for name in ("participants", "responses", "model", "oracle", "chance (guessing)",
                 "pseudo-R² vs guessing"):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(
            row.study,
            str(row.participants),
            str(row.responses),
            f"{row.mean_nll:.3f}",
            "-" if row.oracle_nll is None else f"{row.oracle_nll:.3f}",
            *chance_cells(row.line),
        )
    console = out_console()
    console.print(table)
    run = summary.run_dir
    console.print(
        f"{READING_CHANCE} The oracle scores each response by the exact log-likelihood of the "
        "cognitive model that generated it: the lowest mean NLL any model can expect.\n"
        f"Run written to {run} ({summary.wall_s:.1f} s). Next:\n"
        f"  psych201 report {run} --data demo -o demo.html   (one HTML page with every analysis)\n"
        f"  psych201 compare {run} --data demo               (the same in the terminal)\n"
        f"  psych201 export {run} --format csv -o demo.csv   (one long table for R or pandas)\n"
        "  your own study: see \"Your own study in 5 commands\" in the README "
        "(psych201 data new NAME writes a folder to start from)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("score")(score)
    app.command("merge")(merge)
    app.command("demo")(demo)
