"""`psych201 play`: a language model (or the task's cognitive model) takes part in a task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from psych201.bounds import option_range
from psych201.errors import InvalidDataError, UsageError
from psych201.pipeline.config import resolve_device
from psych201.pipeline.play import (
    COGNITIVE,
    MAX_PARSE_FAILURES,
    MIN_OPTION_MASS,
    OPTION_LOGPROB_ENGINES,
    POLICIES,
    PlaySpec,
    check_play_folder,
    run_play,
)
from psych201.pipeline.play_models import language_model_players
from psych201.pipeline.players import MODES
from psych201.results.lock import lock_run_dir
from psych201.simulate import TASKS

if TYPE_CHECKING:
    from psych201.scoring.models import LoadedModel

_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add ``play`` to ``app``."""
    app.command("play", no_args_is_help=True)(play)


def play(
    task: Annotated[str, typer.Option(
        "--task", help="Task to play: " + "; ".join(f"{k} ({t.description})"
                                                     for k, t in TASKS.items()))],
    model: Annotated[str, typer.Option(
        "--model", "-m", help=f"A model the engine loads, or '{COGNITIVE}' for the task's own "
        "cognitive model (the ground truth: its transcripts are psych201 simulate's).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (rerun to resume).")],
    participants: Annotated[int, typer.Option(
        "--participants", "-n", **option_range("participants"),
        help="Number of participants.")] = 20,
    trials: Annotated[int | None, typer.Option(
        "--trials", "-t", **option_range("trials"),
        help="Trials per participant (default: the task's).")] = None,
    seed: Annotated[int, typer.Option(**option_range("seed"),
                                      help="Random seed (tasks and sampled choices).")] = 0,
    policy: Annotated[str, typer.Option(
        help="sample: choose by sampling the model's distribution over the options (a "
        "stochastic participant); greedy: its most probable option; generate: the model writes "
        "its answer (chat models through their chat template), parse failures counted.")
    ] = "sample",
    engine: Annotated[str, typer.Option(
        help=f"Engine with option log-probs: {', '.join(OPTION_LOGPROB_ENGINES)}.")] = "hf",
    dtype: Annotated[str, typer.Option(help="Model weights' dtype.")] = "float32",
    device: Annotated[str, typer.Option(
        help="Device: cpu, cuda, cuda:N, mps, or auto (the GPU where torch sees one).")] = "cpu",
    shared_trials: Annotated[bool, typer.Option(
        "--shared-trials", help="Every participant meets the same problems (risky only).")] = False,
    mode: Annotated[str, typer.Option(
        help="cache: keep each participant's key/value cache and run only the new tokens, a "
        "chunk's participants in one batched pass (hf); batch: the whole transcript per choice, "
        "all participants in one engine call.")] = "cache",
    chunk: Annotated[int, typer.Option(
        **option_range("participants"), help="Participants per saved chunk (the unit a rerun "
        "resumes from) and per batched pass of --mode cache (more share a pass and hold more "
        "memory).")] = 25,
) -> None:
    """Let a language model take part in a simulated task in closed loop: it sees its own choices and their outcomes, and its transcripts, choice probabilities and a manifest are written to OUT.

    The transcripts are Psych-201 data: data validate, score and compare read OUT/transcripts.
    """  # noqa: E501 - one line, so the help text wraps to the terminal, not to the source
    if policy not in POLICIES:
        raise typer.BadParameter(f"choose one of {', '.join(POLICIES)}", param_hint="--policy")
    spec = PlaySpec(task=task, model=model, n_participants=participants,
                    n_trials=trials or (TASKS[task].default_trials if task in TASKS else 1),
                    seed=seed, policy=policy, engine=engine, dtype=dtype,
                    shared_trials=shared_trials, chunk=chunk)
    spec.check()  # before any model loads
    check_play_folder(out, spec)
    if model == COGNITIVE:
        result = run_play(spec, out)
    else:
        if mode not in MODES:
            raise typer.BadParameter(f"choose one of {', '.join(MODES)}", param_hint="--mode")
        device = resolve_device(device)  # a GPU torch cannot see is refused before loading
        load = _adapter_loader(model, spec.dtype, device)  # its card and files checked here
        # the folder is ours before the model loads: a second process is refused at once
        with lock_run_dir(out):
            with _console.status(f"loading {model} ({engine})"):
                loaded = language_model_players(
                    spec, mode=mode, device=device, load=load,
                    on_failure=lambda line: _console.print(f"parse failure: {line}",
                                                           markup=False, highlight=False))
            bar = _PlayBar(_console)
            try:
                result = run_play(spec, out, make_players=loaded.make_players,
                                  engine_info=loaded.engine_info, model_info=loaded.model_info,
                                  progress=bar, lock=False)
            finally:
                bar.stop()
                loaded.close()
    if result.option_mass < MIN_OPTION_MASS:
        _console.print(
            f"[yellow]warning:[/yellow] the model put only {result.option_mass:.0%} of its "
            f"probability on the offered options on average (threshold {MIN_OPTION_MASS:.0%}): "
            "its choices are renormalised from a distribution mostly elsewhere")
    if spec.policy == "generate" and result.parse_failure_rate > MAX_PARSE_FAILURES:
        raise InvalidDataError(
            f"{result.parse_failures} of {result.n_responses} generated answers "
            f"({result.parse_failure_rate:.0%}) named no offered option, above the threshold of "
            f"{MAX_PARSE_FAILURES:.0%} (each was replaced by a random choice; see "
            f"{out / 'choices.parquet'}, column generated)")
    if result.replayed_chunks:
        _console.print(f"[yellow]warning:[/yellow] {result.replayed_chunks} chunk(s) in "
                       f"{out / 'parts'} were truncated or corrupted and were played again")
    played = result.n_responses - result.resumed_responses
    pace = (f"{played / result.seconds_playing:.1f} responses/s" if result.seconds_playing
            else "nothing left to play")
    _console.print(
        f"{result.n_participants} participants, {result.n_responses} responses "
        f"({result.resumed_chunks} chunks resumed; {pace}) -> {out}\n"
        f"transcripts: {result.transcripts}\nchoices: {result.choices}"
    )


