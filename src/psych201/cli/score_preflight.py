"""Engine pre-flight of the score command: the engine is known and installed, its
``--engine-args`` and ``--model-args`` are accepted (before any data is read or model loads);
then what loads it, a LoRA adapter included."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from psych201.cli.console import fail
from psych201.errors import (
    Psych201Error,
    UsageError,
)

if TYPE_CHECKING:
    from psych201.pipeline import ScoreConfig, ScoringSetup, SetupLoader


def engine_loader(
    config: ScoreConfig, engine: str, engine_args: dict[str, Any], ray_args: dict[str, Any]
) -> SetupLoader | None:
    """Check that ``engine`` can be used here and takes ``--model-args``; return what loads it
    once the data is read (None: the default engine, which a finished run need not load)."""
    from psych201.pipeline import build_setup, engine_choices
    from psych201.scoring.engines import (
        RAY_PACKAGE,
        check_engine_args,
        check_model_args,
        check_model_name,
        engine_entry,
        require_packages,
    )

    choices = engine_choices()
    if engine not in choices:
        raise fail(f"unknown engine {engine!r} (choose one of {', '.join(choices)})")
    if ray_args and engine != "ray":
        raise fail("--ray-args needs --engine ray")
    inner = str(ray_args.get("engine", "hf")) if engine == "ray" else engine
    packing = engine_args.get("packing")
    if inner == "hf" and packing is not None and not isinstance(packing, bool):
        from psych201.scoring.hf import PACKING_CHOICES

        if str(packing).lower() not in PACKING_CHOICES:
            raise fail(f"--engine-args packing={packing}: choose one of "
                        f"{', '.join(PACKING_CHOICES)}")
    if engine == "ray" and not RAY_PACKAGE.installed():
        raise fail(f"--engine ray needs the ray package, which is not installed "
                    f"({RAY_PACKAGE.install})")
    if inner not in choices or inner == "ray":
        raise fail(f"unknown engine {inner!r} (choose one of {', '.join(choices)})")
    require_packages(inner)  # registration names the packages and how to install them
    if engine == "ray" and not engine_entry(inner).capabilities.ray:
        raise fail(f"engine {inner} reads whole sessions and cannot run on Ray")
    check_engine_args(inner, engine_args)
    check_model_name(inner, config.model)
    check_model_args(inner, config.model_args)  # before the data is read or the model loads
    if (Path(config.model).expanduser() / "adapter_config.json").is_file():
        return _adapter_loader(config, engine, engine_args)
    if engine == "hf" and not engine_args:
        return None

    def load() -> ScoringSetup:
        if inner == "cognitive":  # sessions it cannot read are refused before it is fitted
            _check_cognitive_sessions(config)
        try:
            return build_setup(config, engine=engine, engine_args=engine_args, ray_args=ray_args)
        except (ImportError, TypeError) as exc:
            raise UsageError(f"--engine {engine}: {exc}") from exc
        except ValueError as exc:
            if isinstance(exc, Psych201Error):
                raise
            raise UsageError(f"--engine {engine}: {exc}") from exc

    return load


def _check_cognitive_sessions(config: ScoreConfig) -> None:
    """Read every selected session with the cognitive model (InvalidDataError naming the first
    it cannot read), so that a wrong study fails before the model is fitted."""
    from psych201.pipeline.selection import select_sources, study_sessions
    from psych201.scoring.cognitive_engine import MODELS, read_session

    model = MODELS[config.model]
    for source in select_sources(config):
        for session in study_sessions(config, source):
            read_session(model, session)


def _adapter_loader(config: ScoreConfig, engine: str, engine_args: dict[str, Any]) -> SetupLoader:
    """A LoRA adapter folder (``psych201 posttrain``, a study's ``adapters:``): its base with the
    adapter merged, on the transformers engine; the table's model is the adapter's name."""
    from psych201.lab.adapter import check_adapter_files, is_adapter_dir
    from psych201.lab.scoring import scoring_setup

    folder = Path(config.model).expanduser()
    if not is_adapter_dir(folder):
        raise fail(f"--model {config.model}: a peft adapter folder without a psych201 adapter "
                    "card; psych201 scores the adapters its post-training lab writes")
    try:
        check_adapter_files(folder)
    except ValueError as exc:
        raise fail(f"--model {config.model}: {exc}") from exc
    if engine != "hf":
        raise fail(f"--model {config.model} is a LoRA adapter: score it with --engine hf")
    return lambda: scoring_setup(config, engine_args)
