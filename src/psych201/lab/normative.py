"""Normative answers where a transcript states enough to compute them: lotteries.

A lottery trial lists two or more lotteries as ``Lottery X: <outcome> or <outcome>`` lines before
the response, each outcome ``[gain|lose|win] N points with [a] P% [chance]`` (F's simulated risky
task and frey2017lotteries use this form). The normative choice is the lottery with the highest
expected value; a tie, an unparsable trial or a response that is not one of the offered letters
has no normative answer (``None``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from psych201.data.records import ResponseSpan

_NUMBER = r"-?\d+(?:\.\d+)?"
_OUTCOME = re.compile(
    rf"(?:(gain|win|lose)\s+)?({_NUMBER})\s+points?\s+with\s+(?:an?\s+)?({_NUMBER})\s*%"
)
_LOTTERY_LINE = re.compile(r"^\s*Lottery\s+([A-Z]):\s*(.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Lottery:
    """Outcomes (points) with their probabilities, as stated."""

    label: str
    outcomes: tuple[tuple[Fraction, Fraction], ...]

    @property
    def expected_value(self) -> Fraction:
        return sum((x * p for x, p in self.outcomes), Fraction(0))


def parse_lotteries(segment: str) -> dict[str, Lottery]:
    """The lotteries stated in ``segment`` (the last statement of a label wins)."""
    found: dict[str, Lottery] = {}
    for match in _LOTTERY_LINE.finditer(segment):
        outcomes = []
        for sign, amount, pct in _OUTCOME.findall(match.group(2)):
            x = Fraction(amount)
            if sign == "lose":
                x = -abs(x)
            outcomes.append((x, Fraction(pct) / 100))
        if outcomes and sum(p for _, p in outcomes) == 1:
            found[match.group(1)] = Lottery(match.group(1), tuple(outcomes))
    return found


def normative_lottery_choice(segment: str, response: str) -> str | None:
    """The highest-EV lottery label of the trial in ``segment``, or None (see module notes)."""
    lotteries = parse_lotteries(segment)
    if len(lotteries) < 2 or response not in lotteries:
        return None
    ranked = sorted(lotteries.values(), key=lambda lot: lot.expected_value, reverse=True)
    if ranked[0].expected_value == ranked[1].expected_value:
        return None
    return ranked[0].label


def normative_responses(text: str, responses: Sequence[ResponseSpan]) -> list[str | None]:
    """For each response, the normative answer of its trial (the text since the last response)."""
    out: list[str | None] = []
    previous_end = 0
    for span in responses:
        out.append(normative_lottery_choice(text[previous_end : span.start], span.text))
        previous_end = span.end
    return out
