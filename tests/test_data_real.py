"""The data layer on the 19 real studies: counts, variants, harmonisation, split, build."""

from __future__ import annotations

import csv
import json
import random
import re
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

from paths import DATA, needs_data
from psych201.data.build import build_dataset
from psych201.data.fields import HARMONISED_FIELDS, NA
from psych201.data.issues import IssueLog
from psych201.data.readers import discover_studies, iter_sessions
from psych201.data.records import Session, SessionKey
from psych201.data.split import held_out_participants, iter_split, max_eval
from psych201.data.variants import (
    PAPER_MAX_CHARS,
    discrete_variant,
    paper_clean,
    paper_truncate,
    paper_variant,
)

MANIFEST = {
    row["experiment_folder"]: row
    for row in csv.DictReader((DATA / "MANIFEST.tsv").open(encoding="utf-8"), delimiter="\t")
} if DATA.is_dir() else {}  # without the data, @needs_data skips (or fails) each test instead

pytestmark = needs_data


@cache
def sessions_of(study: str) -> tuple[Session, ...]:
    return tuple(iter_sessions(DATA / study, log=IssueLog(log_first=0)))


@cache
def keys_of(study: str) -> tuple[SessionKey, ...]:
    return tuple(s.key for s in sessions_of(study))


def test_all_19_studies_are_discovered() -> None:
    names = [s.name for s in discover_studies(DATA)]
    assert names == sorted(MANIFEST)
    assert len(names) == 19


@pytest.mark.parametrize("study", sorted(MANIFEST))
def test_counts_match_manifest(study: str) -> None:
    sessions = sessions_of(study)
    assert len(sessions) == int(MANIFEST[study]["participants"])
    assert sum(len(s.responses) for s in sessions) == int(MANIFEST[study]["responses"])
    assert {s.study for s in sessions} == {study}
    assert len({s.key for s in sessions}) == len(sessions)
    keys = sessions_of(study)[0].harmonised.keys()
    assert tuple(keys) == HARMONISED_FIELDS


def test_real_edge_cases_are_read_verbatim() -> None:
    haridi = sessions_of("haridi2024memorySemanticContext")
    contents = [r.text for s in haridi for r in s.responses]
    assert sum(1 for c in contents if not c.strip()) == 491  # the README's empty/blank count
    assert any(c != c.strip() and c.strip() for c in contents)  # padded responses kept as is
    little = sessions_of("little2024functionestimation")
    assert sum(1 for s in little if not s.responses) == 2
    assert any(r.text.startswith("-") for s in little for r in s.responses)
    # Participant ids repeat across experiments of one study; the key keeps them apart.
    sandbrink = sessions_of("sandbrink2024metacontrol")
    assert len({s.participant for s in sandbrink}) < len(sandbrink)


def test_real_metadata_is_harmonised_and_raw_values_kept() -> None:
    frey = sessions_of("frey2017lotteries")
    assert {s.harmonised["gender"] for s in frey} == {"female", "male"}
    assert {s.harmonised["nationality"] for s in frey} == {"Switzerland", "Germany"}
    assert {s.metadata["location"] for s in frey} == {"Basel", "Berlin"}
    assert all(re.fullmatch(r"\d+\.\d+", s.harmonised["age"]) for s in frey)
    nussenbaum = sessions_of("nussenbaum2023novelty")
    assert {s.harmonised["gender"] for s in nussenbaum} == {"female", "male", "other"}
    assert {s.metadata["sex"] for s in nussenbaum} == {"F", "M", "NB"}
    dezfouli = sessions_of("dezfouli2019")
    assert {s.harmonised["diagnosis"] for s in dezfouli} == {NA, "depression", "bipolar"}
    thoma = sessions_of("thoma2025problearn")
    missing_age = [s for s in thoma if s.harmonised["age"] == NA]
    assert len(missing_age) == 3 and all(s.metadata["age"] == "nan" for s in missing_age)
    jansen = sessions_of("jansen2021logic")
    assert all(v == NA for s in jansen[:50] for v in s.harmonised.values())


# -- variants --------------------------------------------------------------------------------


