"""A :class:`~psych201.pipeline.ScoringSetup` for any engine, optionally on a Ray cluster.

``psych201 score --engine NAME --engine-args k=v,... [--ray-args k=v,...]`` maps onto
:func:`build_setup`; ``score_run(config, setup=build_setup(...))`` then writes the same run
directory (parts, manifest, resume) whatever the engine. The default (``hf`` without Ray) is the
pipeline's own transformers setup.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from psych201.pipeline import (
    ScoreConfig,
    ScoringSetup,
    load_hf_setup,
    tokenizer_info,
    window_config,
)
from psych201.results.schema import TEMPERATURE_GRID
from psych201.scoring.engine import TOPK_ONLY_TEMPERATURES, EngineInfo
from psych201.scoring.engines import ENGINES, ScorerSpec, build_scorer, make_scorer, model_identity
from psych201.scoring.models import load_tokenizer
from psych201.scoring.ray_engine import RayConfig, RayScorer

#: ``--engine`` choices: the engines, and ``ray`` (another engine replicated on Ray workers).
ENGINE_CHOICES: tuple[str, ...] = (*ENGINES, "ray")


def scorer_spec(config: ScoreConfig, engine: str, engine_args: Mapping[str, Any]) -> ScorerSpec:
    """The recipe every process (this one, a Ray worker) builds its scorer from."""
    options = dict(engine_args)
    if engine == "hf":
        options.setdefault("batch_tokens", config.batch_tokens)
    cache_dir = config.model_args.get("cache_dir")
    return ScorerSpec(
        engine=engine,
        model=config.model,
        dtype=config.dtype,
        device=config.device,
        alignment=config.alignment,
        window=window_config(config),
        options=options,
        cache_dir=str(cache_dir) if cache_dir else None,
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
    if engine not in ENGINE_CHOICES:
        raise ValueError(f"unknown engine {engine!r} (choose one of {', '.join(ENGINE_CHOICES)})")
    engine_args = dict(engine_args or {})
    if engine == "ray":
        ray_kwargs = dict(ray_args or {})
        inner = str(ray_kwargs.pop("engine", "hf"))
        return _ray_setup(config, scorer_spec(config, inner, engine_args), RayConfig(**ray_kwargs))
    if ray_args:
        raise ValueError("--ray-args needs --engine ray")
    if engine == "hf" and not engine_args:
        return load_hf_setup(config)
    spec = scorer_spec(config, engine, engine_args)
    built = build_scorer(spec)
    info = built.engine.info
    return ScoringSetup(
        model_id=built.model_id,
        engine=info.name,
        tokenizer=built.tokenizer,
        scorer=built.scorer,
        model_info=_model_info(spec, info.max_context),
        engine_info=info,
        tokenizer_info=tokenizer_info(built.tokenizer),
        window=asdict(spec.window),
    )


def _ray_setup(config: ScoreConfig, spec: ScorerSpec, ray: RayConfig) -> ScoringSetup:
    # The driver needs only the tokenizer (conditions such as chat-template render with it);
    # every worker loads its own engine replica from ``spec``.
    tokenizer_name = spec.options.get("tokenizer", spec.model) if spec.engine == "openai" else (
        spec.model
    )
    tokenizer = load_tokenizer(str(tokenizer_name))
    model = _model_info(spec, None)
    scorer = RayScorer(functools.partial(make_scorer, spec), ray)
    info = EngineInfo(
        name="ray",
        model_id=model["id"],
        dtype=spec.dtype,
        device=spec.device,
        max_context=None,
        extra={"inner": spec.engine, "options": dict(spec.options), "ray": asdict(ray),
               "temperature_logprobs": _temperature_statement(spec)},
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


def _temperature_statement(spec: ScorerSpec) -> str:
    """What the workers' engine says of ``nll_temperature`` (the driver never builds one)."""
    if spec.engine != "hf":
        return TOPK_ONLY_TEMPERATURES if spec.engine in ("vllm", "openai") else (
            f"null: not implemented for {spec.engine}"
        )
    import torch

    from psych201.scoring.hf import temperatures_on

    setting = spec.options.get("temperatures", "auto")
    on = temperatures_on(setting, torch.device(spec.device))
    return "full softmax" if on else f"null: off (temperatures={setting})"


def _model_info(spec: ScorerSpec, max_context: int | None) -> dict[str, Any]:
    if spec.engine == "openai":
        return {"id": spec.model, "source": str(spec.options.get("base_url", "")),
                "file_sha256": None, "max_context": max_context}
    model_id, sha, source = model_identity(spec.model, spec.cache_dir)
    return {"id": model_id, "source": source, "file_sha256": sha, "max_context": max_context}
