"""Every prompt condition on real sessions keeps each scored span exactly on its response.

Also: the chat-template condition on SmolLM2-135M-Instruct's real template and on a Qwen3-style
template with thinking (only assistant contents are ever inside a span), and the condition
factory's contract (names, parameters, specs, hashing).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paths import DATA, needs_data, require_data
from psych201.data.markers import parse_responses
from psych201.data.readers import discover_studies, iter_sessions
from psych201.data.records import Session
from psych201.data.variants import is_discrete_response, paper_variant
from psych201.prompts.chat import ChatTemplateError, render_chat, transcript_messages
from psych201.prompts.conditions import (
    CONDITION_NAMES,
    Condition,
    ConditionUnavailableError,
    make_condition,
)
from psych201.prompts.options import response_options
from psych201.prompts.records import Prompt
from tiny_models import smollm2_tokenizer_or_skip

#: A Qwen3-style template written for this test: system turn, a reverse scan for the last user
#: query, ``<think>`` blocks split off assistant contents, an (empty) think block on assistant
#: turns after the last query, ``lstrip('\n')`` of such contents, and the ``enable_thinking``
#: switch on the generation prompt. Rendering refuses to run unless thinking was switched off.
QWEN3_STYLE = (
    "{%- if enable_thinking is not defined or enable_thinking %}"
    "{{ raise_exception('thinking was not disabled') }}{%- endif %}"
    "{%- if messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- set ns = namespace(last_query_index=messages|length - 1, searching=true) %}"
    "{%- for message in messages[::-1] %}"
    "{%- set index = (messages|length - 1) - loop.index0 %}"
    "{%- if ns.searching and message.role == 'user' %}"
    "{%- set ns.searching = false %}{%- set ns.last_query_index = index %}{%- endif %}"
    "{%- endfor %}"
    "{%- for message in messages %}"
    "{%- set content = message.content if message.content is string else '' %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{%- set reasoning = '' %}"
    "{%- if '</think>' in content %}"
    "{%- set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1]"
    ".lstrip('\\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{%- if loop.index0 > ns.last_query_index and (loop.last or reasoning) %}"
    "{{- '<|im_start|>assistant\\n<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n'"
    " + content.lstrip('\\n') }}"
    "{%- else %}{{- '<|im_start|>assistant\\n' + content }}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}"
)


@pytest.fixture(scope="module")
def smollm2() -> Any:
    """SmolLM2-135M-Instruct's real tokenizer (with its chat template), loaded once."""
    return smollm2_tokenizer_or_skip()


@pytest.fixture(scope="module")
def qwen3_style(smollm2: Any) -> Any:
    tokenizer = copy.copy(smollm2)
    tokenizer.chat_template = QWEN3_STYLE
    return tokenizer


@pytest.fixture(scope="module")
def first_sessions() -> list[Session]:
    """The first participant of every real study (19)."""
    require_data()
    return [next(iter_sessions(source.path)) for source in discover_studies(DATA)]


@pytest.fixture(scope="module")
def first_with_metadata() -> list[list[Session]]:
    """Per study with metadata, its first three sessions that have some (shuffling needs two)."""
    require_data()
    studies = []
    for source in discover_studies(DATA):
        sessions = list(itertools.islice(iter_sessions(source.path), 3))
        chosen = [s for s in sessions if make_condition("persona").eligible(s)]
        if len(chosen) >= 2:
            studies.append(chosen)
    return studies


def _all_conditions(tokenizer: Any) -> list[Condition]:
    conditions: list[Condition] = [
        make_condition("raw"),
        make_condition("no-persona"),
        make_condition("paper"),
        make_condition("discrete"),
        make_condition("discrete", paper=True),
        make_condition("chat-template", tokenizer=tokenizer),
        make_condition("chat-template", tokenizer=tokenizer, paper=True),
    ]
    for mode in ("interview", "qa", "bio", "portray"):
        conditions.append(make_condition("persona", mode=mode))
        conditions.append(make_condition("persona-shuffled", mode=mode, seed=1))
    conditions.append(make_condition("persona", paper=True))
    return conditions


