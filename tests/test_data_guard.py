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


def test_missing_data_skips_by_default(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, tmp_path / "absent", require=None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 skipped" in proc.stdout and "passed" not in proc.stdout, proc.stdout
    assert f"real data not found at {tmp_path / 'absent'}" in proc.stdout


@pytest.mark.parametrize("require", ["1", "0"])
def test_missing_data_fails_when_required(tmp_path: Path, require: str) -> None:
    proc = _pytest(tmp_path, tmp_path / "absent", require=require)
    if require == "0":  # "0" is off, like unset
        assert proc.returncode == 0 and "4 skipped" in proc.stdout, proc.stdout
        return
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "4 error" in proc.stdout and "skipped" not in proc.stdout, proc.stdout
    assert "PSYCH201_REQUIRE_DATA is set" in proc.stdout


def test_present_data_runs_the_tests(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "somestudy").mkdir(parents=True)
    proc = _pytest(tmp_path, data, require="1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout, proc.stdout


def test_only_a_missing_study_fails(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "otherstudy").mkdir(parents=True)
    proc = _pytest(tmp_path, data, require="1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "3 passed, 1 error" in proc.stdout, proc.stdout
    assert f"real data not found at {data / 'somestudy'}" in proc.stdout


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
