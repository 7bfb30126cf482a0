"""Write the README's test counts from pytest's own collection, so nobody edits them by hand.

    python tools/test_counts.py          # rewrite the block between the test-counts markers
    python tools/test_counts.py --check  # exit 1 (naming both lines) where the README is stale

The block counts every test, the ``fast`` lane (tests/lanes.py), and the ``slow`` and ``heavy``
ones; durations are not generated (they depend on the machine) and live outside the block.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BEGIN, END = "<!-- test-counts -->", "<!-- /test-counts -->"
_COLLECTED = re.compile(r"^(\d+)(?:/(\d+))? tests? collected", re.MULTILINE)


def collected(marker: str | None) -> int:
    """How many tests pytest selects with ``-m marker`` (all of them with ``None``)."""
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    if marker:
        command += ["-m", marker]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False).stdout
    found = _COLLECTED.search(out)
    if found is None:
        raise SystemExit(f"pytest --collect-only printed no count:\n{out[-2000:]}")
    return int(found.group(1))


def block() -> str:
    total, fast, slow, heavy = (collected(m) for m in (None, "fast", "slow", "heavy"))
    return (f"{BEGIN}{total} tests: {fast} `fast`, {heavy} `heavy` (build a torch model, train or "
            f"start a subprocess), {slow} `slow`{END}")


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