def _paper_cleaned(content: str) -> str:
    """What the authors' clean-ups leave of one response's content (PROTOCOL §1)."""
    if content.startswith("-"):
        content = " " + content  # "<<-" -> "<< -"
    if content == "think":
        content = " think"  # "<<think>>" -> "<< think>>"
    return content.rstrip()  # whitespace right before ">>" removed


def _check_prompt(condition: Condition, session: Session, prompt: Prompt) -> None:
    original = {r.index: r.text for r in session.responses}
    seen = [s.index for s in prompt.spans]
    assert len(set(seen)) == len(seen), "a response is scored twice"
    assert prompt.n_dropped + len(prompt.spans) == len(session.responses)
    assert prompt.condition == condition.name
    merged = _chat_paper_turns(session) if condition.name == "chat-template-paper" else {}
    for span in prompt.spans:
        assert prompt.text[span.start : span.end] == span.text
        expected = original[span.index]
        if condition.name in ("paper", "discrete-paper", "chat-template-paper", "persona-paper"):
            expected = _paper_cleaned(expected)
        if span.index in merged:  # back-to-back responses: one assistant turn (PROTOCOL §6)
            expected = merged[span.index]
        assert span.text == expected, (condition.name, session.study, span.index)
        if prompt.marker_aligned:
            assert prompt.text[span.start - 2 : span.start] == "<<"
            assert prompt.text[span.end : span.end + 2] == ">>"
    if condition.name.startswith("discrete"):
        assert all(is_discrete_response(s.text) for s in prompt.spans)
        assert len(prompt.options) == len(prompt.spans)
        offered = dict(zip(original, response_options(session), strict=True))
        assert prompt.options == tuple(offered[s.index] for s in prompt.spans)
    # Which responses are scored: all of them, the one-letter ones for the discrete variant, the
    # non-empty ones for the authors' chat split; the paper's truncation may only cut that list
    # short, never skip or reorder.
    merged_away = {i for group in _chat_paper_groups(session) for i in group[1:]}
    expected_indices = [
        i
        for i, text in original.items()
        if (not condition.name.startswith("discrete") or is_discrete_response(text))
        and (condition.name != "chat-template-paper" or _paper_cleaned(text))
        and not (merged and i in merged_away)
    ]
    if "paper" in condition.name:
        assert seen == expected_indices[: len(seen)]
    else:
        assert seen == expected_indices


@pytest.mark.slow
@needs_data
def test_every_condition_keeps_spans_on_the_responses_of_every_study(
    first_sessions: list[Session], first_with_metadata: list[list[Session]], smollm2: Any
) -> None:
    assert len(first_sessions) == 19
    for condition in _all_conditions(smollm2):
        if condition.name.startswith("persona-shuffled"):
            groups = first_with_metadata  # a derangement needs two participants per study
        else:
            groups = [[s] for s in first_sessions if condition.eligible(s)]
        assert groups, condition.name
        for sessions in groups:
            prompts = condition.render_study(sessions)
            assert len(prompts) == len(sessions)
            for session, prompt in zip(sessions, prompts, strict=True):
                _check_prompt(condition, session, prompt)
                if condition.name.startswith("persona"):
                    assert prompt.spans, (condition.name, session.study)


def _chat_paper_groups(session: Session) -> list[list[int]]:
    """Runs of non-empty responses of the paper text with only empty responses between them:
    the authors' chat split drops empty turns, so such a run is one assistant turn."""
    variant = paper_variant(session)
    groups: list[list[int]] = []
    previous_end = None
    for r in variant.responses:
        if not r.text:
            continue
        gap = variant.text[previous_end : r.start - 2] if previous_end is not None else None
        if groups and gap is not None and re.fullmatch(r"(<<>>)*", gap):
            groups[-1].append(r.index)
        else:
            groups.append([r.index])
        previous_end = r.end + 2
    return groups


def _chat_paper_turns(session: Session) -> dict[int, str]:
    """First index of each merged run -> the turn's text (the contents joined)."""
    variant = paper_variant(session)
    text = {r.index: r.text for r in variant.responses}
    return {g[0]: "".join(text[i] for i in g) for g in _chat_paper_groups(session) if len(g) > 1}


