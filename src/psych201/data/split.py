"""The paper's test split: at most 10 % and at most 100 participants per study, seeded.

The authors shuffle the whole dataset without a seed, number the participants of each study
0, 1, 2, … in shuffled order, and put those numbered below ``min(floor(0.1 n), 100)`` in the test
set (``n`` counts every line of the study); afterwards lines without any ``<<`` are dropped from
both sides. We do the same with a recorded seed: per study, the keys are sorted (experiment,
participant, line — independent of file order and platform), permuted by
``numpy.random.default_rng([seed, study hash])`` and the first ``max_eval`` are test participants.
Seeding per study keeps a study's split unchanged when other studies are added or removed.

Psych-101 studies follow the paper's rule (the authors' ``mark_eval``): ``max_eval`` still counts
every participant of the study, but only Psych-101's own test participants (``is_psych101_test``)
are eligible, shuffled among themselves.

Data that carries its own split (an ``in_eval`` column, as the published ``Psych-201-test`` does)
is split by it under ``test``/``train``: that reproduces the authors' participant set, which no
re-shuffle can. ``seeded`` ignores such a column and draws the seeded test set above.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Literal

import numpy as np

from psych201.data.issues import IssueLog, OnError
from psych201.data.readers import StudySource, iter_sessions
from psych201.data.records import Session, SessionKey

#: Share and cap of test participants per study (the paper's ``max_eval``).
TEST_SHARE_DENOMINATOR = 10
TEST_CAP = 100

Split = Literal["test", "train", "all", "seeded"]
SPLITS: tuple[str, ...] = ("test", "train", "all", "seeded")


def max_eval(n_participants: int) -> int:
    """``min(floor(0.1 n), 100)``, computed exactly in integers."""
    return min(n_participants // TEST_SHARE_DENOMINATOR, TEST_CAP)


def study_seed(seed: int, study: str) -> list[int]:
    """The entropy for one study's shuffle: the run seed plus a stable hash of the study id."""
    digest = hashlib.sha256(study.encode("utf-8")).digest()
    return [seed, int.from_bytes(digest[:8], "little")]


def held_out_participants(
    keys: Iterable[SessionKey],
    *,
    seed: int = 0,
    psych101: Mapping[SessionKey, bool] | None = None,
) -> frozenset[SessionKey]:
    """The test participants among ``keys``: per study ``max_eval(n)`` of them, chosen by seed.

    ``psych101`` maps the keys of Psych-101 sessions to whether they are Psych-101 test
    participants: only those are eligible (``n`` still counts every key of the study). The same
    keys and seed give the same set on any machine and in any input order.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    flags = psych101 or {}
    by_study: dict[str, list[SessionKey]] = defaultdict(list)
    for key in keys:
        by_study[key.study].append(key)
    chosen: list[SessionKey] = []
    for study, study_keys in by_study.items():
        ordered = sorted(set(study_keys), key=lambda k: (k.experiment, k.participant, k.line))
        cap = max_eval(len(ordered))
        rng = np.random.default_rng(study_seed(seed, study))
        # The authors number Psych-201 and Psych-101-test participants separately, each from 0.
        for group in (
            [k for k in ordered if k not in flags],
            [k for k in ordered if flags.get(k, False)],
        ):
            if group:
                order = rng.permutation(len(group))
                chosen.extend(group[int(i)] for i in order[:cap])
    return frozenset(chosen)


def iter_split(
    path: str | Path | StudySource,
    split: Split,
    *,
    seed: int = 0,
    on_error: OnError = "fail",
    log: IssueLog | None = None,
) -> Iterator[Session]:
    """Stream the sessions of one split; sessions without any response are dropped.

    ``test``/``train`` use the data's own split where every session of a study carries one
    (``in_eval``), else the seeded split; ``seeded`` is the seeded test set whatever the data
    carries. Two streaming passes: the first collects the keys (to draw the test set), the second
    yields the sessions. Issues are recorded in ``log`` once, from the second pass.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    test: frozenset[SessionKey] = frozenset()
    own: set[str] = set()  # studies split by their own in_eval
    if split != "all":
        keys: list[SessionKey] = []
        psych101: dict[SessionKey, bool] = {}
        marked: dict[SessionKey, bool | None] = {}
        for s in iter_sessions(path, on_error=on_error, log=IssueLog(log_first=0)):
            keys.append(s.key)
            marked[s.key] = s.in_eval
            if s.psych101_test is not None:
                psych101[s.key] = s.psych101_test
        if split != "seeded":
            unmarked = {k.study for k in keys if marked[k] is None}
            own = {k.study for k in keys} - unmarked
        seeded = held_out_participants(
            (k for k in keys if k.study not in own), seed=seed, psych101=psych101
        )
        test = seeded | {k for k in keys if k.study in own and marked[k]}
    for session in iter_sessions(path, on_error=on_error, log=log):
        if not session.responses:
            continue
        if split == "all" or (session.key in test) == (split != "train"):
            yield session


def split_kind(split: Split, sessions: Iterable[Session]) -> str:
    """How ``split`` was drawn for these sessions (one study's): ``dataset`` where the data's own
    ``in_eval`` decided (``train:dataset`` for its complement), else ``split`` itself."""
    if split in ("test", "train"):
        marks = [s.in_eval for s in sessions]
        if marks and all(m is not None for m in marks):
            return "dataset" if split == "test" else "train:dataset"
    return split
