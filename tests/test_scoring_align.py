"""Span → token alignment on three tokenizer families, synthetic and real transcripts."""

from __future__ import annotations

import itertools
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paths import DATA
from psych201.data.markers import parse_responses
from psych201.data.readers import iter_sessions
from psych201.data.records import ResponseSpan
from psych201.data.variants import paper_variant
from psych201.prompts.records import Prompt
from psych201.scoring.align import AlignmentError, align, paper_runs
from tiny_models import (
    byte_bpe_tokenizer,
    chat_markup_tokenizer,
    merging_bpe_tokenizer,
    psych_corpus,
    sentencepiece_tokenizer,
)

TOKENIZERS = {
    "byte-bpe": byte_bpe_tokenizer,
    "sentencepiece": sentencepiece_tokenizer,
    "sentencepiece-prepend": lambda: sentencepiece_tokenizer("prepend"),
    "merging-bpe": merging_bpe_tokenizer,
}


def prompt_of(text: str, condition: str = "raw") -> Prompt:
    return Prompt(text=text, spans=parse_responses(text), condition=condition)


def spelled(tokenizer: Any, ids: np.ndarray) -> str:
    """The characters a token sequence spells (no decoder clean-ups, no stripped spaces)."""
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    if "ByteLevel" in repr(tokenizer.backend_tokenizer.decoder):
        return str(tokenizer.convert_tokens_to_string(tokens))
    out = bytearray()
    for token in tokens:  # SentencePiece style: "▁" is a space, "<0xNN>" a raw byte
        if re.fullmatch(r"<0x[0-9A-F]{2}>", token):
            out.append(int(token[3:5], 16))
        else:
            out += token.replace("▁", " ").encode()
    return out.decode()


def assert_exact(prompt: Prompt, tokenizer: Any, mode: str = "offsets") -> Any:
    aligned = align(prompt, tokenizer, mode)
    assert len(aligned.span_positions) == len(prompt.spans)
    for span, pos in zip(prompt.spans, aligned.span_positions, strict=True):
        assert spelled(tokenizer, aligned.token_ids[pos]) == span.text, span
        assert (np.diff(pos) == 1).all()
        assert pos.size == 0 or pos[0] >= 1
    return aligned


@pytest.mark.parametrize("family", TOKENIZERS)
@pytest.mark.parametrize("mode", ["offsets", "pieces"])
def test_exact_on_synthetic_transcripts(family: str, mode: str) -> None:
    tok = TOKENIZERS[family]()
    for text in psych_corpus()[:40]:
        assert_exact(prompt_of(text), tok, mode)


def test_merging_tokenizer_needs_repair_and_defeats_paper_matching() -> None:
    tok = merging_bpe_tokenizer()
    assert ">>." in tok.get_vocab()  # the merge the test is about
    text = "You press <<A>>. You press <<B>>. Your estimate: <<-0.5>>\nYou press <<C>>."
    prompt = prompt_of(text)
    natural = tok(text, return_offsets_mapping=True)["offset_mapping"]
    bounds = {e for s in prompt.spans for e in (s.start, s.end)}
    assert any(a < b < c for a, c in natural for b in bounds)  # natural tokens straddle
    exact = assert_exact(prompt, tok)
    assert exact.n_split > 0
    paper = align(prompt, tok, "paper")
    # The paper's runs do not match the responses' own tokens on this vocabulary.
    assert any(
        not np.array_equal(tok.convert_ids_to_tokens(exact.token_ids[p].tolist()), q)
        for p, q in zip(
            exact.span_positions,
            [tok.convert_ids_to_tokens(paper.token_ids[p].tolist()) for p in paper.span_positions],
            strict=True,
        )
    )


def test_sentencepiece_pieces_get_no_dummy_prefix() -> None:
    tok = sentencepiece_tokenizer()
    # A response that starts a word-merge: "<<A>>." is one token in this vocabulary.
    prompt = prompt_of("You press <<A>>. Then <<left right>>.")
    aligned = assert_exact(prompt, tok)
    assert aligned.n_split > 0
    tokens = tok.convert_ids_to_tokens(aligned.token_ids[aligned.span_positions[0]].tolist())
    assert tokens == ["A"]  # not "▁A": the continuation piece gets no prefix space


def test_bos_kept_and_never_a_target() -> None:
    tok = byte_bpe_tokenizer(bos=True)
    aligned = assert_exact(prompt_of("<<A>> then <<B>>"), tok)
    assert aligned.n_prefix == 1
    assert aligned.token_ids[0] == tok.bos_token_id
    assert spelled(tok, aligned.token_ids[1:2]) == "<<"
    assert aligned.span_positions[0].tolist() == [2]


def test_special_tokens_written_in_the_text_stay_once() -> None:
    tok = chat_markup_tokenizer()
    text = "<|im_start|>user\nYour estimate: <<-0.5>><|im_end|>\n<|im_start|>assistant\n"
    natural = tok(text).input_ids
    aligned = assert_exact(prompt_of(text), tok)
    assert aligned.n_split > 0  # " <<-" is one token in this vocabulary
    assert aligned.n_prefix == 0  # chat markup is text, not a BOS to repeat in windows
    start = tok.convert_tokens_to_ids("<|im_start|>")
    assert aligned.token_ids.tolist().count(start) == natural.count(start) == 2