_OUTSIDE = st.text(alphabet="ab J\n.-:?", max_size=12)
_CONTENT = st.one_of(
    st.text(alphabet="AB xy\n\t-", max_size=6), st.sampled_from(["skip", "think", "-1.5", " "])
)


@st.composite
def _transcripts(draw: st.DrawFn) -> Session:
    parts = [draw(_OUTSIDE)]
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        parts.append(f"<<{draw(_CONTENT)}>>")
        parts.append(draw(_OUTSIDE))
    text = "".join(parts)
    harmonised = {"age": draw(st.sampled_from(["N/A", "21.0"])), "gender": "female"}
    return Session("s", "e", "1", 1, text, parse_responses(text), harmonised=harmonised)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(session=_transcripts())
def test_spans_stay_exact_on_generated_transcripts(smollm2: Any, session: Session) -> None:
    # Padded, empty, multi-line, "-"-prefixed and "skip"/"think" responses, adjacent markers.
    for condition in _all_conditions(smollm2):
        if condition.name.startswith("persona-shuffled") or not condition.eligible(session):
            continue
        (prompt,) = condition.render_study([session])
        _check_prompt(condition, session, prompt)


@needs_data
def test_raw_is_identity_and_eligibility_matches_metadata(first_sessions: list[Session]) -> None:
    raw = make_condition("raw")
    for session, prompt in zip(first_sessions, raw.render_study(first_sessions), strict=True):
        assert prompt.text == session.text and prompt.spans == session.responses
    with_meta = {s.study for s in first_sessions if make_condition("no-persona").eligible(s)}
    assert with_meta == {
        "busch2024_stroop",
        "dezfouli2019",
        "frey2017lotteries",
        "guenther2020LDT",
        "guenther2022relational",
        "guenther2023associations_individual",
        "guenther2024substitutions",
        "haridi2024memorySemanticContext",
        "nussenbaum2023novelty",
        "thoma2025problearn",
    }
    for name in ("persona", "persona-shuffled"):
        assert {s.study for s in first_sessions if make_condition(name).eligible(s)} == with_meta

@needs_data
def test_raw_with_offered_carries_the_option_sets_and_nothing_else(
    first_sessions: list[Session],
) -> None:
    """``offered=True`` adds the transcript's option sets to the raw prompts (so one-token
    options get their log-probs recorded) and leaves text, spans and name alone; its spec says
    so, while plain raw's spec (and hence every earlier run's hash) stays as it was."""
    plain, offered = make_condition("raw"), make_condition("raw", offered=True)
    assert plain.spec() == {"condition": "raw"}
    assert offered.spec() == {"condition": "raw", "offered": True}
    assert offered.name == "raw"
    with_options = 0
    for session, a, b in zip(first_sessions, plain.render_study(first_sessions),
                             offered.render_study(first_sessions), strict=True):
        assert (b.text, b.spans) == (a.text, a.spans) and a.options == ()
        assert b.options == tuple(response_options(session))
        with_options += any(o is not None for o in b.options or ())
    assert with_options >= 5  # the letter-choice studies
    with pytest.raises(ValueError, match="offered must be true or false"):
        make_condition("raw", offered="yes")
    with pytest.raises(ValueError, match="does not take offered"):
        make_condition("paper", offered=True)



@needs_data
def test_paper_condition_truncates_long_sessions(first_sessions: list[Session]) -> None:
    dezfouli = next(s for s in first_sessions if s.study == "dezfouli2019")
    (prompt,) = make_condition("paper").render_study([dezfouli])
    assert len(prompt.text) <= 32768 < len(dezfouli.text)
    assert prompt.n_dropped > 0
    assert [s.index for s in prompt.spans] == list(range(len(prompt.spans)))


# --- chat templates -------------------------------------------------------------------------


def _session(text: str) -> Session:
    return Session("s", "e", "1", 1, text, parse_responses(text))


