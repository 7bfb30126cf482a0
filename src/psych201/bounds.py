"""The range of every numeric option, in one place: CLI flags and study files check against it.

An unbounded count is a denial of service waiting for a typo (``--n-boot 999999999999`` asked
for 7 TiB; ``simulate -n 999999999999`` grew until killed), so each count, budget and seed has a
closed range here. The CLI passes :func:`option_range` to ``typer.Option`` (click refuses a value
outside with exit 2 before the command runs); library records (``ScoreConfig``, study files) call
:func:`check_bound`, which raises :class:`BoundError` (a usage error, exit 2) naming the option.

The limits are far above any real use (the paper: 10 000 bootstrap replicates, a few thousand
participants per study, 8 192-token batches) and far below what exhausts a machine.

This module imports nothing from psych201 but :mod:`psych201.errors`: every layer may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psych201.errors import UsageError


class BoundError(UsageError):
    """A numeric option outside its range (the message names the option and the range)."""


@dataclass(frozen=True)
class Bound:
    """The closed range ``low..high`` of one option, and the flag that names it in messages."""

    flag: str
    low: int | float
    high: int | float

    def contains(self, value: int | float) -> bool:
        return self.low <= value <= self.high


#: Seeds: numpy's legacy generators and torch both take any value in 0..2**32-1.
_SEED_MAX = 2**32 - 1

#: Every bounded numeric option, by the name its record field has.
BOUNDS: dict[str, Bound] = {
    # Bootstrap replicates of compare/report (memory grows with replicates x studies).
    "n_boot": Bound("--n-boot", 100, 1_000_000),
    # Simulated participants and trials (``psych201 simulate``): memory grows with their product.
    "participants": Bound("--participants", 1, 100_000),
    "trials": Bound("--trials", 1, 100_000),
    # Scoring (``score``, study files).
    "limit": Bound("--limit", 1, 1_000_000_000),
    "batch_tokens": Bound("--batch-tokens", 1, 2**24),
    "max_tokens": Bound("--max-tokens", 1, 2**24),
    "window_overlap": Bound("--window-overlap", 0, 2**24),
    "part_size": Bound("--part-size", 1, 1_000_000),
    "part_chars": Bound("part_chars", 1, 10**12),
    "seed": Bound("--seed", 0, _SEED_MAX),
    # GPUs a study file gives one model (``gpus:``).
    "gpus": Bound("gpus", 1, 1024),
    # torch CPU threads (``posttrain``): torch refuses more than a C int.
    "threads": Bound("--threads", 1, 4096),
    # The longest JSONL line read (``data`` commands), in MiB: a line is held in memory whole.
    "max_line_mb": Bound("--max-line-mb", 0.001, 65_536),
}


def low_high(name: str) -> tuple[int | float, int | float]:
    """The range of ``name`` as ``(low, high)``, for pydantic ``Field(ge=, le=)`` and messages."""
    bound = BOUNDS[name]
    return bound.low, bound.high


def option_range(name: str) -> dict[str, int | float]:
    """``min``/``max`` keyword arguments for ``typer.Option`` of the option ``name``."""
    bound = BOUNDS[name]
    return {"min": bound.low, "max": bound.high}


def check_bound(name: str, value: Any, *, flag: str | None = None) -> None:
    """Raise :class:`BoundError` unless ``value`` is an integer in the range of ``name``.

    ``flag`` names the option in the message when it is not the CLI flag (e.g. a study file key).
    A float (``1e26`` in YAML) or a bool is refused too for a count (an integer range); a float
    range refuses NaN and infinities.
    """
    bound = BOUNDS[name]
    shown = flag or bound.flag
    counts = isinstance(bound.low, int) and isinstance(bound.high, int)
    if isinstance(value, bool) or not isinstance(value, int if counts else int | float):
        raise BoundError(f"{shown} must be a {'whole ' if counts else ''}number, got {value!r}")
    if value != value:  # NaN compares false with every bound
        raise BoundError(f"{shown} must be a number, got {value!r}")
    if value < bound.low:
        raise BoundError(f"{shown} must be at least {bound.low}, got {value}")
    if value > bound.high:
        raise BoundError(f"{shown} must be at most {bound.high}, got {value}")


def read_bounded(path: Path, limit: int, error: type[Exception], *, kind: str) -> bytes:
    """The bytes of the file ``path``, refused when over ``limit`` bytes: at most ``limit + 1``
    are read, so a huge file or ``/dev/zero`` never fills memory. An unreadable or too large
    file raises ``error`` with one line naming the file and the ``kind`` of file expected."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read the {kind} ({exc.strerror or exc})") from exc
    if len(data) > limit:
        raise error(f"{path}: the {kind} is larger than {limit / 2**20:g} MiB")
    return data
