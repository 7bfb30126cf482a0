"""Closed-loop play: a language model (or a task's cognitive model) takes part in a simulated task.

At each choice point the model reads the transcript so far — its own earlier choices and what
they brought — up to the ``<<`` where it must answer, and gives a log-probability to each offered
option (one token each, renormalised over the options). The choice is sampled from that
distribution (the model as a stochastic participant; ``policy="sample"``) or taken greedily.
Every participant advances in lockstep, so one engine call per choice point scores all of them
(the engine batches them); one model load serves the whole run.

A run folder holds::

    transcripts/<study>.jsonl   Psych-201 transcripts (``data validate``, ``score``, ``compare``)
    choices.parquet             one row per response: options, their probabilities, the choice
    manifest.json               task, player, engine, seed, policy, task parameters, timings
    parts/                      finished chunks of participants (what a rerun resumes from)

Participant *i* gets the same random stream, demographics and environment whatever the chunking,
so a resumed run is the run that would have been written in one go; the cognitive model played
here writes exactly the transcripts of ``psych201 simulate`` with the same seed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from psych201.atomic import write_text_atomic
from psych201.bounds import check_bound
from psych201.errors import UsageError
from psych201.pipeline.players import GeneratingPlayers, LanguageModelPlayers
from psych201.results.lock import LOCK_FILE, lock_run_dir
from psych201.results.writer import write_parquet_atomic
from psych201.simulate import KINDS, TASKS, CognitivePlayers, play_study, to_jsonl
from psych201.simulate.play import ChoiceRow, Players
from psych201.strict_json import dumps

#: Engines whose requests return the log-probs of given candidate tokens (the offered options).
OPTION_LOGPROB_ENGINES: tuple[str, ...] = ("hf", "llamacpp")
#: ``--model`` naming the task's own cognitive model instead of a language model.
COGNITIVE = "cognitive"
POLICIES: tuple[str, ...] = ("sample", "greedy", "generate")
#: With ``policy="generate"``: above this share of answers that name no offered option, the run
#: is reported as failed (its transcripts are still written; each failure is named).
MAX_PARSE_FAILURES = 0.1
MANIFEST = "manifest.json"
#: Below this mean probability on the offered options (before renormalising), a language model
#: is mostly not answering the task: ``play`` says so (manifest and a warning), never silently.
MIN_OPTION_MASS = 0.5
CHOICES = "choices.parquet"

CHOICE_SCHEMA = pa.schema([
    ("participant", pa.string()),
    ("response_index", pa.int32()),
    ("options", pa.list_(pa.string())),
    ("option_logprobs", pa.list_(pa.float64())),
    ("option_mass", pa.float64()),
    ("choice", pa.string()),
    ("choice_index", pa.int32()),
    ("logprob", pa.float64()),
    ("reward", pa.float64()),
    ("generated", pa.string()),
])


@dataclass(frozen=True)
class PlaySpec:
    """What names a play run: the same spec resumes, another one is refused in the same folder."""

    task: str
    model: str
    n_participants: int
    n_trials: int
    seed: int = 0
    policy: str = "sample"
    engine: str = "hf"
    dtype: str = "float32"
    shared_trials: bool = False
    chunk: int = 25

    def check(self) -> None:
        """Refuse a bad spec before anything loads (UsageError naming what is wrong)."""
        if self.task not in TASKS:
            raise UsageError(f"unknown task {self.task!r}; choose one of {', '.join(KINDS)}")
        if self.policy not in POLICIES:
            raise UsageError(f"unknown policy {self.policy!r}; choose one of {', '.join(POLICIES)}")
        if self.model != COGNITIVE and self.engine not in OPTION_LOGPROB_ENGINES:
            raise UsageError(
                f"engine {self.engine} returns no log-probs of the offered options, which a "
                f"playing model needs; use one that does: {', '.join(OPTION_LOGPROB_ENGINES)}"
            )
        if self.shared_trials and TASKS[self.task].shared_environment is None:
            raise UsageError(f"task {self.task!r} has no shared problem set")
        # the ranges of ``simulate``'s counts: a typo of -n must not run for years
        check_bound("participants", self.n_participants)
        check_bound("trials", self.n_trials)
        check_bound("participants", self.chunk, flag="--chunk")
        check_bound("seed", self.seed)

    @property
    def study(self) -> str:
        """The study name of the transcripts (a file name: the model's path is flattened)."""
        slug = "".join(c if c.isalnum() or c in "-." else "-" for c in Path(self.model).name)
        return f"play_{self.task}_{slug}"

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share (the number of participants may grow, not
        shrink: :func:`check_play_folder`)."""
        own = asdict(self)
        del own["n_participants"]
        return own


# --------------------------------------------------------------------------------------------
# The run: chunks of participants, resumable


@dataclass
class PlayResult:
    """What a play run wrote, and how long the playing took."""

    out: Path
    transcripts: Path
    choices: Path
    n_participants: int
    n_responses: int
    seconds_playing: float
    #: mean probability the model put on the offered options (NaN for a cognitive model)
    option_mass: float = math.nan
    #: answers that named no offered option (``policy="generate"`` only)
    parse_failures: int = 0

    @property
    def parse_failure_rate(self) -> float:
        return self.parse_failures / self.n_responses if self.n_responses else 0.0
    resumed_chunks: int = 0
    #: responses of the resumed chunks (not played by this process: not in its pace)
    resumed_responses: int = 0
    #: chunks whose files a rerun found truncated or corrupted, and played again
    replayed_chunks: int = 0
    timings: list[dict[str, float]] = field(default_factory=list)


def choice_table(
    rows: Sequence[ChoiceRow], first: int, mass: dict[tuple[int, int], float] | None,
    generated: dict[tuple[int, int], str] | None = None,
) -> pa.Table:
    """The choice rows of participants ``first, first + 1, …`` (seats) as a table."""
    frame = pd.DataFrame({
        "participant": [str(first + r.seat + 1) for r in rows],
        "response_index": [r.response for r in rows],
        "options": [list(r.options) for r in rows],
        "option_logprobs": [list(r.logprobs) for r in rows],
        "option_mass": [
            (mass or {}).get((r.seat, r.response), math.nan) for r in rows
        ],
        "choice": [r.options[r.choice] for r in rows],
        "choice_index": [r.choice for r in rows],
        "logprob": [r.logprobs[r.choice] for r in rows],
        "reward": [math.nan if r.reward is None else r.reward for r in rows],
        "generated": [(generated or {}).get((r.seat, r.response)) for r in rows],
    })
    return pa.Table.from_pandas(frame, schema=CHOICE_SCHEMA, preserve_index=False)


def check_play_folder(out: Path, spec: PlaySpec) -> None:
    """UsageError unless ``out`` is new, empty, or a play run of ``spec`` (which resumes)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: a file, not a folder; choose a new --out")
    manifest = out / MANIFEST
    if not manifest.is_file():
        if out.exists() and any(p.name != LOCK_FILE for p in out.iterdir()):
            raise UsageError(f"{out}: not empty and not a play run; choose a new --out")
        return
    try:
        before = json.loads(manifest.read_text("utf-8"))["spec"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{manifest}: not a play manifest ({exc})") from exc
    if not isinstance(before, dict):
        raise UsageError(f"{manifest}: not a play manifest (its spec is not an object)")
    mine = spec.identity()
    differs = sorted(k for k in mine if before.get(k) != mine[k])
    if differs:
        raise UsageError(
            f"{out} holds a play run with other settings ({', '.join(differs)}); "
            "choose a new --out to play these"
        )
    # a run grows; fewer participants would rewrite its transcripts without the others
    had = before.get("n_participants")
    if isinstance(had, int) and spec.n_participants < had:
        raise UsageError(
            f"{out} holds a play run of {had} participants; -n {spec.n_participants} would "
            f"drop {had - spec.n_participants} of them from its transcripts (give -n {had} or "
            "more, or choose a new --out)"
        )


class PlayProgress(Protocol):
    """Where a run reports how far it is (the CLI draws it; a library call passes none)."""

    def start(self, *, responses: int, done: int) -> None: ...
    def advance(self, responses: int) -> None: ...
    def chunk_done(self, participants: range, responses: int, seconds: float) -> None: ...


def run_play(
    spec: PlaySpec, out: Path, *, make_players: Callable[[], Players] | None = None,
    engine_info: dict[str, Any] | None = None, model_info: dict[str, Any] | None = None,
    progress: PlayProgress | None = None, lock: bool = True,
) -> PlayResult:
    """Play ``spec`` into ``out``, chunk by chunk, skipping chunks a previous run finished.

    ``make_players`` gives a fresh set of players per chunk; by default the task's cognitive
    model (``spec.model == "cognitive"``). A language model is loaded once by the caller
    (:func:`language_model_players`) and its players made from it. The run holds ``out``'s
    lock (a second process is refused, naming this one) unless ``lock`` is False because the
    caller already holds it.
    """
    spec.check()
    check_play_folder(out, spec)
    with lock_run_dir(out) if lock else nullcontext():
        return _play_chunks(spec, out, make_players, engine_info, model_info, progress)


def _play_chunks(
    spec: PlaySpec, out: Path, make_players: Callable[[], Players] | None,
    engine_info: dict[str, Any] | None, model_info: dict[str, Any] | None,
    progress: PlayProgress | None,
) -> PlayResult:
    if make_players is None:
        if spec.model != COGNITIVE:
            raise UsageError(f"{spec.model}: a language model is loaded before the run")
        agent = TASKS[spec.task].agent
        make_players = lambda: CognitivePlayers(agent)  # noqa: E731 - a one-line factory
    (out / "parts").mkdir(parents=True, exist_ok=True)
    result = PlayResult(out, out / "transcripts" / f"{spec.study}.jsonl", out / CHOICES,
                        spec.n_participants, 0, 0.0)
    _write_manifest(out, spec, result, engine_info, model_info, status="running")
    task = TASKS[spec.task]
    per_participant = (spec.n_trials or task.default_trials) * task.responses_per_trial
    chunks = list(zip(range(0, spec.n_participants, spec.chunk),
                      _chunk_stems(spec, out / "parts"), strict=True))
    finished = [_chunk_intact(stem, min(spec.chunk, spec.n_participants - first),
                              per_participant)
                for first, stem in chunks]
    result.replayed_chunks = sum(
        not was and stem.with_suffix(".jsonl").exists() for (_, stem), was in
        zip(chunks, finished, strict=True))
    if progress is not None:
        done = sum(min(spec.chunk, spec.n_participants - first)
                   for (first, _), was in zip(chunks, finished, strict=True) if was)
        progress.start(responses=spec.n_participants * per_participant,
                       done=done * per_participant)
    for (first, stem), was in zip(chunks, finished, strict=True):
        n = min(spec.chunk, spec.n_participants - first)
        if was:
            result.resumed_chunks += 1
            result.resumed_responses += n * per_participant
            continue
        players = make_players()
        start = time.perf_counter()
        records, rows = play_study(
            spec.task, players, n_participants=n, n_trials=spec.n_trials, seed=spec.seed,
            shared_trials=spec.shared_trials, first=first, greedy=spec.policy == "greedy",
            on_step=progress.advance if progress is not None else None,
        )
        elapsed = time.perf_counter() - start
        if spec.model != COGNITIVE:
            for record in records:
                record["player"] = spec.model
        mass = players.option_mass if isinstance(players, LanguageModelPlayers) else None
        generated = players.generated if isinstance(players, GeneratingPlayers) else None
        # the table before the transcripts: a chunk counts as done once both exist
        write_parquet_atomic(choice_table(rows, first, mass, generated),
                             stem.with_suffix(".parquet"))
        write_text_atomic(to_jsonl(records).decode("utf-8"), stem.with_suffix(".jsonl"))
        result.seconds_playing += elapsed
        result.timings.append({"participants": n, "responses": len(rows), "seconds": elapsed})
        if progress is not None:
            progress.chunk_done(range(first + 1, first + n + 1), len(rows), elapsed)
    _assemble(spec, result)
    _write_manifest(out, spec, result, engine_info, model_info, status="complete")
    return result


def _chunk_intact(stem: Path, participants: int, per_participant: int) -> bool:
    """Whether a chunk's files exist and hold all of it: a part truncated or corrupted (a full
    disk, a copy cut short) is played again rather than assembled into a short run."""
    table, lines = stem.with_suffix(".parquet"), stem.with_suffix(".jsonl")
    if not (table.is_file() and lines.is_file()):
        return False
    try:
        rows = pq.read_metadata(table).num_rows
        records = lines.read_text("utf-8").splitlines()
        for record in records:
            json.loads(record)
    except (OSError, ValueError, pa.ArrowException):
        return False
    return rows == participants * per_participant and len(records) == participants


def _chunk_stems(spec: PlaySpec, parts: Path) -> list[Path]:
    return [
        parts / f"participants-{f + 1:06d}-{min(f + spec.chunk, spec.n_participants):06d}"
        for f in range(0, spec.n_participants, spec.chunk)
    ]


def _assemble(spec: PlaySpec, result: PlayResult) -> None:
    stems = _chunk_stems(spec, result.out / "parts")
    text = "".join(s.with_suffix(".jsonl").read_text("utf-8") for s in stems)
    result.transcripts.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(text, result.transcripts)
    table = pa.concat_tables([pq.read_table(s.with_suffix(".parquet")) for s in stems])
    write_parquet_atomic(table, result.choices)
    result.n_responses = table.num_rows
    mass = np.exp(table.column("option_mass").to_numpy(zero_copy_only=False))
    result.option_mass = float(np.nanmean(mass)) if np.isfinite(mass).any() else math.nan
    if spec.policy == "generate":
        generated = table.column("generated").to_pylist()
        options = table.column("options").to_pylist()
        failed = sum(parse_failed(g, o) for g, o in zip(generated, options, strict=True))
        result.parse_failures = failed


def parse_failed(generated: str | None, options: Sequence[str]) -> bool:
    """Whether a generated answer named none of the offered options."""
    from psych201.scoring.hf_generate import parse_answer

    return generated is not None and parse_answer(generated, options) is None


def _write_manifest(
    out: Path, spec: PlaySpec, result: PlayResult, engine_info: dict[str, Any] | None,
    model_info: dict[str, Any] | None, *, status: str,
) -> None:
    task = TASKS[spec.task]
    manifest = {
        "kind": "psych201 play",
        "status": status,
        "spec": asdict(spec),
        "task": {"kind": task.kind, "experiment": task.experiment,
                 "description": task.description,
                 "responses_per_trial": task.responses_per_trial},
        "player": COGNITIVE if spec.model == COGNITIVE else "language model",
        "engine": engine_info,
        "model": model_info,
        "study": spec.study,
        "files": {"transcripts": str(result.transcripts.relative_to(out)),
                  "choices": CHOICES},
        "n_responses": result.n_responses,
        "option_mass": result.option_mass,
        "option_mass_threshold": MIN_OPTION_MASS,
        "parse_failures": result.parse_failures,
        "parse_failure_threshold": MAX_PARSE_FAILURES,
        "seconds_playing": result.seconds_playing,
        "chunks_resumed": result.resumed_chunks,
        "chunks_replayed": result.replayed_chunks,
        "timings": result.timings,
    }
    write_text_atomic(dumps(manifest) + "\n", out / MANIFEST)
