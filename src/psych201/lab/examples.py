"""Training sequences: token ids plus the positions the loss is taken on.

Every recipe reduces its data to the same record. A :class:`TrainingExample` is one sequence the
model reads and the token positions whose prediction is trained (the loss mask). Building them
goes through the scoring layer's alignment (:func:`psych201.scoring.align.align`): a text and the
character spans to train on become token ids and exactly the tokens that encode those characters,
with the same rules the scorer later uses to measure NLL. Training and evaluation therefore agree
on which tokens a response is.

The human recipe (Centaur's method) trains on the tokens inside ``<<…>>`` of *training*
participants: sessions come from :func:`psych201.data.split.iter_split` with ``"train"``, so no
test participant of the paper's split is ever read into a training example.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from psych201.data.issues import OnError
from psych201.data.readers import StudySource, discover_studies
from psych201.data.records import ResponseSpan, Session, SessionKey
from psych201.data.split import iter_split, study_seed
from psych201.data.variants import paper_truncate
from psych201.lab.settings import LabError
from psych201.prompts.records import Prompt
from psych201.scoring.align import align

IntArray = npt.NDArray[np.int64]

#: Characters kept per token of budget before tokenising a long session. Tokens average 3–4
#: characters on these transcripts; 16 leaves a wide margin, and only bounds tokeniser work on
#: 100k-character sessions (the cut never splits a response, see ``paper_truncate``).
_CHARS_PER_TOKEN_BOUND = 16
_SUBSET_SALT = 0x1AB


@dataclass(frozen=True, eq=False)
class TrainingExample:
    """One training sequence.

    ``target_positions[j] = t`` trains ``log P(token_ids[t] | token_ids[:t])`` (t >= 1, ascending).
    ``n_spans`` spans lie entirely inside the sequence and are trained on; ``n_cut`` spans were
    cut off by the token budget. ``session`` names the participant session it came from (None
    for generated data).
    """

    key: str
    token_ids: IntArray
    target_positions: IntArray
    n_spans: int
    n_cut: int = 0
    study: str = ""
    session: SessionKey | None = None

    def __post_init__(self) -> None:
        pos = self.target_positions
        if pos.size and (pos[0] < 1 or pos[-1] >= self.token_ids.size or np.any(np.diff(pos) <= 0)):
            raise LabError(f"{self.key}: target positions must be ascending, in 1..len-1")

    @property
    def n_tokens(self) -> int:
        return int(self.token_ids.size)

    @property
    def n_targets(self) -> int:
        return int(self.target_positions.size)


@dataclass(frozen=True, eq=False)
class PreferencePair:
    """Two versions of one sequence: the preferred (``chosen``) and the dispreferred one."""

    key: str
    chosen: TrainingExample
    rejected: TrainingExample
    study: str = ""
    session: SessionKey | None = None


@dataclass(frozen=True, eq=False)
class TrainingData:
    """The examples of a recipe and a JSON-able description of where they came from (the card's
    ``data`` field)."""

    examples: tuple[TrainingExample, ...] = ()
    pairs: tuple[PreferencePair, ...] = ()
    description: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.examples and not self.pairs:
            raise LabError(
                f"no training data: {self.description.get('source', 'the recipe')} produced no "
                "sequence with a trainable token"
            )

    @property
    def n_target_tokens(self) -> int:
        if self.pairs:
            return sum(p.chosen.n_targets + p.rejected.n_targets for p in self.pairs)
        return sum(e.n_targets for e in self.examples)


# ---------------------------------------------------------------------------------------------
# From a text with spans


def example_from_spans(
    text: str,
    spans: Sequence[ResponseSpan],
    tokenizer: Any,
    *,
    key: str,
    max_tokens: int,
    alignment: str = "offsets",
    study: str = "",
    session: SessionKey | None = None,
) -> TrainingExample:
    """Tokenise ``text`` and mask the loss to the tokens of ``spans`` within ``max_tokens``.

    A span counts only when all its tokens lie inside the first ``max_tokens`` tokens (a response
    is never trained on half). Empty spans have no tokens and are skipped.
    """
    prompt = Prompt(text=text, spans=tuple(spans), condition="posttrain")
    aligned = align(prompt, tokenizer, alignment)
    ids = aligned.token_ids[:max_tokens]
    kept: list[IntArray] = []
    n_cut = 0
    for positions in aligned.span_positions:
        if positions.size == 0:
            continue
        if int(positions[-1]) >= max_tokens:
            n_cut += 1
            continue
        kept.append(positions)
    targets = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    # Position 0 has no context to be predicted from (only with tokenizers that add no BOS).
    targets = targets[targets >= 1].astype(np.int64)
    return TrainingExample(
        key=key,
        token_ids=np.ascontiguousarray(ids, dtype=np.int64),
        target_positions=targets,
        n_spans=len(kept),
        n_cut=n_cut,
        study=study,
        session=session,
    )


def session_key_str(key: SessionKey) -> str:
    return f"{key.study}/{key.experiment}/{key.participant}/line{key.line}"


def example_from_session(
    session: Session, tokenizer: Any, *, max_tokens: int, alignment: str = "offsets"
) -> TrainingExample:
    """The human recipe's example of one session: loss on its responses' tokens only."""
    short = paper_truncate(session, max_chars=max_tokens * _CHARS_PER_TOKEN_BOUND)
    example = example_from_spans(
        short.text,
        short.responses,
        tokenizer,
        key=session_key_str(session.key),
        max_tokens=max_tokens,
        alignment=alignment,
        study=session.study,
        session=session.key,
    )
    dropped = len(session.responses) - len(short.responses)
    return dataclasses.replace(example, n_cut=example.n_cut + dropped) if dropped else example


# ---------------------------------------------------------------------------------------------
# Studies


def select_studies(data: str | Path, studies: Iterable[str] = ()) -> list[StudySource]:
    """The study sources of ``data``, restricted to ``studies`` (all when empty)."""
    sources = discover_studies(data)
    if not sources:
        raise LabError(f"{data}: no studies found")
    wanted = list(dict.fromkeys(studies))
    if not wanted:
        return sources
    by_name = {s.name: s for s in sources}
    missing = [w for w in wanted if w not in by_name]
    if missing:
        raise LabError(
            f"{data}: no study named {', '.join(missing)} "
            f"(found: {', '.join(sorted(by_name))})"
        )
    return [by_name[w] for w in wanted]


def human_examples(
    data: str | Path,
    tokenizer: Any,
    *,
    studies: Iterable[str] = (),
    split_seed: int = 0,
    max_tokens: int = 1024,
    max_sessions_per_study: int | None = None,
    sample_seed: int = 0,
    alignment: str = "offsets",
    on_error: OnError = "fail",
) -> TrainingData:
    """Centaur's training data: the responses of the training participants of ``studies``.

    Sessions come from the paper's split with ``split_seed`` (the split a later ``psych201 score
    --split test --seed split_seed`` evaluates on); test participants are never read.
    ``max_sessions_per_study`` keeps a seeded random subset of each study's training sessions,
    so one large study does not dominate.
    """
    if max_sessions_per_study is not None and max_sessions_per_study < 1:
        raise LabError(f"max_sessions_per_study must be >= 1, got {max_sessions_per_study}")
    examples: list[TrainingExample] = []
    per_study: dict[str, dict[str, int]] = {}
    sources = select_studies(data, studies)
    for source in sources:
        sessions = list(iter_split(source, "train", seed=split_seed, on_error=on_error))
        n_train = len(sessions)
        if max_sessions_per_study is not None and n_train > max_sessions_per_study:
            # Salted so the subset is not drawn from the same stream as the test split.
            rng = np.random.default_rng([*study_seed(sample_seed, source.name), _SUBSET_SALT])
            keep = np.sort(rng.choice(n_train, size=max_sessions_per_study, replace=False))
            sessions = [sessions[int(i)] for i in keep]
        built = [
            example_from_session(s, tokenizer, max_tokens=max_tokens, alignment=alignment)
            for s in sessions
        ]
        built = [e for e in built if e.n_targets > 0]
        examples.extend(built)
        per_study[source.name] = {
            "train_sessions": n_train,
            "used_sessions": len(built),
            "responses": sum(e.n_spans for e in built),
            "responses_cut": sum(e.n_cut for e in built),
            "target_tokens": sum(e.n_targets for e in built),
        }
    description = {
        "source": "human responses of training participants",
        "data": str(Path(data)),
        "studies": per_study,
        "split": "train",
        "split_seed": split_seed,
        "max_sessions_per_study": max_sessions_per_study,
        "sample_seed": sample_seed,
        "max_tokens": max_tokens,
        "alignment": alignment,
    }
    return TrainingData(examples=tuple(examples), description=description)
