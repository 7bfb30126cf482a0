"""Recognising a run directory before the model loads: another configuration is refused, and a
finished run of this very configuration is rerun without loading the model at all."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from psych201.data.records import SessionKey
from psych201.pipeline.config import ScoreConfig, window_config
from psych201.pipeline.grow import Growth, selection_growth
from psych201.pipeline.selection import tokenizer_free_condition
from psych201.pipeline.setup import device_kind
from psych201.results.writer import completed_sessions, damaged_parts


@dataclass
class FinishedRun:
    """A complete run of this very configuration, recognised without loading the model."""

    manifest: dict[str, Any]
    config_hash: str
    keys: list[SessionKey]


def finished_run(config: ScoreConfig, keys: list[SessionKey]) -> FinishedRun | None:
    """The stored run when ``config.out`` holds a complete run of exactly this configuration.

    Runs after :func:`precheck_run_dir` (data, split, seed, studies, limit, alignment, dtype,
    condition and shard agree). Adds what else names the run without loading weights: the
    model's id and weights hash (read from its files), engine, window, condition spec, model
    arguments and device kind, and that the parts of the stored configuration cover every
    selected session. Anything uncertain returns None: the model is loaded and the full check
    runs, as before.
    """
    from psych201.results.manifest import MANIFEST_FILE, load_manifest
    from psych201.results.manifest_read import typed_manifest
    from psych201.results.writer import ResultsError
    from psych201.scoring.model_files import ModelLoadError
    from psych201.scoring.models import model_folder

    if not (config.out / MANIFEST_FILE).is_file():
        return None
    try:
        stored = load_manifest(config.out)
        manifest = typed_manifest(stored, config.out)
    except ResultsError:
        return None
    spec, model = manifest.spec, manifest.model
    condition = tokenizer_free_condition(config)
    if not manifest.complete or spec is None or spec.engine != "hf" or condition is None:
        return None
    extra = spec.extra
    model_args = {k: v for k, v in config.model_args.items() if k != "cache_dir"}
    wanted = {
        "window": asdict(window_config(config)),
        "condition_spec": condition.spec(),
        "model_args": model_args,
        "device": device_kind(config.device),
    }
    have = {"window": spec.window, **{k: extra.get(k) for k in wanted if k != "window"}}
    if _as_json(wanted) != _as_json(have):
        return None
    try:
        folder = model_folder(config.model, cache_dir=config.model_args.get("cache_dir"))
    except (ModelLoadError, OSError, ValueError):
        return None
    if (folder.model_id != spec.model or folder.file_sha256 != model.get("file_sha256")
            or folder.revision != extra.get("model_revision")):  # a hub model's commit too
        return None
    config_hash = manifest.config_hash
    if config_hash is None:  # a merge output, never a run to finish
        return None
    if not set(keys) <= completed_sessions(config.out, config_hash=config_hash):
        return None
    if damaged_parts(config.out, records_required=manifest.part_records):
        return None  # the model loads and the damaged parts are rescored
    return FinishedRun(stored, config_hash, keys)


def _as_json(value: Any) -> Any:
    # The manifest is JSON: tuples came back as lists.
    return json.loads(json.dumps(value, default=str, sort_keys=True))



def precheck_model(config: ScoreConfig) -> None:
    """Refuse a run directory of another model or engine before the default (transformers)
    engine converts, downloads or loads anything: the stored model id is compared with the one
    the name gives (:func:`~psych201.scoring.models.model_identity`)."""
    from psych201.results.manifest import MANIFEST_FILE, ConfigMismatchError
    from psych201.results.manifest_read import read_manifest
    from psych201.scoring.models import model_identity

    if not (config.out / MANIFEST_FILE).is_file():
        return
    spec = read_manifest(config.out).spec
    if spec is None:
        return
    wanted = model_identity(config.model)
    diff = []
    if spec.engine not in (None, "hf"):
        diff.append(f"engine: {spec.engine!r} -> 'hf'")
    if wanted is not None and spec.model not in (None, wanted):
        diff.append(f"model: {spec.model!r} -> {wanted!r}")
    if diff:
        raise ConfigMismatchError(
            f"{config.out} holds a run of another model; a run directory never mixes "
            "configurations. Use another --out (nothing was converted or loaded). "
            "Differences: " + "; ".join(diff)
        )


def precheck_run_dir(
    config: ScoreConfig, data_hash: str, *, split: str, data_name: str | None,
    per_study: dict[str, str] | None = None,
) -> Growth | None:
    """Refuse a run directory of another configuration before the model loads.

    Only the fields known without the model are compared; the full check (model, tokenizer
    and window identity) follows in :func:`open_run_dir` once it is loaded. A selection that
    contains the stored one (larger limit, more studies) is a :class:`Growth`, not a refusal.
    """
    from psych201.results.manifest import (
        MANIFEST_FILE,
        ConfigMismatchError,
        describe_differences,
        load_manifest,
    )
    from psych201.results.manifest_read import typed_manifest

    if not (config.out / MANIFEST_FILE).is_file():
        return None
    stored = load_manifest(config.out)
    spec = typed_manifest(stored, config.out).spec
    if spec is None:
        return None
    ours: dict[str, Any] = {
        "data": data_name or config.data.resolve().name,
        "data_hash": data_hash,
        "split": split,
        "seed": config.seed,
        "studies": sorted(config.studies),
        "limit": config.limit,
        "alignment": config.alignment,
        "dtype": config.dtype,
    }
    condition = tokenizer_free_condition(config)
    if condition is not None:
        ours["condition"] = condition.name
    theirs = {k: getattr(spec, k) for k in ours}
    diff = describe_differences(theirs, ours)
    shard = config.shard.to_dict() if config.shard else None
    if stored.get("shard") != shard:
        diff.append(f"shard: {stored.get('shard')!r} -> {shard!r} (use one directory per shard)")
    elif diff and (growth := selection_growth(stored, theirs, ours, per_study or {})):
        return growth
    if diff:
        raise ConfigMismatchError(
            f"{config.out} holds run {stored.get('config_hash')}, a different configuration; "
            "a run directory never mixes configurations (a selection may only grow: a larger "
            "--limit or more --studies, same seed). Use another --out, or delete the "
            "directory to start over. Differences: " + "; ".join(diff)
        )
    return None
