"""Stream every session of a dataset and report time and peak memory as JSON.

    .venv/bin/python benchmarks/data_memory.py [DATASET_DIR]

Defaults to the 19 real studies in ../shared/data/psych201. Peak RSS is the process's high-water
mark (``ru_maxrss``), so it includes the interpreter and imported libraries; ``baseline_rss_mb``
is the RSS after imports and before reading, and ``largest_session_chars`` shows the biggest
single thing held at once.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import psutil

from psych201.data.issues import IssueLog
from psych201.data.readers import iter_sessions

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "psych201"


def main(argv: list[str]) -> int:
    data = Path(argv[1]) if len(argv) > 1 else DEFAULT_DATA
    process = psutil.Process()
    baseline = process.memory_info().rss
    log = IssueLog(log_first=0)
    studies: set[str] = set()
    sessions = responses = chars = largest = 0
    start = time.perf_counter()
    for session in iter_sessions(data, log=log):
        studies.add(session.study)
        sessions += 1
        responses += len(session.responses)
        chars += len(session.text)
        largest = max(largest, len(session.text))
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = {
        "data": str(data),
        "studies": len(studies),
        "sessions": sessions,
        "responses": responses,
        "text_chars": chars,
        "largest_session_chars": largest,
        "seconds": round(seconds, 2),
        "baseline_rss_mb": round(baseline / 2**20, 1),
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "warnings": log.n_warnings,
        "errors": log.n_errors,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
