"""Orchestration of a scoring run: data → prompts → scoring → results, resumable.

:func:`score_run` reads the selected studies and split, renders each study's prompts with the
condition, scores the sessions that are not done yet in chunks, and writes each finished chunk as
an atomic Parquet part; at the end it combines the parts into ``responses.parquet``. Killing it at
any moment loses at most the chunk in flight, and rerunning the same command scores only what is
missing and ends with the same table as an uninterrupted run.

A run's session set is fixed by the data, split, seed, studies and ``limit`` (the first ``limit``
participants of each study's split, in file order); ``shard`` then keeps the sessions whose
stable key hash falls in it, so shards partition exactly that set. Conditions render a whole study
at a time (a shuffled persona draws another participant of the same study), so every run renders
all of a study's selected sessions, whatever it then scores.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from psych201.data.hub import is_hub_spec, resolve_hub_data
from psych201.data.issues import IssueLog
from psych201.data.readers import StudySource, discover_studies, iter_sessions
from psych201.data.records import Session, SessionKey
from psych201.data.split import SPLITS, iter_split, split_kind
from psych201.errors import StorageError, UsageError
from psych201.prompts.conditions import (
    CONDITION_NAMES,
    Condition,
    ConditionUnavailableError,
    make_condition,
)
from psych201.prompts.records import Prompt
from psych201.results.lock import lock_run_dir
from psych201.results.manifest import build_manifest, mark_complete, mark_status, open_run_dir
from psych201.results.schema import TEMPERATURE_GRID, ResponseScore, RunSpec
from psych201.results.shards import Shard
from psych201.results.verify import table_problem
from psych201.results.writer import (
    RESPONSES_FILE,
    PartWriter,
    completed_sessions,
    finalize,
    remove_stale_temporaries,
)
from psych201.scoring.align import ALIGNMENT_MODES
from psych201.scoring.engine import EngineInfo
from psych201.scoring.models import DEFAULT_MODEL, DTYPES, LoadedModel, hub_revision
from psych201.scoring.scorer import WindowConfig

Split = Literal["test", "train", "all", "seeded"]
OnError = Literal["fail", "skip"]

#: Keep the selected sessions of pass 1 in memory up to this many characters; beyond, re-read.
_RETAIN_CHARS = 400_000_000

#: The shortest window (``--max-tokens``) and the room a window keeps beside its overlap for
#: leading special tokens and new targets.
MIN_WINDOW_TOKENS = 8
_WINDOW_SLACK = 4
_DEVICE = re.compile(r"cpu|mps|cuda(:\d+)?")


class PipelineError(UsageError):  # a ValueError too, for older callers
    """A run that cannot start or go on as asked (bad option, unknown study, ...)."""


class SessionScoringError(PipelineError):
    """Scoring one session failed; names its file and line. Finished work is already saved."""

    def __init__(self, session: Session, reason: str) -> None:
        where = session.source or session.study
        super().__init__(
            f"{where}:{session.line}: cannot score participant {session.participant!r} of "
            f"study {session.study!r}: {reason}"
        )
        self.session_key = session.key
        self.reason = reason


class SpanScoreLike(Protocol):
    """What the pipeline reads from each scored span (B's ``SpanScore``)."""

    @property
    def index(self) -> int: ...
    @property
    def n_tokens(self) -> int: ...
    @property
    def nll(self) -> float: ...
    @property
    def top1_correct(self) -> bool | None: ...
    @property
    def entropy(self) -> float: ...
    @property
    def context_tokens(self) -> int: ...
    @property
    def truncated(self) -> bool: ...


class PromptScorer(Protocol):
    """Scores prompts: one list of span scores per prompt, one per span, in span order."""

    def score(self, prompts: Sequence[Prompt]) -> Sequence[Sequence[SpanScoreLike]]: ...


@dataclass(frozen=True)
class ScoringSetup:
    """A loaded model ready to score, and what the manifest records about it."""

    model_id: str
    engine: str
    tokenizer: Any
    scorer: PromptScorer
    model_info: dict[str, Any]
    engine_info: EngineInfo
    tokenizer_info: dict[str, Any]
    window: dict[str, Any]


#: Loads a :class:`ScoringSetup` when called (so that cheap checks run before the weights load).
SetupLoader = Callable[[], ScoringSetup]


@dataclass(frozen=True)
class DefaultEngineLoader:
    """A deferred loader of the default transformers engine (a CLI wraps it in a spinner).

    Marked so that a rerun of a finished run can skip it: only for this engine can the run be
    recognised from its files without loading the model."""

    load: Callable[[], ScoringSetup]

    def __call__(self) -> ScoringSetup:
        return self.load()


@dataclass(frozen=True)
class ScoreConfig:
    """Everything ``psych201 score`` is asked to do."""

    data: Path
    out: Path
    model: str = DEFAULT_MODEL
    model_args: Mapping[str, Any] = field(default_factory=dict)
    split: Split = "test"
    studies: tuple[str, ...] = ()
    limit: int | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    batch_tokens: int = 8192
    condition: str = "raw"
    condition_args: Mapping[str, Any] = field(default_factory=dict)
    alignment: str = "offsets"
    max_tokens: int | None = None
    window_overlap: int | None = None
    shard: Shard | None = None
    #: A part holds at most this many participants and about this many characters, so a crash
    #: loses little; neither changes the numbers.
    part_size: int = 16
    part_chars: int = 300_000
    on_error: OnError = "fail"

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise PipelineError(f"--limit must be at least 1, got {self.limit}")
        if self.part_size < 1 or self.part_chars < 1:
            raise PipelineError("part size must be positive")
        if self.batch_tokens < 1:
            raise PipelineError(f"--batch-tokens must be positive, got {self.batch_tokens}")
        if self.split not in SPLITS:
            raise PipelineError(
                f"--split must be test, train or all (or seeded), got {self.split!r}"
            )
        if self.on_error not in ("fail", "skip"):
            raise PipelineError(f"on_error must be fail or skip, got {self.on_error!r}")
        if self.alignment not in ALIGNMENT_MODES:
            raise PipelineError(
                f"--alignment must be one of {', '.join(ALIGNMENT_MODES)}, got {self.alignment!r}"
            )
        if self.dtype not in DTYPES:
            raise PipelineError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.seed < 0:
            raise PipelineError(f"--seed must be 0 or more, got {self.seed}")
        if self.condition not in CONDITION_NAMES:
            raise PipelineError(
                f"--condition must be one of {', '.join(CONDITION_NAMES)}, got {self.condition!r}"
            )
        if not _DEVICE.fullmatch(self.device):
            raise PipelineError(f"--device must be cpu, cuda, cuda:N or mps, got {self.device!r}")
        self._check_window()

    def _check_window(self) -> None:
        # The scorer only finds out once the model is loaded; a window must hold the leading
        # special tokens, the overlap and at least two new tokens.
        if self.max_tokens is not None and self.max_tokens < MIN_WINDOW_TOKENS:
            raise PipelineError(
                f"--max-tokens must be at least {MIN_WINDOW_TOKENS}, got {self.max_tokens}"
            )
        if self.window_overlap is not None and self.window_overlap < 0:
            raise PipelineError(f"--window-overlap must be 0 or more, got {self.window_overlap}")
        if (
            self.max_tokens is not None
            and self.window_overlap is not None
            and self.window_overlap > self.max_tokens - _WINDOW_SLACK
        ):
            raise PipelineError(
                f"--window-overlap {self.window_overlap} leaves no room in a window of "
                f"--max-tokens {self.max_tokens} (at most {self.max_tokens - _WINDOW_SLACK})"
            )


def validate_run(config: ScoreConfig) -> None:
    """Refuse, before any data is read or model loaded, what cannot work on this machine.

    Checks the output location (not a file, not under a file, writable) and the device. Raises
    :class:`UsageError` (exit 2) or :class:`StorageError` (exit 3).
    """
    check_output_dir(config.out, flag="--out")
    check_device(config.device)


def check_output_dir(out: Path, *, flag: str = "--out") -> None:
    """``out`` can become a directory we can write in: not a file, not under one, writable."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{flag} {out}: exists and is not a directory")
    ancestor = out
    while not ancestor.exists() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{flag} {out}: {ancestor} is a file, not a directory")
    # os.access ignores read-only mounts and says yes to root; a real probe does not.
    try:
        with tempfile.TemporaryFile(dir=ancestor, prefix=".psych201-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise StorageError(f"{flag} {out}: cannot write in {ancestor}: {reason}") from exc


def check_device(device: str) -> None:
    """A CUDA device needs a CUDA build of torch and a visible GPU (checked without a model)."""
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise UsageError(
            f"--device {device}: this torch build has no CUDA or sees no GPU "
            f"(torch {torch.__version__}); use --device cpu"
        )
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise UsageError(
            f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )


class ProgressSink(Protocol):
    """Receives progress; the CLI draws it with rich. Units: sessions and characters."""

    def start(self, *, sessions: int, chars: int, already_done: int) -> None: ...
    def advance(self, *, sessions: int, chars: int) -> None: ...
    def note(self, message: str) -> None: ...


@dataclass(frozen=True)
class RunSummary:
    """What a :func:`score_run` call did."""

    run_dir: Path
    config_hash: str
    sessions: int
    already_done: int
    scored_now: int
    failed: tuple[SessionKey, ...]
    responses: int
    wall_s: float
    table: Path | None


# ---------------------------------------------------------------------------------------------
# Selection of the run's sessions


@dataclass
class _StudyPlan:
    source: StudySource
    keys: list[SessionKey]
    chars: dict[SessionKey, int]
    sessions: list[Session] | None  # None: re-read in pass 2 (too large to keep)
    split: str = ""  # how the split was drawn: test/train/all/seeded, or dataset (in_eval)


def shard_filter(shard: Shard | None) -> Callable[[SessionKey], bool]:
    return (lambda _key: True) if shard is None else shard.contains


def _data_root(config: ScoreConfig) -> tuple[Path, dict[str, Any], str]:
    """The local data path, what the manifest records about it and its name in the spec
    (``hf:`` sources resolved: a hub id downloads into, or is found in, the HF cache)."""
    if not is_hub_spec(config.data):
        return config.data, {"path": str(config.data.resolve())}, config.data.resolve().name
    hub = resolve_hub_data(config.data)
    info: dict[str, Any] = {"path": hub.spec, "folder": str(hub.folder.resolve())}
    if hub.repo is None:
        return hub.folder, info, hub.folder.resolve().name
    info.update(repo=hub.repo, revision=hub.revision, commit=hub.commit)
    return hub.folder, info, f"hf:{hub.repo}"


def _select_sources(config: ScoreConfig, root: Path | None = None) -> list[StudySource]:
    sources = discover_studies(root if root is not None else _data_root(config)[0])
    if not config.studies:
        return sources
    names = {s.name for s in sources}
    unknown = sorted(set(config.studies) - names)
    if unknown:
        raise PipelineError(
            f"{config.data}: no study named {', '.join(unknown)} "
            f"(available: {', '.join(sorted(names))})"
        )
    wanted = set(config.studies)
    return [s for s in sources if s.name in wanted]


def _study_sessions(
    config: ScoreConfig, source: StudySource, log: IssueLog | None = None
) -> Iterator[Session]:
    """The study's split in file order, cut to ``limit``."""
    sessions = iter_split(source, config.split, seed=config.seed, on_error=config.on_error, log=log)
    for count, session in enumerate(sessions, start=1):
        if session.study != source.name:
            raise PipelineError(
                f"{source.path}: read a session of study {session.study!r} while reading study "
                f"{source.name!r}"
            )
        yield session
        if config.limit is not None and count >= config.limit:
            return


def _plan(config: ScoreConfig, sources: Sequence[StudySource], log: IssueLog) -> list[_StudyPlan]:
    plans: list[_StudyPlan] = []
    retained = 0
    for source in sources:
        sessions = list(_study_sessions(config, source, log))
        chars = {s.key: len(s.text) for s in sessions}
        keep = retained + sum(chars.values()) <= _RETAIN_CHARS
        retained += sum(chars.values()) if keep else 0
        plans.append(
            _StudyPlan(
                source=source,
                keys=[s.key for s in sessions],
                chars=chars,
                sessions=sessions if keep else None,
                split=split_kind(config.split, sessions),
            )
        )
    return plans


def _split_label(config: ScoreConfig, plans: Sequence[_StudyPlan]) -> str:
    """The run's split for its spec: ``dataset`` when the data's own ``in_eval`` decided."""
    kinds = sorted({plan.split for plan in plans if plan.keys}) or [config.split]
    return "+".join(kinds)


def data_fingerprint(sources: Sequence[StudySource]) -> tuple[str, dict[str, str]]:
    """SHA-256 of each selected study's data files, and one hash over all of them.

    The studies of one multi-study table share its files, so they share one hash (computed once).
    """
    per_study: dict[str, str] = {}
    tables: dict[tuple[Path, ...], str] = {}
    for source in sources:
        if source.table in tables:
            per_study[source.name] = tables[source.table]
            continue
        path = Path(source.path)
        if source.table and source.format != "arrow":
            files = list(source.table)
            path = path if path.is_dir() else path.parent
        else:
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digest = hashlib.sha256()
        for file in files:
            if file.name.startswith("."):
                continue
            digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
            digest.update(b"\0")
            with file.open("rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):  # type: ignore[misc]
                    digest.update(block)
        per_study[source.name] = digest.hexdigest()
        if source.table:
            tables[source.table] = per_study[source.name]
    overall = hashlib.sha256(
        "".join(f"{name}:{h}\n" for name, h in sorted(per_study.items())).encode()
    ).hexdigest()
    return overall, per_study


# ---------------------------------------------------------------------------------------------
# Model loading (B's HF engine)


def parse_kv(text: str | None, *, what: str = "--model-args") -> dict[str, Any]:
    """Parse lm-eval-style ``k=v,k2=v2`` into a dict (ints, floats, true/false, none coerced)."""
    if not text:
        return {}
    out: dict[str, Any] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PipelineError(f"{what}: expected key=value, got {item!r}")
        out[key] = _coerce(value.strip())
    return out


def _coerce(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _check_kwargs(
    func: Callable[..., Any], kwargs: Mapping[str, Any], what: str, *, own_flags: Sequence[str]
) -> None:
    """Refuse keys ``func`` does not take, and keys that have a flag of their own."""
    flagged = sorted(set(kwargs) & set(own_flags))
    if flagged:
        raise PipelineError(
            f"{what}: {', '.join(flagged)} has its own option "
            f"({', '.join('--' + f for f in flagged)})"
        )
    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in own_flags}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise PipelineError(
            f"{what}: unknown key(s) {', '.join(unknown)} "
            f"(accepted: {', '.join(sorted(accepted)) or 'none'})"
        )


def tokenizer_info(tokenizer: Any) -> dict[str, Any]:
    """What identifies a tokenizer: class, name, size, special tokens and a hash of its rules."""
    info: dict[str, Any] = {
        "class": type(tokenizer).__name__,
        "name_or_path": str(getattr(tokenizer, "name_or_path", "")),
        "vocab_size": len(tokenizer) if hasattr(tokenizer, "__len__") else None,
        "bos_token": getattr(tokenizer, "bos_token", None),
        "eos_token": getattr(tokenizer, "eos_token", None),
        "add_bos_token": getattr(tokenizer, "add_bos_token", None),
    }
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        info["sha256"] = hashlib.sha256(backend.to_str().encode()).hexdigest()
    return info


def load_hf_setup(config: ScoreConfig) -> ScoringSetup:
    """Load ``config.model`` with transformers (B's loader, engine and session scorer)."""
    from psych201.scoring.models import load_model

    model_args = dict(config.model_args)
    _check_kwargs(load_model, model_args, "--model-args", own_flags=("dtype", "device"))
    loaded = load_model(config.model, dtype=config.dtype, device=config.device, **model_args)
    return setup_from_loaded(loaded, config)


def window_config(config: ScoreConfig) -> WindowConfig:
    """How ``config`` cuts long sessions (the scorer's ``WindowConfig``)."""
    if config.window_overlap is None:
        return WindowConfig(max_tokens=config.max_tokens)
    return WindowConfig(max_tokens=config.max_tokens, overlap=config.window_overlap)


def setup_from_loaded(
    loaded: LoadedModel, config: ScoreConfig, *, model_info: Mapping[str, Any] | None = None
) -> ScoringSetup:
    """The HF engine and session scorer around an already loaded model (base or adapter)."""
    from psych201.scoring.hf import HFEngine
    from psych201.scoring.scorer import SessionScorer

    engine = HFEngine(loaded, device=config.device, batch_tokens=config.batch_tokens)
    window = window_config(config)
    scorer = SessionScorer(loaded.tokenizer, engine, alignment=config.alignment, window=window,
                           temperatures=TEMPERATURE_GRID)
    return ScoringSetup(
        model_id=loaded.model_id,
        engine=engine.info.name,
        tokenizer=loaded.tokenizer,
        scorer=scorer,
        model_info={
            "id": loaded.model_id,
            "source": str(loaded.source),
            "file_sha256": loaded.file_sha256,
            "max_context": loaded.max_context,
            **({"revision": loaded.revision} if loaded.revision else {}),
            **(model_info or {}),
        },
        engine_info=engine.info,
        tokenizer_info=tokenizer_info(loaded.tokenizer),
        window=asdict(window),
    )


def _make_condition(config: ScoreConfig, tokenizer: Any) -> Condition:
    try:
        condition = make_condition(
            config.condition, tokenizer=tokenizer, seed=config.seed, **dict(config.condition_args)
        )
    except (TypeError, ValueError) as exc:
        raise PipelineError(f"--condition {config.condition}: {exc}") from exc
    return condition


def _device_kind(device: str) -> str:
    # cuda:0 and cuda:1 give the same numbers; cpu and cuda may not (kernels differ).
    return device.split(":", 1)[0]


def build_spec(
    config: ScoreConfig,
    setup: ScoringSetup,
    condition: Condition,
    data_hash: str,
    *,
    split: str | None = None,
    data_name: str | None = None,
) -> RunSpec:
    """The :class:`RunSpec` of this run: everything that determines its numbers.

    ``split`` is how the split was drawn when not ``config.split`` (``dataset``: the data's own
    ``in_eval``); ``data_name`` names an ``hf:`` source.
    """
    model_args = {k: v for k, v in config.model_args.items() if k != "cache_dir"}
    # A hub model's commit: a rerun after the branch moved refuses, naming both shas.
    revision = setup.model_info.get("revision") or hub_revision(
        str(setup.model_info.get("source") or "")
    )
    return RunSpec(
        model=setup.model_id,
        engine=setup.engine,
        condition=condition.name,
        alignment=config.alignment,
        dtype=config.dtype,
        data=data_name or config.data.resolve().name,
        data_hash=data_hash,
        split=split or config.split,
        seed=config.seed,
        studies=tuple(sorted(config.studies)),
        limit=config.limit,
        window=dict(setup.window),
        extra={
            "condition_spec": condition.spec(),
            "model_sha256": setup.model_info.get("file_sha256"),
            "tokenizer_sha256": setup.tokenizer_info.get("sha256"),
            "model_args": model_args,
            "device": _device_kind(config.device),
            **({"model_revision": revision} if revision else {}),
        },
    )


# ---------------------------------------------------------------------------------------------
# The run


def score_run(
    config: ScoreConfig,
    *,
    setup: ScoringSetup | SetupLoader | None = None,
    progress: ProgressSink | None = None,
    argv: list[str] | None = None,
) -> RunSummary:
    """Score ``config`` into ``config.out`` (create, or resume the same configuration).

    ``setup`` replaces the default transformers engine (:func:`load_hf_setup`); a callable is
    called only after the options, output directory and data have been checked. Raises
    :class:`PipelineError` (bad options, a session that cannot be scored), ``DataError`` (bad
    input, with file and line) or ``ResultsError`` (the directory holds another configuration);
    whatever finished before an error or interrupt stays saved for the next call. Another
    process scoring into ``config.out`` is refused (``RunDirLockedError``, naming its PID).
    """
    # Taken before the data is read or the model loaded: a second command on the same --out is
    # refused at once, and nothing is written into a directory another process owns.
    with lock_run_dir(config.out):
        return _score_locked(config, setup, progress, argv)


def _score_locked(
    config: ScoreConfig,
    setup: ScoringSetup | SetupLoader | None,
    progress: ProgressSink | None,
    argv: list[str] | None,
) -> RunSummary:
    started = time.perf_counter()
    validate_run(config)
    run = _open_run(config, setup, argv)
    if isinstance(run, _FinishedRun):  # nothing to score: no model was loaded
        return _rerun_finished(config, run, progress, argv, started)
    for path in remove_stale_temporaries(config.out):
        _note(progress, f"removed {path.name}, left by an interrupted run")
    done = completed_sessions(config.out, config_hash=run.config_hash)
    stray = done - set(run.keys)
    if stray:
        raise PipelineError(
            f"{config.out}: its parts hold {len(stray)} sessions this run does not select "
            f"(e.g. {sorted(stray, key=str)[0]}); the directory is not from this configuration"
        )
    todo = [k for k in run.keys if k not in done]

    if not todo and run.manifest.get("status") == "complete":
        counts = {**run.manifest.get("counts", {}), "scored_now_sessions": 0}
        problem = table_problem(config.out, run.manifest)
        if problem is None:
            _note(progress, f"{config.out}: complete, nothing to score")
        else:  # the final table is not the one this run wrote: the parts are the truth
            _note(progress, f"{problem}; rebuilding it from the parts")
            counts["responses"] = finalize(config.out, config_hash=run.config_hash)[1]
        mark_complete(config.out, run.manifest, counts)
        return RunSummary(
            run_dir=config.out,
            config_hash=run.config_hash,
            sessions=len(run.keys),
            already_done=len(done),
            scored_now=0,
            failed=(),
            responses=int(counts.get("responses", 0)),
            wall_s=time.perf_counter() - started,
            table=config.out / RESPONSES_FILE,
        )
    if done:
        _note(progress, f"resuming: {len(done)} of {len(run.keys)} sessions already scored")
    mark_status(config.out, run.manifest, "running")
    if progress is not None:
        chars = sum(run.chars[k] for k in todo)
        progress.start(sessions=len(todo), chars=chars, already_done=len(done))

    outcome = _score_missing(run, set(todo), progress)

    table, rows_total = finalize(config.out, config_hash=run.config_hash)
    counts = {
        **outcome.counts.as_dict(),
        "sessions": len(run.keys),
        "responses": rows_total,
        "scored_now_sessions": outcome.scored,
        "failed_sessions": [[k.study, k.experiment, k.participant, k.line] for k in outcome.failed],
        "data_issues": {f"{sev}:{code}": n for sev, code, n in run.data_issues.summary()},
        "skipped_lines": run.data_issues.skipped_lines,
    }
    status = "incomplete" if outcome.failed else "complete"
    mark_complete(config.out, run.manifest, counts, status=status)
    return RunSummary(
        run_dir=config.out,
        config_hash=run.config_hash,
        sessions=len(run.keys),
        already_done=len(done),
        scored_now=outcome.scored,
        failed=tuple(outcome.failed),
        responses=rows_total,
        wall_s=time.perf_counter() - started,
        table=table,
    )


@dataclass
class _Run:
    """An opened run: its configuration, identity, manifest and selected sessions."""

    config: ScoreConfig
    setup: ScoringSetup
    condition: Condition
    config_hash: str
    manifest: dict[str, Any]
    plans: list[_StudyPlan]
    keys: list[SessionKey]  # the run's sessions (this shard's), in order
    chars: dict[SessionKey, int]
    data_issues: IssueLog


def _open_run(
    config: ScoreConfig, setup: ScoringSetup | SetupLoader | None, argv: list[str] | None
) -> _Run | _FinishedRun:
    """Read the data, check the directory, then (unless the run is provably finished already)
    load the model and open or create the run directory."""
    root, data_info, data_name = _data_root(config)
    sources = _select_sources(config, root)
    data_hash, per_study = data_fingerprint(sources)
    # Read the data before loading the model: bad input fails in seconds, before any work.
    data_issues = IssueLog()
    plans = _plan(config, sources, data_issues)
    _check_selection(config, plans)
    split_label = _split_label(config, plans)
    _precheck_run_dir(config, data_hash, split=split_label, data_name=data_name)
    in_shard = shard_filter(config.shard)
    keys = [k for plan in plans for k in plan.keys if in_shard(k)]
    if setup is None or isinstance(setup, DefaultEngineLoader):
        finished = _finished_run(config, keys)
        if finished is not None:
            return finished
    if setup is None:
        setup = load_hf_setup(config)
    elif not isinstance(setup, ScoringSetup):
        setup = setup()  # a deferred loader: the checks above ran before any weights load
    condition = _make_condition(config, setup.tokenizer)
    spec = build_spec(
        config,
        setup,
        condition,
        data_hash,
        split=split_label,
        data_name=data_name,
    )
    manifest = open_run_dir(
        config.out,
        build_manifest(
            spec,
            model=setup.model_info,
            engine={**asdict(setup.engine_info), **temperature_record(setup.engine_info)},
            tokenizer=setup.tokenizer_info,
            data={**data_info, "hash": data_hash, "studies": per_study},
            shard=config.shard,
        ),
        argv=argv,
        options={
            "batch_tokens": config.batch_tokens,
            "part_size": config.part_size,
            "part_chars": config.part_chars,
            "device": config.device,
            "on_error": config.on_error,
        },
    )
    return _Run(
        config=config,
        setup=setup,
        condition=condition,
        config_hash=spec.config_hash(),
        manifest=manifest,
        plans=plans,
        keys=keys,
        chars={k: n for plan in plans for k, n in plan.chars.items()},
        data_issues=data_issues,
    )


def _rerun_finished(
    config: ScoreConfig,
    run: _FinishedRun,
    progress: ProgressSink | None,
    argv: list[str] | None,
    started: float,
) -> RunSummary:
    """Record the invocation, rebuild a missing or damaged table from the parts, report."""
    from psych201.results.manifest import new_invocation, save_manifest

    manifest = run.manifest
    manifest["invocations"] = [
        *manifest.get("invocations", []),
        {**new_invocation(argv), "model_loaded": False},
    ]
    save_manifest(config.out, manifest)
    counts = {**manifest.get("counts", {}), "scored_now_sessions": 0}
    problem = table_problem(config.out, manifest)
    if problem is None:
        _note(progress, f"{config.out}: complete, nothing to score (model not loaded)")
    else:  # the final table is not the one this run wrote: the parts are the truth
        _note(progress, f"{problem}; rebuilding it from the parts")
        counts["responses"] = finalize(config.out, config_hash=run.config_hash)[1]
    mark_complete(config.out, manifest, counts)
    return RunSummary(
        run_dir=config.out,
        config_hash=run.config_hash,
        sessions=len(run.keys),
        already_done=len(run.keys),
        scored_now=0,
        failed=(),
        responses=int(counts.get("responses", 0)),
        wall_s=time.perf_counter() - started,
        table=config.out / RESPONSES_FILE,
    )


@dataclass
class _FinishedRun:
    """A complete run of this very configuration, recognised without loading the model."""

    manifest: dict[str, Any]
    config_hash: str
    keys: list[SessionKey]


def _finished_run(config: ScoreConfig, keys: list[SessionKey]) -> _FinishedRun | None:
    """The stored run when ``config.out`` holds a complete run of exactly this configuration.

    Runs after :func:`_precheck_run_dir` (data, split, seed, studies, limit, alignment, dtype,
    condition and shard agree). Adds what else names the run without loading weights: the
    model's id and weights hash (read from its files), engine, window, condition spec, model
    arguments and device kind, and that the parts of the stored configuration cover every
    selected session. Anything uncertain returns None: the model is loaded and the full check
    runs, as before.
    """
    from psych201.results.manifest import MANIFEST_FILE, ResultsError, load_manifest
    from psych201.scoring.models import ModelLoadError, model_folder

    if not (config.out / MANIFEST_FILE).is_file():
        return None
    try:
        stored = load_manifest(config.out)
    except ResultsError:
        return None
    spec, model = stored.get("spec"), stored.get("model")
    condition = _tokenizer_free_condition(config)
    if (stored.get("status") != "complete" or not isinstance(spec, dict)
            or not isinstance(model, dict) or spec.get("engine") != "hf" or condition is None):
        return None
    extra = spec.get("extra") or {}
    model_args = {k: v for k, v in config.model_args.items() if k != "cache_dir"}
    wanted = {
        "window": asdict(window_config(config)),
        "condition_spec": condition.spec(),
        "model_args": model_args,
        "device": _device_kind(config.device),
    }
    have = {"window": spec.get("window"), **{k: extra.get(k) for k in wanted if k != "window"}}
    if _as_json(wanted) != _as_json(have):
        return None
    try:
        folder = model_folder(config.model, cache_dir=config.model_args.get("cache_dir"))
    except (ModelLoadError, OSError, ValueError):
        return None
    if (folder.model_id != spec.get("model") or folder.file_sha256 != model.get("file_sha256")
            or folder.revision != extra.get("model_revision")):  # a hub model's commit too
        return None
    config_hash = str(stored.get("config_hash"))
    if not set(keys) <= completed_sessions(config.out, config_hash=config_hash):
        return None
    return _FinishedRun(stored, config_hash, keys)


def _as_json(value: Any) -> Any:
    # The manifest is JSON: tuples came back as lists.
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def _tokenizer_free_condition(config: ScoreConfig) -> Condition | None:
    """The condition when it can be built without the model's tokenizer (all but chat-template)."""
    if config.condition == "chat-template":
        return None
    return _make_condition(config, None)


def _check_selection(config: ScoreConfig, plans: Sequence[_StudyPlan]) -> None:
    """Refuse a selection that would score nothing, saying why (before the model loads)."""
    condition = _tokenizer_free_condition(config)
    if condition is None or any(plan.sessions is None for plan in plans):
        return
    if not any(plan.keys for plan in plans):
        return  # nothing selected (e.g. a small study's test split): not the condition's doing
    if any(condition.eligible(s) for plan in plans for s in plan.sessions or ()):
        return
    needs = {
        "persona": "has metadata; persona needs it",
        "persona-shuffled": "has metadata; persona-shuffled needs it",
        "no-persona": "has metadata; no-persona scores only those that do",
        "discrete": "gave a single-option response; discrete needs one",
    }.get(config.condition, f"is eligible for condition {config.condition!r}")
    where = ", ".join(p.source.name for p in plans)
    # The cause lets a study runner skip the cell like a model without a chat template.
    reason = f"no participant of the selected studies ({where}) {needs}"
    raise PipelineError(f"--condition {config.condition}: {reason}") from (
        ConditionUnavailableError(reason)
    )


def _precheck_run_dir(
    config: ScoreConfig, data_hash: str, *, split: str, data_name: str | None
) -> None:
    """Refuse a run directory of another configuration before the model loads.

    Only the fields known without the model are compared; the full check (model, tokenizer
    and window identity) follows in :func:`open_run_dir` once it is loaded.
    """
    from psych201.results.manifest import (
        MANIFEST_FILE,
        ConfigMismatchError,
        describe_differences,
        load_manifest,
    )

    if not (config.out / MANIFEST_FILE).is_file():
        return
    stored = load_manifest(config.out)
    spec = stored.get("spec")
    if not isinstance(spec, dict):
        return
    ours: dict[str, Any] = {
        "data": data_name or config.data.resolve().name,
        "data_hash": data_hash,
        "split": split,
        "seed": config.seed,
        "studies": sorted(config.studies),
        "limit": config.limit,
        "alignment": config.alignment,
        "dtype": config.dtype,
    }
    condition = _tokenizer_free_condition(config)
    if condition is not None:
        ours["condition"] = condition.name
    theirs = {k: spec.get(k) for k in ours}
    diff = describe_differences(theirs, ours)
    shard = config.shard.to_dict() if config.shard else None
    if stored.get("shard") != shard:
        diff.append(f"shard: {stored.get('shard')!r} -> {shard!r} (use one directory per shard)")
    if diff:
        raise ConfigMismatchError(
            f"{config.out} holds run {stored.get('config_hash')}, a different configuration; "
            "a run directory never mixes configurations. Use another --out, or delete the "
            "directory to start over. Differences: " + "; ".join(diff)
        )


@dataclass
class _Outcome:
    scored: int
    failed: list[SessionKey]
    counts: _Counts


def _score_missing(run: _Run, todo: set[SessionKey], progress: ProgressSink | None) -> _Outcome:
    """Render each study, score its missing sessions chunk by chunk, write a part per chunk."""
    config, condition = run.config, run.condition
    in_shard = shard_filter(config.shard)
    ordinal = {k: i for i, k in enumerate(run.keys)}
    writer = PartWriter(config.out, run.config_hash)
    outcome = _Outcome(scored=0, failed=[], counts=_Counts())
    for plan in run.plans:
        sessions = plan.sessions
        if sessions is None:  # too large to have kept from the first pass
            sessions = list(_study_sessions(config, plan.source))
            if [s.key for s in sessions] != plan.keys:
                raise PipelineError(f"{plan.source.path}: the data changed during the run")
        # The whole study is rendered, done sessions included: a shuffled persona must draw
        # from the same pool in every run, shard and resume.
        prompts = _render(condition, sessions)
        outcome.counts.add_study(sessions, prompts, in_shard)
        by_key = {s.key: s for s in sessions}
        missing = [s.key for s in sessions if s.key in todo]
        chunks = list(_chunks(missing, run.chars, config.part_size, config.part_chars))
        items = [[(by_key[k], prompts.get(k)) for k in chunk] for chunk in chunks]
        for chunk, (results, errors) in zip(
            chunks, _scored_chunks(run.setup.scorer, items), strict=True
        ):
            finished = [k for k in chunk if k in results]
            if finished:
                rows = [
                    row
                    for k in finished
                    for row in _rows(
                        run.setup.model_id, condition.name, by_key[k], prompts.get(k), results[k]
                    )
                ]
                writer.write(rows, finished, first=ordinal[finished[0]], last=ordinal[finished[-1]])
                outcome.scored += len(finished)
                if progress is not None:
                    chars = sum(run.chars[k] for k in finished)
                    progress.advance(sessions=len(finished), chars=chars)
            for session, reason in errors:
                if config.on_error == "fail":
                    raise SessionScoringError(session, reason)
                outcome.failed.append(session.key)
                _note(progress, f"skipped: {SessionScoringError(session, reason)}")
    return outcome


class _Counts:
    """Sessions and responses a condition left out, over the run's (shard's) sessions."""

    def __init__(self) -> None:
        self.ineligible = 0
        self.without_spans = 0
        self.dropped_responses = 0

    def add_study(
        self,
        sessions: Sequence[Session],
        prompts: Mapping[SessionKey, Prompt],
        in_shard: Callable[[SessionKey], bool],
    ) -> None:
        for session in sessions:
            if not in_shard(session.key):
                continue
            prompt = prompts.get(session.key)
            if prompt is None:
                self.ineligible += 1
                continue
            self.dropped_responses += prompt.n_dropped
            if not prompt.spans:
                self.without_spans += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "ineligible_sessions": self.ineligible,
            "sessions_without_responses": self.without_spans,
            "dropped_responses": self.dropped_responses,
        }


def _render(condition: Condition, sessions: Sequence[Session]) -> dict[SessionKey, Prompt]:
    eligible = [s for s in sessions if condition.eligible(s)]
    prompts = condition.render_study(eligible) if eligible else []
    if len(prompts) != len(eligible):
        raise PipelineError(
            f"condition {condition.name!r} rendered {len(prompts)} prompts for "
            f"{len(eligible)} sessions"
        )
    return {s.key: p for s, p in zip(eligible, prompts, strict=True)}


def _chunks(
    keys: Sequence[SessionKey], chars: Mapping[SessionKey, int], size: int, max_chars: int
) -> Iterator[list[SessionKey]]:
    chunk: list[SessionKey] = []
    total = 0
    for key in keys:
        if chunk and (len(chunk) >= size or total + chars[key] > max_chars):
            yield chunk
            chunk, total = [], 0
        chunk.append(key)
        total += chars[key]
    if chunk:
        yield chunk


_ChunkResult = tuple[dict[SessionKey, Sequence[SpanScoreLike]], list[tuple[Session, str]]]


def _scored_chunks(
    scorer: PromptScorer, chunks: Sequence[Sequence[tuple[Session, Prompt | None]]]
) -> Iterator[_ChunkResult]:
    """:func:`_score_chunk` for each chunk, in order, as each finishes.

    A scorer with ``score_stream`` (Ray) gets all chunks as one job, so its engine replicas load
    once per study instead of once per part; each chunk still becomes its own part as soon as it
    is scored. If the stream fails, the failed chunk and the rest go one call per chunk, which
    names the sessions that cannot be scored.
    """
    stream = getattr(scorer, "score_stream", None)
    if stream is None or len(chunks) < 2:
        for items in chunks:
            yield _score_chunk(scorer, items)
        return
    works = [[(s, p) for s, p in items if p is not None and p.spans] for items in chunks]
    done = 0
    try:
        scored = stream([[p for _, p in work] for work in works])
        for items, work in zip(chunks, works, strict=True):
            scores = next(scored)
            _check_scores(work, scores)
            results: dict[SessionKey, Sequence[SpanScoreLike]] = {
                s.key: [] for s, p in items if p is None or not p.spans
            }
            results.update({s.key: sc for (s, _), sc in zip(work, scores, strict=True)})
            done += 1
            yield results, []
    except (ValueError, RuntimeError, IndexError, KeyError, StopIteration):
        for items in chunks[done:]:
            yield _score_chunk(scorer, items)


def _score_chunk(
    scorer: PromptScorer, items: Sequence[tuple[Session, Prompt | None]]
) -> tuple[dict[SessionKey, Sequence[SpanScoreLike]], list[tuple[Session, str]]]:
    """Score the chunk's prompts; on failure retry one by one to keep the good and name the bad.

    Sessions without a prompt (ineligible) or without spans finish with no scores.
    """
    results: dict[SessionKey, Sequence[SpanScoreLike]] = {}
    work = [(s, p) for s, p in items if p is not None and p.spans]
    for session, prompt in items:
        if prompt is None or not prompt.spans:
            results[session.key] = []
    if not work:
        return results, []
    try:
        scores = scorer.score([p for _, p in work])
        _check_scores(work, scores)
        results.update({s.key: sc for (s, _), sc in zip(work, scores, strict=True)})
        return results, []
    except (ValueError, RuntimeError, IndexError, KeyError) as exc:
        if len(work) == 1:
            return results, [(work[0][0], f"{type(exc).__name__}: {exc}")]
    errors: list[tuple[Session, str]] = []
    for session, prompt in work:
        try:
            one = scorer.score([prompt])
            _check_scores([(session, prompt)], one)
            results[session.key] = one[0]
        except (ValueError, RuntimeError, IndexError, KeyError) as exc:
            errors.append((session, f"{type(exc).__name__}: {exc}"))
    return results, errors


def _check_scores(
    work: Sequence[tuple[Session, Prompt]], scores: Sequence[Sequence[SpanScoreLike]]
) -> None:
    if len(scores) != len(work):
        raise RuntimeError(f"scorer returned {len(scores)} results for {len(work)} prompts")
    for (_, prompt), span_scores in zip(work, scores, strict=True):
        got = [s.index for s in span_scores]
        want = [s.index for s in prompt.spans]
        if got != want:
            raise RuntimeError(f"scorer returned spans {got[:5]}… for spans {want[:5]}…")


def _rows(
    model: str,
    condition: str,
    session: Session,
    prompt: Prompt | None,
    scores: Sequence[SpanScoreLike],
) -> list[ResponseScore]:
    if prompt is None:
        return []
    return [
        ResponseScore(
            model=model,
            condition=condition,
            study=session.study,
            experiment=session.experiment,
            participant=session.participant,
            line=session.line,
            response_index=span.index,
            response_text=span.text,
            n_tokens=int(score.n_tokens),
            nll=float(score.nll),
            top1_correct=None if score.top1_correct is None else bool(score.top1_correct),
            entropy=float(score.entropy),
            context_tokens=int(score.context_tokens),
            truncated=bool(score.truncated),
            offered_correct=_optional_bool(getattr(score, "offered_correct", None)),
            n_offered=_optional_int(getattr(score, "n_offered", None)),
            nll_temperature=_optional_tuple(getattr(score, "nll_temperature", None), float),
            offered_options=_optional_tuple(getattr(score, "offered_options", None), str),
            offered_logprobs=_optional_tuple(getattr(score, "offered_logprobs", None), float),
        )
        for span, score in zip(prompt.spans, scores, strict=True)
    ]


def _optional_tuple(value: Any, kind: Callable[[Any], Any]) -> tuple[Any, ...] | None:
    return None if value is None else tuple(kind(v) for v in value)


def temperature_record(info: EngineInfo) -> dict[str, Any]:
    """The manifest's word on ``nll_temperature``: the grid it holds, or null and why not."""
    said = str(info.extra.get("temperature_logprobs") or "null: the engine does not report them")
    if said.startswith("null"):
        return {"temperature_grid": None, "temperature_reason": said.removeprefix("null: ")}
    return {"temperature_grid": list(TEMPERATURE_GRID), "temperature_reason": None}


def _optional_bool(value: object) -> bool | None:
    return None if value is None else bool(value)


def _optional_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _note(progress: ProgressSink | None, message: str) -> None:
    if progress is not None:
        progress.note(message)


# ---------------------------------------------------------------------------------------------
# Per-study summary (``psych201 demo``)


@dataclass(frozen=True)
class StudySummary:
    """One line of the demo table: a study's mean NLL per response, and the oracle's."""

    study: str
    participants: int
    responses: int
    mean_nll: float
    oracle_nll: float | None


def oracle_nll(data: Path) -> dict[tuple[str, int, int], float]:
    """The generating model's NLL per (study, line, response index) where sessions store it.

    Simulated data keeps it in metadata ``loglik`` (see :class:`~psych201.scoring.oracle.
    OracleScorer`).
    """
    from psych201.scoring.oracle import OracleScorer

    oracle = OracleScorer()
    out: dict[tuple[str, int, int], float] = {}
    for session in iter_sessions(data):
        if oracle.field not in session.metadata:
            continue
        (scores,) = oracle.score_sessions([session])
        for score in scores:
            out[(session.study, session.line, score.index)] = float(score.nll)
    return out


def demo_summary(run_dir: Path, data: Path) -> list[StudySummary]:
    """Per study: participants, responses, mean NLL/response and, where the data stores it,
    the generating model's NLL over the very same responses."""
    from psych201.results.io import read_responses

    table = read_responses(run_dir)
    oracle = oracle_nll(data)
    rows: list[StudySummary] = []
    for study, group in table.groupby("study", sort=True):
        values = [
            oracle.get((str(study), int(line), int(index)))
            for line, index in zip(group["line"], group["response_index"], strict=True)
        ]
        known = [v for v in values if v is not None]
        rows.append(
            StudySummary(
                study=str(study),
                participants=int(
                    group[["experiment", "participant", "line"]].drop_duplicates().shape[0]
                ),
                responses=len(group),
                mean_nll=float(group["nll"].mean()),
                oracle_nll=sum(known) / len(known) if len(known) == len(values) else None,
            )
        )
    return rows