def _assert_only_assistant_contents(prompt: Prompt, opening: str, closing: str) -> None:
    """Every span sits between an assistant header and the end-of-turn token, and nothing else
    of the rendered conversation is inside any span."""
    for span in prompt.spans:
        assert prompt.text[: span.start].endswith(opening), prompt.text[span.start - 40 : span.end]
        assert prompt.text[span.end :].startswith(closing)
    covered = [False] * len(prompt.text)
    for span in prompt.spans:
        covered[span.start : span.end] = [True] * (span.end - span.start)
    for marker in ("<|im_start|>", "<|im_end|>", "<think>", "</think>", "user", "system"):
        for match in re.finditer(re.escape(marker), prompt.text):
            assert not any(covered[match.start() : match.end()]), marker


def test_smollm2_template_scores_only_assistant_turns(smollm2: Any) -> None:
    session = _session("Pick J or K.\nYou press <<J>>. Again:\nYou press <<K>> and win.")
    (prompt,) = make_condition("chat-template", tokenizer=smollm2).render_study([session])
    assert prompt.text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nPick J or K.\nYou press <|im_end|>\n"
        "<|im_start|>assistant\nJ<|im_end|>\n<|im_start|>user\n. Again:\nYou press <|im_end|>\n"
        "<|im_start|>assistant\nK<|im_end|>\n<|im_start|>user\n and win.<|im_end|>\n"
    )
    assert [(s.index, s.text) for s in prompt.spans] == [(0, "J"), (1, "K")]
    assert not prompt.marker_aligned and prompt.n_dropped == 0
    _assert_only_assistant_contents(prompt, "<|im_start|>assistant\n", "<|im_end|>\n")


@needs_data
def test_smollm2_template_on_every_real_study(smollm2: Any, first_sessions: list[Session]) -> None:
    condition = make_condition("chat-template", tokenizer=smollm2)
    for session, prompt in zip(first_sessions, condition.render_study(first_sessions), strict=True):
        assert prompt.n_dropped == 0, session.study
        assert [s.text for s in prompt.spans] == [r.text for r in session.responses]
        _assert_only_assistant_contents(prompt, "<|im_start|>assistant\n", "<|im_end|>\n")


@needs_data
def test_qwen3_style_template_with_thinking(
    qwen3_style: Any, first_sessions: list[Session]
) -> None:
    condition = make_condition("chat-template", tokenizer=qwen3_style)
    for session, prompt in zip(first_sessions, condition.render_study(first_sessions), strict=True):
        assert [s.text for s in prompt.spans] == [r.text for r in session.responses]
        ends_with_response = session.text.endswith(">>")
        for k, span in enumerate(prompt.spans):
            last = k == len(prompt.spans) - 1
            # An assistant turn after the last user query carries an empty think block.
            opening = "assistant\n<think>\n\n</think>\n\n" if last and ends_with_response else ""
            assert prompt.text[: span.start].endswith(opening or "<|im_start|>assistant\n")
        _assert_only_assistant_contents(prompt, "\n", "<|im_end|>\n")


def test_qwen3_style_final_think_block_is_never_scored(qwen3_style: Any) -> None:
    session = _session("Choose A or B. You choose <<A>>. Once more. You choose <<B>>")
    (prompt,) = make_condition("chat-template", tokenizer=qwen3_style).render_study([session])
    assert prompt.text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\nB<|im_end|>\n")
    assert [s.text for s in prompt.spans] == ["A", "B"]
    _assert_only_assistant_contents(prompt, "\n", "<|im_end|>\n")


def test_template_that_rewrites_a_response_drops_only_that_response(qwen3_style: Any) -> None:
    # The Qwen3 template lstrips "\n" from the last assistant turn: "\nB" would be scored as "B".
    session = _session("Say something. <<A>> and again <<\nB>>")
    (prompt,) = make_condition("chat-template", tokenizer=qwen3_style).render_study([session])
    assert [s.text for s in prompt.spans] == ["A"] and prompt.n_dropped == 1


