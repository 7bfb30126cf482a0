"""Which sessions a run scores: studies, split, limit and shard; and the data's fingerprint.

A run's session set is fixed by the data, split, seed, studies and ``limit`` (the first ``limit``
participants of each study's split, in file order); ``shard`` then keeps the sessions whose
stable key hash falls in it, so shards partition exactly that set. Conditions render a whole study
at a time (a shuffled persona draws another participant of the same study), so every run renders
all of a study's selected sessions, whatever it then scores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psych201.data.hub import is_hub_spec, resolve_hub_data
from psych201.data.issues import IssueLog
from psych201.data.readers import StudySource, discover_studies
from psych201.data.records import Session, SessionKey
from psych201.data.split import iter_split, split_kind
from psych201.pipeline.config import PipelineError, ScoreConfig
from psych201.prompts.conditions import Condition, ConditionUnavailableError, make_condition
from psych201.prompts.records import Prompt
from psych201.prompts.tokenizer import Tokenizer
from psych201.results.shards import Shard
from psych201.suggest import did_you_mean

#: Keep the selected sessions of pass 1 in memory up to this many characters; beyond, re-read.
RETAIN_CHARS = 400_000_000


@dataclass
class StudyPlan:
    source: StudySource
    keys: list[SessionKey]
    chars: dict[SessionKey, int]
    sessions: list[Session] | None  # None: re-read in pass 2 (too large to keep)
    split: str = ""  # how the split was drawn: test/train/all/seeded, or dataset (in_eval)


def shard_filter(shard: Shard | None) -> Callable[[SessionKey], bool]:
    return (lambda _key: True) if shard is None else shard.contains


def data_root(config: ScoreConfig) -> tuple[Path, dict[str, Any], str]:
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


def select_sources(config: ScoreConfig, root: Path | None = None) -> list[StudySource]:
    sources = discover_studies(root if root is not None else data_root(config)[0])
    if not config.studies:
        return sources
    names = {s.name for s in sources}
    unknown = sorted(set(config.studies) - names)
    if unknown:
        hints = "".join(did_you_mean(name, names) for name in unknown)
        listing = (f"available: {', '.join(sorted(names))}" if len(names) <= 8 else
                   f"{len(names)} studies; psych201 data stats {config.data} lists them")
        raise PipelineError(
            f"{config.data}: no study named {', '.join(unknown)}{hints} ({listing})"
        )
    wanted = set(config.studies)
    return [s for s in sources if s.name in wanted]


def study_sessions(
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


def plan_studies(
    config: ScoreConfig, sources: Sequence[StudySource], log: IssueLog
) -> list[StudyPlan]:
    plans: list[StudyPlan] = []
    retained = 0
    for source in sources:
        sessions = list(study_sessions(config, source, log))
        chars = {s.key: len(s.text) for s in sessions}
        keep = retained + sum(chars.values()) <= RETAIN_CHARS
        retained += sum(chars.values()) if keep else 0
        plans.append(
            StudyPlan(
                source=source,
                keys=[s.key for s in sessions],
                chars=chars,
                sessions=sessions if keep else None,
                split=split_kind(config.split, sessions),
            )
        )
    return plans


def split_label(config: ScoreConfig, plans: Sequence[StudyPlan]) -> str:
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



def make_condition_for(config: ScoreConfig, tokenizer: Tokenizer | None) -> Condition:
    try:
        condition = make_condition(
            config.condition, tokenizer=tokenizer, seed=config.seed, **dict(config.condition_args)
        )
    except (TypeError, ValueError) as exc:
        raise PipelineError(f"--condition {config.condition}: {exc}") from exc
    return condition



def tokenizer_free_condition(config: ScoreConfig) -> Condition | None:
    """The condition when it can be built without the model's tokenizer (all but chat-template)."""
    if config.condition == "chat-template":
        return None
    return make_condition_for(config, None)


def check_selection(config: ScoreConfig, plans: Sequence[StudyPlan]) -> None:
    """Refuse a selection that would score nothing, saying why (before the model loads)."""
    condition = tokenizer_free_condition(config)
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



class ConditionCounts:
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


def render(condition: Condition, sessions: Sequence[Session]) -> dict[SessionKey, Prompt]:
    eligible = [s for s in sessions if condition.eligible(s)]
    prompts = condition.render_study(eligible) if eligible else []
    if len(prompts) != len(eligible):
        raise PipelineError(
            f"condition {condition.name!r} rendered {len(prompts)} prompts for "
            f"{len(eligible)} sessions"
        )
    return {s.key: p for s, p in zip(eligible, prompts, strict=True)}


def chunk_keys(
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
