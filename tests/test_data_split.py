"""The seeded test split and the text variants on synthetic sessions (real data: test_data_real)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from psych201.data.markers import MarkerError, parse_responses
from psych201.data.records import Session, SessionKey
from psych201.data.split import held_out_participants, iter_split, max_eval
from psych201.data.stats import stats_frame, summarise, write_stats
from psych201.data.variants import (
    discrete_variant,
    paper_clean,
    paper_truncate,
    paper_variant,
)


def keys(study: str, n: int) -> list[SessionKey]:
    return [SessionKey(study, "exp", str(i), i + 1) for i in range(n)]


@pytest.mark.parametrize(
    ("n", "expected"), [(0, 0), (9, 0), (10, 1), (19, 1), (999, 99), (1000, 100), (5000, 100)]
)
def test_max_eval(n: int, expected: int) -> None:
    assert max_eval(n) == expected


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 1500), max_size=4),
    st.integers(0, 2**32),
)
def test_split_sizes_and_reproducibility(sizes: dict[str, int], seed: int) -> None:
    all_keys = [k for study, n in sizes.items() for k in keys(study, n)]
    test = held_out_participants(all_keys, seed=seed)
    for study, n in sizes.items():
        assert sum(1 for k in test if k.study == study) == min(n // 10, 100)
    assert test <= set(all_keys)
    assert held_out_participants(reversed(all_keys), seed=seed) == test


def test_split_is_pinned_across_machines() -> None:
    # numpy's default_rng (PCG64) is stable across platforms and versions: pin one draw so a
    # change of algorithm (or of the key order) cannot pass unnoticed.
    drawn = sorted(int(k.participant) for k in held_out_participants(keys("s", 50), seed=0))
    assert len(drawn) == 5
    assert drawn == sorted(int(k.participant) for k in held_out_participants(keys("s", 50), seed=0))
    assert drawn != sorted(int(k.participant) for k in held_out_participants(keys("s", 50), seed=1))
    assert drawn == [3, 17, 28, 44, 48]


def test_iter_split_on_a_jsonl_study(tmp_path: Path) -> None:
    path = tmp_path / "toy.jsonl"
    lines = [
        {"text": f"Trial <<{'AB'[i % 2]}>>", "experiment": "e", "participant": i} for i in range(40)
    ]
    lines.append({"text": "no response", "experiment": "e", "participant": 99})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    test = list(iter_split(path, "test", seed=5))
    train = list(iter_split(path, "train", seed=5))
    assert {s.study for s in test} == {"toy"}
    assert len(test) + len(train) == 40
    assert len(test) in (3, 4)  # max_eval(41) = 4, the response-less line may be among them
    with pytest.raises(ValueError, match="split must be"):
        list(iter_split(path, "dev", seed=5))  # type: ignore[arg-type]


def session(text: str, **kwargs: object) -> Session:
    return Session("study", "exp", "1", 1, text, parse_responses(text), **kwargs)  # type: ignore[arg-type]


def test_paper_clean_on_the_marker_edge_cases() -> None:
    s = session("a <<skip>> b <<-1>> c <<think>> d << x  >> e <<B>>")
    cleaned = paper_clean(s)
    assert cleaned.text == "a <<skip>>.. b << -1>> c << think>> d << x>> e <<B>>"
    assert [(r.index, r.text) for r in cleaned.responses] == [
        (0, "skip"),
        (1, " -1"),
        (2, " think"),
        (3, " x"),
        (4, "B"),
    ]


def test_paper_truncate_drops_responses_that_fall_off() -> None:
    s = session("<<A>> bb <<CC>> dd")
    assert paper_truncate(s, 9).text == "<<A>> bb "
    assert paper_truncate(s, 12).text == "<<A>> bb "  # "<<C" would be an unclosed marker
    assert [r.index for r in paper_truncate(s, 15).responses] == [0, 1]
    assert paper_truncate(s, 0).responses == ()
    with pytest.raises(ValueError):
        paper_truncate(s, -1)


def test_paper_variant_truncates_after_the_release_clean_up() -> None:
    text = "<<-1>>" * 10
    variant = paper_variant(session(text), max_chars=21)
    # Released text "<< -1>>" * 10, cut at 21 characters: three whole responses.
    assert variant.text == "<< -1>>" * 3
    assert [r.index for r in variant.responses] == [0, 1, 2]


def test_discrete_variant_unwraps_and_keeps_indices() -> None:
    s = session("pick <<A>>, say <<hello>>, pick <<b>>, pick <<Z>>, rate <<57>>%")
    variant = discrete_variant(s)
    assert variant.text == "pick <<A>>, say hello, pick b, pick <<Z>>, rate 57%"
    assert [(r.index, r.text) for r in variant.responses] == [(0, "A"), (3, "Z")]
    assert discrete_variant(variant).text == variant.text  # idempotent, indices kept
    assert [r.index for r in discrete_variant(variant).responses] == [0, 3]


def test_variants_keep_metadata_and_refuse_broken_results() -> None:
    s = session("<<A>>", metadata={"age": 3}, harmonised={"age": "3.0"})
    assert discrete_variant(s).metadata == {"age": 3}
    assert paper_clean(s).harmonised == {"age": "3.0"}
    broken = Session("study", "exp", "1", 1, "<<More Details >>", parse_responses("<<A>>"))
    with pytest.raises(MarkerError):
        paper_clean(broken)


def test_stats_summarise_sessions(tmp_path: Path) -> None:
    sessions = [
        session("<<A>> <<bb>> <<>>", harmonised={"age": "3.0", "gender": "N/A"}),
        Session("study", "exp", "2", 2, "no responses", (), harmonised={"age": "N/A"}),
    ]
    (stats,) = summarise(sessions)
    assert (stats.participants, stats.responses, stats.sessions_without_responses) == (2, 3, 1)
    assert stats.empty_responses == 1
    assert stats.single_letter_share == pytest.approx(1 / 3)
    assert stats.response_chars_max == 2 and stats.response_chars_median == 1
    assert stats.metadata_coverage == 0.5 and stats.field_coverage["age"] == 0.5
    assert stats.longest_session_chars == len("<<A>> <<bb>> <<>>")
    frame = stats_frame([stats])
    assert frame.loc[0, "coverage:age"] == 0.5
    out = write_stats([stats], tmp_path / "stats.parquet")
    assert out.is_file()
