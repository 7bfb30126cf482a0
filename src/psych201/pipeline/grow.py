"""Growing a run: a larger ``--limit`` or more ``--studies`` on a finished (or partial) run.

A run directory never mixes configurations, and its selection (``limit``, ``studies``) is part
of the configuration. A *superset* selection with everything else equal (same data for the
studies already scored, same split and seed, same model, engine and window) scores the very same
responses the same way, plus new ones: the participants already scored are kept and only the new
ones are scored. The run then takes the new configuration: its manifest records the growth, and
every part is re-labelled with the new config hash (atomically, part by part), so ``runs
verify``, ``merge`` and resume see one configuration as before.

Shrinking (a smaller limit, fewer studies) or a different seed or split is still refused: it
would leave scored participants that the new selection does not contain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psych201.data.records import SessionKey

#: Spec fields a selection may grow in; ``data_hash`` changes when studies are added.
GROWABLE = frozenset({"limit", "studies", "data_hash"})


@dataclass(frozen=True)
class Growth:
    """A run directory whose stored selection the new one contains."""

    old_hash: str
    changes: tuple[str, ...]  # "limit: 20 -> 30", for the note and the manifest


def selection_growth(
    stored: Mapping[str, Any], theirs: Mapping[str, Any], ours: Mapping[str, Any],
    per_study: Mapping[str, str],
) -> Growth | None:
    """The growth from ``theirs`` (stored spec fields) to ``ours``, or None when the change is
    anything else (the caller refuses it as before).

    ``per_study`` is the data hash of each study now selected: the studies already scored must
    hash as they did (``stored["data"]["studies"]``).
    """
    changed = {k for k in ours if theirs.get(k) != ours.get(k)}
    if not changed or not changed <= GROWABLE:
        return None
    old_limit, new_limit = theirs.get("limit"), ours.get("limit")
    if old_limit != new_limit and (
        old_limit is None or (new_limit is not None and new_limit < old_limit)
    ):
        return None
    old_studies, new_studies = set(theirs.get("studies") or ()), set(ours.get("studies") or ())
    if old_studies != new_studies and (not old_studies or (new_studies
                                                           and not new_studies >= old_studies)):
        return None
    if "data_hash" in changed:
        scored = ((stored.get("data") or {}).get("studies")) or {}
        if not scored or any(per_study.get(name) != digest for name, digest in scored.items()):
            return None
    changes = tuple(f"{k}: {theirs.get(k)!r} -> {ours.get(k)!r}"
                    for k in sorted(changed - {"data_hash"}))
    return Growth(str(stored.get("config_hash")), changes)


def check_superset(run_dir: Path, growth: Growth, keys: Iterable[SessionKey]) -> int:
    """How many participants the run already scored; refuses a selection that lacks one."""
    from psych201.results.manifest import ConfigMismatchError

    scored = scored_sessions(run_dir, {growth.old_hash})
    missing = scored - set(keys)
    if missing:
        raise ConfigMismatchError(
            f"{run_dir}: the new selection ({'; '.join(growth.changes)}) leaves out "
            f"{len(missing)} participants the run already scored (e.g. "
            f"{sorted(missing, key=str)[0]}); a selection may grow, never shrink. Use another "
            "--out."
        )
    return len(scored)


def scored_sessions(run_dir: Path, hashes: set[str]) -> frozenset[SessionKey]:
    """Sessions of the parts written under any of ``hashes`` (a growth interrupted half-way
    leaves parts of both the old and the new configuration)."""
    from psych201.results.writer import footer_config_hash, part_paths, part_sessions

    done: set[SessionKey] = set()
    for path in part_paths(run_dir):
        owner = footer_config_hash(path)
        if owner in hashes:
            done.update(part_sessions(path, config_hash=owner))
    return frozenset(done)


def grow_run_dir(run_dir: Path, growth: Growth, manifest: dict[str, Any]) -> None:
    """Check that only the selection differs from the stored run, then :func:`adopt_growth`."""
    from psych201.results.manifest import (
        ConfigMismatchError,
        describe_differences,
        load_manifest,
    )

    stored = load_manifest(run_dir)
    if stored.get("config_hash") == manifest["config_hash"]:
        return  # an earlier call finished the growth
    old = {k: v for k, v in (stored.get("spec") or {}).items() if k not in GROWABLE}
    new = {k: v for k, v in manifest["spec"].items() if k not in GROWABLE}
    diff = describe_differences(old, new)
    if diff:
        raise ConfigMismatchError(
            f"{run_dir} holds run {growth.old_hash}: the selection grows, but the configuration "
            "differs too; a run directory never mixes configurations. Use another --out. "
            "Differences: " + "; ".join(diff)
        )
    adopt_growth(run_dir, growth, manifest)


def adopt_growth(run_dir: Path, growth: Growth, manifest: dict[str, Any]) -> None:
    """Re-label the parts of ``growth.old_hash`` and store ``manifest`` (the new configuration's,
    with the growth recorded) so that the run resumes as one configuration.

    Parts are rewritten one by one, each atomically; the manifest last. An interruption leaves
    the old manifest and parts of both hashes, which the next call finishes re-labelling.
    """
    from psych201.results.manifest import load_manifest, now_iso, save_manifest
    from psych201.results.writer import footer_config_hash, part_paths, relabel_part

    new_hash = str(manifest["config_hash"])
    for path in part_paths(run_dir):
        if footer_config_hash(path) == growth.old_hash:
            relabel_part(path, new_hash)
    stored = load_manifest(run_dir)
    record = {"at": now_iso(), "from": growth.old_hash, "to": new_hash,
              "changes": list(growth.changes)}
    grown = {**manifest, "status": "running",
             "invocations": list(stored.get("invocations", [])),
             "grown": [*stored.get("grown", []), record]}
    save_manifest(run_dir, grown)
