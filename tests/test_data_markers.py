"""Response markers: exact spans, every malformed case, and property tests against a reference."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from psych201.data.markers import MarkerError, parse_responses


def reference_parse(text: str) -> list[tuple[int, int]]:
    """An obviously-correct (slow) statement of the grammar: scan '<<'/'>>' tokens left to right."""
    spans: list[tuple[int, int]] = []
    opened = -1
    for match in re.finditer(r"<<|>>", text):
        if match.group() == "<<":
            if opened >= 0:
                raise MarkerError("nested", match.start() + 1)
            opened = match.start()
        else:
            if opened < 0:
                raise MarkerError("stray", match.start() + 1)
            spans.append((opened + 2, match.start()))
            opened = -1
    if opened >= 0:
        raise MarkerError("unbalanced", opened + 1)
    return spans


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no responses here", []),
        ("You press <<A>>.", ["A"]),
        ("<<>>", [""]),
        ("blank << >> and padded << x >>", [" ", " x "]),
        ("<<57>>% sure", ["57"]),
        (
            "<<did not reward or deduct coins from any player>>",
            ["did not reward or deduct coins from any player"],
        ),
        ("<<-0.8422>> then <<12>>", ["-0.8422", "12"]),
        ("a => b <<A>> c > d", ["A"]),  # stray single '>' outside markers is fine
        ("<<<x>>", ["<x"]),  # the paper's regex reads this as the response "<x"
        ("<<x>>>", ["x"]),  # ... and this as "x" followed by a lone ">"
        ("<<CA,N====>>", ["CA,N===="]),
        ("multi\nline <<a\nb>>", ["a\nb"]),
        ("non-ascii “quotes” <<Ünïcödé>>\u00a0", ["Ünïcödé"]),
    ],
)
def test_spans_are_exact(text: str, expected: list[str]) -> None:
    spans = parse_responses(text)
    assert [s.text for s in spans] == expected
    assert [s.index for s in spans] == list(range(len(expected)))
    for span in spans:
        assert text[span.start : span.end] == span.text
        assert text[span.start - 2 : span.start] == "<<"
        assert text[span.end : span.end + 2] == ">>"


@pytest.mark.parametrize(
    ("text", "reason", "column"),
    [
        ("a <<b", "unbalanced", 3),
        ("a b>> c", "stray", 4),
        ("<<a <<b>> c>>", "nested", 5),
        ("<<a>> x >>", "stray", 9),
        ("<<a <<b", "nested", 5),
        (">>", "stray", 1),
        ("<<", "unbalanced", 1),
        ("<<<<x>>", "nested", 3),
    ],
)
def test_malformed_markers_raise_with_column(text: str, reason: str, column: int) -> None:
    with pytest.raises(MarkerError) as info:
        parse_responses(text)
    assert info.value.reason.startswith(reason)
    assert info.value.column == column
    assert isinstance(info.value, ValueError)
    assert f"column {column}" in str(info.value)


# Background text never forms a marker with its neighbours: no "<<"/">>" inside, does not end
# with "<" (that would join the next "<<"). Response contents may hold lone < and >, but must not
# end with ">" (it would join the closing ">>"). Any other text is ambiguous by construction.
_background = st.text(alphabet=st.characters(codec="utf-8"), max_size=30).filter(
    lambda s: "<<" not in s and ">>" not in s and not s.endswith("<")
)
_content = st.text(alphabet=st.characters(codec="utf-8"), max_size=12).filter(
    lambda s: "<<" not in s and ">>" not in s and not s.endswith(">")
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_background, _content), max_size=8), _background)
def test_inserted_spans_are_recovered_exactly(pieces: list[tuple[str, str]], tail: str) -> None:
    text, expected = "", []
    for background, content in pieces:
        text += background + "<<"
        expected.append((len(text), content))
        text += content + ">>"
    text += tail
    spans = parse_responses(text)
    assert [(s.start, s.text) for s in spans] == expected
    assert [s.end for s in spans] == [start + len(content) for start, content in expected]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("<>a \n"), max_size=40) | st.text(max_size=60))
def test_never_crashes_and_agrees_with_the_reference(text: str) -> None:
    try:
        expected = reference_parse(text)
    except MarkerError as reference_error:
        with pytest.raises(MarkerError) as info:
            parse_responses(text)
        assert info.value.column == reference_error.column
    else:
        assert [(s.start, s.end) for s in parse_responses(text)] == expected
