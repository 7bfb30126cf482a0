"""Choices and outcomes read back from transcripts: the same table from people and from models.

A session is a *choice session* when its responses come from a small fixed set of short labels
(two to six letters or words, ``L``/``R``, ``A``/``B``). For each response the parser records
the label, the set offered, the reward the text reports after it (1, 0, or missing where the
text says nothing about one), the block it names (``Block 3:``) and, for described lotteries
(``Lottery A: 50 points with 30% or …``, ``The outcomes of lottery S are -9 with 50% chance and
…``), each option's outcomes and probabilities. Simulated, played and human transcripts all go
through this one parser, so behavioural signatures computed from its table mean the same thing
for each (:mod:`psych201.analysis.signatures`).

Reward: the text from the response to the line of the next one is read sentence by sentence
from the end; the last sentence that speaks of a reward (won, reward, correct, wrong, coin, point)
and describes no lottery decides, and a negation in it (no, not, nothing, incorrect, wrong,
lose) makes it 0. That last-sentence rule keeps "there is no animal … Your choice was correct"
a win.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from psych201.data.markers import parse_responses
from psych201.data.records import Session

#: At most this many distinct labels, each at most MAX_LABEL characters: a choice between options.
MAX_OPTIONS, MAX_LABEL = 6, 12
#: A study is parseable when choices are read from at least this share of its responses.
MIN_COVERAGE = 0.95

_REWARD = re.compile(
    r"\b(reward\w*|won|win|wins|correct|incorrect|wrong|coins?|points?|treasure)\b", re.I)
_NEGATION = re.compile(r"\b(no|not|nothing|incorrect|wrong|lose|lost|loses|none)\b", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_BLOCK = re.compile(r"\b(?:Block|Round|Session)\s+(\d+)\b")
_LOTTERY = re.compile(r"\blottery\s+(\w+)\b", re.I)
_SHIPS = re.compile(r"choose a spaceship, (\w) or (\w)\.")
_ALIENS = re.compile(r"red planet you can ask alien (\w) or (\w), on the blue planet alien "
                     r"(\w) or (\w)\.")
_OUTCOME = re.compile(
    r"(?:(gain|win|lose|loss of)\s+)?(-?\d+(?:\.\d+)?)\s*(?:points?\s+)?with\s+(?:a\s+)?"
    r"(\d+(?:\.\d+)?)\s*%", re.I,
)

COLUMNS = ("participant", "response_index", "choice", "options", "reward", "block",
           "lotteries")


@dataclass(frozen=True)
class StudyChoices:
    """The choice table of a study, or why there is none.

    ``coverage`` is the share of the study's responses with a choice read; ``parseable`` says
    whether that reaches :data:`MIN_COVERAGE`; ``reason`` names what failed otherwise.
    """

    study: str
    table: pd.DataFrame
    n_responses: int
    coverage: float
    reason: str = ""

    @property
    def parseable(self) -> bool:
        return self.coverage >= MIN_COVERAGE


def session_options(labels: Sequence[str], head: str = "") -> tuple[str, ...] | None:
    """The options of a session whose responses are ``labels``: its distinct labels, sorted,
    when they look like a choice between a few short options; else ``None``.

    A participant who always gave the same answer still had a choice: the other option is
    taken from the instructions (``head``, the text before the first response) where they name
    the answer paired with another label (``L and R``, ``A or B``), so that participant is kept,
    not silently dropped.
    """
    distinct = sorted(set(labels))
    if len(distinct) == 1:
        distinct = sorted({distinct[0], *_paired_with(distinct[0], head)})
    if not 2 <= len(distinct) <= MAX_OPTIONS:
        return None
    if any(not lab or len(lab) > MAX_LABEL or not lab.replace(" ", "").isalnum()
           or lab.lstrip("-").replace(".", "").isdigit() for lab in distinct):
        return None
    return tuple(distinct)


def _paired_with(label: str, head: str) -> set[str]:
    escaped = re.escape(label)
    found = set()
    # "'H' and L'" (thoma2025problearn's instructions) quotes the first label too
    for pattern in (rf"\b{escaped}'?\s*(?:,|and|or)\s*'?(\w{{1,{MAX_LABEL}}})\b",
                    rf"\b(\w{{1,{MAX_LABEL}}})'?\s*(?:,|and|or)\s*'?{escaped}\b"):
        found |= {m for m in re.findall(pattern, head) if len(m) == len(label) and m != label
                  and m.isupper() == label.isupper()}
    return found if len(found) == 1 else set()


def reward_of(feedback: str) -> float | None:
    """1, 0 or ``None``: the reward the text after a response reports (see the module doc)."""
    for sentence in reversed([s for s in _SENTENCE.split(feedback) if s.strip()]):
        if _LOTTERY.search(sentence) or _OUTCOME.search(sentence):
            continue  # the next problem's description, not feedback
        if _REWARD.search(sentence):
            return 0.0 if _NEGATION.search(sentence) else 1.0
    return None


def lotteries_of(before: str, options: Sequence[str]) -> dict[str, list[tuple[float, float]]]:
    """Each option's (outcome, probability) pairs, from the text before the response."""
    found: dict[str, list[tuple[float, float]]] = {}
    marks = list(_LOTTERY.finditer(before))
    for k, mark in enumerate(marks):
        label = mark.group(1)
        if label not in options:
            continue
        end = marks[k + 1].start() if k + 1 < len(marks) else len(before)
        pairs = []
        for sign_word, amount, pct in _OUTCOME.findall(before[mark.end():end]):
            value = float(amount)
            if sign_word.lower() in ("lose", "loss of") and value > 0:
                value = -value
            pairs.append((value, float(pct) / 100))
        if pairs:
            found[label] = pairs  # the last description of a label before the response counts
    return found


