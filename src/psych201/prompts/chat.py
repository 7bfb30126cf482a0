"""Render a transcript as a chat with a tokenizer's own template, keeping exact response spans.

The paper's chat-template control: text outside the markers becomes user turns, each
response an assistant turn; the conversation is rendered with the model's chat template, without a
generation prompt and with thinking disabled where the template allows (``enable_thinking=False``),
and only the assistant contents are scored.

Finding the assistant contents in the rendered string must not depend on what a template looks like.
The conversation is therefore rendered twice: once with a unique sentinel in place of every message
content, once with the real contents. The sentinel rendering says where each content lands; when the
real rendering equals it with the sentinels replaced (templates that insert contents verbatim, the
usual case) the offsets follow directly. When a template rewrites contents (Gemma's ``| trim``,
Qwen3's ``lstrip('\\n')`` on the last turn), the real rendering is walked piece by piece between the
template's literal pieces, and a response whose rendered content differs from the original is not
scored (counted in ``n_dropped``) rather than scored as something the participant did not write.

The authors' ``eval_instruct.py`` (paper mode, ``analysis.paper_mode``) differs in two places, both
reproducible here: a response the template only trims (Llama 3.x strips whitespace, so every
``<< -3>>`` after the paper clean-up) is scored as trimmed (``keep_trimmed``), and back-to-back
responses (``>><<``, no user turn between them) are one assistant turn (``merge_adjacent``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psych201.data.records import ResponseSpan
from psych201.errors import UsageError

OPEN = "<<"
CLOSE = ">>"


class ChatTemplateError(UsageError):
    """A chat template whose rendering cannot be mapped back to the message contents."""


@dataclass(frozen=True)
class ChatMessage:
    """One turn. ``response`` is the original response an assistant turn carries (else None)."""

    role: str
    content: str
    response: ResponseSpan | None = None


@dataclass(frozen=True)
class RenderedChat:
    """The rendered conversation and the spans of the assistant contents inside it."""

    text: str
    spans: tuple[ResponseSpan, ...]
    n_dropped: int


def transcript_messages(
    text: str, responses: Sequence[ResponseSpan], *, skip_empty: bool = False,
    merge_adjacent: bool = False,
) -> list[ChatMessage]:
    """Split a transcript at its markers into alternating user and assistant turns.

    By default every response is an assistant turn (even an empty one) and every gap between
    responses is a user turn (even an empty one), so roles strictly alternate — some templates
    refuse anything else. ``skip_empty=True`` reproduces the authors' ``split_into_messages``,
    which drops empty turns (so an empty response is not scored and roles may repeat).
    ``merge_adjacent=True`` (with ``skip_empty``) joins assistant turns that follow each other
    into one, carrying the first response's index, as the authors' end-of-turn lookup scores
    them: one span over both contents.
    """
    messages: list[ChatMessage] = []
    pos = 0
    for span in responses:
        messages.append(ChatMessage("user", text[pos : span.start - len(OPEN)]))
        messages.append(ChatMessage("assistant", span.text, span))
        pos = span.end + len(CLOSE)
    if pos < len(text):
        messages.append(ChatMessage("user", text[pos:]))
    if skip_empty:
        messages = [m for m in messages if m.content]
    if merge_adjacent:
        messages = _merge_assistant_runs(messages)
    return messages


def _merge_assistant_runs(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    for m in messages:
        last = out[-1] if out else None
        if last is not None and last.response is not None and m.response is not None:
            content = last.content + m.content
            # offsets of the merged content as if it were contiguous (the chat renders it so)
            start = last.response.start
            merged = ResponseSpan(last.response.index, start, start + len(content), content)
            out[-1] = ChatMessage("assistant", content, merged)
        else:
            out.append(m)
    return out


def render_chat(
    messages: Sequence[ChatMessage], tokenizer: Any, *, strip_bos: bool = True,
    keep_trimmed: bool = False,
) -> RenderedChat:
    """Render ``messages`` with ``tokenizer``'s chat template; spans point at assistant contents.

    ``strip_bos``: templates that write the BOS token themselves would get a second one from a
    tokenizer that also adds it by default; the leading BOS text is then removed so that
    tokenising the result with default special tokens gives exactly the template's sequence.
    Responses whose content the template alters are dropped (``n_dropped``), except, with
    ``keep_trimmed`` (the paper), those it only trims: they are scored as rendered.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template"
        )
    if not messages:  # an empty transcript: nothing to render (templates refuse empty chats)
        return RenderedChat("", (), 0)
    contents = [m.content for m in messages]
    tag = _fresh_tag(contents)
    sentinels = [f"\ue000{tag}:{i}\ue001" for i in range(len(messages))]
    skeleton = _apply(tokenizer, [(m.role, s) for m, s in zip(messages, sentinels, strict=True)])
    real = _apply(tokenizer, [(m.role, m.content) for m in messages])

    pattern = re.compile(f"\ue000{re.escape(tag)}:(\\d+)\ue001")
    pieces = pattern.split(skeleton)  # literal, id, literal, id, ..., literal
    literals = pieces[0::2]
    order = [int(i) for i in pieces[1::2]]
    for i, message in enumerate(messages):
        if message.response is not None and order.count(i) != 1:
            raise ChatTemplateError(
                f"the chat template renders assistant turn {i} {order.count(i)} times; "
                "its content cannot be located"
            )

    substituted = literals[0] + "".join(
        contents[i] + lit for i, lit in zip(order, literals[1:], strict=True)
    )
    if substituted == real:
        rendered = [contents[i] for i in order]
    else:
        rendered = _walk(real, literals, len(order))

    spans: list[ResponseSpan] = []
    pos = len(literals[0])
    for i, content, lit in zip(order, rendered, literals[1:], strict=True):
        response = messages[i].response
        if response is not None and (content == response.text or (
                keep_trimmed and content and content == response.text.strip())):
            spans.append(ResponseSpan(response.index, pos, pos + len(content), content))
        pos += len(content) + len(lit)
    n_assistant = sum(m.response is not None for m in messages)

    text = real
    bos = getattr(tokenizer, "bos_token", None)
    if strip_bos and bos and text.startswith(bos) and _adds_bos(tokenizer):
        text = text[len(bos) :]
        spans = [ResponseSpan(s.index, s.start - len(bos), s.end - len(bos), s.text) for s in spans]
    spans.sort(key=lambda s: s.start)
    return RenderedChat(text, tuple(spans), n_assistant - len(spans))


