"""The run manifest (``DIR/manifest.json``): what produced a run directory's numbers.

The manifest records the :class:`RunSpec` (whose hash, the *config hash*, is the identity of a
run), the model file's hash, engine and library versions, the tokenizer, the data hash and seed,
the shard, and one entry per invocation (a resumed run has several). Opening a run directory that
already holds another configuration is refused with a message that names each differing field.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from psych201.atomic import write_text_atomic
from psych201.results.lock import LOCK_FILE
from psych201.results.manifest_model import Manifest, written_manifest
from psych201.results.schema import RunSpec
from psych201.results.shards import Shard
from psych201.results.writer import (
    PARTS_DIR,
    RESPONSES_FILE,
    SUMMARY_FILE,
    ResultsError,
    footer_config_hash,
    is_part_companion,
    is_temporary,
    part_paths,
    table_record,
)

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "psych201-run/1"

#: Libraries whose versions can move the numbers; recorded on every invocation.
_LIBRARIES = ("psych201", "torch", "transformers", "tokenizers", "numpy", "pyarrow", "gguf")


class ConfigMismatchError(ResultsError):
    """The run directory belongs to another configuration (or shard)."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def library_versions(*more: str) -> dict[str, str]:
    """Installed versions of the libraries that matter for the numbers (and of ``more``, e.g.
    ``peft`` for an adapter), plus Python's."""
    versions = {"python": platform.python_version()}
    for name in (*_LIBRARIES, *more):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def build_manifest(
    spec: RunSpec,
    *,
    model: Mapping[str, Any],
    engine: Mapping[str, Any],
    tokenizer: Mapping[str, Any],
    data: Mapping[str, Any],
    shard: Shard | None = None,
    condition_role: str | None = None,
) -> dict[str, Any]:
    """A fresh manifest for ``spec`` (status ``running``, no invocations yet).

    ``condition_role`` is what the condition is for in the analyses (its class declares it);
    it is kept out of the spec, so it does not change the run's hash."""
    created = now_iso()
    return Manifest.model_validate({
        "format": MANIFEST_FORMAT,
        "config_hash": spec.config_hash(),
        "spec": _jsonable(spec.to_dict()),
        "condition_role": condition_role,
        "shard": shard.to_dict() if shard else None,
        "model": _jsonable(dict(model)),
        "engine": _jsonable(dict(engine)),
        "tokenizer": _jsonable(dict(tokenizer)),
        "alignment": spec.alignment,
        "dtype": spec.dtype,
        "seed": spec.seed,
        "data": _jsonable(dict(data)),
        "status": "running",
        "created": created,
        "updated": created,
        "counts": {},
        # Every part has a record of its SHA-256 (writer.PartRecord): a part without one is
        # damaged. Runs started before records existed lack this flag; their parts are not.
        "part_records": True,
        "invocations": [],
    }).written()


def _jsonable(value: Any) -> Any:
    # Round-trip through JSON so tuples become lists and the stored manifest compares equal.
    return json.loads(json.dumps(value, default=str))


def manifest_path(run_dir: Path) -> Path:
    return Path(run_dir) / MANIFEST_FILE


def load_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of ``run_dir`` (a directory or the manifest file itself)."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / MANIFEST_FILE
    if not path.is_file():
        raise ResultsError(f"{path}: no run manifest here (not a psych201 run directory?)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ResultsError(f"{path}: not a {MANIFEST_FORMAT} manifest")
    wrong = _mistyped_fields(manifest)
    if wrong:
        raise ResultsError(f"{path}: damaged manifest: {'; '.join(wrong)}")
    return manifest


#: The manifest fields readers index into, and the JSON types they must have when present.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "config_hash": (str,), "status": (str,), "spec": (dict, type(None)), "model": (dict,),
    "engine": (dict,), "tokenizer": (dict,), "data": (dict,), "counts": (dict,),
    "invocations": (list,), "shard": (dict, type(None)), "alignment": (str,), "dtype": (str,),
    "seed": (int, type(None)), "table": (dict, type(None)), "condition_role": (str, type(None)),
}

#: Fields of the ``table`` record (:func:`~psych201.results.writer.table_record`) and their types.
_TABLE_TYPES: dict[str, type] = {"file": str, "rows": int, "sha256": str}


