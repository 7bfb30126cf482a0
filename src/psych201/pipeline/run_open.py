"""Opening a run directory for scoring: the data selected and hashed before any model loads (a
finished run's rerun loads none), then the model, the manifest and the scorer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psych201.data.issues import IssueLog
from psych201.data.records import SessionKey
from psych201.pipeline.config import (
    ScoreConfig,
)
from psych201.pipeline.grow import Growth, check_superset, grow_run_dir
from psych201.pipeline.resume import (
    FinishedRun,
    finished_run,
    precheck_model,
    precheck_run_dir,
)
from psych201.pipeline.selection import (
    StudyPlan,
    check_selection,
    data_fingerprint,
    data_root,
    make_condition_for,
    plan_studies,
    select_sources,
    shard_filter,
    split_label,
)
from psych201.pipeline.setup import (
    DefaultEngineLoader,
    ScoringSetup,
    SetupLoader,
    build_setup,
    build_spec,
    temperature_record,
)
from psych201.prompts.conditions import Condition
from psych201.results.manifest import build_manifest, open_run_dir


@dataclass
class OpenRun:
    """An opened run: its configuration, identity, manifest and selected sessions."""

    config: ScoreConfig
    setup: ScoringSetup
    condition: Condition
    config_hash: str
    manifest: dict[str, Any]
    plans: list[StudyPlan]
    keys: list[SessionKey]  # the run's sessions (this shard's), in order
    chars: dict[SessionKey, int]
    data_issues: IssueLog


def open_run(
    config: ScoreConfig, setup: ScoringSetup | SetupLoader | None, argv: list[str] | None
) -> OpenRun | FinishedRun:
    """Read the data, check the directory, then (unless the run is provably finished already)
    load the model and open or create the run directory."""
    root, data_info, data_name = data_root(config)
    sources = select_sources(config, root)
    data_hash, per_study = data_fingerprint(sources)
    # Read the data before loading the model: bad input fails in seconds, before any work.
    data_issues = IssueLog()
    plans = plan_studies(config, sources, data_issues)
    check_selection(config, plans)
    label = split_label(config, plans)
    growth = precheck_run_dir(config, data_hash, split=label, data_name=data_name,
                              per_study=per_study)
    in_shard = shard_filter(config.shard)
    keys = [k for plan in plans for k in plan.keys if in_shard(k)]
    default_engine = setup is None or isinstance(setup, DefaultEngineLoader)
    if default_engine:
        precheck_model(config)  # before anything converts, downloads or loads the model
    if growth is not None:  # checked before the model loads: a shrinking selection is refused
        check_superset(config.out, growth, keys)
    elif default_engine:
        finished = finished_run(config, keys)
        if finished is not None:
            return finished
    opened = _Selected(data_info, data_name, data_hash, per_study, label, plans, keys, data_issues,
                       growth)
    if isinstance(setup, ScoringSetup):
        return _open_loaded(config, setup, argv, opened)
    loaded = build_setup(config) if setup is None else setup()  # after the checks above
    try:
        return _open_loaded(config, loaded, argv, opened)
    except BaseException:
        loaded.close()
        raise


@dataclass(frozen=True)
class _Selected:
    """What :func:`open_run` read before any model loads."""

    data_info: dict[str, Any]
    data_name: str
    data_hash: str
    per_study: dict[str, str]
    label: str
    plans: list[StudyPlan]
    keys: list[SessionKey]
    data_issues: IssueLog
    growth: Growth | None = None


def _open_loaded(
    config: ScoreConfig, setup: ScoringSetup, argv: list[str] | None, opened: _Selected
) -> OpenRun:
    data_info, data_name, data_hash = opened.data_info, opened.data_name, opened.data_hash
    per_study, label, plans, keys = opened.per_study, opened.label, opened.plans, opened.keys
    data_issues = opened.data_issues
    condition = make_condition_for(config, setup.tokenizer)
    spec = build_spec(
        config,
        setup,
        condition,
        data_hash,
        split=label,
        data_name=data_name,
    )
    fresh = build_manifest(
        spec,
        model=setup.model_info,
        engine={**setup.engine_info.record(), **temperature_record(setup.engine_info)},
        tokenizer=setup.tokenizer_info,
        data={**data_info, "hash": data_hash, "studies": per_study},
        shard=config.shard,
        condition_role=condition.role.value,
    )
    if opened.growth is not None:
        grow_run_dir(config.out, opened.growth, fresh)
    manifest = open_run_dir(
        config.out,
        fresh,
        argv=argv,
        options={
            "batch_tokens": config.batch_tokens,
            "part_size": config.part_size,
            "part_chars": config.part_chars,
            "device": config.device,
            "on_error": config.on_error,
        },
    )
    return OpenRun(
        config=config,
        setup=setup,
        condition=condition,
        config_hash=spec.config_hash(),
        manifest=manifest,
        plans=plans,
        keys=keys,
        chars={k: n for plan in plans for k, n in plan.chars.items()},
        data_issues=data_issues,
    )
