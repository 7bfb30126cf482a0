"""How many options each response was chosen among: what guessing would score (chance NLL).

The option set of a response is read from the wording of the transcript
(:func:`psych201.prompts.options.response_options`: *stated*). Where the wording is not
recognised (a study of one's own that writes ``marked 'O' or marked 'Q'``), the set is *inferred*
from the distinct responses the participant gave: a participant who answered ``O`` or ``Q`` on
every one of 20 trials chose between two options. Psych-201 randomises option letters per
participant, so the distinct responses are counted within each participant's session, never
pooled across participants. An inferred set is used for the chance level only (never for the
accuracy control, which must not guess) and is always reported as inferred.

Chance NLL of a response chosen among ``k`` options is ``log k`` nats (guessing uniformly).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from psych201.data.records import Session
from psych201.prompts.options import response_options

#: Inferred sets larger than this are not option sets but free answers.
MAX_INFERRED_OPTIONS = 10
#: Responses longer than this (characters) are free text, not the label of an option.
MAX_OPTION_CHARS = 24
#: Each inferred option must on average recur this often: a repeated choice, not a free answer.
MIN_REPEATS = 2

#: Column names of :func:`option_count_rows`'s rows (the response key, then the count).
COUNT_COLUMNS = ("study", "experiment", "participant", "line", "response_index", "n_options",
                 "options_inferred")

STATED = "stated"
INFERRED = "inferred"


@dataclass(frozen=True)
class OfferedSet:
    """The options a response was chosen among and where that set came from."""

    options: frozenset[str] | None
    source: str | None  # STATED, INFERRED, or None when unknown

    @property
    def chance_nll(self) -> float | None:
        """``log k`` nats for ``k ≥ 2`` options; None when unknown or not a choice."""
        if self.options is None or len(self.options) < 2:
            return None
        return math.log(len(self.options))


def offered_sets(session: Session) -> list[OfferedSet]:
    """One :class:`OfferedSet` per response of ``session``: stated where the wording says,
    inferred from the session's distinct responses where it does not (see the module doc)."""
    stated = response_options(session)
    unknown = [span.text.strip() for span, opts in zip(session.responses, stated, strict=True)
               if opts is None]
    inferred = infer_options(unknown)
    out: list[OfferedSet] = []
    for span, opts in zip(session.responses, stated, strict=True):
        if opts is not None:
            out.append(OfferedSet(opts, STATED))
        elif inferred is not None and span.text.strip() in inferred:
            out.append(OfferedSet(inferred, INFERRED))
        else:
            out.append(OfferedSet(None, None))
    return out


def infer_options(responses: Sequence[str]) -> frozenset[str] | None:
    """The option set a list of one participant's responses reveals, or None.

    Short answers (labels, keys, words) drawn from 2..:data:`MAX_INFERRED_OPTIONS` distinct
    values, each recurring :data:`MIN_REPEATS` times on average, are taken as a choice among
    those values; anything else (free text, numbers from a wide range, one repeated answer) is
    not a choice set.
    """
    values = [r for r in responses if r]
    if not values or any(len(v) > MAX_OPTION_CHARS for v in values):
        return None
    distinct = frozenset(values)
    if not 2 <= len(distinct) <= MAX_INFERRED_OPTIONS:
        return None
    if len(values) < MIN_REPEATS * len(distinct):
        return None
    return distinct


def option_count_rows(sessions: Iterable[Session]) -> list[tuple[object, ...]]:
    """Rows of :data:`COUNT_COLUMNS`: every response's option count (NaN where unknown) and
    whether the set was inferred rather than stated."""
    rows: list[tuple[object, ...]] = []
    for session in sessions:
        for span, offered in zip(session.responses, offered_sets(session), strict=True):
            options = offered.options
            rows.append((session.study, session.experiment, session.participant, session.line,
                         span.index, float(len(options)) if options is not None else math.nan,
                         offered.source == INFERRED))
    return rows


@dataclass(frozen=True)
class StudyChance:
    """What guessing scores on one study: mean ``log k`` nats over the responses whose option
    set is known (stated or inferred), and how many responses that covers."""

    study: str
    responses: int
    known: int
    inferred: int
    mean_options: float | None
    chance_nll: float | None

    def describe(self) -> str:
        """One phrase: ``chance 0.693 nats/response (2.0 options; 8 of 8 responses, stated)``."""
        if self.chance_nll is None or self.mean_options is None:
            return (f"chance unknown ({self.responses:,} responses, no option set stated or "
                    "inferable: free text or numbers)")
        how = ("inferred from each participant's distinct responses" if self.inferred == self.known
               else "stated" if not self.inferred
               else f"stated, {self.inferred:,} inferred")
        return (f"chance {self.chance_nll:.3f} nats/response ({self.mean_options:.1f} options; "
                f"{self.known:,} of {self.responses:,} responses, {how})")


def chance_by_study(sessions: Iterable[Session]) -> list[StudyChance]:
    """:class:`StudyChance` of every study among ``sessions``, in order of first appearance."""
    totals: dict[str, list[float]] = {}
    for session in sessions:
        acc = totals.setdefault(session.study, [0, 0, 0, 0.0, 0.0])
        for offered in offered_sets(session):
            acc[0] += 1
            if (nll := offered.chance_nll) is not None and offered.options is not None:
                acc[1] += 1
                acc[2] += offered.source == INFERRED
                acc[3] += nll
                acc[4] += len(offered.options)
    out = []
    for study, (n, known, inferred, nll_sum, k_sum) in totals.items():
        out.append(StudyChance(study, int(n), int(known), int(inferred),
                               k_sum / known if known else None,
                               nll_sum / known if known else None))
    return out
