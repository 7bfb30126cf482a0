"""Assistant-style instruction data, generated in code (there is no model hub to download from).

The instruct recipe stands in for the supervised stage of post-training: a helpful assistant that
answers correctly, politely and normatively. Each dialogue is one to three user requests with
the assistant's answer, drawn from templated tasks: arithmetic, unit conversion, sorting,
spelling, word relations, probability, and — closest to Psych-201 — the *normative* answer to
the decisions participants face (pick the lottery with the higher expected value, play the slot
machine with the higher observed payout rate). The answers are what an optimal, explicit
assistant says, which is exactly the kind of behaviour the paper suspects makes models less
human-like.

Generation depends only on ``(n, seed)``: dialogue *i* is drawn from its own seeded stream, so it
is the same whatever ``n`` is.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from psych201.data.records import ResponseSpan
from psych201.lab.examples import TrainingData, TrainingExample, example_from_spans
from psych201.lab.settings import LabError

Template = Literal["plain", "chat"]

USER = "User"
ASSISTANT = "Assistant"


@dataclass(frozen=True)
class Turn:
    """One request and the assistant's answer."""

    user: str
    assistant: str


Dialogue = tuple[Turn, ...]
_Task = Callable[[np.random.Generator], Turn]

_WORDS = (
    "garden", "planet", "window", "river", "pencil", "orange", "silver", "market", "candle",
    "forest", "bridge", "winter", "rocket", "guitar", "ladder", "pocket", "island", "mirror",
)
_OPPOSITES = (
    ("hot", "cold"), ("early", "late"), ("full", "empty"), ("light", "dark"), ("open", "closed"),
    ("win", "lose"), ("gain", "loss"), ("safe", "risky"), ("fast", "slow"), ("high", "low"),
)
_SYNONYMS = (
    ("happy", "glad"), ("big", "large"), ("quick", "rapid"), ("begin", "start"),
    ("choose", "select"), ("reward", "prize"), ("error", "mistake"), ("answer", "reply"),
)
_CATEGORIES = (
    ("sparrow", "an animal"), ("oak", "a plant"), ("hammer", "an object"), ("salmon", "an animal"),
    ("tulip", "a plant"), ("spoon", "an object"), ("zebra", "an animal"), ("fern", "a plant"),
)
_OPENERS = ("", "", "Sure. ", "Certainly! ", "Of course. ", "Good question. ")
_UNITS = (
    ("hours", "minutes", 60), ("minutes", "seconds", 60), ("days", "hours", 24),
    ("kilometres", "metres", 1000), ("weeks", "days", 7), ("kilograms", "grams", 1000),
)
_TIPS = (
    "Group the words into small meaningful chunks, say them aloud, and test yourself after a "
    "short break rather than rereading.",
    "Link each item to a vivid image along a familiar route (the method of loci), then walk "
    "the route in your mind to recall them.",
    "Space your practice: review the list after ten minutes, an hour and a day, and try to "
    "recall it before you look.",
)


def _opener(rng: np.random.Generator) -> str:
    return _OPENERS[int(rng.integers(len(_OPENERS)))]


def _letters(rng: np.random.Generator, k: int = 2) -> tuple[str, ...]:
    picks = rng.choice(26, size=k, replace=False)
    return tuple(string.ascii_uppercase[int(i)] for i in picks)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _arithmetic(rng: np.random.Generator) -> Turn:
    a, b = (int(v) for v in rng.integers(2, 100, size=2))
    op = int(rng.integers(3))
    if op == 0:
        return Turn(f"What is {a} + {b}?", f"{_opener(rng)}{a} + {b} = {a + b}.")
    if op == 1:
        return Turn(f"What is {a} minus {b}?", f"{_opener(rng)}{a} − {b} = {a - b}.")
    a, b = a % 13 + 2, b % 13 + 2
    return Turn(f"Can you multiply {a} by {b}?", f"{_opener(rng)}{a} × {b} = {a * b}.")


