"""Metadata harmonisation exactly as the authors' ``psych201_generate.py`` does it.

Every session gets the same 25 fields (:data:`fields.HARMONISED_FIELDS`), each a string, ``N/A``
where the study has no value. The raw metadata is kept untouched beside the harmonised values
(``Session.metadata``), so nothing is lost when a mapping is wrong.

Where the authors' casting functions leave a value they do not know verbatim (an unknown
nationality or education level), we do the same and report it; where a value cannot be read at all
(an age of ``"abc"``, ``120``), it becomes ``N/A`` and is reported too. Two deliberate differences
from the authors' script, both on values their script mishandles rather than maps: a missing value
written as NaN becomes ``N/A`` (theirs turns it into the string ``"nan"`` or crashes), and gender
and education are matched case-insensitively.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from psych201.data.fields import HARMONISED_FIELDS, NA

#: Raw keys read for each harmonised field, first present wins. The authors' renames come first
#: because their script lets them overwrite the canonical key (``sex`` → gender, ``location`` →
#: nationality, ``STAI`` → STAI-S, ``pswq`` → PSWQ, …); the canonical name is accepted too.
FIELD_SOURCES: dict[str, tuple[str, ...]] = {
    "age": ("age",),
    "gender": ("sex", "gender"),
    "nationality": ("location", "nationality"),
    "education": ("education",),
    "diagnosis": ("diagnosis", "clinical diagnosis"),
    "STICSA-T somatic": ("STICSAsoma", "STICSA-T somatic"),
    "STICSA-T cognitive": ("STICSAcog", "STICSA-T cognitive"),
    "STAI-S": ("STAI", "STAI-S"),
    "STAI-T": ("stai_total", "stai", "STAI-T"),
    "IUS": ("IUS",),
    "RRQ": ("RRQ",),
    "AUDIT": ("audit_total", "AUDIT"),
    "DAST": ("DAST",),
    "PSWQ": ("pswq", "PSWQ"),
    "GAD-7": ("gad7", "GAD-7"),
    "SDS": ("sds_total", "SDS"),
    "OCI": ("oci_total", "OCI"),
    "PHQ-9": ("PHQ", "PHQ-9"),
    "PHQ-8": ("phq8", "PHQ-8"),
    "BAS Drive": ("bas_drive", "BAS Drive"),
    "BAS Fun Seeking": ("bas_fun_seeking", "BAS Fun Seeking"),
    "BAS Reward Responsiveness": ("bas_reward_response", "BAS Reward Responsiveness"),
    "BDI-II": ("BDI-II score", "BDI-II"),
    "BIS-11": ("BIS", "bis", "BIS-11"),
    "BIS-10": ("bis_total", "BIS-10"),
}

#: Questionnaires the authors cast with ``int()`` (others keep their number as written).
INTEGER_SCORES = frozenset(
    {
        "STAI-T",
        "AUDIT",
        "SDS",
        "OCI",
        "PHQ-9",
        "PHQ-8",
        "BAS Drive",
        "BAS Fun Seeking",
        "BAS Reward Responsiveness",
        "BDI-II",
        "BIS-11",
        "BIS-10",
    }
)

_MISSING_STRINGS = frozenset({"", "nan", "null", "n/a"})

GENDERS: dict[str, str] = {
    "female": "female",
    "f": "female",
    "woman": "female",
    "male": "male",
    "m": "male",
    "man": "male",
    "nb": "other",
    "non-binary": "other",
    "other": "other",
    "no-specify": NA,
    "no-spe": NA,
    "prefer not to answer": NA,
    "prefer not to say": NA,
    "rather not say": NA,
}

#: The authors' ``standardize_degree`` table (keys lower-case).
EDUCATION_LEVELS: dict[str, str] = {
    "high school": "High School",
    "high school graduate": "High School",
    "less than high school": "Less than High School",
    "less than high school degree": "Less than High School",
    "primary ed.": "Less than High School",
    "primary": "Less than High School",
    "secondary ed.": "High School",
    "secondary": "High School",
    "some college": "College",
    "some college but no degree": "College",
    "some-college": "College",
    "associate degree": "Associate Degree",
    "associate degree in college (2-year)": "Associate Degree",
    "bachelor": "Bachelor's Degree",
    "bachelor degree": "Bachelor's Degree",
    "bachelor's degree in college (4-year)": "Bachelor's Degree",
    "college-completed": "Bachelor's Degree",
    "university degree": "Bachelor's Degree",
    "grad": "Master's Degree or Higher",
    "graduate": "Master's Degree or Higher",
    "master degree or higher": "Master's Degree or Higher",
    "master's degree": "Master's Degree or Higher",
    "master": "Master's Degree or Higher",
    "mba": "Master's Degree or Higher",
    "advanced degree (ma, phd, etc)": "Master's Degree or Higher",
    "doctoral degree": "Master's Degree or Higher",
    "phd": "Master's Degree or Higher",
    "professional degree (jd, md)": "Professional Degree",
    "technical ed.": "Technical Education",
    "school (a-levels, vocational, or similar)": "Technical Education",
    "school (gcse or similar)": "High School",
    "no formal ed.": "No Formal Education",
    "none": "No Formal Education",
    "high school graduate (high school diploma or equivalent including ged)": "High School",
    "rather not say": NA,
}
_EDUCATION_CANONICAL = frozenset(EDUCATION_LEVELS.values())

#: The authors' ``cast_diagnosis`` table; healthy participants and controls have no diagnosis.
DIAGNOSES: dict[str, str] = {
    "healthy": NA,
    "control": NA,
    "no-lesion-control": NA,
    "depression": "depression",
    "bipolar": "bipolar",
    "non-pfc-lesion": "brain-lesion",
}

#: Cities, regions, demonyms and non-country answers (the authors' ``standardize_nationalities``).
_NATIONALITY_ALIASES: dict[str, str] = {
    "USA": "United States",
    "Basel": "Switzerland",
    "Berlin": "Germany",
    "Russian Federation": "Russia",
    "Czech Republic": "Czechia",
    "England": "United Kingdom",
    "Scotland": "United Kingdom",
    "Wales": "United Kingdom",
    "Northern Ireland": "United Kingdom",
    "Bangladeshi": "Bangladesh",
    "Pakistani": "Pakistan",
    "Indian": "India",
    "Chinese": "China",
    "South Korea": "Korea",
    "Saint Vincent and the Grenadines": "Saint Vincent",
    "Venezuela, Bolivarian Republic of": "Venezuela",
    "English/Welsh/Scottish/Northern Irish/British": "United Kingdom",
    "Irish": "Ireland",
    # Not a country: unknown, a continent or an ethnicity.
    "DATA EXPIRED": NA,
    "(please specify)": NA,
    "Africa, Asia, Pacific": NA,
    "North or South America": NA,
    "Europe": NA,
    "Gypsy or Irish Traveller": NA,
    "White": NA,
    "African": NA,
    "Caribbean": NA,
    "Arab": NA,
    "Ethnic Group": NA,
    "Mixed/ Multiple Ethnic Groups": NA,
    "White and Black African": NA,
    "White and Asian": NA,
    "White and Black Caribbean": NA,
    "Any other mixed/multiple ethnic background": NA,
    "Any other white background": NA,
    "Any other asian background": NA,
    "Any other Black/African/Caribbean background": NA,
    "Asian/Asian British": NA,
    "Black / African / Caribbean / Black British": NA,
}

#: ISO 3166 alpha-3 codes the authors map (those seen in Psych-101 metadata), "CODE:Name|…".
_ISO3_TABLE = (
    "AFG:Afghanistan|AGO:Angola|ALA:Åland Islands|ALB:Albania|ARE:United Arab Emirates|"
    "ARG:Argentina|ARM:Armenia|ATG:Antigua and Barbuda|AUS:Australia|AUT:Austria|"
    "AZE:Azerbaijan|BEL:Belgium|BGD:Bangladesh|BGR:Bulgaria|BHR:Bahrain|BHS:Bahamas|"
    "BIH:Bosnia and Herzegovina|BLR:Belarus|BLZ:Belize|BMU:Bermuda|BOL:Bolivia|BRA:Brazil|"
    "BRN:Brunei|BWA:Botswana|CAN:Canada|CHE:Switzerland|CHL:Chile|CHN:China|"
    "CIV:Côte d'Ivoire|COL:Colombia|CPV:Cape Verde|CRI:Costa Rica|CUB:Cuba|CYP:Cyprus|"
    "CZE:Czechia|DEU:Germany|DNK:Denmark|DOM:Dominican Republic|DZA:Algeria|ECU:Ecuador|"
    "EGY:Egypt|ESP:Spain|EST:Estonia|FIN:Finland|FJI:Fiji|FRA:France|GBR:United Kingdom|"
    "GEO:Georgia|GGY:Guernsey|GHA:Ghana|GIB:Gibraltar|GLP:Guadeloupe|GRC:Greece|"
    "GTM:Guatemala|GUF:French Guiana|HKG:Hong Kong|HND:Honduras|HRV:Croatia|HUN:Hungary|"
    "IDN:Indonesia|IMN:Isle of Man|IND:India|IRL:Ireland|IRN:Iran|IRQ:Iraq|ISL:Iceland|"
    "ISR:Israel|ITA:Italy|JAM:Jamaica|JEY:Jersey|JOR:Jordan|JPN:Japan|KAZ:Kazakhstan|"
    "KEN:Kenya|KGZ:Kyrgyzstan|KHM:Cambodia|KOR:Korea|KWT:Kuwait|LAO:Laos|LBN:Lebanon|"
    "LIE:Liechtenstein|LKA:Sri Lanka|LTU:Lithuania|LUX:Luxembourg|LVA:Latvia|MAC:Macau|"
    "MAR:Morocco|MCO:Monaco|MDA:Moldova|MDG:Madagascar|MDV:Maldives|MEX:Mexico|"
    "MKD:North Macedonia|MLT:Malta|MMR:Myanmar|MNE:Montenegro|MNG:Mongolia|MTQ:Martinique|"
    "MUS:Mauritius|MYS:Malaysia|MYT:Mayotte|NCL:New Caledonia|NGA:Nigeria|NIC:Nicaragua|"
    "NLD:Netherlands|NOR:Norway|NPL:Nepal|NZL:New Zealand|OMN:Oman|PAK:Pakistan|PAN:Panama|"
    "PER:Peru|PHL:Philippines|PNG:Papua New Guinea|POL:Poland|PRI:Puerto Rico|PRT:Portugal|"
    "PRY:Paraguay|PSE:Palestine|PYF:French Polynesia|QAT:Qatar|REU:Réunion|ROU:Romania|"
    "RUS:Russia|SAU:Saudi Arabia|SDN:Sudan|SEN:Senegal|SGP:Singapore|SLV:El Salvador|"
    "SRB:Serbia|SVK:Slovakia|SVN:Slovenia|SWE:Sweden|SXM:Sint Maarten|SYR:Syria|"
    "THA:Thailand|TJK:Tajikistan|TTO:Trinidad and Tobago|TUN:Tunisia|TUR:Turkey|TWN:Taiwan|"
    "TZA:Tanzania|UKR:Ukraine|URY:Uruguay|UZB:Uzbekistan|VEN:Venezuela|VNM:Vietnam|"
    "YEM:Yemen|ZAF:South Africa|ZWE:Zimbabwe"
)

#: Nationality answers to country names: ISO-3 codes, then the authors' aliases.
NATIONALITIES: dict[str, str] = {
    **dict(item.split(":", 1) for item in _ISO3_TABLE.split("|")),
    **_NATIONALITY_ALIASES,
}
_COUNTRY_NAMES = frozenset(name for name in NATIONALITIES.values() if name != NA)

ProblemKind = Literal["unmapped", "invalid", "out-of-range"]


@dataclass(frozen=True, slots=True)
class UnmappedValue:
    """A raw metadata value no rule could map.

    ``kind``: ``unmapped`` (kept verbatim, as the authors do, but not a known category),
    ``invalid`` (unreadable, became ``N/A``) or ``out-of-range`` (e.g. age 120, became ``N/A``).
    ``result`` is what the harmonised field holds.
    """

    field: str
    raw_key: str
    raw_value: str
    kind: ProblemKind
    result: str


@dataclass(frozen=True, slots=True)
class HarmonisedMetadata:
    """The harmonised fields of one session and the values that could not be mapped."""

    values: dict[str, str]
    problems: tuple[UnmappedValue, ...]


def harmonise_metadata(raw: Mapping[str, Any]) -> dict[str, str]:
    """The 25 harmonised fields of one session's raw metadata, ``N/A`` where missing."""
    return harmonise_with_report(raw).values


