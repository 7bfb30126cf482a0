"""The option set offered for each response, read from the transcript itself.

Psych-201 randomises the letters of discrete options per participant, so the set a participant
chose from can only be read from that participant's own text. Accuracy restricted to
the offered options (the paper's accuracy control) needs that set for every response.

Two kinds of evidence are used, both taken only from the text *outside* the responses:

* **local** — the trial text since the previous response (or since the start for the first one):
  a letter-labelled list (``X: red`` lines), named alternatives (``Lottery A: …`` lines),
  parenthesised keys (``a rock pile (V) … a yellow tree (E)``), a numeric scale (``on a scale
  from 0 to 100``), quoted buttons (``clicking "Continue" or … "Re-read the abstract"``), a
  relation question over a relation table given in the instructions, a contribution stage;
* **global** — a declaration made once and valid until the next one: ``two options: L and R``,
  ``The stocks' names are P and Y``, ``press the C key … press the W key``, ``Press M to observe,
  K to …, or V to …``, ``press: left for red LETTERS, down for …``, ``on the following scale:
  Very uncertain, …``.

Local evidence wins. A global declaration covers a response only when the response has the same
*shape* as the declared options (one letter, an integer, or other text): a session that declares
its keys once and later asks a numeric question must not hand that question the key set. The shape
test looks at the form of the response, never at whether its value is among the options.

Where nothing fits, the set is ``None`` (unknown), never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from psych201.data.records import ResponseSpan, Session

OPEN = "<<"
CLOSE = ">>"

#: Numeric scales wider than this are not turned into option sets (they are not "options").
MAX_SCALE_SIZE = 1001

# A single uppercase letter that is a word of its own, optionally quoted ('S' or the typo S').
_LETTER = r"""['"‘’]?(?<![A-Za-z])[A-Z](?![A-Za-z])['"‘’]?"""
_LETTER_LIST = rf"{_LETTER}(?:\s*,\s*{_LETTER})*\s*,?\s+(?:and|or)\s+{_LETTER}"
_LETTER_IN = re.compile(r"(?<![A-Za-z])[A-Z](?![A-Za-z])")

# Global declarations.
_CUED_LETTERS = re.compile(
    rf"\b(?:options?|names?|buttons?|keys?|labels?|label(?:l)?ed)\b\s*(?:are|is)?\s*:?\s*"
    rf"(?P<list>{_LETTER_LIST})"
)
_PRESS_KEY = re.compile(
    r"(?i:\bpress(?:ing)?)\s+(?:(?i:the)\s+)?['\"‘’]?(?P<k>[A-Z])['\"‘’]?(?![A-Za-z])"
)
_SELECT_KEY = re.compile(
    r"(?i:\bselect(?:ing)?)\s+(?i:label|key|button)\s+['\"‘’]?(?P<k>[A-Z])['\"‘’]?(?![A-Za-z])"
)
_KEY_TO = re.compile(r",\s*(?:or\s+)?['\"‘’]?(?P<k>[A-Z])['\"‘’]?\s+to\b")
_WORD_KEYS = re.compile(r"(?i:\bpress):\s*(?P<rest>[^\n]*)")
_WORD_FOR = re.compile(r"^(?:and\s+|or\s+)?(?P<w>\w+)\s+for\b")
_NAMED_SCALE = re.compile(r"(?i:following scale):\s*(?P<items>[^.\n]+)")
_RELATION_ROW = re.compile(r"(?m)^(?P<t>word[12]\b[^\t\n]*?\bword[12])\t")
_CONTRIBUTE_RANGE = re.compile(
    r"contribute any integer amount from (?P<lo>\d+) up to your entire endowment of "
    r"(?P<hi>\d+) coins"
)
_CONTRIBUTE_ALL = re.compile(r"either contribute all of your (?P<n>\d+) coins or nothing")

# Local evidence.
_LABELLED_LINE = re.compile(r"(?m)^[ \t]*(?P<k>[A-Z])[:.)][ \t]+\S")
_NAMED_LINE = re.compile(r"(?m)^[ \t]*(?P<word>[A-Z][a-z]+)[ \t]+(?P<k>[A-Z]):")
_PAREN_KEY = re.compile(r"\((?P<k>[A-Z])\)")
_SCALE = re.compile(r"(?i:\bscale\s+(?:from|of))\s+(?P<lo>-?\d+)\s+to\s+(?P<hi>-?\d+)")
_HOW_MANY = re.compile(
    r"(?i:\bhow many of the)\s+(?P<n>\d+)\s+(?:\w+\s+){0,3}?(?i:questions|problems|items)\b"
)
_PERCENTILE = re.compile(r"(?i:\bbetter than)\s+\d+%\s+of\b")
_QUOTED_BUTTON = re.compile(r"(?i:\bclicking)\s+(?:(?i:on)\s+)?(?:the button\s+)?\"(?P<b>[^\"]+)\"")
_RELATION_QUESTION = re.compile(r"What does \"(?P<w1>[^\s\"]+) (?P<w2>[^\s\"]+)\" mean\?")
_CONTRIBUTION_STAGE = "Decide how much to contribute"


@dataclass(frozen=True)
class _Declaration:
    """A global option declaration: valid for responses that open after ``end``."""

    end: int
    options: frozenset[str]


@dataclass(frozen=True)
class _Instructions:
    """Study-wide facts that local rules need (read once from the whole masked text)."""

    relation_templates: tuple[str, ...]
    contribution_options: frozenset[str] | None


def response_options(session: Session) -> list[frozenset[str] | None]:
    """The option set offered for each response of ``session`` (``None`` where unknown).

    One entry per ``session.responses`` item, in the same order. Call it on the original session
    (not on a rewritten variant); pair results with spans of any condition through
    ``ResponseSpan.index``.
    """
    return options_for_text(session.text, session.responses)


def options_for_text(text: str, responses: Sequence[ResponseSpan]) -> list[frozenset[str] | None]:
    """:func:`response_options` for a raw text and its parsed responses."""
    masked = mask_responses(text, responses)
    declarations = sorted(_global_declarations(masked), key=lambda d: d.end)
    instructions = _read_instructions(masked)
    result: list[frozenset[str] | None] = []
    previous_end = 0
    next_declaration = 0
    current: frozenset[str] | None = None
    for span in responses:
        opening = span.start - len(OPEN)
        while next_declaration < len(declarations) and declarations[next_declaration].end <= (
            opening
        ):
            current = declarations[next_declaration].options
            next_declaration += 1
        options = _local_options(masked[previous_end:opening], instructions)
        if options is None and current is not None and _same_shape(span.text, current):
            options = current
        result.append(options)
        previous_end = span.end + len(CLOSE)
    return result


def mask_responses(text: str, responses: Sequence[ResponseSpan]) -> str:
    """``text`` with every response's content blanked out (offsets unchanged).

    Rules must read what the participant was shown, never what they answered.
    """
    pieces: list[str] = []
    pos = 0
    for span in responses:
        pieces.append(text[pos : span.start])
        pieces.append(" " * (span.end - span.start))
        pos = span.end
    pieces.append(text[pos:])
    return "".join(pieces)


# --- global declarations -------------------------------------------------------------------


def _global_declarations(masked: str) -> Iterator[_Declaration]:
    for match in _CUED_LETTERS.finditer(masked):
        letters = frozenset(_LETTER_IN.findall(match.group("list")))
        if len(letters) >= 2:
            yield _Declaration(match.end(), letters)
    offset = 0
    for line in masked.split("\n"):
        yield from _line_declarations(line, offset)
        offset += len(line) + 1
    for match in _NAMED_SCALE.finditer(masked):
        items = frozenset(i.strip() for i in match.group("items").split(",") if i.strip())
        if len(items) >= 2:
            yield _Declaration(match.end(), items)


def _line_declarations(line: str, offset: int) -> Iterator[_Declaration]:
    """Key assignments stated within one line (``press the C key … press the W key``)."""
    if OPEN in line:
        # A trial line ("You press <<K>>") states what was done, not what could be done; the
        # only declarations that share a line with a response are the instructions before it.
        line = line[: line.index(OPEN)]
    press = list(_PRESS_KEY.finditer(line))
    keys = [m.group("k") for m in press]
    keys += [m.group("k") for m in _SELECT_KEY.finditer(line)]
    if press:
        keys += [m.group("k") for m in _KEY_TO.finditer(line, press[0].end())]
    if len(set(keys)) >= 2:
        yield _Declaration(offset + len(line), frozenset(keys))
    for match in _WORD_KEYS.finditer(line):
        words = [
            w.group("w")
            for part in match.group("rest").split(",")
            if (w := _WORD_FOR.match(part.strip()))
        ]
        if len(set(words)) >= 2:
            yield _Declaration(offset + match.end(), frozenset(words))


def _read_instructions(masked: str) -> _Instructions:
    templates = tuple(dict.fromkeys(m.group("t") for m in _RELATION_ROW.finditer(masked)))
    contribution: frozenset[str] | None = None
    if m := _CONTRIBUTE_RANGE.search(masked):
        contribution = _coin_options(range(int(m.group("lo")), int(m.group("hi")) + 1))
    elif m := _CONTRIBUTE_ALL.search(masked):
        contribution = _coin_options((0, int(m.group("n"))))
    if contribution is not None and len(contribution) < 2:
        contribution = None  # a single possible answer is not a choice
    return _Instructions(templates, contribution)


def _coin_options(amounts: Sequence[int] | range) -> frozenset[str]:
    # The transcripts write "1 coin" but "0 coins", "2 coins", ...
    return frozenset(f"{n} coin" if n == 1 else f"{n} coins" for n in amounts)


# --- local evidence ------------------------------------------------------------------------


def _local_options(segment: str, instructions: _Instructions) -> frozenset[str] | None:
    """Options stated in the trial text right before a response, most specific rule first."""
    for rule in (_labelled_block, _named_lines, _paren_keys):
        options = rule(segment)
        if options is not None:
            return options
    if instructions.relation_templates and (
        question := _last(_RELATION_QUESTION.finditer(segment))
    ):
        w1, w2 = question.group("w1"), question.group("w2")
        return frozenset(
            re.sub(r"word[12]", lambda m: w1 if m.group() == "word1" else w2, t)
            for t in instructions.relation_templates
        )
    if instructions.contribution_options is not None and _CONTRIBUTION_STAGE in segment:
        return instructions.contribution_options
    return _numeric_options(segment) or _quoted_buttons(segment)


def _labelled_block(segment: str) -> frozenset[str] | None:
    """The last run of consecutive ``X: …`` lines (at least two distinct letters)."""
    blocks: list[list[str]] = []
    last_line_end = -2
    for match in _LABELLED_LINE.finditer(segment):
        line_start = match.start()
        # Consecutive means: this line starts right after the previous matched line ends.
        if blocks and segment.rfind("\n", 0, line_start) == last_line_end:
            blocks[-1].append(match.group("k"))
        else:
            blocks.append([match.group("k")])
        newline = segment.find("\n", match.end())
        last_line_end = newline if newline >= 0 else len(segment)
    for keys in reversed(blocks):
        if len(set(keys)) >= 2:
            return frozenset(keys)
    return None


def _named_lines(segment: str) -> frozenset[str] | None:
    """``Lottery A: …`` / ``Lottery B: …`` lines naming the alternatives of this trial."""
    by_word: dict[str, list[str]] = {}
    for match in _NAMED_LINE.finditer(segment):
        by_word.setdefault(match.group("word"), []).append(match.group("k"))
    candidates = [set(keys) for keys in by_word.values() if len(set(keys)) >= 2]
    return frozenset(candidates[-1]) if candidates else None


def _paren_keys(segment: str) -> frozenset[str] | None:
    keys = {m.group("k") for m in _PAREN_KEY.finditer(segment)}
    return frozenset(keys) if len(keys) >= 2 else None


def _numeric_options(segment: str) -> frozenset[str] | None:
    """Integer answers of a stated range: a scale, "how many of the N", a percentile."""
    lo = hi = None
    if scale := _last(_SCALE.finditer(segment)):
        lo, hi = int(scale.group("lo")), int(scale.group("hi"))
    elif how_many := _last(_HOW_MANY.finditer(segment)):
        lo, hi = 0, int(how_many.group("n"))
    elif _PERCENTILE.search(segment):
        lo, hi = 0, 100
    if lo is None or hi is None or not 0 < hi - lo < MAX_SCALE_SIZE:
        return None
    return frozenset(str(v) for v in range(lo, hi + 1))


def _quoted_buttons(segment: str) -> frozenset[str] | None:
    buttons = {m.group("b") for m in _QUOTED_BUTTON.finditer(segment)}
    return frozenset(buttons) if len(buttons) >= 2 else None


def _last(matches: Iterator[re.Match[str]]) -> re.Match[str] | None:
    found = None
    for found in matches:  # noqa: B007 - keep the last one
        pass
    return found


# --- shape guard ---------------------------------------------------------------------------


def _shape(value: str) -> str:
    if len(value) == 1 and value.isalpha():
        return "letter"
    if re.fullmatch(r"-?\d+", value):
        return "integer"
    return "text"


def _same_shape(response: str, options: frozenset[str]) -> bool:
    return _shape(response) in {_shape(o) for o in options}
