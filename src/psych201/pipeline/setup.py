"""One way from a configuration to a scorer, for every engine: :func:`build_setup`.

``psych201 score --engine NAME --engine-args k=v,... [--model-args k=v,...] [--ray-args ...]``
maps onto :func:`build_setup`, which asks the engine registry
(:mod:`psych201.scoring.engines`) for the engine's scorer; ``score_run(config,
setup=build_setup(...))`` then writes the same run directory (parts, manifest, resume) whatever
the engine. ``engine="ray"`` replicates another engine on Ray workers.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from psych201.errors import UsageError
from psych201.pipeline.config import ScoreConfig, window_config
from psych201.prompts.conditions import Condition
from psych201.prompts.tokenizer import Tokenizer
from psych201.results.schema import RunSpec
from psych201.scoring.engine import (
    FULL_SOFTMAX,
    NOT_REPORTED,
    TEMPERATURE_GRID,
    TOPK_ONLY_TEMPERATURES,
    EngineInfo,
    TemperatureSupport,
)
from psych201.scoring.engines import (
    BuiltScorer,
    ScorerSpec,
    build_scorer,
    check_model_args,
    engine_entry,
    engine_names,
    make_scorer,
)
from psych201.scoring.hub import hub_revision
from psych201.scoring.models import LoadedModel
from psych201.scoring.protocols import Scorer


@dataclass(frozen=True)
class ScoringSetup:
    """A loaded model ready to score, and what the manifest records about it.

    ``close`` frees the engine; the pipeline calls it when the run ends, however it ends."""

    model_id: str
    engine: str
    tokenizer: Tokenizer | None  # None when the engine reads no text (the oracle)
    scorer: Scorer
    model_info: dict[str, Any]
    engine_info: EngineInfo
    tokenizer_info: dict[str, Any]
    window: dict[str, Any]
    closers: tuple[Callable[[], None], ...] = field(default=(), compare=False)

    def close(self) -> None:
        for close in self.closers:
            close()


#: Loads a :class:`ScoringSetup` when called (so that cheap checks run before the weights load).
SetupLoader = Callable[[], ScoringSetup]


@dataclass(frozen=True)
class DefaultEngineLoader:
    """A deferred loader of the default transformers engine (a CLI wraps it in a spinner).

    Marked so that a rerun of a finished run can skip it: only for this engine can the run be
    recognised from its files without loading the model."""

    load: Callable[[], ScoringSetup]

    def __call__(self) -> ScoringSetup:
        return self.load()


def engine_choices() -> tuple[str, ...]:
    """``--engine`` choices: the registered engines (entry points included), and ``ray``."""
    return (*engine_names(), "ray")


def tokenizer_info(tokenizer: Tokenizer | None) -> dict[str, Any]:
    """What identifies a tokenizer: class, name, size, special tokens and a hash of its rules."""
    if tokenizer is None:
        return {}
    info: dict[str, Any] = {
        "class": type(tokenizer).__name__,
        "name_or_path": str(getattr(tokenizer, "name_or_path", "")),
        "vocab_size": len(tokenizer) if hasattr(tokenizer, "__len__") else None,
        "bos_token": getattr(tokenizer, "bos_token", None),
        "eos_token": getattr(tokenizer, "eos_token", None),
        "add_bos_token": getattr(tokenizer, "add_bos_token", None),
    }
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        info["sha256"] = hashlib.sha256(backend.to_str().encode()).hexdigest()
    return info


def scorer_spec(config: ScoreConfig, engine: str, engine_args: Mapping[str, Any]) -> ScorerSpec:
    """The recipe every process (this one, a Ray worker) builds its scorer from."""
    options = dict(engine_args)
    if engine == "hf":
        options.setdefault("batch_tokens", config.batch_tokens)
    return ScorerSpec(
        engine=engine,
        model=config.model,
        dtype=config.dtype,
        device=config.device,
        alignment=config.alignment,
        window=window_config(config),
        options=options,
        model_args=dict(config.model_args),
        temperatures=TEMPERATURE_GRID,
    )


def build_setup(
    config: ScoreConfig,
    *,
    engine: str = "hf",
    engine_args: Mapping[str, Any] | None = None,
    ray_args: Mapping[str, Any] | None = None,
) -> ScoringSetup:
    """Load (or, for Ray, describe) the engine ``config`` is to be scored with.

    ``engine="ray"``: ``ray_args["engine"]`` (default ``hf``) names the engine each worker runs;
    the other ``ray_args`` are :class:`~psych201.scoring.ray_engine.RayConfig` fields.
    """
    engine_args = dict(engine_args or {})
    if engine == "ray":
        ray_kwargs = dict(ray_args or {})
        inner = str(ray_kwargs.pop("engine", "hf"))
        check_model_args(inner, config.model_args)
        return _ray_setup(scorer_spec(config, inner, engine_args), ray_kwargs)
    if ray_args:
        raise UsageError("--ray-args needs --engine ray")
    spec = scorer_spec(config, engine, engine_args)
    return _setup(build_scorer(spec), spec)


def load_hf_setup(config: ScoreConfig) -> ScoringSetup:
    """:func:`build_setup` with the default transformers engine."""
    return build_setup(config)


def setup_from_loaded(
    loaded: LoadedModel, config: ScoreConfig, *, model_info: Mapping[str, Any] | None = None,
    engine_args: Mapping[str, Any] | None = None,
) -> ScoringSetup:
    """The HF engine and session scorer around an already loaded model (base or adapter)."""
    from psych201.scoring.hf import scorer_from_loaded

    spec = scorer_spec(config, "hf", dict(engine_args or {}))
    built = scorer_from_loaded(loaded, spec)
    return _setup(built, spec, extra_model_info=model_info)


def _setup(
    built: BuiltScorer, spec: ScorerSpec, *, extra_model_info: Mapping[str, Any] | None = None
) -> ScoringSetup:
    return ScoringSetup(
        model_id=built.model_id,
        engine=built.info.name,
        tokenizer=built.tokenizer,
        scorer=built.scorer,
        model_info={**built.model_info, **(extra_model_info or {})},
        engine_info=built.info,
        tokenizer_info=tokenizer_info(built.tokenizer),
        window=asdict(spec.window),
        closers=(built.close,),
    )


def _ray_setup(spec: ScorerSpec, ray_kwargs: dict[str, Any]) -> ScoringSetup:
    # The driver needs only the tokenizer (conditions such as chat-template render with it);
    # every worker loads its own engine replica from ``spec``.
    from psych201.scoring.engines import model_identity
    from psych201.scoring.models import load_tokenizer
    from psych201.scoring.ray_engine import RayConfig, RayScorer

    ray = RayConfig(**ray_kwargs)
    if spec.engine == "openai":
        tokenizer = load_tokenizer(str(spec.options.get("tokenizer", spec.model)))
        model: dict[str, Any] = {"id": spec.model, "source": str(spec.options.get("base_url", "")),
                 "file_sha256": None, "max_context": None}
    else:
        tokenizer = load_tokenizer(spec.model)
        model = model_identity(spec, None)
    scorer = RayScorer(functools.partial(make_scorer, spec), ray)
    info = EngineInfo(
        name="ray",
        model_id=model["id"],
        dtype=spec.dtype,
        device=spec.device,
        max_context=None,
        extra={"inner": spec.engine, "options": dict(spec.options), "ray": asdict(ray)},
        temperatures=_temperature_support(spec),
    )
    return ScoringSetup(
        model_id=model["id"],
        engine=f"ray:{spec.engine}",
        tokenizer=tokenizer,
        scorer=scorer,
        model_info=model,
        engine_info=info,
        tokenizer_info=tokenizer_info(tokenizer),
        window=asdict(spec.window),
    )


def _temperature_support(spec: ScorerSpec) -> TemperatureSupport:
    """What the workers' engine says of ``nll_temperature`` (the driver never builds one)."""
    if spec.engine != "hf":
        entry = engine_entry(spec.engine)
        if not entry.capabilities.temperatures:
            return TOPK_ONLY_TEMPERATURES if not entry.capabilities.entropy else (
                TemperatureSupport(f"not implemented for {spec.engine}"))
        return FULL_SOFTMAX
    import torch

    from psych201.scoring.hf_head import temperatures_on

    setting = spec.options.get("temperatures", "auto")
    on = temperatures_on(setting, torch.device(spec.device))
    return FULL_SOFTMAX if on else TemperatureSupport(f"off (temperatures={setting})")