@dataclass(frozen=True)
class TwoStepLabels:
    """The labels a two-step transcript's instructions name (``psych201 simulate twostep``):
    spaceship ``k`` (in the order named) flies commonly to planet ``k``, whose aliens are
    ``aliens[k]``."""

    ships: tuple[str, str]
    aliens: tuple[tuple[str, str], tuple[str, str]]


def twostep_labels(text: str) -> TwoStepLabels | None:
    """The spaceships and each planet's aliens, or ``None`` where the text names none."""
    ships, aliens = _SHIPS.search(text), _ALIENS.search(text)
    if ships is None or aliens is None:
        return None
    return TwoStepLabels((ships.group(1), ships.group(2)),
                         ((aliens.group(1), aliens.group(2)), (aliens.group(3), aliens.group(4))))


def session_choices(session: Session) -> pd.DataFrame | None:
    """The choice rows of one session (columns :data:`COLUMNS`), or ``None`` when it is not a
    choice session."""
    spans = session.responses or parse_responses(session.text)
    head = session.text[: spans[0].start] if spans else ""
    options = session_options([s.text.strip() for s in spans], head)
    if options is None:
        return None
    rows = []
    text = session.text
    for k, span in enumerate(spans):
        previous_end = spans[k - 1].end + 2 if k else 0
        before = text[previous_end: span.start - 2]
        if k + 1 < len(spans):
            nxt = spans[k + 1].start - 2
            after = text[span.end + 2: text.rfind("\n", 0, nxt) + 1 or nxt]
        else:
            after = text[span.end + 2:]
        line_start = text.rfind("\n", 0, span.start) + 1
        block = _BLOCK.search(text[line_start: span.start])
        lot = lotteries_of(before, options)
        rows.append({
            "participant": session.participant,
            "response_index": span.index,
            "choice": span.text.strip(),
            "options": list(options),
            "reward": reward_of(after),
            "block": None if block is None else int(block.group(1)),
            "lotteries": lot if len(lot) == len(options) else None,
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def study_choices(study: str, sessions: Iterable[Session]) -> StudyChoices:
    """Parse every session of a study; the table, and how much of the study it covers."""
    frames, n_responses, read = [], 0, 0
    for session in sessions:
        n_responses += len(session.responses)
        frame = session_choices(session)
        if frame is not None:
            frames.append(frame)
            read += len(frame)
    table = (pd.concat(frames, ignore_index=True) if frames
             else pd.DataFrame(columns=list(COLUMNS)))
    coverage = read / n_responses if n_responses else 0.0
    reason = "" if coverage >= MIN_COVERAGE else (
        f"unparseable: choices read for {coverage:.0%} of {n_responses} responses (responses "
        f"are not a choice among 2-{MAX_OPTIONS} short labels per session)"
    )
    return StudyChoices(study, table, n_responses, coverage, reason)
