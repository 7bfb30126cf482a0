"""The oracle scorer: NLL is exactly minus the stored generating log-likelihood."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from psych201.data.markers import parse_responses
from psych201.data.readers import iter_sessions
from psych201.data.records import Session
from psych201.data.variants import discrete_variant, paper_truncate
from psych201.prompts.conditions import make_condition
from psych201.prompts.records import Prompt
from psych201.scoring.oracle import OracleError, OracleScorer
from psych201.simulate import DEMO_DIR, DEMO_STUDIES, simulate_study, write_study


def _demo_sessions(name: str) -> list[Session]:
    return list(iter_sessions(DEMO_DIR / f"{name}.jsonl"))


def _session(record: dict[str, Any], line: int = 1, **metadata: object) -> Session:
    meta = {k: v for k, v in record.items() if k not in ("text", "experiment", "participant")}
    meta.update(metadata)
    return Session(
        study="sim",
        experiment=record["experiment"],
        participant=record["participant"],
        line=line,
        text=record["text"],
        responses=parse_responses(record["text"]),
        metadata=meta,
        source="sim.jsonl",
    )


@pytest.mark.parametrize("study", [s.name for s in DEMO_STUDIES])
def test_oracle_nll_is_exactly_minus_the_stored_loglik_on_the_demo_data(study: str) -> None:
    # Read the file twice, independently: through the data layer (what the pipeline sees) and
    # with json.loads line by line (the stored doubles themselves).
    sessions = _demo_sessions(study)
    raw = [json.loads(line) for line in (DEMO_DIR / f"{study}.jsonl").read_text().splitlines()]
    scores = OracleScorer().score_sessions(sessions)
    assert len(scores) == len(raw) == len(sessions)
    for record, session, spans in zip(raw, sessions, scores, strict=True):
        assert [s.index for s in spans] == list(range(len(record["loglik"])))
        assert [s.nll for s in spans] == [-v for v in record["loglik"]]  # exact, not approx
        assert len(session.responses) == len(record["loglik"])


def test_oracle_scores_whatever_spans_a_condition_keeps_by_original_index() -> None:
    sessions = _demo_sessions("simulated_risky")
    oracle = OracleScorer()
    for session in sessions[:3]:
        loglik = session.metadata["loglik"]
        short = paper_truncate(session, max_chars=800)  # drops the later responses
        assert 0 < len(short.responses) < len(session.responses)
        (spans,) = oracle.score([Prompt(short.text, short.responses, "paper")], [session])
        assert [s.nll for s in spans] == [-loglik[r.index] for r in short.responses]
        discrete = discrete_variant(session)  # single letters: every response survives
        (spans,) = oracle.score([Prompt(discrete.text, discrete.responses, "discrete")], [session])
        assert [s.nll for s in spans] == [-v for v in loglik]


@pytest.mark.parametrize("condition", ["raw", "paper", "persona", "persona-shuffled"])
def test_oracle_pairs_with_every_prompt_condition(condition: str) -> None:
    # Conditions rewrite the text (a persona preamble moves every span) but keep indices; the
    # shuffled persona borrows another participant's metadata, never their responses.
    sessions = _demo_sessions("simulated_bandit")
    prompts = make_condition(condition, seed=1).render_study(sessions)
    scores = OracleScorer().score(prompts, sessions)
    for prompt, session, spans in zip(prompts, sessions, scores, strict=True):
        assert len(spans) == len(prompt.spans) == len(session.responses)
        assert [s.nll for s in spans] == [-v for v in session.metadata["loglik"]]


def test_span_records_carry_top1_and_entropy_for_two_options() -> None:
    record = simulate_study("bandit", n_participants=1, n_trials=40, seed=2)[0]
    spans = OracleScorer().score_sessions([_session(record)])[0]
    for span, ll in zip(spans, record["loglik"], strict=True):
        p = math.exp(ll)
        assert span.n_tokens == 1 and span.context_tokens == 0 and span.truncated is False
        assert span.top1_correct is (None if p == 0.5 else p > 0.5)
        assert span.entropy == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)))
    # The first bandit trial is a coin flip for the model (equal initial values).
    assert spans[0].nll == pytest.approx(math.log(2)) and spans[0].top1_correct is None


def test_lapse_plants_a_known_misfit() -> None:
    records = simulate_study("lexical", n_participants=4, seed=3)
    sessions = [_session(r, line=i + 1) for i, r in enumerate(records)]
    exact = OracleScorer().score_sessions(sessions)
    lapsed = OracleScorer(lapse=0.2).score_sessions(sessions)
    for rec, ex, la in zip(records, exact, lapsed, strict=True):
        expected = [-math.log(0.8 * math.exp(v) + 0.2 / 2) for v in rec["loglik"]]
        np.testing.assert_allclose([s.nll for s in la], expected, rtol=1e-12)
        # Mixing in a coin flip helps only where the model gave the choice p < 1/2.
        for e, lap in zip(ex, la, strict=True):
            assert (lap.nll > e.nll) == (e.nll < math.log(2)) or math.isclose(e.nll, math.log(2))
    assert np.mean([s.nll for x in lapsed for s in x]) > np.mean([s.nll for x in exact for s in x])
    assert OracleScorer(lapse=0.2).info.model_id == "oracle-lapse0.2"
    assert OracleScorer().info.model_id == "oracle"


def test_bad_or_missing_stored_logliks_are_clear_errors() -> None:
    record = simulate_study("bandit", n_participants=1, n_trials=5, seed=0)[0]
    oracle = OracleScorer()
    cases: dict[str, dict[str, Any]] = {
        "no 'loglik' field": {"loglik": None},
        "must be a list of numbers": {"loglik": "-0.5"},
        r"loglik\[2\] = 0.5 must be finite and <= 0": {"loglik": [-0.1, -0.2, 0.5, -0.1, -0.1]},
        r"loglik\[0\] = nan": {"loglik": [math.nan, -0.2, -0.1, -0.1, -0.1]},
        r"loglik\[1\] = True is not a number": {"loglik": [-0.1, True, -0.1, -0.1, -0.1]},
        "response 4 has no stored log-likelihood": {"loglik": [-0.1] * 4, "n_options": [2] * 4},
        "'n_options' has 3 entries": {"n_options": [2, 2, 2]},
    }
    for message, meta in cases.items():
        session = _session(record, line=7, **meta)
        if meta.get("loglik", 0) is None:
            del session.metadata["loglik"]
        with pytest.raises(OracleError, match=message) as info:
            oracle.score_sessions([session])
        assert "sim.jsonl, line 7 (participant '1')" in str(info.value)
    with pytest.raises(OracleError, match="needs the number of options"):
        session = _session(record)
        del session.metadata["n_options"]
        OracleScorer(lapse=0.1).score_sessions([session])
    with pytest.raises(ValueError, match="lapse"):
        OracleScorer(lapse=1.5)


def test_prompts_and_sessions_must_pair_up() -> None:
    records = simulate_study("risky", n_participants=2, n_trials=30, seed=4)
    a, b = (_session(r, line=i + 1) for i, r in enumerate(records))
    assert [s.text for s in a.responses] != [s.text for s in b.responses]
    prompt_a = Prompt(a.text, a.responses, "raw")
    with pytest.raises(OracleError, match="do not pair up"):
        OracleScorer().score([prompt_a], [b])
    with pytest.raises(OracleError, match="1 prompts but 2 sessions"):
        OracleScorer().score([prompt_a], [a, b])


def test_numpy_lists_from_parquet_are_accepted(tmp_path: Path) -> None:
    record = simulate_study("bandit", n_participants=1, n_trials=6, seed=5)[0]
    session = _session(record)
    parquet_like = dataclasses.replace(
        session,
        metadata={
            **session.metadata,
            "loglik": np.array(record["loglik"]),
            "n_options": np.array(record["n_options"], dtype=np.int64),
        },
    )
    (spans,) = OracleScorer(lapse=0.1).score_sessions([parquet_like])
    assert len(spans) == 6
    (exact,) = OracleScorer().score_sessions([parquet_like])
    assert [s.nll for s in exact] == [-v for v in record["loglik"]]
    # And the zip round trip through the real reader keeps the doubles exact.
    path = write_study([record], tmp_path / "one.jsonl.zip")
    (from_zip,) = OracleScorer().score_sessions(list(iter_sessions(path)))
    assert [s.nll for s in from_zip] == [-v for v in record["loglik"]]
