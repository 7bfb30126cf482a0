"""A language model loaded once for closed-loop play, and the players made from it per chunk."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from psych201.errors import UsageError
from psych201.pipeline.play import PlaySpec
from psych201.pipeline.players import (
    MODES,
    EngineOptions,
    GeneratingPlayers,
    LanguageModelPlayers,
    LoadedModelPlayers,
)

if TYPE_CHECKING:
    from psych201.scoring.models import LoadedModel


def language_model_players(
    spec: PlaySpec, *, mode: str = "cache", device: str = "cpu",
    options: dict[str, Any] | None = None, model_args: dict[str, Any] | None = None,
    on_failure: Callable[[str], None] | None = None,
    load: Callable[[], LoadedModel] | None = None,
) -> LoadedModelPlayers:
    """Load ``spec.model`` once with ``spec.engine``.

    Checks the spec first, so a bad task or an engine without option log-probs is refused
    before any weights load. ``load`` loads the model for the hf modes instead of
    :func:`~psych201.scoring.models.load_model` (the CLI passes one for a LoRA adapter folder,
    merged into its base by the post-training lab).
    """
    spec.check()
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if (mode == "cache" or spec.policy == "generate") and spec.engine != "hf":
        raise UsageError(f"--mode cache and --policy generate run on the hf engine, not "
                         f"{spec.engine} (use --mode batch with --engine {spec.engine})")
    from psych201.scoring.engines import require_packages

    require_packages(spec.engine)  # named in one line, before any weights load
    if load is not None and mode != "cache" and spec.policy != "generate":
        raise UsageError(f"{spec.model}: a model loaded this way (an adapter folder) plays with "
                         "--mode cache or --policy generate, not --mode batch")
    if load is None:
        from psych201.scoring.models import load_model

        def load() -> LoadedModel:
            return load_model(spec.model, dtype=spec.dtype, device=device, **(model_args or {}))

    if spec.policy == "generate":
        from psych201.scoring.hf_generate import Generator

        loaded = load()
        generator = Generator(loaded.model, loaded.tokenizer, device=device)
        info = {"name": "hf", "mode": "generate", "chat_template": generator.chat,
                "model_id": loaded.model_id, "dtype": spec.dtype, "device": device}
        return LoadedModelPlayers(
            lambda: GeneratingPlayers(generator, on_failure),
            info, {"id": loaded.model_id, "source": loaded.source,
                   "file_sha256": loaded.file_sha256}, lambda: None)
    if mode == "cache":
        from psych201.scoring.hf_options import CachedOptionScorer

        loaded = load()
        info = {"name": "hf", "mode": "cache", "rows": spec.chunk, "model_id": loaded.model_id,
                "dtype": spec.dtype, "device": device}
        model_info = {"id": loaded.model_id, "source": loaded.source,
                      "file_sha256": loaded.file_sha256}
        return LoadedModelPlayers(
            lambda: LanguageModelPlayers(
                CachedOptionScorer(loaded.model, device=device, rows=spec.chunk),
                loaded.tokenizer),
            info, model_info, lambda: None)
    from psych201.scoring.engines import ScorerSpec, build_scorer

    built = build_scorer(ScorerSpec(engine=spec.engine, model=spec.model, dtype=spec.dtype,
                                    device=device, options=options or {},
                                    model_args=model_args or {}))
    if built.engine is None or built.tokenizer is None:
        raise UsageError(f"engine {spec.engine} scores no tokens")
    engine, tokenizer = built.engine, built.tokenizer
    return LoadedModelPlayers(
        lambda: LanguageModelPlayers(EngineOptions(engine), tokenizer),
        {**built.info.record(), "mode": "batch"}, dict(built.model_info), built.close)
