"""The lanes are derived, not declared: a torch test is never `fast`, and the README's counts are
pytest's (tools/test_counts.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lanes

ROOT = Path(__file__).resolve().parents[1]


def _uses_torch() -> int:
    import torch  # noqa: F401  (what makes this helper heavy)

    return 1


def _calls_a_heavy_helper() -> int:
    return _uses_torch()


def test_helpers_are_heavy_through_the_functions_they_call() -> None:
    module = sys.modules[__name__]
    heavy = lanes.heavy_helpers(module)
    assert "_uses_torch" in heavy
    assert "_calls_a_heavy_helper" in heavy
    assert "test_helpers_are_heavy_through_the_functions_they_call" not in heavy


def test_what_makes_code_heavy() -> None:
    assert lanes.HEAVY.search("def f(tiny_dir): ...")
    assert lanes.HEAVY.search("subprocess.run([sys.executable, '-m', 'psych201'])")
    assert not lanes.HEAVY.search("def f(shared_data): return 1")


def test_readme_counts_are_pytests() -> None:
    # Collection runs in subprocesses (the helpers above make this test heavy, not fast).
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "test_counts.py"), "--check"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
