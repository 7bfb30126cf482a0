"""What each prompt condition of a response table is for in the analyses.

Conditions are named by ``psych201.prompts.conditions.make_condition`` (``raw``, ``paper``,
``discrete``, ``chat-template``, ``persona`` with its modes, ``persona-shuffled``). The analyses
only need to know each condition's *role* (:class:`~psych201.prompts.records.ConditionRole`): the
main NLL measurement, or one of the paper's controls. Each condition class declares its role and
run manifests record it (:meth:`psych201.analysis.tables.Results.condition_roles`); a condition
no manifest speaks for (older runs, bare tables) has the role of the registered condition its
name comes from (:func:`~psych201.prompts.conditions.registered_role`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from psych201.errors import UsageError
from psych201.prompts.conditions import registered_role
from psych201.prompts.records import ConditionRole

#: Each condition's role where the runs recorded it (the rest: by registered name).
Roles = Mapping[str, ConditionRole]

#: Main conditions tried, in this order, when none is named and several are present.
PREFERRED_MAIN = ("raw", "paper")


class ConditionError(UsageError):
    """The table does not hold the condition an analysis needs (message lists what it holds)."""


def condition_role(name: str, roles: Roles | None = None) -> ConditionRole:
    """The analysis role of condition ``name``: as recorded in ``roles``, else by its name."""
    recorded = (roles or {}).get(name)
    return recorded if recorded is not None else registered_role(name)


def conditions_with_role(conditions: Iterable[str], role: ConditionRole,
                         roles: Roles | None = None) -> list[str]:
    return sorted(c for c in set(conditions) if condition_role(c, roles) == role)


def main_condition(conditions: Iterable[str], requested: str | None = None,
                   roles: Roles | None = None) -> str:
    """The condition whose NLLs the leaderboard and pair effects use.

    ``requested`` wins when present. Otherwise the only main-role condition, or the first of
    :data:`PREFERRED_MAIN` present; anything else is ambiguous and refused.
    """
    present = sorted(set(conditions))
    if requested is not None:
        if requested not in present:
            raise ConditionError(
                f"condition {requested!r} is not in the results (present: {', '.join(present)})"
            )
        return requested
    mains = conditions_with_role(present, ConditionRole.MAIN, roles)
    if len(mains) == 1:
        return mains[0]
    for name in PREFERRED_MAIN:
        if name in mains:
            return name
    if not mains:
        raise ConditionError(
            "no main condition in the results (only controls: "
            f"{', '.join(present)}); name one with --condition"
        )
    raise ConditionError(
        f"several main conditions ({', '.join(mains)}); choose one with --condition"
    )


def persona_reference(conditions: Iterable[str], persona: str, main: str) -> str:
    """The condition a persona condition is compared with: its own text without a preamble.

    ``no-persona`` (``no-persona-paper`` for a paper-mode persona condition) scores the same
    participants' raw text, so it pairs response by response; without it, the main condition.
    """
    present = set(conditions)
    wanted = "no-persona-paper" if "paper" in persona.lower() else "no-persona"
    return wanted if wanted in present else main