def harmonise_with_report(raw: Mapping[str, Any]) -> HarmonisedMetadata:
    """:func:`harmonise_metadata` plus the values that could not be mapped."""
    values: dict[str, str] = {}
    problems: list[UnmappedValue] = []
    for name in HARMONISED_FIELDS:
        key = next((k for k in FIELD_SOURCES[name] if k in raw), None)
        if key is None or _is_missing(raw[key]):
            values[name] = NA
            continue
        value = raw[key]
        result, kind = _CASTS.get(name, _cast_score)(name, value)
        values[name] = result
        if kind is not None:
            problems.append(UnmappedValue(name, key, _show(value), kind, result))
    return HarmonisedMetadata(values, tuple(problems))


_Cast = tuple[str, ProblemKind | None]


def _cast_age(name: str, value: Any) -> _Cast:
    number = _number(value)
    if number is None:
        return NA, "invalid"
    if not 0 <= number <= 100:
        return NA, "out-of-range"
    return str(number), None


def _cast_gender(name: str, value: Any) -> _Cast:
    mapped = GENDERS.get(str(value).strip().lower())
    return (mapped, None) if mapped is not None else (NA, "unmapped")


def _cast_nationality(name: str, value: Any) -> _Cast:
    # The authors' clean-up, in their order, before the table look-up.
    text = str(value).replace("Other ", "").replace('"', "").replace(" (please specify)", "")
    text = text.strip()
    if text in ("nan", "Unknown"):
        return NA, None
    text = text.replace("_", " ")
    mapped = NATIONALITIES.get(text, text)
    if mapped == NA or mapped in _COUNTRY_NAMES:
        return mapped, None
    return mapped, "unmapped"


