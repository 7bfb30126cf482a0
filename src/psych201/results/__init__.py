"""psych201.results: response tables (atomic Parquet parts, final table), manifests, merge."""

from psych201.results.io import read_manifest, read_responses, read_table
from psych201.results.manifest import ConfigMismatchError
from psych201.results.merge import MergeSummary, merge_runs
from psych201.results.schema import RESPONSE_KEY, RESPONSE_SCHEMA, ResponseScore, RunSpec
from psych201.results.shards import Shard
from psych201.results.writer import PartWriter, ResultsError

__all__ = [
    "RESPONSE_KEY",
    "RESPONSE_SCHEMA",
    "ConfigMismatchError",
    "MergeSummary",
    "PartWriter",
    "ResponseScore",
    "ResultsError",
    "RunSpec",
    "Shard",
    "merge_runs",
    "read_manifest",
    "read_responses",
    "read_table",
]
