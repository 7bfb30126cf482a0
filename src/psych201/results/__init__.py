"""psych201.results: response tables (atomic Parquet parts, final table), manifests, merge.

Names are imported on first use: ``import psych201`` (and so every CLI command, including the
one that only finds a run directory locked) must not pay for pandas.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psych201.results.io import read_manifest, read_responses, read_table
    from psych201.results.manifest import ConfigMismatchError
    from psych201.results.merge import MergeSummary, merge_runs
    from psych201.results.schema import RESPONSE_KEY, RESPONSE_SCHEMA, ResponseScore, RunSpec
    from psych201.results.shards import Shard
    from psych201.results.writer import PartWriter, ResultsError

_LAZY = {
    "read_manifest": "psych201.results.io",
    "read_responses": "psych201.results.io",
    "read_table": "psych201.results.io",
    "ConfigMismatchError": "psych201.results.manifest",
    "MergeSummary": "psych201.results.merge",
    "merge_runs": "psych201.results.merge",
    "RESPONSE_KEY": "psych201.results.schema",
    "RESPONSE_SCHEMA": "psych201.results.schema",
    "ResponseScore": "psych201.results.schema",
    "RunSpec": "psych201.results.schema",
    "Shard": "psych201.results.shards",
    "PartWriter": "psych201.results.writer",
    "ResultsError": "psych201.results.writer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'psych201.results' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


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
