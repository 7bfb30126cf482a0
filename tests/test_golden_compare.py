"""Every number of ``compare --json`` on fixed oracle runs, against a committed golden file.

The guard of structural refactors (issue 23): moving code must not move a number. Four runs of the
oracle engine (exact generating probabilities, so no model and no randomness outside the seeded
bootstrap): the bundled demo studies and a shared-trials risky study, each scored by ``oracle`` and
by ``oracle-T2`` (temperature 2). A registry fragment pairs them (``oracle-T2`` post-trained,
``oracle`` its base), so the pair, diagnostics and calibration sections have content.

Regenerate deliberately (after a change that is meant to move numbers, say which in the commit)::

    PYTHONPATH=src python -m pytest tests/test_golden_compare.py --regen-golden
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import invoke
from psych201.simulate.demo import DEMO_DIR

GOLDEN = Path(__file__).parent / "golden"
REL_TOL = 1e-12

REGISTRY = """\
format: psych201-models/1
models:
  - {id: oracle, name: oracle, family: Oracle, generation: Oracle, params_b: 0.001,
     post_training: base}
  - {id: oracle-T2, name: oracle-T2, family: Oracle, generation: Oracle, params_b: 0.001,
     post_training: instruct, base: oracle}
"""


def _run(*args: str) -> None:
    result = invoke(list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output


def _compare(tmp: Path, data: Path, name: str, split: str) -> dict[str, Any]:
    """Score ``data`` with both oracles, compare them as a pair; the parsed ``--json``."""
    runs = []
    for model, engine_args in (("oracle", ()), ("oracle-T2", ("--engine-args", "temperature=2"))):
        out = tmp / f"{name}-{model}"
        _run("score", "--data", str(data), "--engine", "oracle", *engine_args, "--split", split,
             "--out", str(out), "--quiet")
        runs.append(str(out))
    registry = tmp / "registry.yaml"
    registry.write_text(REGISTRY, encoding="utf-8")
    out_json = tmp / f"{name}.json"
    _run("compare", *runs, "--data", str(data), "--registry", str(registry), "--n-boot", "200",
         "--seed", "1", "--json", str(out_json))
    return dict(json.loads(out_json.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("golden")
    risky = tmp / "risky.jsonl"
    _run("simulate", "risky", "-n", "12", "--shared-trials", "--seed", "3", "-o", str(risky))
    return {"compare-demo": _compare(tmp, DEMO_DIR, "bundled", "test"),
            "compare-risky": _compare(tmp, risky, "risky", "all")}


def differences(got: Any, want: Any, where: str = "$") -> list[str]:
    """Every place ``got`` differs from ``want``: exact for strings, ints, bools and keys, floats
    to ``REL_TOL`` relative (NaN equals NaN)."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{where}: {type(got).__name__} instead of an object"]
        out = [f"{where}: keys {sorted(set(got) ^ set(want))} differ"] if set(got) != set(
            want) else []
        for key in sorted(set(got) & set(want)):
            out += differences(got[key], want[key], f"{where}.{key}")
        return out
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{where}: {got!r:.80} instead of a list of {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True))
                for d in differences(g, w, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, float):
        same = (math.isnan(got) and math.isnan(want)) or math.isclose(
            got, want, rel_tol=REL_TOL, abs_tol=1e-300)
        return [] if same else [f"{where}: {got!r} instead of {want!r}"]
    if type(got) is not type(want) or got != want:
        return [f"{where}: {got!r:.120} instead of {want!r:.120}"]
    return []


def test_differences_sees_every_kind_of_change() -> None:
    want = {"a": [1, 2.0, "x", None], "b": {"c": float("nan")}}
    assert differences(json.loads(json.dumps(want)), want) == []
    assert differences({"a": [1, 2.0 + 1e-9, "x", None], "b": {"c": float("nan")}}, want)
    assert differences({"a": [1, 2.0, "y", None], "b": {"c": float("nan")}}, want)
    assert differences({"a": [1, 2, "x", None], "b": {"c": float("nan")}}, want)
    assert differences({"a": [1, 2.0, "x"], "b": {"c": float("nan")}}, want)
    assert differences({"a": [1, 2.0, "x", None], "b": {}}, want)


@pytest.mark.parametrize("name", ["compare-demo", "compare-risky"])
def test_compare_json_matches_the_golden_file(
    name: str, outputs: dict[str, dict[str, Any]], request: pytest.FixtureRequest
) -> None:
    path = GOLDEN / f"{name}.json"
    got = outputs[name]
    if request.config.getoption("--regen-golden"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1, sort_keys=True, allow_nan=True) + "\n",
                        encoding="utf-8")
    want = json.loads(path.read_text(encoding="utf-8"))
    found = differences(got, want)
    assert not found, f"{len(found)} differences from {path.name}:\n" + "\n".join(found[:30])
