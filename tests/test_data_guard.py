"""The real-data guard (paths.py, conftest.py): a test that needs the shared studies skips where
they are missing, and fails instead under ``PSYCH201_REQUIRE_DATA=1`` (CI), so a CI run cannot go
green with its data tests skipped. Each case runs pytest on a small test file in a subprocess, with
``PSYCH201_TEST_DATA`` pointing at a folder that does (or does not) exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
OWN_SKIP = re.compile(r"(skipif\(|pytest\.skip\().*(DATA|STUD|is_dir|data not)")

#: One test per way a test asks for the data: the marker, the marker naming a study folder, the
#: ``shared_data`` fixture and ``require_data()`` in a fixture of its own.
SAMPLE = '''
import pytest
from paths import DATA, needs_data, require_data


@needs_data
def test_marker():
    assert DATA.is_dir()


@needs_data(DATA / "somestudy")
def test_marker_with_a_study():
    assert (DATA / "somestudy").is_dir()


def test_fixture(shared_data):
    assert shared_data == DATA


@pytest.fixture(scope="module")
def sessions():
    return sorted(require_data().iterdir())


def test_own_fixture(sessions):
    assert sessions
'''


def _pytest(tmp_path: Path, data: Path, require: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "PSYCH201_REQUIRE_DATA"}
    env["PSYCH201_TEST_DATA"] = str(data)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the sample needs none: a 1 s run instead of 8
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), *filter(None, [env.get("PYTHONPATH")])])
    if require is not None:
        env["PSYCH201_REQUIRE_DATA"] = require
    # -p conftest: this suite's conftest.py, the one under test, as a plugin of the sample run.
    args = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-p", "conftest",
            "--rootdir", str(tmp_path), "test_sample.py"]  # fmt: skip
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("studies", "require", "returncode", "summary", "says"), [
    # No data folder: skipped, with where it looked; "0" is off, like unset.
    (None, None, 0, "4 skipped", "real data not found at {data}"),
    (None, "0", 0, "4 skipped", "real data not found at {data}"),
    # CI: the same tests fail (an error in set-up), none skips.
    (None, "1", 1, "4 errors", "PSYCH201_REQUIRE_DATA is set"),
    # The data is there: the tests run and pass.
    (("somestudy",), "1", 0, "4 passed", ""),
    # Only the test that names a missing study fails.
    (("otherstudy",), "1", 1, "3 passed, 1 error", "real data not found at {data}/somestudy"),
])  # fmt: skip
def test_missing_data_skips_or_fails(
    tmp_path: Path, studies: tuple[str, ...] | None, require: str | None, returncode: int,
    summary: str, says: str,
) -> None:
    data = tmp_path / "data"
    for study in studies or ():
        (data / study).mkdir(parents=True)
    proc = _pytest(tmp_path, data, require)
    assert proc.returncode == returncode, proc.stdout + proc.stderr
    assert summary in proc.stdout, proc.stdout
    assert says.format(data=data) in proc.stdout, proc.stdout
    if returncode:
        assert "skipped" not in proc.stdout, proc.stdout


def test_data_tests_use_the_one_guard() -> None:
    # The guard only holds if no test file finds the data, or skips without it, on its own.
    own = [
        f"{path.name}:{n}"
        for path in sorted(TESTS.glob("test_*.py"))
        if path.name != "test_data_guard.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if '"shared" / "data"' in line or OWN_SKIP.search(line)
    ]
    assert not own, f"use paths.DATA / @needs_data / require_data() instead: {own}"