def temperature_record(info: EngineInfo) -> dict[str, Any]:
    """The manifest's word on ``nll_temperature``: the grid it holds, or null and why not."""
    support = info.temperatures or NOT_REPORTED
    if not support.available:
        return {"temperature_grid": None, "temperature_reason": support.missing_because}
    return {"temperature_grid": list(TEMPERATURE_GRID), "temperature_reason": None}


def device_kind(device: str) -> str:
    # cuda:0 and cuda:1 give the same numbers; cpu and cuda may not (kernels differ).
    return device.split(":", 1)[0]


def build_spec(
    config: ScoreConfig,
    setup: ScoringSetup,
    condition: Condition,
    data_hash: str,
    *,
    split: str | None = None,
    data_name: str | None = None,
) -> RunSpec:
    """The :class:`RunSpec` of this run: everything that determines its numbers.

    ``split`` is how the split was drawn when not ``config.split`` (``dataset``: the data's own
    ``in_eval``); ``data_name`` names an ``hf:`` source.
    """
    model_args = {k: v for k, v in config.model_args.items() if k != "cache_dir"}
    # A hub model's commit: a rerun after the branch moved refuses, naming both shas.
    revision = setup.model_info.get("revision") or hub_revision(
        str(setup.model_info.get("source") or "")
    )
    return RunSpec(
        model=setup.model_id,
        engine=setup.engine,
        condition=condition.name,
        alignment=config.alignment,
        dtype=config.dtype,
        data=data_name or config.data.resolve().name,
        data_hash=data_hash,
        split=split or config.split,
        seed=config.seed,
        studies=tuple(sorted(config.studies)),
        limit=config.limit,
        window=dict(setup.window),
        extra={
            "condition_spec": condition.spec(),
            "model_sha256": setup.model_info.get("file_sha256"),
            "tokenizer_sha256": setup.tokenizer_info.get("sha256"),
            "model_args": model_args,
            "device": device_kind(config.device),
            **({"model_revision": revision} if revision else {}),
        },
    )
