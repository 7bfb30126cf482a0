"""The lanes are derived, not declared: a torch test is never `fast`, and the README's counts are
pytest's (tools/test_counts.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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


def test_drawing_the_report_running_every_analysis_or_reading_the_studies_is_heavy() -> None:
    heavy = [
        "figures = render_figures(summary)",
        "html = build_report(summary, results, REGISTRY)",
        "runner.invoke(app, ['report', str(path), '-o', str(out)])",
        'cli_output("figures", str(table), "--formats", "png")',
        "summary = summarize(results, REGISTRY, options)",
        "from psych201.simulate.bandit import simulate_bandit",
        '_run("simulate", "risky", "-n", "12")',
        "def test_x(shared_data): ...",
        "folder = require_data(DATA / 'dezfouli2019')",
        "sessions = load_sessions(DATA / 'dezfouli2019')",
    ]
    for text in heavy:
        assert lanes._heavy_text(text), text
    light = ["frame = results_from_frame(rows)", "def _summarize_rows(rows): ...",
             "report_line = 'x'", "compare_pair(table, 'a', 'b')", "DATABASE = 1"]
    for text in light:
        assert not lanes._heavy_text(text), text


def test_a_simulation_study_is_a_seeded_loop_over_replicates() -> None:
    def body(loop: str, seeded: bool = True) -> str:
        rng = "rng = np.random.default_rng(3)" if seeded else "rng = None"
        return textwrap.dedent(f"""
            def test_coverage():
                {rng}
                hits = 0
                {loop}
                    hits += draw(rng)
            """)

    assert lanes.simulates(body("for _ in range(n_sims):"))
    assert lanes.simulates(body("for _ in range(RUNS[n]):"))
    assert lanes.simulates(body(f"for _ in range({lanes.SIMULATION_REPLICATES}):"))
    assert not lanes.simulates(body(f"for _ in range({lanes.SIMULATION_REPLICATES - 1}):"))
    assert not lanes.simulates(body("for _ in range(n_sims):", seeded=False))
    assert not lanes.simulates(body("for row in rows:"))


def test_a_helper_that_uses_an_imported_simulator_or_the_data_is_heavy(tmp_path: Path) -> None:
    path = tmp_path / "lanes_sample_module.py"
    path.write_text(textwrap.dedent("""
        from paths import DATA
        from psych201.simulate.bandit import QLearner

        STUDY = DATA / "dezfouli2019"


        def _sessions():
            return QLearner


        def _uses_the_helper():
            return _sessions()


        def _reads_a_study():
            return STUDY


        def _plain():
            return 1
        """))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    heavy = lanes.heavy_helpers(module)
    assert {"_sessions", "_uses_the_helper", "_reads_a_study"} <= heavy
    assert "_plain" not in heavy


def test_no_collected_fast_test_reads_the_shared_studies(request: pytest.FixtureRequest) -> None:
    """The rule as pytest applied it to this session's tests (all of them in a full run)."""
    for item in request.session.items:
        if item.get_closest_marker("fast") is not None:
            assert item.get_closest_marker("needs_data") is None, item.nodeid
            assert "shared_data" not in getattr(item, "fixturenames", ()), item.nodeid


def test_readme_counts_are_pytests() -> None:
    # Collection runs in subprocesses (the helpers above make this test heavy, not fast).
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "test_counts.py"), "--check"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
