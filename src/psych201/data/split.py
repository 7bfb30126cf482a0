"""The paper's test split: at most 10 % and at most 100 participants per study, seeded.

The authors shuffle the whole dataset without a seed, number the participants of each study
0, 1, 2, … in shuffled order, and put those numbered below ``min(floor(0.1 n), 100)`` in the test
set (``n`` counts every line of the study); afterwards lines without any ``<<`` are dropped from
both sides. We do the same with a recorded seed: per study, the keys are sorted (experiment,
participant, line — independent of file order and platform), permuted by
``numpy.random.default_rng([seed, study hash])`` and the first ``max_eval`` are test participants.
Seeding per study keeps a study's split unchanged when other studies are added or removed.

Psych-101 studies are different in the paper (only Psych-101's own test participants qualify);
they are not part of Psych-201's folders, so the rule is not needed here.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from psych201.data.issues import IssueLog, OnError
from psych201.data.readers import iter_sessions
from psych201.data.records import Session, SessionKey

#: Share and cap of test participants per study (the paper's ``max_eval``).
TEST_SHARE_DENOMINATOR = 10
TEST_CAP = 100

Split = Literal["test", "train", "all"]


def max_eval(n_participants: int) -> int:
    """``min(floor(0.1 n), 100)``, computed exactly in integers."""
    return min(n_participants // TEST_SHARE_DENOMINATOR, TEST_CAP)


def study_seed(seed: int, study: str) -> list[int]:
    """The entropy for one study's shuffle: the run seed plus a stable hash of the study id."""
    digest = hashlib.sha256(study.encode("utf-8")).digest()
    return [seed, int.from_bytes(digest[:8], "little")]


def test_participants(keys: Iterable[SessionKey], *, seed: int = 0) -> frozenset[SessionKey]:
    """The test participants among ``keys``: per study ``max_eval(n)`` of them, chosen by seed.

    The same keys and seed give the same set on any machine and in any input order.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    by_study: dict[str, list[SessionKey]] = defaultdict(list)
    for key in keys:
        by_study[key.study].append(key)
    chosen: list[SessionKey] = []
    for study, study_keys in by_study.items():
        ordered = sorted(set(study_keys), key=lambda k: (k.experiment, k.participant, k.line))
        rng = np.random.default_rng(study_seed(seed, study))
        order = rng.permutation(len(ordered))
        chosen.extend(ordered[int(i)] for i in order[: max_eval(len(ordered))])
    return frozenset(chosen)


# Not a pytest test, whatever its name says, wherever it is imported.
test_participants.__test__ = False  # type: ignore[attr-defined]


def iter_split(
    path: str | Path,
    split: Split,
    *,
    seed: int = 0,
    on_error: OnError = "fail",
    log: IssueLog | None = None,
) -> Iterator[Session]:
    """Stream the sessions of one split; sessions without any response are dropped.

    Two streaming passes: the first collects the keys (to draw the test set), the second yields
    the sessions. Issues are recorded in ``log`` once, from the second pass.
    """
    if split not in ("test", "train", "all"):
        raise ValueError(f"split must be 'test', 'train' or 'all', got {split!r}")
    test = (
        frozenset()
        if split == "all"
        else test_participants(
            (s.key for s in iter_sessions(path, on_error=on_error, log=IssueLog(log_first=0))),
            seed=seed,
        )
    )
    for session in iter_sessions(path, on_error=on_error, log=log):
        if not session.responses:
            continue
        if split == "all" or (session.key in test) == (split == "test"):
            yield session