def _mistyped_fields(manifest: Mapping[str, Any]) -> list[str]:
    """What is wrong with the fields of ``manifest`` (a hand-edited or damaged file)."""
    wrong = [
        f"{key} is {type(manifest[key]).__name__}, expected "
        f"{' or '.join('null' if t is type(None) else _JSON_NAMES[t] for t in types)}"
        for key, types in _FIELD_TYPES.items()
        if key in manifest and not isinstance(manifest[key], types)
    ]
    shard = manifest.get("shard")
    if isinstance(shard, dict) and not all(
        type(shard.get(k)) is int for k in ("index", "count")
    ):
        wrong.append("shard needs integer index and count")
    table = manifest.get("table")
    if isinstance(table, dict):
        wrong.extend(f"table.{key} is {type(table[key]).__name__}, expected {_JSON_NAMES[kind]}"
                     for key, kind in _TABLE_TYPES.items()
                     if key in table and (not isinstance(table[key], kind)
                                          or isinstance(table[key], bool)))
    return wrong


_JSON_NAMES = {str: "a string", dict: "an object", list: "a list", int: "an integer"}


#: Manifest key of a repair that moved damaged parts aside and waits for their rescoring.
RESCORING_KEY = "rescoring"

#: The manifest's own SHA-256 (of its other fields, as written): any edit is detectable.
CHECKSUM_KEY = "checksum"


def _checksum(body: Mapping[str, Any]) -> str:
    text = json.dumps({k: v for k, v in body.items() if k != CHECKSUM_KEY}, indent=2)
    return hashlib.sha256(text.encode()).hexdigest()


