"""Rows without tokens (empty responses, paper-mode responses the marker matching missed)."""

from __future__ import annotations

import pandas as pd
import pytest

from psych201.analysis.tables import TableError, validate_responses

ROW = dict(
    model="m", condition="raw", study="s", experiment="e", participant="1", line=1,
    response_index=0, response_text="a", n_tokens=1, nll=1.0, top1_correct=None, entropy=1.0,
    context_tokens=3, truncated=False,
)  # fmt: skip


def test_rows_without_tokens_are_left_out_of_the_analyses() -> None:
    frame = pd.DataFrame(
        [
            ROW,
            {**ROW, "response_index": 1, "response_text": "", "n_tokens": 0, "nll": 0.0},
            {**ROW, "response_index": 2, "n_tokens": 0, "nll": float("nan")},
            {**ROW, "response_index": 3, "nll": 2.0},
        ]
    )
    out = validate_responses(frame)
    assert out.response_index.tolist() == [0, 3]
    assert out.nll.mean() == pytest.approx(1.5)


def test_a_scored_response_with_a_bad_nll_is_still_refused() -> None:
    with pytest.raises(TableError, match="row 0: nll must be a finite number"):
        validate_responses(pd.DataFrame([{**ROW, "nll": float("nan")}]))


def test_the_public_api_resolves() -> None:
    import psych201

    for name in psych201.__all__:
        assert getattr(psych201, name) is not None, name
    with pytest.raises(AttributeError):
        _ = psych201.no_such_name
