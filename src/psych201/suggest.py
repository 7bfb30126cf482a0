""""Did you mean …?" for names a user typed: studies, models, options.

Close spellings come from :func:`difflib.get_close_matches`; options also have synonyms a user
may reach for (``--n-participants`` for ``--limit``), which no spelling distance finds.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: Option names users try, and the option that does it (suggested only where the command has it).
OPTION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "--limit": ("--n-participants", "--participants", "--n", "--max-participants",
                "--num-participants", "--n-subjects", "--subjects", "--max-sessions"),
    "--out": ("--output", "--output-dir", "--outdir", "--out-dir", "--run-dir", "--dest"),
    "--data": ("--dataset", "--data-dir", "--input", "--path"),
    "--studies": ("--study", "--experiments", "--experiment", "--task", "--tasks"),
    "--model": ("--models", "--checkpoint", "--model-name"),
    "--split": ("--subset", "--set"),
}


def close_matches(word: str, choices: Iterable[str], *, n: int = 3) -> list[str]:
    """The ``n`` choices spelt most like ``word`` (case-insensitive), best first."""
    options = list(dict.fromkeys(choices))
    lowered = {c.lower(): c for c in options}
    found = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.6)
    # A prefix (``frey2017`` for ``frey2017lotteries``) is as good a hint as a close spelling.
    found += [c for c in lowered if c.startswith(word.lower()) and c not in found]
    return [lowered[c] for c in found[:n]]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean X?"`` (or ``X or Y``), or ``""`` when nothing is close."""
    found = close_matches(word, choices)
    return f"; did you mean {' or '.join(found)}?" if found else ""


def option_for(typed: str, options: Iterable[str]) -> str | None:
    """The option of ``options`` that ``typed`` means: a synonym first, else a close spelling."""
    known = set(options)
    for option, synonyms in OPTION_SYNONYMS.items():
        if typed in synonyms and option in known:
            return option
    found = close_matches(typed, known, n=1)
    return found[0] if found else None