def save_manifest(run_dir: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest`` as the :class:`~.manifest_model.Manifest` model writes it, stamped
    ``updated`` and with its checksum."""
    body = written_manifest({k: v for k, v in manifest.items() if k != CHECKSUM_KEY})
    body["updated"] = now_iso()
    body[CHECKSUM_KEY] = _checksum(body)
    text = json.dumps(body, indent=2)
    write_text_atomic(text + "\n", manifest_path(run_dir))


def manifest_problem(run_dir: Path) -> str | None:
    """Why ``DIR/manifest.json`` is not a manifest as psych201 wrote it, or None when it is.

    A manifest carries the SHA-256 of its own fields and is written in one canonical form, so
    a change of any byte (a value, a key or the spacing) is found. Manifests written before
    the checksum existed are not checked.
    """
    path = manifest_path(run_dir)
    try:
        text = path.read_text(encoding="utf-8")
        body = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"unreadable manifest ({type(exc).__name__})"
    if not isinstance(body, dict) or CHECKSUM_KEY not in body:
        return None
    if body[CHECKSUM_KEY] != _checksum(body):
        return "its checksum differs from its fields (the manifest was edited after it was written)"
    if json.dumps(body, indent=2) + "\n" != text:
        return "its bytes differ from the form psych201 writes (the manifest was edited)"
    return None


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def describe_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable ``field: old -> new`` lines for two spec dicts."""
    a, b = _flatten(old), _flatten(new)
    return [
        f"{name}: {a.get(name, '<absent>')!r} -> {b.get(name, '<absent>')!r}"
        for name in sorted(a.keys() | b.keys())
        if a.get(name, "<absent>") != b.get(name, "<absent>")
    ]


def new_invocation(
    argv: list[str] | None, options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The manifest's record of one command that opened the run."""
    return {
        "started": now_iso(),
        "argv": list(argv if argv is not None else sys.argv),
        # Where the command ran: relative paths in argv mean something only from there (a
        # repair that rescores damaged parts reruns the recorded score command).
        "cwd": os.getcwd(),
        "host": platform.node(),
        "versions": library_versions(),
        "options": _jsonable(dict(options or {})),
    }


def open_run_dir(
    run_dir: Path,
    manifest: Mapping[str, Any],
    *,
    argv: list[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Create ``run_dir`` for ``manifest``, or reopen it when it holds the same configuration.

    ``options`` are settings that do not change the numbers (batch budget, part size) and may
    differ between invocations; they are recorded per invocation.

    Returns the manifest to keep updating (the stored one when resuming, with a new invocation
    entry). Raises :class:`ConfigMismatchError` when ``run_dir`` holds another configuration or
    shard, and :class:`ResultsError` when it is a non-empty directory that is not a run.
    """
    run_dir = Path(run_dir)
    invocation = new_invocation(argv, options)
    if manifest_path(run_dir).exists():
        stored = load_manifest(run_dir)
        if stored.get("config_hash") != manifest["config_hash"]:
            diff = describe_differences(stored.get("spec") or {}, manifest["spec"])
            raise ConfigMismatchError(
                f"{run_dir} holds run {stored.get('config_hash')}, a different configuration "
                f"than this one ({manifest['config_hash']}); a run directory never mixes "
                "configurations. Use another --out, or delete the directory to start over. "
                "Differences: " + ("; ".join(diff) or "(spec identical, hash scheme differs)")
            )
        if stored.get("recovered"):
            # A manifest `runs verify --repair` rebuilt from the parts knows only the config
            # hash: this invocation restores everything else.
            resumed = {**manifest, "invocations": [*stored.get("invocations", []), invocation]}
            save_manifest(run_dir, resumed)
            return resumed
        if stored.get("shard") != manifest["shard"]:
            raise ConfigMismatchError(
                f"{run_dir} holds shard {_shard_text(stored.get('shard'))}, this command asks "
                f"for shard {_shard_text(manifest['shard'])}; use one directory per shard"
            )
        resumed = dict(stored)  # status unchanged: the caller knows whether work is left
        resumed["invocations"] = [*stored.get("invocations", []), invocation]
        save_manifest(run_dir, resumed)
        return resumed
    fresh = dict(manifest)
    fresh["invocations"] = [invocation]
    if run_dir.exists():
        if not run_dir.is_dir():
            raise ResultsError(f"{run_dir}: exists and is not a directory")
        adopted = _adoptable_parts(run_dir, manifest["config_hash"])
        if adopted:
            # The manifest was lost but every part (and any final table) carries this run's
            # config hash: continue the run rather than refuse finished work.
            invocation["recovered_parts"] = adopted
    run_dir.mkdir(parents=True, exist_ok=True)
    save_manifest(run_dir, fresh)
    return fresh


def _adoptable_parts(run_dir: Path, config_hash: str) -> int:
    """How many parts of a manifest-less ``run_dir`` belong to ``config_hash`` (0: none there).

    Raises :class:`ResultsError` when the directory holds anything else: foreign files, or parts
    or a table of another configuration.
    """
    ignored = {PARTS_DIR, LOCK_FILE, RESPONSES_FILE, SUMMARY_FILE}
    leftovers = sorted(
        p.name for p in run_dir.iterdir() if p.name not in ignored and not is_temporary(p)
    )
    parts = part_paths(run_dir)
    parts_dir = run_dir / PARTS_DIR
    strays = (
        sorted(p.name for p in parts_dir.iterdir()
               if p not in parts and not is_temporary(p) and not is_part_companion(p))
        if parts_dir.is_dir()
        else []
    )
    table = run_dir / RESPONSES_FILE
    if leftovers or strays or (table.exists() and not parts):
        found = leftovers or [f"{PARTS_DIR}/{n}" for n in strays] or [RESPONSES_FILE]
        raise ResultsError(
            f"{run_dir}: not empty and holds no {MANIFEST_FILE}; refusing to write a run "
            f"into it (found {', '.join(found[:5])})"
        )
    for path in [*parts, *([table] if table.exists() else [])]:
        try:
            owner = footer_config_hash(path)
        except ResultsError as exc:
            raise ResultsError(
                f"{run_dir}: holds no {MANIFEST_FILE} and {exc}; delete that file to rescore "
                "its sessions"
            ) from exc
        if owner != config_hash:
            raise ConfigMismatchError(
                f"{run_dir}: holds no {MANIFEST_FILE}, and {path.name} was written by run "
                f"{owner}, not by this configuration ({config_hash}); use another --out, or "
                "delete the directory to start over"
            )
    return len(parts)


def _shard_text(shard: Any) -> str:
    if isinstance(shard, Mapping):
        return f"{shard.get('index')}/{shard.get('count')}"
    return "none (unsharded)"


def mark_status(run_dir: Path, manifest: dict[str, Any], status: str) -> None:
    """Set the run's status (``running`` while parts are being added) and save."""
    manifest["status"] = status
    save_manifest(run_dir, manifest)


def mark_complete(
    run_dir: Path,
    manifest: dict[str, Any],
    counts: Mapping[str, Any],
    *,
    status: str = "complete",
) -> None:
    """Record the end of an invocation: status, counts and the final table's name.

    ``status`` is ``complete``, or ``incomplete`` when some sessions failed and were skipped.
    """
    manifest["status"] = status
    manifest.pop(RESCORING_KEY, None)  # a repair's rescoring of damaged parts, now finished
    manifest["counts"] = _jsonable(dict(counts))
    manifest["responses"] = RESPONSES_FILE
    # Row count and SHA-256 of the final table: a later rerun or `runs verify` proves the
    # table is the one this run wrote (and rebuilds it from the parts when it is not).
    manifest["table"] = table_record(run_dir)
    if manifest.get("invocations"):
        manifest["invocations"][-1]["finished"] = now_iso()
        manifest["invocations"][-1]["scored_sessions"] = counts.get("scored_now_sessions", 0)
    save_manifest(run_dir, manifest)
