"""``psych201 score``, ``merge`` and ``demo``: parse arguments, call the pipeline, show progress.

Heavy libraries (torch, transformers) are imported inside the commands so that ``--help`` and
the other commands stay fast.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from psych201.cli.console import fail, out_console
from psych201.errors import (
    EXIT_FAILED_SESSIONS,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_USAGE,
    Psych201Error,
    UsageError,
    os_error_line,
)
from psych201.results.writer import part_paths
from psych201.scoring.models import DEFAULT_MODEL  # light: no torch until a model is loaded

if TYPE_CHECKING:
    from psych201.pipeline import RunSummary, ScoreConfig, ScoringSetup, SetupLoader
    from psych201.results.summary import StudyLine

DEFAULT_DEMO_OUT = Path("psych201-demo")

#: Exit codes (psych201.errors): 1 bad data, 2 bad options, 3 the OS refused, 4 some sessions
#: failed (skipped), 130 Ctrl-C.

err_console = out_console(stderr=True)


class _ParticipantsColumn(ProgressColumn):
    """``12/40 participants · 1.35/s`` (the bar itself advances by characters)."""

    def render(self, task: Task) -> Text:
        done = int(task.fields.get("participants", 0))
        total = int(task.fields.get("total_participants", 0))
        elapsed = task.elapsed or 0.0
        rate = f"{done / elapsed:.2f}/s" if elapsed > 0 and done else "-/s"
        return Text(f"{done}/{total} participants · {rate}", style="progress.data.speed")


class RichProgress:
    """A :class:`psych201.pipeline.ProgressSink` drawn with rich.

    The bar advances by characters, not participants: sessions differ in length by 100x
    (dezfouli2019), so a character-weighted ETA is far closer to the truth.
    """

    #: Seconds between two progress lines when the console is not a terminal.
    PLAIN_EVERY_S = 10.0

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: Any = None
        self._plain: _PlainCounts | None = None

    def start(self, *, sessions: int, chars: int, already_done: int) -> None:
        if not self.enabled:
            return
        if not self.console.is_terminal:  # a log file or a pipe: lines, not a redrawn bar
            self._plain = _PlainCounts(sessions, max(chars, 1), time.monotonic())
            return
        self._progress = Progress(
            TextColumn("[bold]scoring"),
            BarColumn(),
            _ParticipantsColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            "scoring", total=max(chars, 1), participants=0, total_participants=sessions
        )

    def advance(self, *, sessions: int, chars: int) -> None:
        if self._plain is not None:
            self._advance_plain(sessions, chars)
        if self._progress is None:
            return
        done = int(self._progress.tasks[0].fields["participants"]) + sessions
        self._progress.update(self._task, advance=chars, participants=done)

    def note(self, message: str) -> None:
        if self.enabled:
            self.console.print(f"[dim]{message}[/dim]")

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._plain = None

    def _advance_plain(self, sessions: int, chars: int) -> None:
        plain = self._plain
        assert plain is not None
        plain.sessions_done += sessions
        plain.chars_done += chars
        now = time.monotonic()
        finished = plain.sessions_done >= plain.sessions
        if not finished and now - plain.printed < self.PLAIN_EVERY_S:
            return
        plain.printed = now
        elapsed = now - plain.started
        share = plain.chars_done / plain.chars
        left = elapsed * (1 - share) / share if share > 0 else float("nan")
        eta = f", about {left / 60:.1f} min left" if not finished and left == left else ""
        self.console.print(
            f"scoring: {plain.sessions_done}/{plain.sessions} participants "
            f"({share:.0%} of the text) in {elapsed:.0f} s{eta}", highlight=False)


@dataclass
class _PlainCounts:
    """What plain (non-terminal) progress lines report."""

    sessions: int
    chars: int
    started: float
    sessions_done: int = 0
    chars_done: int = 0
    printed: float = 0.0


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
        setup = _with_spinner(config, setup, console, enabled=not quiet)
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


def _engine_loader(
    config: ScoreConfig, engine: str, engine_args: dict[str, Any], ray_args: dict[str, Any]
) -> SetupLoader | None:
    """Check that ``engine`` can be used here and takes ``--model-args``; return what loads it
    once the data is read (None: the default engine, which a finished run need not load)."""
    from psych201.pipeline import build_setup, engine_choices
    from psych201.scoring.engines import (
        RAY_PACKAGE,
        check_engine_args,
        check_model_args,
        engine_entry,
        require_packages,
    )

    choices = engine_choices()
    if engine not in choices:
        raise fail(f"unknown engine {engine!r} (choose one of {', '.join(choices)})")
    if ray_args and engine != "ray":
        raise fail("--ray-args needs --engine ray")
    inner = str(ray_args.get("engine", "hf")) if engine == "ray" else engine
    packing = engine_args.get("packing")
    if inner == "hf" and packing is not None and not isinstance(packing, bool):
        from psych201.scoring.hf import PACKING_CHOICES

        if str(packing).lower() not in PACKING_CHOICES:
            raise fail(f"--engine-args packing={packing}: choose one of "
                        f"{', '.join(PACKING_CHOICES)}")
    if engine == "ray" and not RAY_PACKAGE.installed():
        raise fail(f"--engine ray needs the ray package, which is not installed "
                    f"({RAY_PACKAGE.install})")
    if inner not in choices or inner == "ray":
        raise fail(f"unknown engine {inner!r} (choose one of {', '.join(choices)})")
    require_packages(inner)  # registration names the packages and how to install them
    if engine == "ray" and not engine_entry(inner).capabilities.ray:
        raise fail(f"engine {inner} reads whole sessions and cannot run on Ray")
    check_engine_args(inner, engine_args)
    check_model_args(inner, config.model_args)  # before the data is read or the model loads
    if (Path(config.model).expanduser() / "adapter_config.json").is_file():
        return _adapter_loader(config, engine, engine_args)
    if engine == "hf" and not engine_args:
        return None

    def load() -> ScoringSetup:
        try:
            return build_setup(config, engine=engine, engine_args=engine_args, ray_args=ray_args)
        except (ImportError, TypeError) as exc:
            raise UsageError(f"--engine {engine}: {exc}") from exc
        except ValueError as exc:
            if isinstance(exc, Psych201Error):
                raise
            raise UsageError(f"--engine {engine}: {exc}") from exc

    return load


def _adapter_loader(config: ScoreConfig, engine: str, engine_args: dict[str, Any]) -> SetupLoader:
    """A LoRA adapter folder (``psych201 posttrain``, a study's ``adapters:``): its base with the
    adapter merged, on the transformers engine; the table's model is the adapter's name."""
    from psych201.lab.adapter import check_adapter_files, is_adapter_dir
    from psych201.lab.scoring import scoring_setup

    folder = Path(config.model).expanduser()
    if not is_adapter_dir(folder):
        raise fail(f"--model {config.model}: a peft adapter folder without a psych201 adapter "
                    "card; psych201 scores the adapters its post-training lab writes")
    try:
        check_adapter_files(folder)
    except ValueError as exc:
        raise fail(f"--model {config.model}: {exc}") from exc
    if engine != "hf":
        raise fail(f"--model {config.model} is a LoRA adapter: score it with --engine hf")
    return lambda: scoring_setup(config, engine_args)


def _kept(run_dir: Path) -> int:
    """Participants the finished parts of ``run_dir`` hold (0 when unreadable)."""
    from psych201.results.writer import ResultsError, part_sessions

    try:
        return sum(len(part_sessions(path)) for path in part_paths(run_dir))
    except (ResultsError, OSError):
        return 0


def _with_spinner(
    config: ScoreConfig, loader: SetupLoader | None, console: Console, *, enabled: bool
) -> SetupLoader:
    """``loader`` (default: the transformers engine) drawn as a spinner while it runs: loading
    a model can take a minute without any other sign of life."""
    from psych201 import pipeline
    from psych201.pipeline import DefaultEngineLoader

    def load() -> ScoringSetup:
        # Looked up when called, so that a test can stand in for the default engine.
        run = loader if loader is not None else (lambda: pipeline.load_hf_setup(config))
        if not enabled:
            return run()
        with console.status(f"loading {config.model} …", spinner="dots"):
            return run()

    return load if loader is not None else DefaultEngineLoader(load)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _chance_cells(line: StudyLine) -> tuple[str, str]:
    """The chance NLL and the pseudo-R² against it, in numbers and words (inferred marked *)."""
    from psych201.results.summary import chance_words

    if line.chance_nll is None:
        return "-", "chance unknown"
    mark = "*" if line.inferred_responses else ""
    return f"{line.chance_nll:.3f}{mark}", f"{line.pseudo_r2:+.3f} ({chance_words(line.pseudo_r2)})"


def _print_summary(
    summary: RunSummary, data: str | Path | None = None, split: str | None = None
) -> None:
    from psych201.results.summary import option_counts_of, summarise_run, write_summary

    console = out_console()
    counts = None
    if summary.table is not None and data is not None:
        try:
            counts = option_counts_of(summary.run_dir, data)
        except (OSError, ValueError) as exc:  # the data moved or broke since: no chance column
            err_console.print(f"chance level not computed: {exc}", highlight=False)
    lines = summarise_run(summary.run_dir, counts) if summary.table is not None else []
    if lines:
        table = Table(title="NLL per response (nats; lower = more human-like) per study",
                      title_justify="left")
        table.add_column("study", no_wrap=True)
        for name in ("participants", "responses", "per response (nats)", "per token (nats)",
                     "chance (guessing)", "pseudo-R² vs guessing"):
            table.add_column(name, justify="right")
        for line in lines:
            table.add_row(
                line.study,
                str(line.participants),
                str(line.responses),
                _fmt(line.nll_per_response),
                _fmt(line.nll_per_token),
                *_chance_cells(line),
                style="bold" if line.study == "all" else None,
            )
        console.print(table)
        for sentence in _chance_notes(lines):
            console.print(sentence, highlight=False)
        path = write_summary(
            summary.run_dir,
            lines,
            {
                "run_dir": str(summary.run_dir),
                "config_hash": summary.config_hash,
                "sessions": summary.sessions,
                "failed_sessions": len(summary.failed),
            },
        )
        console.print(f"summary written to {path}", highlight=False)
    console.print(
        f"{summary.run_dir}: {summary.sessions} participants ({summary.already_done} already "
        f"done, {summary.scored_now} scored now), {summary.responses} responses, "
        f"config {summary.config_hash}, {summary.wall_s:.1f} s",
        highlight=False,
    )
    if summary.failed:
        err_console.print(
            f"[yellow]{len(summary.failed)} participants could not be scored (see above); "
            "the run is marked incomplete. Rerun to retry them.[/yellow]"
        )
    if split == "test":
        console.print("note: --split test scored only the held-out test participants (about a "
                      "tenth of a study without its own split); --split all scores everyone.",
                      highlight=False)
    if lines and data is not None:
        run, source = summary.run_dir, _data_argument(data)
        console.print(
            f"next: psych201 compare {run} --data {source}   (leaderboard, every analysis)\n"
            f"      psych201 report {run} --data {source} -o report.html   (one HTML page)\n"
            f"      psych201 export {run} --format csv -o responses.csv   (for R / pandas)",
            highlight=False,
        )


def _data_argument(data: str | Path) -> str:
    from psych201.simulate.demo import DEMO_DIR, DEMO_NAME

    return DEMO_NAME if Path(str(data)) == DEMO_DIR else str(data)


def _chance_notes(lines: Sequence[StudyLine]) -> list[str]:
    """How to read the chance columns, and where they are missing or inferred."""
    notes = [READING_CHANCE]
    inferred = sum(line.inferred_responses for line in lines if line.study != "all")
    if inferred:
        notes.append(f"* {inferred} responses: the wording did not state the options, so each "
                     "participant's distinct responses were taken as the option set (inferred).")
    unknown = [line.study for line in lines if line.study != "all" and line.chance_nll is None]
    if unknown:
        notes.append(f"chance unknown for {', '.join(unknown)}: no option set stated or "
                     "inferable (free-text or numeric responses).")
    return notes


#: One sentence on how to read NLL against chance (``score`` and ``demo``).
READING_CHANCE = (
    "How to read: guessing uniformly among k options scores log k nats per response (0.693 for "
    "two); a model below the chance column predicts people better than guessing, above it worse. "
    "Pseudo-R² = 1 − NLL/chance: 0 is guessing, 1 is perfect, below 0 worse than guessing."
)


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
            "data), ray, or one an installed package adds (psych201.engines entry point)."
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
    setup = _engine_loader(
        config,
        engine,
        parse_kv(engine_args, what="--engine-args"),
        parse_kv(ray_args, what="--ray-args"),
    )
    summary = run_scoring(config, quiet=quiet, setup=setup)
    _print_summary(summary, data, config.split)
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
        config, quiet=quiet, setup=_engine_loader(config, "hf", dict(DEMO_ENGINE_ARGS), {})
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
            *_chance_cells(row.line),
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
