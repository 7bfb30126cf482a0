"""Metadata harmonisation (PROTOCOL §1) and its report of values it could not map."""

from __future__ import annotations

import math

import pytest

from psych201.data.fields import HARMONISED_FIELDS, NA
from psych201.data.harmonise import (
    HarmonisationReport,
    harmonise_metadata,
    harmonise_with_report,
)


def test_every_field_is_present_and_na_when_missing() -> None:
    values = harmonise_metadata({})
    assert tuple(values) == HARMONISED_FIELDS
    assert set(values.values()) == {NA}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("25", "25.0"),
        (25, "25.0"),
        (23.18, "23.18"),
        (" 3.65 ", "3.65"),
        (0, "0.0"),
        (100, "100.0"),
        (float("nan"), NA),
        ("nan", NA),
        ("", NA),
        (None, NA),
    ],
)
def test_age_is_a_float_string(raw: object, expected: str) -> None:
    assert harmonise_metadata({"age": raw})["age"] == expected


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(120, "out-of-range"), (-1, "out-of-range"), ("abc", "invalid"), (True, "invalid")],
)
def test_unreadable_ages_become_na_and_are_reported(raw: object, kind: str) -> None:
    result = harmonise_with_report({"age": raw})
    assert result.values["age"] == NA
    assert [(p.field, p.kind) for p in result.problems] == [("age", kind)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("F", "female"),
        ("Female", "female"),
        ("woman", "female"),
        ("M", "male"),
        ("Man", "male"),
        ("NB", "other"),
        ("Other", "other"),
        ("Prefer not to say", NA),
        ("no-specify", NA),
    ],
)
def test_gender(raw: str, expected: str) -> None:
    result = harmonise_with_report({"gender": raw})
    assert result.values["gender"] == expected
    assert result.problems == ()


def test_sex_is_read_as_gender_and_an_unknown_value_is_reported() -> None:
    assert harmonise_metadata({"sex": "M"})["gender"] == "male"
    result = harmonise_with_report({"gender": "helicopter"})
    assert result.values["gender"] == NA
    assert result.problems[0].kind == "unmapped" and result.problems[0].raw_value == "helicopter"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("GBR", "United Kingdom"),
        ("England", "United Kingdom"),
        ("USA", "United States"),
        ("DEU", "Germany"),
        ("Basel", "Switzerland"),
        ("Berlin", "Germany"),
        ("White", NA),
        ("Unknown", NA),
        ("Other Germany", "Germany"),
        ("United_Kingdom", "United Kingdom"),
    ],
)
def test_nationality(raw: str, expected: str) -> None:
    result = harmonise_with_report({"nationality": raw})
    assert result.values["nationality"] == expected
    assert result.problems == ()


def test_location_is_read_as_nationality_and_unknown_places_are_kept_but_reported() -> None:
    result = harmonise_with_report({"location": "Atlantis"})
    assert result.values["nationality"] == "Atlantis"  # kept verbatim, as the authors do
    assert result.problems[0].kind == "unmapped" and result.problems[0].raw_key == "location"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Bachelor degree", "Bachelor's Degree"),
        ("PhD", "Master's Degree or Higher"),
        ("some college", "College"),
        ("Master's Degree or Higher", "Master's Degree or Higher"),
        ("rather not say", NA),
    ],
)
def test_education(raw: str, expected: str) -> None:
    assert harmonise_metadata({"education": raw})["education"] == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Healthy", NA),
        ("control", NA),
        ("Depression", "depression"),
        ("Bipolar", "bipolar"),
        ("non-PFC-lesion", "brain-lesion"),
    ],
)
def test_diagnosis(raw: str, expected: str) -> None:
    assert harmonise_metadata({"diagnosis": raw})["diagnosis"] == expected


def test_questionnaires_follow_the_authors_renames_and_casts() -> None:
    values = harmonise_metadata(
        {
            "STICSAsoma": 21,
            "STAI": 40.0,
            "stai_total": "51.0",
            "pswq": 60,
            "gad7": "7",
            "PHQ": 12.0,
            "bis": 70.9,
            "BDI-II score": 3,
            "audit_total": 5,
            "bas_reward_response": 17.0,
            "bis_total": math.nan,
        }
    )
    assert values["STICSA-T somatic"] == "21"
    assert values["STAI-S"] == "40.0"  # kept as written
    assert values["STAI-T"] == "51"  # int-cast
    assert values["PSWQ"] == "60"
    assert values["GAD-7"] == "7"
    assert values["PHQ-9"] == "12"
    assert values["BIS-11"] == "70"
    assert values["BDI-II"] == "3"
    assert values["AUDIT"] == "5"
    assert values["BAS Reward Responsiveness"] == "17"
    assert values["BIS-10"] == NA


def test_non_numeric_scores_are_reported() -> None:
    result = harmonise_with_report({"PHQ-9": "severe", "IUS": [1, 2]})
    assert result.values["PHQ-9"] == NA and result.values["IUS"] == NA
    assert {(p.field, p.kind) for p in result.problems} == {
        ("PHQ-9", "invalid"),
        ("IUS", "invalid"),
    }


def test_report_aggregates_by_study_and_value() -> None:
    report = HarmonisationReport()
    for _ in range(3):
        report.add("s1", harmonise_with_report({"gender": "x"}).problems)
    report.add("s2", harmonise_with_report({"age": 300}).problems)
    rows = report.rows()
    assert [(r["study"], r["field"], r["count"]) for r in rows] == [
        ("s1", "gender", 3),
        ("s2", "age", 1),
    ]
    assert len(report) == 2
