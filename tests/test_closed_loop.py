"""Section "Behaviour in closed loop" and `psych201 behaviour`: groups side by side, intervals
that cover, distances that are zero for the same behaviour, and bad input refused in one line."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cli_helpers import cli_output
from psych201.analysis.an_closed_loop import (
    ClosedLoopAnalysis,
    ClosedLoopData,
    closed_loop_section,
    group_from_sessions,
)
from psych201.analysis.plugin import AnalysisInputs
from psych201.analysis.signatures import summarise
from psych201.data.markers import parse_responses
from psych201.data.records import Session
from psych201.simulate import TASKS, CognitivePlayers, play_study


def _group(name: str, role: str, seed: int, greedy: bool = False) -> object:
    records, _ = play_study("bandit", CognitivePlayers(TASKS["bandit"].agent),
                            n_participants=25, n_trials=50, seed=seed, greedy=greedy)
    sessions = [Session("s", r["experiment"], r["participant"], i + 1, r["text"],
                        parse_responses(r["text"])) for i, r in enumerate(records)]
    return group_from_sessions(name, role, "bandit", sessions)


def test_the_section_puts_groups_side_by_side_with_distances_to_people() -> None:
    people = _group("people", "people", seed=1)
    same = _group("same people", "cognitive model", seed=1)
    greedy = _group("greedy", "language model", seed=2, greedy=True)
    section = closed_loop_section(ClosedLoopData("bandit", (people, same, greedy)),
                                  n_resamples=500)
    table = section.table("signatures").set_index(["group", "signature"])
    # the very same behaviour is at distance 0; a different one is not
    assert (table.loc["same people", "w1_to_people"] == 0).all()
    assert table.loc[("greedy", "switch_rate"), "w1_to_people"] > 0
    assert table.loc[("people", "win_stay"), "ci_low"] < table.loc[("people", "win_stay"),
                                                                   "mean"]
    # greedy players never explore: they stay after a win (almost) always
    assert table.loc[("greedy", "win_stay"), "mean"] > table.loc[("people", "win_stay"), "mean"]
    assert "greedy: furthest from people" in section.text
    assert section.table("learning_curve").shape == (3, 10)


def test_the_analysis_applies_only_with_closed_loop_data() -> None:
    context = SimpleNamespace(inputs=AnalysisInputs())
    assert "psych201 play" in (ClosedLoopAnalysis().skip(context) or "")  # type: ignore[arg-type]


def test_intervals_over_participants_cover_the_population_mean() -> None:
    # 400 groups of 40 participants whose win-stay is Beta(8, 2) (mean 0.8): the 95 % percentile
    # bootstrap interval of the mean covers 0.8 in 93-97 % of groups (measured: 94.0 %).
    rng = np.random.default_rng(0)
    hits = 0
    for k in range(400):
        values = pd.DataFrame({"win_stay": rng.beta(8, 2, size=40)})
        (s,) = summarise("g", values, ["win_stay"], seed=k, n_resamples=999)
        hits += s.low <= 0.8 <= s.high
    assert 0.93 <= hits / 400 <= 0.97, hits / 400


def test_behaviour_compares_play_runs(tmp_path: Path) -> None:
    for seed in (1, 2):
        code, output = cli_output("play", "--task", "bandit", "--model", "cognitive", "-n", "12",
                                  "--seed", str(seed), "--out", str(tmp_path / f"run{seed}"))
        assert code == 0, output
    code, output = cli_output("behaviour", "--family", "bandit", "--play", str(tmp_path / "run1"),
                              "--play", str(tmp_path / "run2"), "--json",
                              str(tmp_path / "b.json"), "--html", str(tmp_path / "b.html"))
    assert code == 0, output
    payload = json.loads((tmp_path / "b.json").read_text())
    frame = pd.DataFrame(payload["tables"]["signatures"])
    assert set(frame["signature"]) >= {"win_stay", "lose_shift", "alpha", "beta"}
    assert frame["w1_to_people"].isna().all()  # no people given: no distances
    page = (tmp_path / "b.html").read_text()
    assert "Behaviour in closed loop" in page and "win_stay" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--family", "maze", "--play", "x"], "choose one of bandit, risky, twostep"),
        (["--family", "bandit"], "give at least one --play run or --people study"),
        (["--family", "bandit", "--play", "{tmp}"], "not a psych201 play run"),
        # outputs checked before any transcript is read
        (["--family", "bandit", "--play", "{tmp}", "--json", "{tmp}"],
         "is a directory; name the file to write"),
        (["--family", "bandit", "--play", "{tmp}", "--html", "{tmp}/f/x.html"],
         "f is a file, not a directory"),
    ],
)
def test_behaviour_refuses_bad_input_in_one_line(tmp_path: Path, args: list[str],
                                                 message: str) -> None:
    (tmp_path / "f").write_text("a file")
    code, output = cli_output("behaviour", *[a.format(tmp=tmp_path) for a in args])
    assert code == 2, output
    assert message in " ".join(output.replace("│", " ").split())


def test_behaviour_refuses_a_run_or_people_of_another_family(tmp_path: Path) -> None:
    from psych201.pipeline.play import PlaySpec, run_play

    for task in ("bandit", "twostep", "lexical"):
        run_play(PlaySpec(task=task, model="cognitive", n_participants=3, n_trials=4),
                 tmp_path / task)
    for family, run, message in [
        ("bandit", "twostep", "played the twostep task, which is of the twostep family, not "
                              "--family bandit"),
        ("twostep", "bandit", "is of the bandit family, not --family twostep"),
        ("bandit", "lexical", "played the lexical task, which has no behavioural signatures"),
    ]:
        code, output = cli_output("behaviour", "--family", family, "--play", str(tmp_path / run))
        assert code == 2, output
        assert message in " ".join(output.split()), output
    # a manifest edited to name a file outside its run is refused, not read
    manifest = json.loads((tmp_path / "bandit" / "manifest.json").read_text())
    manifest["files"]["transcripts"] = "../../elsewhere.jsonl"
    (tmp_path / "bandit" / "manifest.json").write_text(json.dumps(manifest))
    code, output = cli_output("behaviour", "--family", "bandit", "--play", str(tmp_path / "bandit"))
    assert code == 2 and "lie outside the run" in " ".join(output.split()), output
    # compare/report take the family from the runs (they have no --family): each run named
    from psych201.cli.behaviour_cmds import closed_loop_data

    with pytest.raises(ValueError, match=r"lexical \(no behavioural signatures\)"):
        closed_loop_data([tmp_path / "bandit", tmp_path / "lexical"], [])
    with pytest.raises(ValueError, match=r"bandit \(bandit\); .*twostep played twostep"):
        closed_loop_data([tmp_path / "bandit", tmp_path / "twostep"], [])
    # people whose transcripts are not of the family (here, the played ones given as people)
    for family, study, message in [
        ("twostep", "bandit", "not a two-step task"),
        ("risky", "bandit", "not a risky-choice task"),
        ("bandit", "twostep", "no participant chose between two options twice"),
    ]:
        code, output = cli_output("behaviour", "--family", family, "--people",
                                  str(tmp_path / study / "transcripts"))
        assert code == 2, output
        assert message in " ".join(output.split()), output


def test_bandit_signatures_need_outcomes_rather_than_fitting_a_flat_likelihood() -> None:
    import re

    from psych201.analysis.signatures import bandit_participant
    from psych201.data.choices import session_choices

    records, _ = play_study("bandit", CognitivePlayers(TASKS["bandit"].agent),
                            n_participants=3, n_trials=20, seed=0)
    # the same choices with their feedback removed (like a lexical decision's): the likelihood
    # is flat in the learning rate, and the optimiser's start is no estimate
    sessions = []
    for i, r in enumerate(records):
        text = re.sub(r" and won [^.\n]*\.", ".", r["text"])
        sessions.append(Session("s", r["experiment"], r["participant"], i + 1, text,
                                parse_responses(text)))
    table = session_choices(sessions[0])
    assert table is not None and len(table) == 20 and table["reward"].isna().all()
    with pytest.raises(ValueError, match="no response has an outcome"):
        group_from_sessions("no feedback", "people", "bandit", sessions)
    choices = table["choice"].eq(table["options"].iloc[0][0]).to_numpy(dtype=np.float64)
    fitted = bandit_participant(choices, np.full(20, np.nan))
    assert np.isnan(fitted["alpha"]) and np.isnan(fitted["beta"])


@pytest.mark.needs_data
def test_a_real_study_without_outcomes_gets_no_bandit_parameters() -> None:
    # guenther2020LDT: two-option lexical decisions with no feedback, where the fit once
    # reported the optimiser's start (alpha 0.3, beta 3) as every participant's parameters
    from itertools import islice

    from paths import DATA
    from psych201.data.readers import discover_studies, iter_sessions

    (source,) = discover_studies(DATA / "guenther2020LDT")
    sessions = list(islice(iter_sessions(source), 5))
    with pytest.raises(ValueError, match="no response has an outcome"):
        group_from_sessions("guenther2020LDT", "people", "bandit", sessions)


@pytest.mark.needs_data
def test_compare_and_report_show_the_closed_loop_beside_the_nll(tmp_path: Path) -> None:
    """The report answers both questions: the teacher-forced NLL of the scored runs and, from
    `--play`/`--people`, whether the players behave like the people of a real bandit study."""
    from paths import DATA

    code, output = cli_output("play", "--task", "bandit", "--model", "cognitive", "-n", "12",
                              "--out", str(tmp_path / "play"))
    assert code == 0, output
    code, output = cli_output("score", "--data", "demo", "--engine", "oracle", "--split", "all",
                              "--studies", "simulated_bandit", "--limit", "5",
                              "--out", str(tmp_path / "run"), "-q")
    assert code == 0, output
    # The first 15 participants of the real study (its own format, read from the shared data
    # at test time; the full 101 only take longer to parse and fit).
    import zipfile

    people = tmp_path / "dezfouli2019"
    people.mkdir()
    with zipfile.ZipFile(DATA / "dezfouli2019" / "prompts.jsonl.zip") as archive, \
            archive.open("prompts.jsonl") as source:
        lines = [next(source) for _ in range(15)]
    (people / "prompts.jsonl").write_bytes(b"".join(lines))
    code, output = cli_output("compare", str(tmp_path / "run"), "--play", str(tmp_path / "play"),
                              "--people", str(people), "--json", str(tmp_path / "c.json"))
    assert code == 0, output
    sections = json.loads((tmp_path / "c.json").read_text())["sections"]
    loop = sections["closed_loop"]
    frame = pd.DataFrame(loop["tables"]["signatures"])
    groups = set(frame["group"])
    assert any(g.startswith("people (dezfouli2019") for g in groups), groups
    assert any(g.startswith("cognitive model") for g in groups), groups
    assert frame.loc[~frame["group"].str.startswith("people"), "w1_to_people"].notna().any()
    code, output = cli_output("report", str(tmp_path / "run"), "--play", str(tmp_path / "play"),
                              "--people", str(people), "-o", str(tmp_path / "r.html"))
    assert code == 0, output
    assert "Behaviour in closed loop" in (tmp_path / "r.html").read_text()
    # --people alone, or with --pair, is refused in one line before anything is read
    code, output = cli_output("compare", str(tmp_path / "run"), "--people", str(people))
    assert code == 2 and "--people needs --play" in output