class _PlayBar:
    """Responses answered so far with an ETA (on a terminal), and a line per finished chunk
    (everywhere, so a log shows the pace of a long run)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, *, responses: int, done: int) -> None:
        if not self._console.is_terminal:
            return
        self._progress = Progress(
            TextColumn("[bold]playing"), BarColumn(), MofNCompleteColumn(),
            TextColumn("responses · ETA"), TimeRemainingColumn(), console=self._console)
        self._progress.start()
        self._task = self._progress.add_task("playing", total=responses, completed=done)

    def advance(self, responses: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=responses)

    def chunk_done(self, participants: range, responses: int, seconds: float) -> None:
        self._console.print(
            f"participants {participants.start}–{participants.stop - 1}: {responses:,} "
            f"responses in {seconds:,.0f} s ({responses / max(seconds, 1e-9):.1f}/s)",
            markup=False, highlight=False)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _adapter_loader(model: str, dtype: str, device: str) -> Callable[[], LoadedModel] | None:
    """A LoRA adapter folder (``psych201 posttrain``, a study's ``adapters:``) plays merged into
    its base; anything else loads as usual (None)."""
    from psych201.lab.adapter import (
        check_adapter_files,
        is_adapter_dir,
        load_adapter_model,
        read_card,
    )
    from psych201.scoring.models import model_identity

    folder = Path(model).expanduser()
    if not is_adapter_dir(folder):
        return None
    # what fails without loading anything, before the base model's weights load
    check_adapter_files(folder)
    base = read_card(folder).base
    if model_identity(base) is None:
        raise UsageError(f"{folder}: the adapter's base model {base!r} is not a built-in, a "
                         "local model folder, a .gguf file or a hub id")
    return lambda: load_adapter_model(model, dtype=dtype, device=device)