def authors_scored_text(text: str) -> str:
    """The authors' code, transcribed: map_text (generic part) then safe_truncate_angle."""
    text = (
        text.replace("<<skip>>", "<<skip>>.")
        .replace("<<-", "<< -")
        .replace("<<think>>", "<< think>>")
        .replace("More Details >>", "More Details ->")
    )
    t = (
        text[:32768]
        .replace("<<skip>>", "<<skip>>.")
        .replace("<<-", "<< -")
        .replace("<<think>>", "<< think>>")
        .replace("More Details >>", "More Details ->")
    )
    if t.count("<<") > t.count(">>"):
        last_open = t.rfind("<<")
        if last_open != -1:
            t = t[:last_open]
    return re.sub(r"\s+(?=>>)", "", t)


def cleaned_content(content: str) -> str:
    if content.startswith("-") or content == "think":
        content = " " + content
    return re.sub(r"\s+$", "", content)


@pytest.mark.parametrize(
    "study",
    [
        "guenther2024substitutions",
        "little2024functionestimation",
        "haridi2024memorySemanticContext",
    ],
)
def test_paper_variant_is_the_authors_text_and_keeps_indices(study: str) -> None:
    for session in sessions_of(study):
        variant = paper_variant(session)
        assert variant.text == authors_scored_text(session.text)
        assert len(variant.text) <= PAPER_MAX_CHARS + session.text.count("<<-") + 2 * (
            session.text.count("<<skip>>") + session.text.count("<<think>>")
        )
        assert [r.index for r in variant.responses] == list(range(len(variant.responses)))
        for span in variant.responses:
            assert variant.text[span.start : span.end] == span.text
            assert span.text == cleaned_content(session.responses[span.index].text)


def test_paper_clean_fixes_the_marker_edge_cases() -> None:
    with_skip = next(s for s in sessions_of("guenther2024substitutions") if "<<skip>>" in s.text)
    cleaned = paper_clean(with_skip)
    # Released with "<<skip>>." and cleaned again at scoring time, as the authors do.
    assert "<<skip>>.." in cleaned.text
    assert [r.index for r in cleaned.responses] == [r.index for r in with_skip.responses]
    little = sessions_of("little2024functionestimation")[0]
    assert "<<-" in little.text and "<<-" not in paper_clean(little).text
    haridi = next(s for s in sessions_of("haridi2024memorySemanticContext") if " >>" in s.text)
    assert not re.search(r"\s>>", paper_clean(haridi).text)


def test_paper_truncate_cuts_before_an_unclosed_marker() -> None:
    cut_inside = cut_short = 0
    for session in sessions_of("dezfouli2019"):
        truncated = paper_truncate(session)
        assert session.text.startswith(truncated.text)
        assert len(truncated.text) <= PAPER_MAX_CHARS
        kept = len(truncated.responses)
        assert 0 < kept <= len(session.responses)
        assert truncated.responses == session.responses[:kept]  # same offsets, same indices
        cut_short += kept < len(session.responses)
        head = session.text[:PAPER_MAX_CHARS]
        if head.count("<<") > head.count(">>"):
            cut_inside += 1
            assert truncated.text == head[: head.rfind("<<")]
            assert session.responses[kept].start - 2 == len(truncated.text)
        else:
            assert truncated.text == head
    assert cut_short > 50  # most dezfouli sessions are longer than 32K characters
    assert cut_inside > 0  # and the cut inside a response actually occurs in the real data
    short = sessions_of("franke2024bayesian")[0]
    assert paper_truncate(short) == short and paper_truncate(short).text == short.text


@pytest.mark.parametrize("study", ["jansen2021logic", "guenther2022relational"])
def test_discrete_variant_keeps_only_single_letters_with_original_indices(study: str) -> None:
    strip = re.compile(r"<<|>>")
    saw_unwrapped = False
    for session in sessions_of(study)[:200]:
        variant = discrete_variant(session)
        letters = [r for r in session.responses if re.fullmatch(r"[A-Z]", r.text)]
        assert [(r.index, r.text) for r in variant.responses] == [
            (r.index, r.text) for r in letters
        ]
        for span in variant.responses:
            assert variant.text[span.start - 2 : span.end + 2] == f"<<{span.text}>>"
        # Unwrapped responses stay in the text as context.
        assert strip.sub("", variant.text) == strip.sub("", session.text)
        saw_unwrapped |= len(letters) < len(session.responses)
    assert saw_unwrapped