def _apply(tokenizer: Any, turns: Sequence[tuple[str, str]]) -> str:
    rendered = tokenizer.apply_chat_template(
        [{"role": role, "content": content} for role, content in turns],
        tokenize=False,
        add_generation_prompt=False,
        enable_thinking=False,  # ignored by templates without a thinking switch
    )
    if not isinstance(rendered, str):
        raise ChatTemplateError(f"apply_chat_template returned {type(rendered).__name__}, not str")
    return rendered


def _fresh_tag(contents: Sequence[str]) -> str:
    """A sentinel tag that occurs in no content (private-use characters make clashes unlikely)."""
    while True:
        tag = secrets.token_hex(6)
        if not any(tag in c for c in contents):
            return tag


def _walk(real: str, literals: Sequence[str], n: int) -> list[str]:
    """Recover each rendered content from ``real`` by matching the template's literal pieces."""
    if not real.startswith(literals[0]) or not real.endswith(literals[-1]):
        raise ChatTemplateError("the chat template output does not match its own skeleton")
    contents: list[str] = []
    pos = len(literals[0])
    for k in range(n):
        following = literals[k + 1]
        if k == n - 1:
            end = len(real) - len(following)
        elif not following:
            raise ChatTemplateError("the chat template puts two contents side by side")
        else:
            end = real.find(following, pos)
        if end < pos:
            raise ChatTemplateError("the chat template rewrites its output beyond the contents")
        contents.append(real[pos:end])
        pos = end + len(following)
    return contents


def _adds_bos(tokenizer: Any) -> bool:
    """Whether tokenising with default special tokens prepends the BOS token."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos_id
