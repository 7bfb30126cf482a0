"""Names of the harmonised metadata fields, in the paper's persona order."""

from __future__ import annotations

#: Missing or unmappable values are this exact string, as in the paper.
NA = "N/A"

#: Demographic fields, in the order the paper's persona preamble asks for them.
DEMOGRAPHIC_FIELDS: tuple[str, ...] = ("age", "gender", "nationality", "education", "diagnosis")

#: The 20 questionnaire scores the paper harmonises, in its order.
QUESTIONNAIRE_FIELDS: tuple[str, ...] = (
    "STICSA-T somatic",
    "STICSA-T cognitive",
    "STAI-S",
    "STAI-T",
    "IUS",
    "RRQ",
    "AUDIT",
    "DAST",
    "PSWQ",
    "GAD-7",
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
)

HARMONISED_FIELDS: tuple[str, ...] = DEMOGRAPHIC_FIELDS + QUESTIONNAIRE_FIELDS