# -- split -------------------------------------------------------------------------------------


def test_test_split_sizes_and_reproducibility_on_all_studies() -> None:
    keys = [k for study in sorted(MANIFEST) for k in keys_of(study)]
    test = held_out_participants(keys, seed=0)
    for study in MANIFEST:
        n = int(MANIFEST[study]["participants"])
        assert sum(1 for k in test if k.study == study) == min(n // 10, 100) == max_eval(n)
    shuffled = keys[:]
    random.Random(1).shuffle(shuffled)
    assert held_out_participants(shuffled, seed=0) == test
    assert held_out_participants(keys, seed=1) != test
    # Adding or removing other studies never changes a study's split.
    alone = held_out_participants(keys_of("busch2024_stroop"), seed=0)
    assert alone == {k for k in test if k.study == "busch2024_stroop"}


def test_iter_split_partitions_sessions_with_responses() -> None:
    study = DATA / "little2024functionestimation"
    test = list(iter_split(study, "test", seed=3))
    train = list(iter_split(study, "train", seed=3))
    with_responses = {s.key for s in sessions_of(study.name) if s.responses}
    assert len(with_responses) == 169  # 171 lines, 2 without any response are dropped
    assert {s.key for s in test} | {s.key for s in train} == with_responses
    assert not {s.key for s in test} & {s.key for s in train}
    # max_eval counts every line, as the authors do; a dropped line may have been drawn.
    drawn = held_out_participants(keys_of(study.name), seed=3)
    assert len(drawn) == 17
    assert {s.key for s in test} == drawn & with_responses


# -- build -------------------------------------------------------------------------------------


def test_build_writes_a_parquet_dataset_pandas_loads(tmp_path: Path) -> None:
    source = tmp_path / "dataset"
    source.mkdir()
    studies = ["franke2024bayesian", "busch2024_stroop", "little2024functionestimation"]
    for study in studies:
        (source / study).symlink_to(DATA / study, target_is_directory=True)
    out = tmp_path / "psych201.parquet"
    summary = build_dataset(source, out, seed=7)
    frame = pd.read_parquet(out)
    assert list(frame.columns) == [
        "study",
        "experiment",
        "participant",
        "line",
        "text",
        *HARMONISED_FIELDS,
        "metadata_raw",
        "in_eval",
    ]
    assert len(frame) == summary.sessions == 302 + 125 + 169
    assert summary.dropped_without_responses == 2
    assert frame.groupby("study")["in_eval"].sum().to_dict() == {
        "busch2024_stroop": 12,
        "franke2024bayesian": 30,
        "little2024functionestimation": summary.test_sessions - 42,
    }
    busch = frame[frame.study == "busch2024_stroop"]
    assert (busch["age"] != NA).all()
    raw = json.loads(busch.iloc[0]["metadata_raw"])
    assert set(raw) == {"RTs", "age"} and isinstance(raw["RTs"], list)
    # The built file reads back as the same sessions, and the seed is recorded.
    back = {s.key: s for s in iter_sessions(out)}
    assert set(back) == {s.key for st in studies for s in sessions_of(st) if s.responses}
    first = sessions_of("busch2024_stroop")[0]
    assert back[first.key].responses == first.responses
    assert back[first.key].harmonised == first.harmonised
    import pyarrow.parquet as pq

    provenance = json.loads(pq.read_schema(out).metadata[b"psych201"])
    assert provenance["split_seed"] == 7
    in_eval = {
        SessionKey(r.study, r.experiment, r.participant, int(r.line))
        for r in frame[frame.in_eval].itertuples()
    }
    expected = held_out_participants([k for st in studies for k in keys_of(st)], seed=7)
    assert in_eval == {k for k in expected if k in back}
