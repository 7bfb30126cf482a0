"""Score adapters through the regular pipeline (``psych201.pipeline.score_run``).

The pipeline loads models by name with :func:`psych201.scoring.models.load_model`. Until that
loader routes adapter folders itself, :func:`scoring_setup` builds the pipeline's
:class:`~psych201.pipeline.ScoringSetup` for an adapter (base + merged LoRA, via
:func:`~psych201.lab.adapter.load_adapter_model`) and for anything else defers to the pipeline's
own :func:`~psych201.pipeline.build_setup`. Either way the engine, the scorer and the response
table are exactly those of ``psych201 score``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from psych201.lab.adapter import is_adapter_dir, load_adapter_model
from psych201.pipeline import ScoreConfig, ScoringSetup, build_setup, setup_from_loaded


def scoring_setup(config: ScoreConfig,
                  engine_args: Mapping[str, Any] | None = None) -> ScoringSetup:
    """The scoring setup of ``config.model``: an adapter folder, or what ``load_model`` knows.

    ``engine_args``: the HF engine's settings (``--engine-args``), e.g. ``temperatures=on``.
    """
    if not is_adapter_dir(Path(config.model).expanduser()):
        return build_setup(config, engine_args=engine_args)
    cache = config.model_args.get("cache_dir")
    loaded = load_adapter_model(
        config.model,
        dtype=config.dtype,
        device=config.device,
        cache_dir=Path(cache) if cache else None,
    )
    return setup_from_loaded(loaded, config, model_info={"adapter": True},
                             engine_args=engine_args)
