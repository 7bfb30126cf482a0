"""One study as a first-class case (issue 25, row 11), end to end through the CLI.

Simulated risky-choice participants form a single study; the oracle engine scores them with the
generating model (exact) and with that model sharpened to T = 0.5, which makes every participant
fit worse in expectation. The pair comparison must lead with the paired per-participant
difference and its participant-bootstrap interval, leave out statistics across studies with a
word, and the report must say the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import cli_output
from psych201.results import read_responses

PAIR = "oracle-T0.5=oracle"


def _ok(*args: str) -> str:
    """Run ``psych201 ARGS``, which must succeed; its output."""
    code, output = cli_output(*args)
    assert code == 0, output
    return output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("one-study")
    data = root / "risky.jsonl"
    _ok("simulate", "risky", "-n", "30", "--seed", "11", "--out", str(data))
    out = []
    for name, extra in (("exact", []), ("sharp", ["--engine-args", "temperature=0.5"])):
        _ok("score", "--engine", "oracle", "--data", str(data), "--out", str(root / name),
            "--split", "all", "-q", *extra)
        out.append(root / name)
    return out


def test_compare_pair_on_one_study_reports_the_paired_difference(runs: list[Path],
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "pair.json"
    output = _ok("compare", *map(str, runs), "--pair", PAIR, "--n-boot", "1000", "--json", str(out))
    assert "one shared study (risky)" in output
    (result,) = json.loads(out.read_text())
    effects = {e["name"]: e for e in result["effects"]}
    assert list(effects)[:2] == ["paired difference per participant",
                                 "paired d (per-participant differences)"]
    assert not {"sign test across studies", "mixed model: mean difference"} & set(effects)
    headline = effects["paired difference per participant"]
    # the estimate is the mean over participants of their mean NLL difference
    exact, sharp = (read_responses(r).set_index(["participant", "response_index"])["nll"]
                    for r in runs)
    per_participant = (sharp - exact).groupby(level="participant").mean()
    assert headline["estimate"] == pytest.approx(per_participant.mean(), rel=1e-9)
    assert headline["n_participants"] == 30 and headline["units"] == "nats"
    # sharpening hurts every participant in expectation: detected, interval and p agree
    assert headline["ci_low"] > 0 and headline["p_value"] < 0.05
    paired_d = effects["paired d (per-participant differences)"]
    assert paired_d["estimate"] == pytest.approx(
        per_participant.mean() / per_participant.std(ddof=1), rel=1e-9)
    for e in effects.values():
        assert (e["p_value"] < 0.05) == (e["ci_low"] > 0 or e["ci_high"] < 0), e


def test_report_on_one_study_gives_the_pair_an_interval_and_says_why(runs: list[Path],
                                                                     tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    _ok("report", *map(str, runs), "--pair", PAIR, "--n-boot", "500", "-o", str(html))
    page = html.read_text()
    assert "paired difference per participant" in page
    assert "Pairs sharing one study" in page
    # the pairs table (the one with the q column): the pair's d has an interval, and nats
    pairs_table = next(t for t in page.split("<table") if "q (BH)" in t).split("</table>")[0]
    assert "oracle-T0.5" in pairs_table and "difference (nats)" in pairs_table
    assert "[–, –]" not in pairs_table