def test_empty_and_blank_responses() -> None:
    tok = byte_bpe_tokenizer()
    prompt = prompt_of("Recall: <<>>. Recall: << >>. Recall: <<cat >>.")
    aligned = assert_exact(prompt, tok)
    assert aligned.span_positions[0].size == 0
    assert aligned.span_positions[1].size >= 1
    # An empty span begins where the next token starts, after the "<<" (its context length).
    first = int(aligned.span_first[0])
    assert tok.convert_ids_to_tokens([int(aligned.token_ids[first])])[0].startswith(">>")


def test_paper_runs_match_the_authors_scan() -> None:
    o, c = np.array([7, 8]), np.array([9])
    ids = np.array([1, 7, 8, 5, 9, 2, 7, 8, 9, 7, 8, 4, 4, 3])
    # run 1: [3, 4); run 2: empty [8, 8); run 3: no close -> to the end
    assert paper_runs(ids, o, c) == [(3, 4), (8, 8), (11, 14)]
    assert paper_runs(np.array([5, 5]), o, c) == []


def test_paper_mode_reports_unmatched_responses() -> None:
    tok = byte_bpe_tokenizer()
    prompt = prompt_of("Pick:\n<<A>> and then <<B>> done")  # "\n<<" has no " <<" token
    aligned = align(prompt, tok, "paper")
    assert aligned.unmatched == (0,)
    assert aligned.span_positions[0].size == 0
    assert spelled(tok, aligned.token_ids[aligned.span_positions[1]]) == "B"


def test_bad_input_is_a_clear_error() -> None:
    tok = byte_bpe_tokenizer()
    text = "x <<A>> <<B>>"
    a, b = parse_responses(text)
    unordered = Prompt(text=text, spans=(b, a), condition="raw")
    with pytest.raises(AlignmentError, match="response 0"):
        align(unordered, tok)
    with pytest.raises(ValueError, match="unknown alignment mode"):
        align(prompt_of("x <<A>>"), tok, "fuzzy")
    unmarked = Prompt(
        text="x A", spans=(ResponseSpan(0, 2, 3, "A"),), condition="chat", marker_aligned=False
    )
    assert_exact(unmarked, tok)
    with pytest.raises(AlignmentError, match="paper"):
        align(unmarked, tok, "paper")


_ALPHABET = "ab XY.-,0<>\n%é’"


@st.composite
def transcripts(draw: Any) -> str:
    pieces = draw(
        st.lists(
            st.tuples(st.text(_ALPHABET, max_size=12), st.text(_ALPHABET, max_size=6)),
            min_size=1,
            max_size=6,
        )
    )
    text = ""
    for context, response in pieces:
        # Markers must stay unambiguous: no "<<"/">>" runs inside context or response.
        context = context.replace("<", "(").replace(">", ")")
        response = response.replace("<", "(").replace(">", ")")
        text += f"{context}<<{response}>>"
    return text + draw(st.text(_ALPHABET.replace("<", "").replace(">", ""), max_size=5))


@pytest.mark.parametrize("family", TOKENIZERS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=transcripts())
def test_offsets_exact_on_arbitrary_text(family: str, text: str) -> None:
    assert_exact(prompt_of(text), TOKENIZERS[family]())


def _first_sessions(n_chars: int = 20_000) -> list[Prompt]:
    prompts = []
    for folder in sorted(p for p in DATA.iterdir() if p.is_dir()):
        session = next(itertools.islice(iter_sessions(folder), 1))
        text = session.text[:n_chars]
        cut = text.rfind(">>") + 2
        prompts.append(Prompt(text[:cut], parse_responses(text[:cut]), folder.name))
    return prompts


@pytest.mark.parametrize("family", TOKENIZERS)
def test_exact_on_real_sessions_all_studies(family: str) -> None:
    tok = TOKENIZERS[family]()
    prompts = _first_sessions(6_000)
    assert len(prompts) == 19
    for prompt in prompts:
        assert_exact(prompt, tok)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "gemma-3-270m"])
def test_real_tokenizers_on_real_sessions(name: str) -> None:
    from psych201.scoring.models import load_tokenizer

    tok = load_tokenizer(name)
    splits = 0
    for prompt in _first_sessions():
        aligned = assert_exact(prompt, tok)
        splits += aligned.n_split
        # Paper mode on the paper's own text agrees with exact alignment response by response,
        # except where the marker matching is known to fail.
        session_text = prompt.text
        spans = parse_responses(session_text)
        from psych201.data.records import Session

        pv = paper_variant(Session(prompt.condition, "", "0", 1, session_text, spans))
        pp = Prompt(pv.text, pv.responses, "paper")
        exact = align(pp, tok)
        paper = align(pp, tok, "paper")
        agree = sum(
            spelled(tok, exact.token_ids[a]) == spelled(tok, paper.token_ids[b])
            for a, b in zip(exact.span_positions, paper.span_positions, strict=True)
        )
        assert agree >= 0.85 * len(pp.spans), (prompt.condition, agree, len(pp.spans))
    if name == "gemma-3-270m":
        # Gemma merges "<<-" into one token ("▁<<-"): the numeric studies need repairs.
        assert splits > 0