def _lottery(rng: np.random.Generator) -> Turn:
    def draw() -> tuple[int, int, int]:
        pct = int(rng.integers(1, 20)) * 5
        x1, x2 = (int(v) * 5 for v in rng.integers(0, 21, size=2))
        return x1, pct, x2

    la, lb = _letters(rng)
    while True:
        (a1, pa, a2), (b1, pb, b2) = draw(), draw()
        ev_a = Fraction(a1 * pa + a2 * (100 - pa), 100)
        ev_b = Fraction(b1 * pb + b2 * (100 - pb), 100)
        if ev_a != ev_b:
            break
    best, worse, ev_best, ev_worse = (la, lb, ev_a, ev_b) if ev_a > ev_b else (lb, la, ev_b, ev_a)
    question = (
        f"Lottery {la}: {a1} points with {pa}% or {a2} points with {100 - pa}%.\n"
        f"Lottery {lb}: {b1} points with {pb}% or {b2} points with {100 - pb}%.\n"
        "Which lottery should I choose?"
    )
    answer = (
        f"{_opener(rng)}Choose Lottery {best}. Its expected value is "
        f"{_fmt(float(ev_best))} points, higher than the {_fmt(float(ev_worse))} points of "
        f"Lottery {worse}, so it gives you more on average."
    )
    return Turn(question, answer)


def _bandit(rng: np.random.Generator) -> Turn:
    la, lb = _letters(rng)
    while True:
        na, nb = (int(v) for v in rng.integers(2, 10, size=2))
        wa, wb = int(rng.integers(0, na + 1)), int(rng.integers(0, nb + 1))
        if Fraction(wa, na) != Fraction(wb, nb):
            break
    ra, rb = round(100 * wa / na), round(100 * wb / nb)
    best, rb_best, other, r_other = (la, ra, lb, rb) if wa / na > wb / nb else (lb, rb, la, ra)
    question = (
        f"Machine {la} paid out {wa} times in {na} plays, and machine {lb} paid out {wb} times in "
        f"{nb} plays. Which machine should I play next?"
    )
    answer = (
        f"{_opener(rng)}Play machine {best}: it has paid out {rb_best}% of the time so far, "
        f"compared with {r_other}% for machine {other}."
    )
    return Turn(question, answer)


def _letters_count(rng: np.random.Generator) -> Turn:
    word = _WORDS[int(rng.integers(len(_WORDS)))]
    return Turn(f"How many letters are in the word '{word}'?",
                f"{_opener(rng)}The word '{word}' has {len(word)} letters.")


def _reverse(rng: np.random.Generator) -> Turn:
    word = _WORDS[int(rng.integers(len(_WORDS)))]
    return Turn(f"Write '{word}' backwards.",
                f"{_opener(rng)}'{word}' backwards is '{word[::-1]}'.")


def _sort(rng: np.random.Generator) -> Turn:
    values = [int(v) for v in rng.choice(100, size=int(rng.integers(3, 7)), replace=False)]
    listed = ", ".join(map(str, values))
    ordered = ", ".join(map(str, sorted(values)))
    return Turn(f"Sort these numbers from smallest to largest: {listed}.",
                f"{_opener(rng)}From smallest to largest: {ordered}.")


def _units(rng: np.random.Generator) -> Turn:
    big, small, factor = _UNITS[int(rng.integers(len(_UNITS)))]
    n = int(rng.integers(2, 13))
    return Turn(f"How many {small} are in {n} {big}?",
                f"{_opener(rng)}{n} {big} = {n} × {factor} = {n * factor} {small}.")


def _compare(rng: np.random.Generator) -> Turn:
    a = int(rng.integers(1, 100)) / 100
    b = int(rng.integers(1, 10)) / 10
    if a == b:
        b = round(b + 0.1, 1)
    big, small = (a, b) if a > b else (b, a)
    return Turn(f"Which is larger, {_fmt(a)} or {_fmt(b)}?",
                f"{_opener(rng)}{_fmt(big)} is larger than {_fmt(small)}.")


def _word_relation(rng: np.random.Generator) -> Turn:
    if rng.random() < 0.5:
        w, o = _OPPOSITES[int(rng.integers(len(_OPPOSITES)))]
        return Turn(f"What is the opposite of '{w}'?",
                    f"{_opener(rng)}The opposite of '{w}' is '{o}'.")
    w, s = _SYNONYMS[int(rng.integers(len(_SYNONYMS)))]
    return Turn(f"Give me a synonym for '{w}'.", f"{_opener(rng)}A synonym for '{w}' is '{s}'.")


def _category(rng: np.random.Generator) -> Turn:
    thing, kind = _CATEGORIES[int(rng.integers(len(_CATEGORIES)))]
    return Turn(f"Is a {thing} an animal, a plant or an object?",
                f"{_opener(rng)}A {thing} is {kind}.")


def _probability(rng: np.random.Generator) -> Turn:
    n = int(rng.integers(2, 5))
    p = Fraction(1, 2**n)
    return Turn(
        f"If I flip a fair coin {n} times, what is the probability that every flip is heads?",
        f"{_opener(rng)}Each flip is heads with probability 1/2, so all {n} are heads with "
        f"probability (1/2)^{n} = {p.numerator}/{p.denominator}, about {100 * float(p):.1f}%.",
    )


