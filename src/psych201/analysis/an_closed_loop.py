"""Section "Behaviour in closed loop": do models that *take part* in a task behave like people?

The teacher-forced NLL says how well a model predicts people's next response given their own
history. Researchers who use language models as stand-ins for participants do something else:
they let the model choose, the task answer, and analyse the model's behaviour. This section puts
the behavioural signatures (:mod:`psych201.analysis.signatures`) of people, of the task's
cognitive model and of each language model that played the task (``psych201 play``) side by
side: the mean over participants with a bootstrap interval, the spread across participants, and
the Wasserstein-1 distance of each group's per-participant values from the people's.

It applies when the summary is given closed-loop data (``inputs.other["closed_loop"]``, a
:class:`ClosedLoopData`); ``psych201 behaviour`` builds it from play runs and human studies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from psych201.analysis.plugin import AnalysisContext, Column, Section, SectionTable
from psych201.analysis.signatures import (
    BANDIT_SIGNATURES,
    RISKY_SIGNATURES,
    TWOSTEP_SIGNATURES,
    bandit_signatures,
    distance,
    learning_curve,
    risky_signatures,
    summarise,
    twostep_participant,
    twostep_trials,
)
from psych201.data.choices import session_choices, twostep_labels
from psych201.data.records import Session

ANCHOR = "closed_loop"
#: Where the summary's caller puts the :class:`ClosedLoopData` (``summarize(extras=…)``).
INPUT_KEY = "closed_loop"
#: Signature families, and the simulated tasks each covers.
FAMILIES: dict[str, tuple[str, ...]] = {
    "bandit": BANDIT_SIGNATURES,
    "risky": RISKY_SIGNATURES,
    "twostep": TWOSTEP_SIGNATURES,
}
FAMILY_OF_TASK = {"bandit": "bandit", "reversal": "bandit", "risky": "risky",
                  "twostep": "twostep"}
#: Signatures compared on a log scale (inverse temperatures, loss aversion, run lengths).
_LOG_SCALE = frozenset({"beta", "loss_aversion", "sensitivity", "perseveration"})
#: Signatures set by the task's payoffs more than by the participant (the simulated bandit pays
#: less often than a human study's may): shown, but not named as where a model differs most.
_TASK_BOUND = frozenset({"reward_rate"})
#: A group whose spread is below this share of the people's "collapses" onto one behaviour.
COLLAPSE = 0.5


@dataclass(frozen=True)
class BehaviourGroup:
    """One group's per-participant signatures: people, a cognitive model or a language model."""

    name: str
    role: str  # "people", "cognitive model", "language model" (or "base", "post-trained")
    per_participant: pd.DataFrame
    curve: pd.DataFrame | None = None  # learning curve (bandit family), per participant × bin


@dataclass(frozen=True)
class ClosedLoopData:
    """Everything the section shows: one task family, the people first."""

    family: str
    groups: tuple[BehaviourGroup, ...]

    @property
    def people(self) -> BehaviourGroup | None:
        return next((g for g in self.groups if g.role == "people"), None)