def _cast_education(name: str, value: Any) -> _Cast:
    text = str(value).strip()
    mapped = EDUCATION_LEVELS.get(text.lower())
    if mapped is not None:
        return mapped, None
    canonical = {level.lower(): level for level in _EDUCATION_CANONICAL}.get(text.lower())
    return (canonical, None) if canonical is not None else (text, "unmapped")


def _cast_diagnosis(name: str, value: Any) -> _Cast:
    text = str(value).strip()
    mapped = DIAGNOSES.get(text.lower())
    if mapped is not None:
        return mapped, None
    return text, "unmapped"


def _cast_score(name: str, value: Any) -> _Cast:
    number = _number(value)
    if number is None:
        return NA, "invalid"
    if name in INTEGER_SCORES:
        return str(int(number)), None
    # The authors keep the number as written (str(12.0) == "12.0").
    return (value.strip() if isinstance(value, str) else str(value)), None


_CASTS = {
    "age": _cast_age,
    "gender": _cast_gender,
    "nationality": _cast_nationality,
    "education": _cast_education,
    "diagnosis": _cast_diagnosis,
}


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return value.strip().lower() in _MISSING_STRINGS
    return False


def _number(value: Any) -> float | None:
    """A finite number from an int, float or numeric string; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: an int beyond any float
        return None
    return number if math.isfinite(number) else None


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class HarmonisationReport:
    """Counts of unmapped metadata values per study, field and raw value (for ``data stats``)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, UnmappedValue]] = Counter()

    def add(self, study: str, problems: tuple[UnmappedValue, ...]) -> None:
        for problem in problems:
            self.counts[(study, problem)] += 1

    def __len__(self) -> int:
        return len(self.counts)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per distinct (study, field, raw value), most frequent first."""
        return [
            {
                "study": study,
                "field": p.field,
                "raw_key": p.raw_key,
                "raw_value": p.raw_value,
                "kind": p.kind,
                "result": p.result,
                "count": n,
            }
            for (study, p), n in sorted(
                self.counts.items(), key=lambda item: (-item[1], item[0][0], item[0][1].field)
            )
        ]
