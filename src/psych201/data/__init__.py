"""psych201.data: read, validate, harmonise, split and build Psych-201 studies.

The pipeline's first layer; it imports nothing else of psych201. Stats, build and validation
(heavier: pandas, Parquet writing) live in ``psych201.data.stats``, ``.build`` and ``.validate``.
"""

from psych201.data.harmonise import harmonise_metadata, harmonise_with_report
from psych201.data.issues import DataError, Issue, IssueLog
from psych201.data.markers import MarkerError, parse_responses
from psych201.data.readers import StudySource, discover_studies, iter_sessions
from psych201.data.records import ResponseSpan, Session, SessionKey
from psych201.data.split import held_out_participants, iter_split, max_eval
from psych201.data.variants import (
    discrete_variant,
    paper_clean,
    paper_truncate,
    paper_variant,
)

__all__ = [
    "DataError",
    "Issue",
    "IssueLog",
    "MarkerError",
    "ResponseSpan",
    "Session",
    "SessionKey",
    "StudySource",
    "discover_studies",
    "discrete_variant",
    "harmonise_metadata",
    "harmonise_with_report",
    "held_out_participants",
    "iter_sessions",
    "iter_split",
    "max_eval",
    "paper_clean",
    "paper_truncate",
    "paper_variant",
    "parse_responses",
]