class _JinjaTokenizer:
    """A stand-in with a template that trims contents and writes BOS (Gemma-style)."""

    chat_template = (
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m.role == "
        "'assistant' else m.role }}\n{{ m.content | trim }}<end_of_turn>\n{% endfor %}"
    )
    bos_token = "<bos>"
    bos_token_id = 2
    name_or_path = "stand-in"

    def __init__(self, adds_bos: bool) -> None:
        self.adds_bos = adds_bos

    def apply_chat_template(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        import jinja2

        template = jinja2.Environment().from_string(self.chat_template)
        return template.render(messages=messages, bos_token=self.bos_token, **kwargs)

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": ([2] if self.adds_bos else []) + [ord(c) for c in text]}


def test_trimming_template_and_bos_handling() -> None:
    session = _session("Recall the word. <<  apple >> Next one. <<pear>>")
    (prompt,) = make_condition("chat-template", tokenizer=_JinjaTokenizer(True)).render_study(
        [session]
    )
    # The padded response would be scored as "apple": it is dropped, "pear" is kept.
    assert [(s.index, s.text) for s in prompt.spans] == [(1, "pear")] and prompt.n_dropped == 1
    assert prompt.text.startswith("<start_of_turn>user\nRecall the word.<end_of_turn>")  # no BOS
    (kept,) = make_condition("chat-template", tokenizer=_JinjaTokenizer(False)).render_study(
        [session]
    )
    assert kept.text.startswith("<bos><start_of_turn>")
    assert [s.text for s in kept.spans] == ["pear"]


def test_messages_alternate_and_paper_split_skips_empty_turns() -> None:
    text = "<<A>><<>> tail"
    roles = [m.role for m in transcript_messages(text, parse_responses(text))]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    paper = transcript_messages(text, parse_responses(text), skip_empty=True)
    assert [(m.role, m.content) for m in paper] == [("assistant", "A"), ("user", " tail")]


def test_render_chat_refuses_tokenizers_without_template() -> None:
    class NoTemplate:
        chat_template = None

    with pytest.raises(ChatTemplateError, match="no chat template"):
        render_chat([], NoTemplate())
    with pytest.raises(ConditionUnavailableError, match="chat template"):
        make_condition("chat-template", tokenizer=NoTemplate())
    with pytest.raises(ConditionUnavailableError, match="needs the model's tokenizer"):
        make_condition("chat-template")


# --- the factory ----------------------------------------------------------------------------


def test_names_specs_and_hashing(smollm2: Any) -> None:
    conditions = _all_conditions(smollm2)
    names = [c.name for c in conditions]
    assert len(set(names)) == len(names)  # every variant has its own label
    assert {c.spec()["condition"] for c in conditions} == set(CONDITION_NAMES)
    specs = [json.dumps(c.spec(), sort_keys=True) for c in conditions]
    assert len(set(specs)) == len(specs)
    for condition in conditions:
        assert isinstance(condition, Condition)
        hash(condition)
    assert make_condition("persona", mode="qa") == make_condition("persona", mode="qa")
    assert make_condition("persona-shuffled", seed=1) != make_condition("persona-shuffled", seed=2)
    assert make_condition("raw", seed=5).spec() == make_condition("raw").spec()  # seed irrelevant
    chat = make_condition("chat-template", tokenizer=smollm2).spec()
    assert len(chat["template_sha256"]) == 64 and chat["enable_thinking"] is False


def test_factory_rejects_unknown_names_and_parameters() -> None:
    with pytest.raises(ValueError, match="unknown condition 'persona-qa'"):
        make_condition("persona-qa")
    with pytest.raises(ValueError, match="does not take mode"):
        make_condition("raw", mode="qa")
    with pytest.raises(ValueError, match="unknown persona mode"):
        make_condition("persona", mode="essay")
    with pytest.raises(ValueError, match="max_chars must be a positive integer"):
        make_condition("paper", max_chars=0)
    with pytest.raises(ValueError, match="paper must be true or false"):
        make_condition("discrete", paper="yes")


def test_prompt_rejects_inexact_spans() -> None:
    text = "a <<b>>"
    (span,) = parse_responses(text)
    Prompt(text, (span,), "raw")
    with pytest.raises(ValueError, match="does not hold its text"):
        Prompt("a <<c>>", (span,), "raw")
    with pytest.raises(ValueError, match="option sets"):
        Prompt(text, (span,), "raw", options=(None, None))
