"""What psych201 asks of a tokenizer where one crosses a module: a Hugging Face tokenizer, typed.

Conditions (the chat template), the aligner, the scorer and the run set-up all take the model's
tokenizer. transformers is not typed for mypy, so this protocol says what crosses: the text's
token ids with their character offsets, the vocabulary size and the name it was loaded by.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Tokenizer(Protocol):
    """A (Hugging Face, fast) tokenizer as the modules that pass it around see it."""

    @property
    def name_or_path(self) -> str: ...

    def __len__(self) -> int: ...

    def __call__(self, text: str, /, **options: Any) -> Mapping[str, Any]:
        """``input_ids`` (and ``offset_mapping`` when asked) of ``text``."""
        ...