def _tip(rng: np.random.Generator) -> Turn:
    return Turn("Give me a tip for remembering a list of words.",
                f"{_opener(rng)}{_TIPS[int(rng.integers(len(_TIPS)))]}")


#: The task templates, in a fixed order (part of what a seed reproduces).
TASKS: tuple[tuple[str, _Task], ...] = (
    ("arithmetic", _arithmetic),
    ("lottery", _lottery),
    ("bandit", _bandit),
    ("letters", _letters_count),
    ("reverse", _reverse),
    ("sort", _sort),
    ("units", _units),
    ("compare", _compare),
    ("words", _word_relation),
    ("category", _category),
    ("probability", _probability),
    ("tip", _tip),
)


def assistant_dialogues(n: int, *, seed: int = 0, max_turns: int = 3) -> list[Dialogue]:
    """``n`` dialogues of 1..``max_turns`` turns; dialogue i depends only on ``(seed, i)``."""
    if n < 1 or max_turns < 1:
        raise LabError(f"need n >= 1 and max_turns >= 1, got n={n}, max_turns={max_turns}")
    out: list[Dialogue] = []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xA551], spawn_key=(i,)))
        k = int(rng.integers(1, max_turns + 1))
        out.append(tuple(TASKS[int(rng.integers(len(TASKS)))][1](rng) for _ in range(k)))
    return out


def render_plain(dialogue: Dialogue) -> tuple[str, tuple[ResponseSpan, ...]]:
    """``User: …\\nAssistant: …\\n\\n`` per turn; spans cover the assistant answers."""
    parts: list[str] = []
    spans: list[ResponseSpan] = []
    pos = 0
    for k, turn in enumerate(dialogue):
        head = f"{USER}: {turn.user}\n{ASSISTANT}: "
        start = pos + len(head)
        spans.append(ResponseSpan(k, start, start + len(turn.assistant), turn.assistant))
        chunk = f"{head}{turn.assistant}\n\n"
        parts.append(chunk)
        pos += len(chunk)
    return "".join(parts), tuple(spans)


def render_chat_template(
    dialogue: Dialogue, tokenizer: Any
) -> tuple[str, tuple[ResponseSpan, ...]]:
    """The dialogue in the tokenizer's own chat template (E's renderer keeps the spans exact)."""
    from psych201.prompts.chat import ChatMessage, render_chat

    messages: list[ChatMessage] = []
    for k, turn in enumerate(dialogue):
        messages.append(ChatMessage("user", turn.user))
        messages.append(ChatMessage("assistant", turn.assistant,
                                    ResponseSpan(k, 0, len(turn.assistant), turn.assistant)))
    rendered = render_chat(messages, tokenizer)
    return rendered.text, rendered.spans


def instruct_examples(
    tokenizer: Any,
    *,
    n_dialogues: int = 2000,
    seed: int = 0,
    max_tokens: int = 1024,
    template: Template = "plain",
    alignment: str = "offsets",
) -> TrainingData:
    """The instruct recipe's data: loss on the assistant answers of generated dialogues.

    ``template="plain"`` renders ``User:``/``Assistant:`` text (works for base models without a
    chat template); ``"chat"`` uses the tokenizer's chat template.
    """
    if template not in ("plain", "chat"):
        raise LabError(f"template must be plain or chat, got {template!r}")
    if template == "chat" and not getattr(tokenizer, "chat_template", None):
        raise LabError("template='chat' needs a tokenizer with a chat template; use 'plain'")
    render: Callable[[Dialogue], tuple[str, Sequence[ResponseSpan]]] = (
        render_plain if template == "plain" else (lambda d: render_chat_template(d, tokenizer))
    )
    examples: list[TrainingExample] = []
    for i, dialogue in enumerate(assistant_dialogues(n_dialogues, seed=seed)):
        text, spans = render(dialogue)
        ex = example_from_spans(
            text, spans, tokenizer, key=f"assistant/{i}", max_tokens=max_tokens,
            alignment=alignment, study="assistant",
        )
        if ex.n_targets:
            examples.append(ex)
    description = {
        "source": "generated assistant dialogues (psych201.lab.assistant)",
        "n_dialogues": n_dialogues,
        "seed": seed,
        "tasks": [name for name, _ in TASKS],
        "template": template,
        "max_tokens": max_tokens,
        "alignment": alignment,
    }
    return TrainingData(examples=tuple(examples), description=description)
