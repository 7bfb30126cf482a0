"""Free generation for closed-loop play: the model writes its answer after ``<<`` itself.

A base model continues the transcript from ``<<`` (a few tokens, greedy, cut at ``>>``); a chat
model (a tokenizer with a chat template) gets the transcript as the user's message with the
offered options named, and answers as the assistant. The answer is parsed into one of the
offered options by :func:`parse_answer`; what does not parse is a *parse failure*, which the
caller counts (and names, one line each).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

MAX_NEW_TOKENS = 8


def parse_answer(text: str, options: Sequence[str]) -> int | None:
    """The offered option ``text`` answers: the text up to ``>>`` if it is one, else the first
    option named as a whole word; ``None`` when there is none (a parse failure)."""
    head = text.split(">>", 1)[0].strip()
    if head in options:
        return list(options).index(head)
    for match in re.finditer(r"\w+", head or text):
        if match.group(0) in options:
            return list(options).index(match.group(0))
    return None


class Generator:
    """Greedy generation of a short answer per prompt with a transformers model."""

    def __init__(self, model: Any, tokenizer: Any, *, device: str = "cpu") -> None:
        self._model, self._tokenizer = model, tokenizer
        self._device = torch.device(device)
        self.chat = bool(getattr(tokenizer, "chat_template", None))

    def _input(self, prompt: str, options: Sequence[str]) -> list[int]:
        if not self.chat:
            return list(self._tokenizer(prompt)["input_ids"])
        body = prompt.removesuffix("<<")
        message = (f"{body}\n\nAnswer with exactly one of: {', '.join(options)}.")
        ids = self._tokenizer.apply_chat_template(
            [{"role": "user", "content": message}], add_generation_prompt=True, tokenize=True)
        # transformers 5 returns a BatchEncoding (a Mapping, not a dict); 4 a list of ids
        return list(ids["input_ids"] if isinstance(ids, Mapping) else ids)

    @torch.inference_mode()
    def answer(self, prompt: str, options: Sequence[str]) -> str:
        ids = torch.tensor([self._input(prompt, options)], dtype=torch.long, device=self._device)
        out = self._model.generate(ids, attention_mask=torch.ones_like(ids),
                                   max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                   pad_token_id=self._tokenizer.pad_token_id
                                   or self._tokenizer.eos_token_id)
        return str(self._tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
