"""Write the README's test counts from pytest's own collection, so nobody edits them by hand.

    python tools/test_counts.py          # rewrite the block between the test-counts markers
    python tools/test_counts.py --check  # exit 1 (naming both lines) where the README is stale

The block counts every test, the ``fast`` lane (tests/lanes.py), and the ``slow`` and ``heavy``
ones, from one collection; durations are not generated (they depend on the machine) and live
outside the block.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BEGIN, END = "<!-- test-counts -->", "<!-- /test-counts -->"


class _Lanes:
    """A pytest plugin that counts the collected tests by lane marker."""

    def __init__(self) -> None:
        self.counts = {"all": 0, "fast": 0, "heavy": 0, "slow": 0}

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            self.counts["all"] += 1
            for lane in ("fast", "heavy", "slow"):
                if item.get_closest_marker(lane) is not None:
                    self.counts[lane] += 1


def block() -> str:
    lanes = _Lanes()
    code = pytest.main(["--collect-only", "-qq", "-p", "no:cacheprovider", str(ROOT / "tests")],
                       plugins=[lanes])
    if code != 0:
        raise SystemExit(f"pytest --collect-only failed (exit {code})")
    c = lanes.counts
    return (f"{BEGIN}{c['all']} tests: {c['fast']} `fast`, {c['heavy']} `heavy` (torch models, "
            f"training, subprocesses, the real studies, the whole report or analysis, simulation "
            f"studies), {c['slow']} `slow`{END}")


def main(argv: list[str]) -> int:
    text = README.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    current = pattern.search(text)
    if current is None:
        raise SystemExit(f"{README}: no {BEGIN} … {END} block")
    wanted = block()
    if "--check" in argv:
        if current.group(0) != wanted:
            print(f"{README}: stale test counts\n  README: {current.group(0)}\n  pytest: {wanted}\n"
                  "run: python tools/test_counts.py")
            return 1
        return 0
    README.write_text(text[: current.start()] + wanted + text[current.end():], encoding="utf-8")
    print(wanted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
