"""What every simulated participant shares: seeding, demographics, option letters, the record.

A generator (one module per task) turns a seeded random stream and a participant's demographics
into a :class:`SimulatedSession`: the transcript, the true parameters, and the generating model's
exact log-probability of each response. :func:`make_record` wraps that into one Psych-201 JSONL
record.

Reproducibility: every participant gets its own stream, derived from ``(seed, kind, index)`` with
:class:`numpy.random.SeedSequence`, so participant *i* is the same whatever ``n_participants`` is
and however many trials are asked for (parameters and demographics are drawn before any trial).
Probabilities are computed with Python's scalar :mod:`math` functions rather than numpy's
vectorised (SIMD, CPU-dependent) kernels, and true parameters are rounded to four decimals
*before* they are used, so the stored parameters are exactly the ones that generated the data.
"""

from __future__ import annotations

import math
import string
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Genders drawn for simulated participants, with their probabilities.
_GENDERS: tuple[str, ...] = ("female", "male", "other")
_GENDER_P: tuple[float, ...] = (0.49, 0.49, 0.02)
_AGE_RANGE = (18, 75)  # inclusive


@dataclass(frozen=True)
class Demographics:
    """What a persona condition can read about a simulated participant."""

    age: int
    gender: str


@dataclass(frozen=True)
class SimulatedSession:
    """One generated session, before it becomes a JSONL record.

    ``loglik[k]`` is the natural-log probability the generating model gave response ``k``
    (the k-th ``<<…>>`` in ``text``); ``n_options[k]`` how many options it chose among.
    ``params`` maps parameter names (without the ``param_`` prefix) to the values used.
    """

    text: str
    params: dict[str, float]
    loglik: tuple[float, ...]
    n_options: tuple[int, ...]

    def __post_init__(self) -> None:
        n_open, n_close = self.text.count("<<"), self.text.count(">>")
        if not (n_open == n_close == len(self.loglik) == len(self.n_options)):
            raise ValueError(
                f"simulated session is inconsistent: {n_open} '<<', {n_close} '>>', "
                f"{len(self.loglik)} log-likelihoods, {len(self.n_options)} option counts"
            )
        bad = [v for v in self.loglik if not (math.isfinite(v) and v <= 0.0)]
        if bad:
            raise ValueError(f"log-likelihoods must be finite and <= 0, got {bad[:3]}")


def participant_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    """The random stream of participant ``index`` of a ``kind`` study simulated with ``seed``.

    The kind enters through a CRC32 (stable across Python runs, unlike ``hash``), so two kinds
    simulated with the same seed do not share demographics or parameters.
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    entropy = [seed, zlib.crc32(kind.encode("utf-8"))]
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(index,)))


def draw_demographics(rng: np.random.Generator) -> Demographics:
    age = int(rng.integers(_AGE_RANGE[0], _AGE_RANGE[1] + 1))
    gender = _GENDERS[int(rng.choice(len(_GENDERS), p=_GENDER_P))]
    return Demographics(age=age, gender=gender)


def option_letters(rng: np.random.Generator, k: int = 2) -> tuple[str, ...]:
    """``k`` distinct random uppercase letters, as the real studies label options per person."""
    picks = rng.choice(26, size=k, replace=False)
    return tuple(string.ascii_uppercase[int(i)] for i in picks)


def rounded(x: float, digits: int = 4) -> float:
    """A parameter as it is stored and used: rounded, so the record states it exactly."""
    return round(float(x), digits)


def log_sigmoid(x: float) -> float:
    """``log(1 / (1 + exp(-x)))`` without overflow or loss of precision in either tail."""
    if x >= 0:
        return -math.log1p(math.exp(-x))
    return x - math.log1p(math.exp(x))


def choose_binary(
    rng: np.random.Generator, logp_first: float, logp_second: float
) -> tuple[int, float]:
    """Sample one of two options; return (0 or 1, the log-probability of the chosen one).

    Both log-probabilities are passed in, each computed directly by the model (e.g.
    ``log_sigmoid(x)`` and ``log_sigmoid(-x)``), because ``log(1 - p)`` recomputed from ``p``
    loses precision in the tails, and the stored value must be the model's exact one.
    """
    if abs(math.exp(logp_first) + math.exp(logp_second) - 1.0) > 1e-9:
        raise ValueError(f"probabilities do not sum to 1: {logp_first!r}, {logp_second!r}")
    if float(rng.random()) < math.exp(logp_first):
        return 0, logp_first
    return 1, logp_second


def make_record(
    *,
    kind: str,
    experiment: str,
    participant: str,
    demographics: Demographics,
    session: SimulatedSession,
) -> dict[str, Any]:
    """One Psych-201 JSONL record; keys in a fixed order so files are byte-reproducible."""
    record: dict[str, Any] = {
        "text": session.text,
        "experiment": experiment,
        "participant": participant,
        "age": demographics.age,
        "gender": demographics.gender,
        "simulator": kind,
    }
    for name, value in session.params.items():
        record[f"param_{name}"] = value
    record["loglik"] = list(session.loglik)
    record["n_options"] = list(session.n_options)
    return record