def group_from_sessions(name: str, role: str, family: str, sessions: Sequence[Session]
                        ) -> BehaviourGroup:
    """Signatures of one group from its transcripts (played, simulated or human)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown signature family {family!r}; choose one of "
                         f"{', '.join(FAMILIES)}")
    parsed = [(s, t) for s, t in ((s, session_choices(s)) for s in sessions) if t is not None]
    if not parsed:
        raise ValueError(f"{name}: no session is a choice between a few options")
    table = pd.concat([t for _, t in parsed], ignore_index=True)
    if family == "bandit" and not pd.to_numeric(table["reward"], errors="coerce").notna().any():
        raise ValueError(f"{name}: no response has an outcome (reward) read: the bandit "
                         "signatures need a task with feedback")
    if family == "bandit":
        bandit = bandit_signatures(table)
        if bandit.empty:
            raise ValueError(f"{name}: no participant chose between two options twice: not a "
                             "two-armed bandit task")
        return BehaviourGroup(name, role, bandit, learning_curve(table))
    if family == "risky":
        risky = risky_signatures(table)
        if risky.empty:
            raise ValueError(f"{name}: no choice between two lotteries read: not a risky-choice "
                             "task")
        return BehaviourGroup(name, role, risky)
    if not all(twostep_labels(session.text) for session, _ in parsed):
        raise ValueError(f"{name}: not a two-step task (no spaceships and aliens named in the "
                         "instructions)")
    rows = []
    for session, own in parsed:
        trials = twostep_trials(session.text, own["choice"].tolist(), own["reward"].tolist())
        rows.append({"participant": session.participant, **twostep_participant(trials)})
    return BehaviourGroup(name, role, pd.DataFrame(rows))


def signature_table(data: ClosedLoopData, *, ci: float = 0.95, seed: int = 0,
                    n_resamples: int = 2000) -> pd.DataFrame:
    """Long table: group × signature with mean, interval, spread and W1 distance to people."""
    names = FAMILIES[data.family]
    people = data.people
    rows = []
    for group in data.groups:
        for s in summarise(group.name, group.per_participant, names, ci=ci, seed=seed,
                           n_resamples=n_resamples):
            scale = np.log if s.signature in _LOG_SCALE else None
            w1 = (math.nan if people is None or group is people
                  else distance(group.per_participant, people.per_participant, s.signature,
                                scale))
            rows.append({"group": group.name, "role": group.role, "signature": s.signature,
                         "n": s.n, "mean": s.mean, "ci_low": s.low, "ci_high": s.high,
                         "spread": s.spread, "w1_to_people": w1})
    return pd.DataFrame(rows)


def reading(table: pd.DataFrame) -> str:
    """The closing note: per model group, where it differs most from people, and whether its
    participants differ like people do or collapse onto one behaviour."""
    people = table[table["role"] == "people"].set_index("signature")
    if people.empty:
        return "No human group to compare with: signatures are shown without distances."
    parts = []
    for name, own in table[table["role"] != "people"].groupby("group", sort=False):
        own = own.set_index("signature")
        z = ((own["mean"] - people["mean"]).abs() / people["spread"]).dropna()
        z = z.drop(labels=[s for s in _TASK_BOUND if s in z.index])
        if z.empty:
            continue
        worst = str(z.idxmax())
        ratio = (own["spread"] / people["spread"]).dropna()
        collapsed = sorted(str(s) for s in ratio.index if ratio[s] < COLLAPSE)
        parts.append(
            f"{name}: furthest from people in {worst} ({own.at[worst, 'mean']:.3g} vs "
            f"{people.at[worst, 'mean']:.3g}, {z[worst]:.1f} human SDs)"
            + (f"; its participants vary less than half as much as people's in "
               f"{', '.join(collapsed)}" if collapsed else "; spread comparable to people's")
        )
    return ("Behaviour in closed loop: " + "; ".join(parts) + "."
            if parts else "No model group to compare with the people.")


def closed_loop_section(data: ClosedLoopData, *, ci: float = 0.95, seed: int = 0,
                        n_resamples: int = 2000) -> Section:
    """The section for ``data`` (also what :class:`ClosedLoopAnalysis` returns)."""
    table = signature_table(data, ci=ci, seed=seed, n_resamples=n_resamples)
    tables = [SectionTable(
        "signatures", table,
        columns=(Column("group", "group", "text"), Column("role", "role", "text"),
                 Column("signature", "signature", "text"), Column("n", "participants", "int"),
                 Column("mean", "mean"), Column("ci_low", f"{ci:.0%} CI", "interval"),
                 Column("spread", "SD across participants"),
                 Column("w1_to_people", "W1 to people")),
        caption="Per-participant signatures: mean over participants (percentile bootstrap over "
                "participants), SD across participants, and the Wasserstein-1 distance of the "
                "group's values from the people's (log scale for beta, lambda, sensitivity, "
                "run length).",
    )]
    curves = [g.curve.assign(group=g.name) for g in data.groups if g.curve is not None]
    if curves:
        curve = (pd.concat(curves).groupby(["group", "bin"], sort=False)["reward_rate"]
                 .mean().unstack("bin"))
        curve.columns = [f"tenth {int(c) + 1}" for c in curve.columns]
        tables.append(SectionTable("learning_curve", curve, index="group",
                                   caption="Reward rate by tenth of the session (learning "
                                           "curve), mean over participants."))
    return Section(ANCHOR, "Behaviour in closed loop", reading(table), tuple(tables),
                   result=ClosedLoopResult(data.family))


@dataclass(frozen=True)
class ClosedLoopResult:
    """Which task family the closed-loop section compares."""

    family: str


class ClosedLoopAnalysis:
    """Registered analysis: applies when closed-loop data was given to the summary."""

    name = ANCHOR
    requires: Sequence[str] = ()
    result_type: type | None = ClosedLoopResult
    columns: Sequence[str] = ()

    def skip(self, context: AnalysisContext) -> str | None:
        if not isinstance(context.inputs.other.get(INPUT_KEY), ClosedLoopData):
            return ("no closed-loop play runs given (psych201 play, then compare/report "
                    "--play RUN --people STUDY, or psych201 behaviour)")
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        data = context.inputs.other[INPUT_KEY]
        assert isinstance(data, ClosedLoopData)  # what skip checked
        return closed_loop_section(data, ci=context.options.ci, seed=context.options.seed,
                                   n_resamples=context.options.n_boot)


ANALYSIS = ClosedLoopAnalysis()
