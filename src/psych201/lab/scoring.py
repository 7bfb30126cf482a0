"""Score adapters through the regular pipeline (``psych201.pipeline.score_run``).

The pipeline loads models by name with :func:`psych201.scoring.models.load_model`. Until that
loader routes adapter folders itself, :func:`scoring_setup` builds the pipeline's
:class:`~psych201.pipeline.ScoringSetup` for an adapter (base + merged LoRA, via
:func:`~psych201.lab.adapter.load_adapter_model`) and for anything else defers to the pipeline's
own :func:`~psych201.pipeline.load_hf_setup`. Either way the engine, the scorer and the response
table are exactly those of ``psych201 score``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from psych201.lab.adapter import is_adapter_dir, load_adapter_model
from psych201.pipeline import ScoreConfig, ScoringSetup, load_hf_setup, tokenizer_info


def scoring_setup(config: ScoreConfig) -> ScoringSetup:
    """The scoring setup of ``config.model``: an adapter folder, or what ``load_model`` knows."""
    if not is_adapter_dir(Path(config.model).expanduser()):
        return load_hf_setup(config)
    from psych201.scoring.hf import HFEngine
    from psych201.scoring.scorer import SessionScorer, WindowConfig

    cache = config.model_args.get("cache_dir")
    loaded = load_adapter_model(
        config.model,
        dtype=config.dtype,
        device=config.device,
        cache_dir=Path(cache) if cache else None,
    )
    engine = HFEngine(loaded, device=config.device, batch_tokens=config.batch_tokens)
    window_kwargs: dict[str, Any] = {"max_tokens": config.max_tokens}
    if config.window_overlap is not None:
        window_kwargs["overlap"] = config.window_overlap
    window = WindowConfig(**window_kwargs)
    scorer = SessionScorer(loaded.tokenizer, engine, alignment=config.alignment, window=window)
    return ScoringSetup(
        model_id=loaded.model_id,
        engine=engine.info.name,
        tokenizer=loaded.tokenizer,
        scorer=scorer,
        model_info={
            "id": loaded.model_id,
            "source": str(loaded.source),
            "file_sha256": loaded.file_sha256,
            "max_context": loaded.max_context,
            "adapter": True,
        },
        engine_info=engine.info,
        tokenizer_info=tokenizer_info(loaded.tokenizer),
        window=asdict(window),
    )
