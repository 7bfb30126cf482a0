"""The chat-template condition: the transcript as a chat in the model's own template (only the
assistant turns scored), refused in one line where the tokenizer has no chat template. Built by
:func:`psych201.prompts.conditions.make_condition` like every condition."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from psych201.data.records import Session
from psych201.data.variants import PAPER_MAX_CHARS, paper_variant
from psych201.prompts.chat import render_chat, transcript_messages
from psych201.prompts.condition_errors import ConditionUnavailableError
from psych201.prompts.records import ConditionRole, Prompt


@dataclass(frozen=True)
class ChatTemplateCondition:
    """The transcript as a chat in the model's own template; only assistant contents scored.

    ``template_sha256`` identifies the template in the spec (the tokenizer object itself is not
    part of equality or hashing). ``paper=True`` reproduces the authors' ``eval_instruct.py``:
    clean-ups and truncation, a ``.`` appended, empty turns dropped, BOS left as the template
    writes it.
    """

    role: ClassVar[ConditionRole] = ConditionRole.CHAT_TEMPLATE
    tokenizer: Any = field(compare=False, hash=False, repr=False)
    paper: bool = False
    max_chars: int = PAPER_MAX_CHARS
    template_sha256: str = field(init=False, default="")
    tokenizer_name: str = field(init=False, default="")

    def __post_init__(self) -> None:
        template = getattr(self.tokenizer, "chat_template", None)
        if not isinstance(template, str) or not template:
            raise ConditionUnavailableError(
                "chat-template needs a tokenizer with a chat template; "
                f"{getattr(self.tokenizer, 'name_or_path', self.tokenizer)!r} has none"
            )
        digest = hashlib.sha256(template.encode()).hexdigest()
        object.__setattr__(self, "template_sha256", digest)
        object.__setattr__(self, "tokenizer_name", str(getattr(self.tokenizer, "name_or_path", "")))

    @property
    def name(self) -> str:
        return "chat-template-paper" if self.paper else "chat-template"

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "condition": "chat-template",
            "paper": self.paper,
            "template_sha256": self.template_sha256,
            "enable_thinking": False,
        }
        if self.paper:
            spec["max_chars"] = self.max_chars
        return spec

    def eligible(self, session: Session) -> bool:
        return True

    def render_study(self, sessions: Sequence[Session]) -> list[Prompt]:
        prompts = []
        for session in sessions:
            variant = session
            text = session.text
            if self.paper:
                variant = paper_variant(session, self.max_chars)
                text = variant.text + "."  # eval_instruct.py appends a period after truncating
            messages = transcript_messages(text, variant.responses, skip_empty=self.paper,
                                           merge_adjacent=self.paper)
            chat = render_chat(messages, self.tokenizer, strip_bos=not self.paper,
                               keep_trimmed=self.paper)
            prompts.append(
                Prompt(
                    text=chat.text,
                    spans=chat.spans,
                    condition=self.name,
                    n_dropped=len(session.responses) - len(chat.spans),
                    marker_aligned=False,
                )
            )
        return prompts
