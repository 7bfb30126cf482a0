"""Where the tests find the real Psych-201 studies, and what a test does when they are absent.

The studies live outside the repository (``../shared/data/psych201`` next to the checkout, never
copied in); ``PSYCH201_TEST_DATA`` points the tests elsewhere. A test that needs them is marked
``@needs_data`` (or calls :func:`require_data`): it skips where the data is missing, unless
``PSYCH201_REQUIRE_DATA=1`` (CI sets it), where a missing folder fails the test instead, so a run
whose data tests all skipped cannot pass for a green one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: The shared Psych-201 studies (one folder per study, plus MANIFEST.tsv).
DATA = Path(
    os.environ.get("PSYCH201_TEST_DATA")
    or Path(__file__).parents[2] / "shared" / "data" / "psych201"
)

#: Marks a test (or, as ``pytestmark``, a module) that reads the shared studies; conftest.py turns
#: it into :func:`require_data` before the test runs. ``needs_data(path)`` requires a sub-folder.
needs_data = pytest.mark.needs_data


def data_required() -> bool:
    """Whether missing data fails a test instead of skipping it (``PSYCH201_REQUIRE_DATA=1``)."""
    return os.environ.get("PSYCH201_REQUIRE_DATA", "").strip() not in ("", "0")


def require_data(path: Path = DATA) -> Path:
    """Return ``path`` if it is a folder; otherwise skip the calling test, or fail it in CI."""
    if not path.is_dir():
        reason = f"real data not found at {path}"
        if data_required():
            pytest.fail(f"{reason} (PSYCH201_REQUIRE_DATA is set: a data test may not skip)",
                        pytrace=False)
        pytest.skip(reason)
    return path
